package compare

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// WriteProxyReport prints what RunProxies measured: how each arm ran, the
// throughput table and the two staleness tables.
func WriteProxyReport(w io.Writer, rep *ProxyReport) error {
	o := rep.Options
	var b strings.Builder
	length := fmt.Sprintf("%v", o.BenchTime)
	if o.BenchTransactions > 0 {
		length = fmt.Sprintf("%d transactions per client", o.BenchTransactions)
	}
	fmt.Fprintf(&b, "Throughput: pgbench, %d clients (-c %d -j %d), %d round(s) of %s per arm and workload,\n",
		o.Clients, o.Clients, o.Threads, o.Rounds, length)
	fmt.Fprintf(&b, "the arms interleaved (their order rotates each round); medians over rounds.\n\n")
	writeBenchTable(&b, rep.Bench)
	b.WriteString("\n")
	b.WriteString(wrap("tps range: the lowest and highest round. p50 added: the median over rounds of the arm's p50 minus "+
		"direct's in the same round. proxy CPU/tx: CPU time of the proxy's processes (all of pgpool-II's) per transaction, from /proc.", 78))
	b.WriteString("\n\n")

	fmt.Fprintf(&b, "Staleness: %d sessions, each on a counter row of its own; %.0f%% of operations write\n", o.Staleness.Sessions, 100*o.Staleness.WriteRatio)
	fmt.Fprintf(&b, "(UPDATE ... RETURNING) and read the row back at once, the others read it; pauses of\n")
	lags := make([]string, len(rep.Lags))
	for i, l := range rep.Lags {
		lags[i] = l.String()
	}
	fmt.Fprintf(&b, "0-%v in between; replicas replaying %s behind; %v per arm and layout.\n",
		o.Staleness.MaxThink, strings.Join(lags, " and "), o.Staleness.Duration)
	b.WriteString(wrap("A read is stale if it returns less than its session wrote or read before; replica share is judged by the server that answered "+
		"(inet_server_port()). Every client runs in autocommit, one round trip per statement (pgx's exec mode: extended protocol, unnamed statements). "+
		"pgpool-II runs once per value of disable_load_balance_on_write (its name's second word); switchyard proxy with its default "+
		"--consistency global, with --consistency connection (each client connection a session of its own), and in global mode with --replica-wait "+
		ProxyReplicaWait+" (a read that no replica has caught up for waits for one instead of going to the primary).", 78))
	b.WriteString("\n\nEach session's writes and reads on one connection:\n")
	if err := writeResults(&b, "target", rep.OneConn); err != nil {
		return err
	}
	b.WriteString("\nEach session's writes on one connection, its reads on another:\n")
	if err := writeResults(&b, "target", rep.TwoConns); err != nil {
		return err
	}

	b.WriteString("\nHow each arm ran (all on 127.0.0.1):\n")
	for _, c := range rep.Commands {
		b.WriteString(indent(wrap(c, 74), "  ", "    "))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "%s\n", indent(wrap("pgbench: "+benchCommand(o)+", after VACUUM pgbench_branches, VACUUM pgbench_tellers and "+
		"TRUNCATE pgbench_history on the primary (what pgbench does itself without -n); tables from pgbench -i (scale 1).", 74), "  ", "    "))
	for _, s := range rep.Skipped {
		fmt.Fprintf(&b, "  not run: %s\n", s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// benchCommand is the pgbench command line of the runs, with placeholders.
func benchCommand(o ProxyOptions) string {
	s := benchSpec{clients: o.Clients, threads: o.Threads, duration: o.BenchTime, transactions: o.BenchTransactions}
	args := s.args(Workload{Script: "select-only", Mode: "extended"}, server{host: "127.0.0.1"}, "LOG")
	for i, a := range args {
		switch a {
		case "-S":
			args[i] = "-S|-N"
		case "extended":
			args[i] = "extended|prepared"
		case "LOG":
			args[i] = "DIR/RUN"
		}
		if a == "-p" {
			args[i+1] = "PORT"
		}
	}
	return "pgbench " + strings.Join(args, " ")
}

// indent indents s's first line by first and the others by rest.
func indent(s, first, rest string) string {
	return first + strings.ReplaceAll(s, "\n", "\n"+rest)
}

// writeBenchTable prints the throughput rows: a failed arm's reason spans
// the numeric columns.
func writeBenchTable(b *strings.Builder, rows []BenchRow) {
	head := []string{"workload", "target", "tps", "tps range", "avg latency", "p50 latency", "p50 added", "proxy CPU/tx"}
	type line struct {
		cells []string
		span  string
	}
	lines := []line{{cells: head}}
	var last Workload
	for _, r := range rows {
		wl := r.Workload.String()
		if r.Workload == last {
			wl = ""
		}
		last = r.Workload
		if r.OK == 0 {
			lines = append(lines, line{cells: []string{wl, r.Target}, span: "fails: " + r.Failed})
			continue
		}
		target := r.Target
		if r.OK < len(r.Runs) {
			target += fmt.Sprintf(" (%d of %d rounds failed: %s)", len(r.Runs)-r.OK, len(r.Runs), r.Failed)
		}
		added, cpu := "", ""
		if r.Target != DirectName {
			added = fmt.Sprintf("%+.0f µs", float64(r.AddedP50)/float64(time.Microsecond))
			if r.CPUPerTx > 0 {
				cpu = fmt.Sprintf("%.1f µs", float64(r.CPUPerTx)/float64(time.Microsecond))
			} else {
				cpu = "?"
			}
		}
		lines = append(lines, line{cells: []string{wl, target,
			thousands(r.TPS), thousands(r.MinTPS) + "-" + thousands(r.MaxTPS),
			msec(r.Avg), msec(r.P50), added, cpu}})
	}
	widths := make([]int, len(head))
	for _, l := range lines {
		for i, c := range l.cells {
			if l.span == "" || i < 2 {
				widths[i] = max(widths[i], utf8.RuneCountInString(c))
			}
		}
	}
	for _, l := range lines {
		var s strings.Builder
		s.WriteString(" ")
		for i, c := range l.cells {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i < 2 {
				s.WriteString(" " + c + pad + " ")
			} else {
				s.WriteString(" " + pad + c + " ")
			}
		}
		if l.span != "" {
			s.WriteString(" " + l.span)
		}
		b.WriteString(strings.TrimRight(s.String(), " "))
		b.WriteByte('\n')
	}
}

// msec formats a latency in milliseconds with three decimals, as pgbench
// does.
func msec(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}

// thousands formats a rate as a whole number with thousands separated by
// commas.
func thousands(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
