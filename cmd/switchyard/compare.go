package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/switchyard-db/switchyard/internal/compare"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

const compareUsage = `Usage: switchyard compare [--sessions N] [--duration D] [--lag1 D] [--lag2 D] [--think D]
       switchyard compare --proxies [--rounds N] [--bench-time D] [--clients N] [flags]

Starts a throwaway PostgreSQL primary with two streaming replicas on
127.0.0.1, replica1 replaying --lag1 and replica2 --lag2 behind the primary,
and runs the same workload through three routers, one after the other:

  naive         every SELECT to a random replica, the rest to the primary
                (what router tutorials recommend)
  sticky        a session's SELECTs to the primary for 2s after it wrote,
                else to a random replica (Rails' default)
  switchyard    a switchyard.DB, one switchyard.WithSession per session

Each of --sessions sessions owns a counter row. In 15% of its operations it
writes (UPDATE ... SET v = v + 1 RETURNING v) and reads the row right back;
in the others it reads it; it pauses 0 to --think in between. A read is stale
when it returns less than the session already wrote or read. The table shows,
for each router: reads, stale reads, the share of reads that replicas served
(as pg_is_in_recovery() said), and the median and 99th percentile read
latency. Sessions that read again sooner than the replicas lag (a small
--think) keep switchyard on the primary: it never shows a session older data
than it already saw.

With --proxies it compares PostgreSQL proxies instead, on the same kind of
lab, each a process of its own on 127.0.0.1 (run as the postgres user when
run as root, except switchyard proxy, which is this very binary run as
"switchyard proxy", so that it is measured as it is deployed, with its own
GOMAXPROCS):

  direct to the primary   pgbench and the clients connect to the primary
  pgbouncer               transaction pooling in front of the primary
  pgpool-II               streaming-replication mode, load balancing over
                          the primary and both replicas (weight 1 each)
  switchyard proxy        "switchyard proxy" with its defaults

Throughput: pgbench's select-only (-S) and simple-update (-N) scripts, each
in the extended and the prepared protocol (-M), --clients clients on
--threads threads, --bench-time each (or --bench-transactions per client),
through every arm. The arms run in --rounds rounds, in an order that rotates
each round, so that whatever else the machine does hits every arm alike.
The table shows, per workload and arm, the median over rounds of pgbench's
tps (and the lowest and highest round), its average latency, the median
latency of its per-transaction log (--log, 10% sampled), the p50 added over
direct (the median of each round's difference), and the CPU time the
proxy's processes spent per transaction (from /proc). A run that pgbench
reports failing shows pgbench's errors instead (pgbouncer 1.18 in
transaction mode fails -M prepared).

Staleness: the workload above (--sessions, --think, --duration per arm)
through every arm, once with each session's writes and reads on one
connection and once with its writes on one connection and its reads on
another; replica share is judged by the server that answered
(inet_server_port()). pgpool-II runs once for each value of its
disable_load_balance_on_write: transaction, trans_transaction,
dml_adaptive, always; switchyard proxy also with --consistency
connection (each client connection a session of its own, so a session's
reads on another connection than its writes are not covered), and with
--replica-wait 25ms (a read that no replica has caught up for waits for
one, instead of going to the primary).

The tools' settings: pgbouncer: pool_mode = transaction,
default_pool_size = 20, max_client_conn = 200, auth_type = trust. pgpool-II:
backend_clustering_mode = 'streaming_replication', load_balance_mode = on,
connection_cache = on, num_init_children = 32 (or twice --sessions, if
more), max_pool = 4, sr_check_period = 10, health_check_period = 0,
use_watchdog = off, read_only_function_list =
'pg_is_in_recovery,inet_server_port' (pgpool-II sends a query calling a
volatile function to the primary unless it is listed there).

pgbouncer and pgpool-II are looked for on PATH and in /usr/sbin; an arm
whose program is missing is skipped with a line saying how to install it
(Debian/Ubuntu: apt-get install pgbouncer pgpool2), unless --require or
SWITCHYARD_REQUIRE_SERVER is set, which make it an error. pgbench comes
with PostgreSQL. With --profile DIR, switchyard proxy serves its --admin
and a CPU profile of it is saved in DIR for each of its pgbench runs
(go tool pprof DIR/FILE).

With the defaults, --proxies takes about ten minutes (4 workloads x 4 arms
x 3 rounds x 10s, then 18 staleness runs of 6s).

Everything it started is stopped and removed at the end (also on Ctrl-C).

Flags:
`

// compareMaxSessions keeps every router's pools within the lab's
// max_connections.
const compareMaxSessions = 100

func compareCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	sessions := fs.Int("sessions", 16, "sessions running at once")
	duration := fs.Duration("duration", 6*time.Second, "how long each router is measured (with --proxies: each arm of the staleness workload, per connection layout)")
	lag1 := fs.Duration("lag1", 20*time.Millisecond, "replay delay of replica1 (recovery_min_apply_delay)")
	lag2 := fs.Duration("lag2", 50*time.Millisecond, "replay delay of replica2")
	think := fs.Duration("think", 50*time.Millisecond, "longest pause of a session between operations (each pause is random, 0 to this)")
	var px proxiesFlags
	px.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), compareUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	switch {
	case *sessions < 1 || *sessions > compareMaxSessions:
		return usageErrorf("compare: --sessions %d: must be 1 to %d", *sessions, compareMaxSessions)
	case *duration < 100*time.Millisecond:
		return usageErrorf("compare: --duration %v: must be at least 100ms", *duration)
	case *lag1 < 0:
		return usageErrorf("compare: --lag1 %v: must not be negative", *lag1)
	case *lag2 < 0:
		return usageErrorf("compare: --lag2 %v: must not be negative", *lag2)
	case *think < 0:
		return usageErrorf("compare: --think %v: must not be negative", *think)
	}
	if err := px.check(fs, *sessions); err != nil {
		return err
	}
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = errors.New("compare: interrupted")
		}
	}()

	var tools compare.Tools
	if px.proxies {
		if tools, err = px.findTools(stderr); err != nil {
			return err
		}
	}

	started := time.Now()
	fmt.Fprintln(stderr, "lab: starting a primary and 2 replicas")
	c, err := switchyardtest.Start(ctx, switchyardtest.Options{
		Replicas:   2,
		ApplyDelay: []time.Duration{*lag1, *lag2},
		Logf: func(format string, args ...any) {
			fmt.Fprintf(stderr, "lab: "+format+"\n", args...)
		},
	})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			fmt.Fprintln(stderr, "lab:", cerr)
		}
	}()

	if px.proxies {
		return compareProxies(ctx, c, tools, px, compare.Options{
			Sessions: *sessions,
			Duration: *duration,
			MaxThink: maxThinkOption(*think),
		}, []time.Duration{*lag1, *lag2}, started, stdout, stderr)
	}

	fmt.Fprintf(stdout, "switchyard compare: one workload, three routers, on a primary and 2 streaming\n")
	fmt.Fprintf(stdout, "replicas replaying %v and %v behind. %d sessions, each thinking 0-%v between\n", *lag1, *lag2, *sessions, *think)
	fmt.Fprintf(stdout, "operations; 15%% of operations write, then read back. %v per router.\n\n", *duration)
	err = runComparison(ctx, c, compare.Options{
		Sessions: *sessions,
		Duration: *duration,
		MaxThink: maxThinkOption(*think),
		Logf: func(format string, args ...any) {
			fmt.Fprintf(stderr, "compare: "+format+"\n", args...)
		},
	}, stdout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "compare: done in %v; stopping the lab\n", time.Since(started).Round(time.Millisecond))
	return nil
}

// maxThinkOption is --think as compare.Options.MaxThink says it: negative
// for no pause (0 means the default there).
func maxThinkOption(think time.Duration) time.Duration {
	if think == 0 {
		return -1
	}
	return think
}

// runComparison runs the comparison on lab c and prints its table.
func runComparison(ctx context.Context, c *switchyardtest.Cluster, o compare.Options, w io.Writer) error {
	cl := compare.Cluster{Primary: c.Primary().DSN()}
	for _, r := range c.Replicas() {
		cl.Replicas = append(cl.Replicas, r.DSN())
	}
	results, err := compare.Run(ctx, cl, o)
	if err != nil {
		return err
	}
	return compare.WriteTable(w, results)
}
