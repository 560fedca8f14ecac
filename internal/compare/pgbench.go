package compare

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/internal/childproc"
)

// A Workload is one of pgbench's built-in scripts in one query mode.
type Workload struct {
	// Script is "select-only" (-S) or "simple-update" (-N).
	Script string
	// Mode is pgbench's -M: "extended" or "prepared".
	Mode string
}

// Workloads are the four the proxies comparison runs, in order.
var Workloads = []Workload{
	{"select-only", "extended"}, {"select-only", "prepared"},
	{"simple-update", "extended"}, {"simple-update", "prepared"},
}

// flag is the script's pgbench option.
func (w Workload) flag() string {
	if w.Script == "simple-update" {
		return "-N"
	}
	return "-S"
}

// String is how the table names it: "-S -M extended".
func (w Workload) String() string { return w.flag() + " -M " + w.Mode }

// benchSpec is how each pgbench run goes.
type benchSpec struct {
	bin              string
	clients, threads int
	duration         time.Duration // -T, whole seconds; or
	transactions     int           // -t, per client
	dir              string        // for the per-transaction logs
}

// logSampling is the share of transactions whose latency pgbench logs
// (--sampling-rate) in timed runs: plenty for a median, and cheap.
const logSampling = 0.1

// args is pgbench's command line for w against s, logging to prefix.
func (b benchSpec) args(w Workload, s server, prefix string) []string {
	args := []string{"-n", w.flag(), "-M", w.Mode, "-c", strconv.Itoa(b.clients), "-j", strconv.Itoa(b.threads)}
	if b.transactions > 0 {
		args = append(args, "-t", strconv.Itoa(b.transactions))
	} else {
		args = append(args, "-T", strconv.Itoa(int(b.duration/time.Second)), "--sampling-rate", strconv.FormatFloat(logSampling, 'f', -1, 64))
	}
	return append(args, "--log", "--log-prefix", prefix, "-h", s.host, "-p", strconv.Itoa(s.port), "-U", "postgres", "postgres")
}

// BenchRun is one pgbench run's outcome.
type BenchRun struct {
	// TPS is pgbench's tps (without initial connection time).
	TPS float64
	// Avg is pgbench's latency average; P50 the median of the logged
	// transactions' latencies.
	Avg, P50 time.Duration
	// Transactions is how many pgbench processed.
	Transactions int
	// CPU is the CPU time the target's processes (the proxy's) used during
	// the run, or 0 for none or unknown.
	CPU time.Duration
	// Failed says why the run failed ("" when it did not): pgbench's
	// errors, such as pgbouncer's answer to prepared statements in
	// transaction mode.
	Failed string
}

var (
	tpsRe     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	avgRe     = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
	txnsRe    = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	abortedRe = regexp.MustCompile(`^client [0-9]+ script [0-9]+ aborted in command [0-9]+ query [0-9]+: `)
)

// runBench runs pgbench once; cpu, if set, measures the target's CPU
// around it. An error is returned only when pgbench could not run at all;
// a run that pgbench reports failing (exit status, aborted clients) is a
// BenchRun with Failed set.
func runBench(ctx context.Context, b benchSpec, w Workload, s server, name string, cpu func() time.Duration) (BenchRun, error) {
	prefix := filepath.Join(b.dir, name)
	cmd := exec.CommandContext(ctx, b.bin, b.args(w, s, prefix)...)
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGGSSENCMODE=disable")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = childproc.Attr(nil)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var before time.Duration
	if cpu != nil {
		before = cpu()
	}
	if err := childproc.Start(cmd); err != nil {
		return BenchRun{}, fmt.Errorf("compare: running pgbench (%s): %w", b.bin, err)
	}
	werr := cmd.Wait()
	var r BenchRun
	if cpu != nil {
		r.CPU = cpu() - before
	}
	if ctx.Err() != nil {
		return BenchRun{}, ctx.Err()
	}
	out := stdout.String()
	if m := tpsRe.FindStringSubmatch(out); m != nil {
		r.TPS, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := avgRe.FindStringSubmatch(out); m != nil {
		f, _ := strconv.ParseFloat(m[1], 64)
		r.Avg = time.Duration(f * float64(time.Millisecond))
	}
	if m := txnsRe.FindStringSubmatch(out); m != nil {
		r.Transactions, _ = strconv.Atoi(m[1])
	}
	lat, lerr := readBenchLogs(prefix)
	r.P50 = percentile(lat, 0.5)
	switch {
	case werr != nil:
		r.Failed = benchErrors(stderr.String(), werr)
	case r.TPS == 0 || r.Transactions == 0:
		r.Failed = "pgbench reported no transactions: " + lastLine(stdout.String()+stderr.String())
	case lerr != nil:
		r.Failed = lerr.Error()
	case len(lat) == 0:
		r.Failed = "pgbench logged no transaction"
	}
	return r, nil
}

// readBenchLogs reads the latencies pgbench logged (one file per thread,
// prefix.PID and prefix.PID.N), sorted, and removes the files.
func readBenchLogs(prefix string) ([]time.Duration, error) {
	files, _ := filepath.Glob(prefix + ".*")
	var lat []time.Duration
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, fmt.Errorf("compare: pgbench's log: %w", err)
		}
		s := bufio.NewScanner(fh)
		for s.Scan() {
			// client_id transaction_no time script_no time_epoch time_us ...;
			// time is "failed" or "skipped" for those.
			f := strings.Fields(s.Text())
			if len(f) < 3 {
				continue
			}
			us, err := strconv.ParseInt(f[2], 10, 64)
			if err != nil {
				continue
			}
			lat = append(lat, time.Duration(us)*time.Microsecond)
		}
		err = s.Err()
		fh.Close()
		os.Remove(f)
		if err != nil {
			return nil, fmt.Errorf("compare: pgbench's log: %w", err)
		}
	}
	slices.Sort(lat)
	return lat, nil
}

// benchErrors sums up why pgbench failed: its distinct error messages,
// most frequent first, without the client numbers (`prepared statement
// "P_0" already exists / prepared statement "P_0" does not exist`).
// pgbench's threads write to stderr at once, so a line may hold the start
// of another: the server's message is what follows the last "ERROR:".
func benchErrors(stderr string, werr error) string {
	count := map[string]int{}
	var msgs []string
	for _, line := range strings.Split(stderr, "\n") {
		i := strings.LastIndex(line, "pgbench: error: ")
		if i < 0 {
			continue
		}
		m := line[i+len("pgbench: error: "):]
		if j := strings.LastIndex(line, "ERROR:"); j >= 0 {
			m = line[j+len("ERROR:"):]
		}
		m = strings.TrimSpace(abortedRe.ReplaceAllString(m, ""))
		if m == "" || strings.HasPrefix(m, "Run was aborted") {
			continue
		}
		if count[m] == 0 {
			msgs = append(msgs, m)
		}
		count[m]++
	}
	if len(msgs) == 0 {
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			return fmt.Sprintf("pgbench exited with status %d: %s", ee.ExitCode(), lastLine(stderr))
		}
		return "pgbench: " + werr.Error()
	}
	slices.SortStableFunc(msgs, func(a, b string) int { return count[b] - count[a] })
	if len(msgs) > 3 {
		msgs = msgs[:3]
	}
	return strings.Join(msgs, " / ")
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
