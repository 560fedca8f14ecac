package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/internal/childproc"
)

// The proxies comparison (RunProxies) puts four arms side by side on one
// lab: clients straight to the primary, pgbouncer in transaction pooling
// mode in front of the primary, pgpool-II load balancing over the primary
// and the replicas, and switchyard proxy in front of all of them. It
// measures two things:
//
//   - Throughput and latency: pgbench's built-in select-only (-S) and
//     simple-update (-N) scripts, in the extended and the prepared query
//     protocol, through each arm. The arms run one after another in rounds,
//     in an order that rotates each round, so that whatever else the
//     machine does hits every arm alike; the table shows medians over the
//     rounds. The p50 latency comes from pgbench's per-transaction log, and
//     the p50 added over direct is the median, over rounds, of each round's
//     difference (the arms of one round ran close together in time).
//   - Staleness: the Run workload (sessions that write then read at once,
//     and read) through each arm, on one connection per session and with
//     the writes and the reads on two connections, judged by the server
//     that answered (inet_server_port()); pgpool-II once for each value of
//     its disable_load_balance_on_write, switchyard proxy also with
//     --consistency connection and with --replica-wait.

// ProxyOptions shape RunProxies. Zero values take the defaults.
type ProxyOptions struct {
	// Tools are the programs to run; an empty PgBouncer or Pgpool skips
	// that arm.
	Tools Tools
	// Rounds of the throughput comparison (default 3).
	Rounds int
	// BenchTime is each pgbench run's length (pgbench -T, whole seconds;
	// default 10s).
	BenchTime time.Duration
	// BenchTransactions, if positive, replaces BenchTime: each pgbench
	// client runs that many transactions (pgbench -t).
	BenchTransactions int
	// Clients and Threads are pgbench's -c and -j (default 16 and 2).
	Clients, Threads int
	// Workloads are the pgbench workloads (default Workloads).
	Workloads []Workload
	// Staleness shapes the staleness workload as it does Run's; its
	// Duration is per arm and per connection layout.
	Staleness Options
	// ProfileDir, if set, receives a CPU profile of switchyard proxy
	// (pprof, from its --admin) for each of its timed pgbench runs.
	ProfileDir string
	// Logf, if set, hears of each step.
	Logf func(format string, args ...any)
}

func (o ProxyOptions) withDefaults() ProxyOptions {
	if o.Rounds <= 0 {
		o.Rounds = 3
	}
	if o.BenchTime <= 0 {
		o.BenchTime = 10 * time.Second
	}
	o.BenchTime = max(o.BenchTime.Truncate(time.Second), time.Second)
	if o.Clients <= 0 {
		o.Clients = 16
	}
	if o.Threads <= 0 {
		o.Threads = min(2, o.Clients)
	}
	if len(o.Workloads) == 0 {
		o.Workloads = Workloads
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.Staleness.Logf == nil {
		o.Staleness.Logf = o.Logf
	}
	o.Staleness = o.Staleness.withDefaults()
	return o
}

// The arms' names in the tables.
const (
	DirectName          = "direct to the primary"
	PgBouncerName       = "pgbouncer"
	PgpoolName          = "pgpool-II"
	SwitchyardProxyName = "switchyard proxy"
	// SwitchyardProxyConnName is switchyard proxy with --consistency
	// connection, in the staleness tables.
	SwitchyardProxyConnName = "switchyard proxy, connection"
	// SwitchyardProxyWaitName is switchyard proxy with --replica-wait
	// (ProxyReplicaWait), in the staleness tables.
	SwitchyardProxyWaitName = "switchyard proxy, replica-wait 25ms"
)

// ProxyReplicaWait is how long switchyard proxy's reads may wait for a
// replica in the staleness workload's arm SwitchyardProxyWaitName: a little
// more than the nearer replica's delay.
const ProxyReplicaWait = "25ms"

// BenchRow is one arm's figures for one workload.
type BenchRow struct {
	Workload Workload
	Target   string
	// Runs has one entry per round.
	Runs []BenchRun
	// TPS, Avg, P50 and CPUPerTx are medians over the rounds that did not
	// fail; AddedP50 is the median over rounds of the difference from
	// the direct arm's P50 in the same round (0 for the direct arm).
	TPS                float64
	Avg, P50, AddedP50 time.Duration
	MinTPS, MaxTPS     float64
	CPUPerTx           time.Duration
	// OK counts the rounds that did not fail; Failed is the first
	// failure's reason.
	OK     int
	Failed string
}

// ProxyReport is what RunProxies measured.
type ProxyReport struct {
	// Options are the options as run, defaults filled in.
	Options ProxyOptions
	// Lags are the replicas' replay delays, as the caller said (for the
	// header).
	Lags []time.Duration
	// Commands say how each arm ran.
	Commands []string
	// Skipped lists the arms not run, with why.
	Skipped []string
	// Bench has a row per workload and arm, workload by workload.
	Bench []BenchRow
	// OneConn and TwoConns are the staleness results, with each session's
	// writes and reads on one connection, and on two.
	OneConn, TwoConns []Result
}

// arm is a target of the comparison.
type arm struct {
	name  string
	srv   server
	proxy *proxy // nil for direct
}

func (a arm) cpu() func() time.Duration {
	if a.proxy == nil {
		return nil
	}
	return a.proxy.cpuTime
}

// RunProxies runs the proxies comparison on cluster c (a primary and its
// replicas, reachable on this machine): it starts pgbouncer, pgpool-II and
// switchyard proxy (o.Tools), initializes pgbench's tables on the primary
// (pgbench -i), runs the throughput rounds and the staleness workload, and
// stops everything it started before it returns, also when ctx ends. It
// creates compare_counters and pgbench's tables on c.
func RunProxies(ctx context.Context, c Cluster, o ProxyOptions) (rep *ProxyReport, err error) {
	o = o.withDefaults()
	if len(c.Replicas) == 0 {
		return nil, errors.New("compare: the cluster has no replicas")
	}
	if o.Tools.PgBench == "" {
		return nil, fmt.Errorf("compare: pgbench: %w", ErrMissingTool)
	}
	primary, err := parseServer(c.Primary)
	if err != nil {
		return nil, err
	}
	nodes := []server{primary}
	for _, r := range c.Replicas {
		s, err := parseServer(r)
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, s)
	}
	acct, err := toolAccount()
	if err != nil {
		return nil, err
	}
	w, err := newWorkDir(acct)
	if err != nil {
		return nil, err
	}
	var started []*proxy
	defer func() {
		for _, p := range slices.Backward(started) {
			p.stop()
			o.Logf("stopped %s", p.name)
		}
		if cerr := w.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	p, err := openPools(ctx, c, 2)
	if err != nil {
		return nil, err
	}
	defer p.close()

	rep = &ProxyReport{Options: o}
	o.Logf("pgbench -i on the primary")
	if err := benchInit(ctx, o.Tools.PgBench, primary); err != nil {
		return nil, err
	}
	if err := waitReplay(ctx, p); err != nil {
		return nil, err
	}

	children := max(32, 2*o.Staleness.Sessions, o.Clients)
	arms := []arm{{name: DirectName, srv: primary}}
	rep.Commands = append(rep.Commands, fmt.Sprintf("%s: clients connect to the primary itself", DirectName))
	if o.Tools.PgBouncer == "" {
		rep.Skipped = append(rep.Skipped, PgBouncerName+": not installed (Debian/Ubuntu: apt-get install pgbouncer)")
	} else {
		o.Logf("starting pgbouncer")
		pb, err := startPgBouncer(ctx, w, acct, o.Tools.PgBouncer, primary)
		if err != nil {
			return nil, err
		}
		started = append(started, pb)
		arms = append(arms, arm{name: PgBouncerName, srv: pb.server, proxy: pb})
		rep.Commands = append(rep.Commands, fmt.Sprintf("%s (%s): pgbouncer pgbouncer.ini, with [databases] postgres = host=127.0.0.1 port=PRIMARY; "+
			"pool_mode = transaction, default_pool_size = 20, max_client_conn = 200, auth_type = trust", PgBouncerName, versionOf(o.Tools.PgBouncer, "--version")))
	}
	var pgpoolTx *proxy
	if o.Tools.Pgpool == "" {
		rep.Skipped = append(rep.Skipped, PgpoolName+": not installed (Debian/Ubuntu: apt-get install pgpool2)")
	} else {
		o.Logf("starting pgpool-II")
		pgpoolTx, err = startPgpool(ctx, w, acct, o.Tools.Pgpool, pgpoolModes[0], children, nodes)
		if err != nil {
			return nil, err
		}
		started = append(started, pgpoolTx)
		arms = append(arms, arm{name: PgpoolName, srv: pgpoolTx.server, proxy: pgpoolTx})
		rep.Commands = append(rep.Commands, fmt.Sprintf("%s (%s): pgpool -n -D -f pgpool.conf -F pcp.conf -a pool_hba.conf (both empty), with "+
			"backend_clustering_mode = 'streaming_replication', the primary and %d replicas as backends 0-%d (backend_weight 1 each), load_balance_mode = on, "+
			"disable_load_balance_on_write = 'transaction' (the default; for the throughput runs), connection_cache = on, num_init_children = %d, max_pool = 4, "+
			"sr_check_period = 10, sr_check_user = 'postgres', health_check_period = 0, use_watchdog = off, enable_pool_hba = off, pool_passwd = '', "+
			"read_only_function_list = 'pg_is_in_recovery,inet_server_port'",
			PgpoolName, versionOf(o.Tools.Pgpool, "--version"), len(c.Replicas), len(c.Replicas), children))
	}
	o.Logf("starting switchyard proxy")
	sp, err := startSwitchyard(ctx, w, o.Tools.Switchyard, c.Primary, c.Replicas, o.ProfileDir != "")
	if err != nil {
		return nil, err
	}
	started = append(started, sp)
	arms = append(arms, arm{name: SwitchyardProxyName, srv: sp.server, proxy: sp})
	admin := ""
	if o.ProfileDir != "" {
		admin = " --admin 127.0.0.1:PORT"
	}
	rep.Commands = append(rep.Commands, fmt.Sprintf("%s: switchyard proxy --primary PRIMARY --replica REPLICA1 --replica REPLICA2 "+
		"--listen 127.0.0.1:PORT --log-level warn --shutdown-grace 2s%s, as a process of its own; its defaults otherwise "+
		"(--consistency global, --pool-size 20, --procs a quarter of the CPUs, at least 1); for the staleness workload also with "+
		"--consistency connection (each client connection a session of its own), as %q, and with --replica-wait %s (a read that no replica has caught up for waits for one), as %q",
		SwitchyardProxyName, admin, SwitchyardProxyConnName, ProxyReplicaWait, SwitchyardProxyWaitName))

	logs, err := w.sub("pgbench", account{})
	if err != nil {
		return nil, err
	}
	spec := benchSpec{bin: o.Tools.PgBench, clients: o.Clients, threads: o.Threads, duration: o.BenchTime, transactions: o.BenchTransactions, dir: logs}
	if err := runRounds(ctx, rep, p, spec, arms, o); err != nil {
		return nil, err
	}

	// Staleness.
	if _, err := p.primary.Exec(ctx, `CREATE TABLE IF NOT EXISTS compare_counters
		(run int NOT NULL, id int NOT NULL, v int NOT NULL DEFAULT 0, PRIMARY KEY (run, id))`); err != nil {
		return nil, fmt.Errorf("compare: setup: %w", err)
	}
	var run int
	if err := p.primary.QueryRow(ctx, "SELECT coalesce(max(run), 0) FROM compare_counters").Scan(&run); err != nil {
		return nil, fmt.Errorf("compare: setup: %w", err)
	}
	stale := func(name string, s server) error {
		for conns := 1; conns <= 2; conns++ {
			run++
			res, err := staleness(ctx, p, name, s, primary.port, conns, run, o.Staleness)
			if err != nil {
				return err
			}
			if conns == 1 {
				rep.OneConn = append(rep.OneConn, res)
			} else {
				rep.TwoConns = append(rep.TwoConns, res)
			}
		}
		return nil
	}
	for _, a := range arms {
		if a.name != PgpoolName {
			if err := stale(a.name, a.srv); err != nil {
				return nil, err
			}
			continue
		}
		for _, mode := range pgpoolModes {
			pp := pgpoolTx
			if mode != pgpoolModes[0] {
				o.Logf("starting pgpool-II (disable_load_balance_on_write = %s)", mode)
				if pp, err = startPgpool(ctx, w, acct, o.Tools.Pgpool, mode, children, nodes); err != nil {
					return nil, err
				}
			}
			err := stale(PgpoolName+" "+mode, pp.server)
			if pp != pgpoolTx {
				pp.stop()
				o.Logf("stopped %s", pp.name)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	// switchyard proxy with other flags, started for the staleness
	// workload alone.
	variant := func(name string, flags ...string) error {
		o.Logf("starting switchyard proxy %s", strings.Join(flags, " "))
		sp, err := startSwitchyard(ctx, w, o.Tools.Switchyard, c.Primary, c.Replicas, false, flags...)
		if err != nil {
			return err
		}
		err = stale(name, sp.server)
		sp.stop()
		o.Logf("stopped %s", sp.name)
		return err
	}
	// Its other promise, each client connection a session of its own; and
	// global mode with reads that wait for a replica to catch up instead of
	// going to the primary after a write.
	if err := variant(SwitchyardProxyConnName, "--consistency", "connection"); err != nil {
		return nil, err
	}
	if err := variant(SwitchyardProxyWaitName, "--replica-wait", ProxyReplicaWait); err != nil {
		return nil, err
	}
	return rep, nil
}

// versionOf is the first line a program prints (on stdout or stderr)
// when asked its version, or its base name.
func versionOf(bin, flag string) string {
	out, err := exec.Command(bin, flag).CombinedOutput()
	if line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n"); err == nil && line != "" {
		return line
	}
	return filepath.Base(bin)
}

// benchInit makes pgbench's tables (scale 1) on the primary.
func benchInit(ctx context.Context, bin string, primary server) error {
	cmd := exec.CommandContext(ctx, bin, "-i", "-q", "-h", primary.host, "-p", strconv.Itoa(primary.port), "-U", "postgres", "postgres")
	cmd.Env = append(os.Environ(), "PGSSLMODE=disable", "PGGSSENCMODE=disable")
	cmd.SysProcAttr = childproc.Attr(nil)
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("compare: pgbench -i on the primary: %w: %s", err, lastLine(string(out)))
	}
	return nil
}

// waitReplay waits until every replica has replayed what the primary has
// written so far.
func waitReplay(ctx context.Context, p *pools) error {
	var target string
	if err := p.primary.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&target); err != nil {
		return fmt.Errorf("compare: waiting for the replicas: %w", err)
	}
	for i, r := range p.replicas {
		for {
			var caught bool
			if err := r.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", target).Scan(&caught); err != nil {
				return fmt.Errorf("compare: waiting for replica %d: %w", i+1, err)
			}
			if caught {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// resetBench does what pgbench does before a run unless told not to
// (-n), on the primary: vacuum the small tables and empty the history.
func resetBench(ctx context.Context, p *pools) error {
	for _, sql := range []string{"VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history"} {
		if _, err := p.primary.Exec(ctx, sql); err != nil {
			return fmt.Errorf("compare: %s: %w", sql, err)
		}
	}
	return nil
}

// runRounds runs the throughput rounds and fills rep.Bench.
func runRounds(ctx context.Context, rep *ProxyReport, p *pools, spec benchSpec, arms []arm, o ProxyOptions) error {
	rows := make([][]BenchRow, len(o.Workloads))
	for wi, wl := range o.Workloads {
		for _, a := range arms {
			rows[wi] = append(rows[wi], BenchRow{Workload: wl, Target: a.name})
		}
	}
	for round := range o.Rounds {
		for wi, wl := range o.Workloads {
			for k := range arms {
				ai := (k + round) % len(arms)
				a := arms[ai]
				if err := resetBench(ctx, p); err != nil {
					return err
				}
				name := fmt.Sprintf("r%d-w%d-a%d", round+1, wi+1, ai+1)
				stopProfile := func() error { return nil }
				if a.name == SwitchyardProxyName && o.ProfileDir != "" && spec.transactions == 0 {
					file := filepath.Join(o.ProfileDir, fmt.Sprintf("switchyard-proxy%s-%s-round%d.pprof", wl.flag(), wl.Mode, round+1))
					stopProfile = profile(ctx, a.proxy.admin, spec.duration, file)
				}
				r, err := runBench(ctx, spec, wl, a.srv, name, a.cpu())
				if perr := stopProfile(); err == nil && perr != nil {
					o.Logf("%v", perr)
				}
				if err != nil {
					return err
				}
				rows[wi][ai].Runs = append(rows[wi][ai].Runs, r)
				if r.Failed != "" {
					o.Logf("round %d, %s, %s: fails: %s", round+1, wl, a.name, r.Failed)
				} else {
					o.Logf("round %d, %s, %s: %.0f tps, p50 %v", round+1, wl, a.name, r.TPS, r.P50)
				}
			}
		}
	}
	for wi := range rows {
		for ai := range rows[wi] {
			summarize(&rows[wi][ai], rows[wi][0].Runs)
		}
		rep.Bench = append(rep.Bench, rows[wi]...)
	}
	return nil
}

// profile starts taking a CPU profile of switchyard proxy (from its admin
// address) for d, into file; the function it returns waits for it.
func profile(ctx context.Context, admin string, d time.Duration, file string) (wait func() error) {
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", admin, int(d/time.Second))
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				return fmt.Errorf("compare: profile: %w", err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return fmt.Errorf("compare: profile of switchyard proxy: %w", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("compare: profile of switchyard proxy: %s", resp.Status)
			}
			f, err := os.Create(file)
			if err != nil {
				return fmt.Errorf("compare: profile: %w", err)
			}
			_, err = io.Copy(f, resp.Body)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("compare: profile %s: %w", file, err)
			}
			return nil
		}()
	}()
	return func() error { return <-done }
}

// summarize computes a row's medians; direct is the direct arm's runs.
func summarize(r *BenchRow, direct []BenchRun) {
	var tps []float64
	var avg, p50, added, cpu []time.Duration
	for i, run := range r.Runs {
		if run.Failed != "" {
			if r.Failed == "" {
				r.Failed = run.Failed
			}
			continue
		}
		r.OK++
		tps = append(tps, run.TPS)
		avg = append(avg, run.Avg)
		p50 = append(p50, run.P50)
		if i < len(direct) && direct[i].Failed == "" {
			added = append(added, run.P50-direct[i].P50)
		}
		if run.Transactions > 0 {
			cpu = append(cpu, run.CPU/time.Duration(run.Transactions))
		}
	}
	if r.OK == 0 {
		return
	}
	r.TPS = median(tps)
	r.MinTPS, r.MaxTPS = slices.Min(tps), slices.Max(tps)
	r.Avg, r.P50 = median(avg), median(p50)
	if len(added) > 0 {
		r.AddedP50 = median(added)
	}
	if len(cpu) > 0 {
		r.CPUPerTx = median(cpu)
	}
}

// median is the middle value (the mean of the two middle ones for an
// even count), or zero.
func median[T int64 | float64 | time.Duration](v []T) T {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// staleness runs the staleness workload through s with conns connections
// per session (1: writes and reads on one; 2: writes on one and reads on
// the other), on the counter rows of run.
func staleness(ctx context.Context, p *pools, name string, s server, primaryPort, conns, run int, o Options) (Result, error) {
	if err := prepare(ctx, p, run, o.Sessions); err != nil {
		return Result{}, err
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", s.host, s.port))
	if err != nil {
		return Result{}, fmt.Errorf("compare: %w", err)
	}
	// One round trip per statement, no named statements: what pgbouncer's
	// transaction pooling allows.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	sessions := make([]*connSession, o.Sessions)
	defer func() {
		for _, cs := range sessions {
			if cs != nil {
				cs.close()
			}
		}
	}()
	for i := range sessions {
		cs := &connSession{primaryPort: primaryPort}
		if cs.w, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			return Result{}, fmt.Errorf("compare: connecting to %s: %w", name, err)
		}
		cs.r = cs.w
		if conns == 2 {
			if cs.r, err = pgx.ConnectConfig(ctx, cfg); err != nil {
				cs.close()
				return Result{}, fmt.Errorf("compare: connecting to %s: %w", name, err)
			}
		}
		sessions[i] = cs
	}
	return measure(ctx, name, func(_ context.Context, i int) session { return sessions[i] }, run, o, nil)
}

// connSession is a session on connections to an arm: writes on w, reads
// on r (which may be w). A read is a replica's when the port of the
// server that ran it (inet_server_port()) is not the primary's.
type connSession struct {
	w, r        *pgx.Conn
	primaryPort int
}

const portReadSQL = "SELECT v, inet_server_port() FROM compare_counters WHERE run = $1 AND id = $2"

func (s *connSession) write(ctx context.Context, run, id int) (int, error) {
	var v int
	err := s.w.QueryRow(ctx, writeSQL, run, id).Scan(&v)
	return v, err
}

func (s *connSession) read(ctx context.Context, run, id int) (int, bool, error) {
	var v, port int
	err := s.r.QueryRow(ctx, portReadSQL, run, id).Scan(&v, &port)
	return v, port != s.primaryPort, err
}

func (s *connSession) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if s.r != nil && s.r != s.w {
		s.r.Close(ctx)
	}
	if s.w != nil {
		s.w.Close(ctx)
	}
}
