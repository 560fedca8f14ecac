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

Everything it started is stopped and removed at the end (also on Ctrl-C).

Flags:
`

// compareMaxSessions keeps every router's pools within the lab's
// max_connections.
const compareMaxSessions = 100

func compareCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	sessions := fs.Int("sessions", 16, "sessions running at once")
	duration := fs.Duration("duration", 6*time.Second, "how long each router is measured")
	lag1 := fs.Duration("lag1", 20*time.Millisecond, "replay delay of replica1 (recovery_min_apply_delay)")
	lag2 := fs.Duration("lag2", 50*time.Millisecond, "replay delay of replica2")
	think := fs.Duration("think", 50*time.Millisecond, "longest pause of a session between operations (each pause is random, 0 to this)")
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
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = errors.New("compare: interrupted")
		}
	}()

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

	fmt.Fprintf(stdout, "switchyard compare: one workload, three routers, on a primary and 2 streaming\n")
	fmt.Fprintf(stdout, "replicas replaying %v and %v behind. %d sessions, each thinking 0-%v between\n", *lag1, *lag2, *sessions, *think)
	fmt.Fprintf(stdout, "operations; 15%% of operations write, then read back. %v per router.\n\n", *duration)
	maxThink := *think
	if maxThink == 0 {
		maxThink = -1 // compare.Options: no pause (0 means the default)
	}
	err = runComparison(ctx, c, compare.Options{
		Sessions: *sessions,
		Duration: *duration,
		MaxThink: maxThink,
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
