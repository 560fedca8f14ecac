package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/switchyard-db/switchyard/internal/compare"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// compareProxiesMaxSessions keeps the staleness workload's connections
// (two per session, straight to the primary for the direct arm) within
// the lab's max_connections.
const compareProxiesMaxSessions = 40

// proxiesFlags are compare's flags for --proxies.
type proxiesFlags struct {
	proxies           bool
	rounds            int
	benchTime         time.Duration
	benchTransactions int
	clients, threads  int
	require           bool
	profile           string
}

func (p *proxiesFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&p.proxies, "proxies", false, "compare pgbouncer, pgpool-II and switchyard proxy with direct connections instead of in-process routers")
	fs.IntVar(&p.rounds, "rounds", 3, "with --proxies: rounds of pgbench runs (each runs every workload through every arm)")
	fs.DurationVar(&p.benchTime, "bench-time", 10*time.Second, "with --proxies: length of each pgbench run (pgbench -T; whole seconds)")
	fs.IntVar(&p.benchTransactions, "bench-transactions", 0, "with --proxies: instead of --bench-time, transactions per pgbench client (pgbench -t)")
	fs.IntVar(&p.clients, "clients", 16, "with --proxies: pgbench clients (-c)")
	fs.IntVar(&p.threads, "threads", 2, "with --proxies: pgbench threads (-j)")
	fs.BoolVar(&p.require, "require", false, "with --proxies: fail if pgbouncer or pgpool-II is missing instead of skipping its arm (also when "+switchyardtest.RequireServerEnv+" is set)")
	fs.StringVar(&p.profile, "profile", "", "with --proxies: save CPU profiles of switchyard proxy's pgbench runs in this directory")
}

// check refuses flags that cannot work, in one line.
func (p *proxiesFlags) check(fs *flag.FlagSet, sessions int) error {
	if !p.proxies {
		var only []string
		fs.Visit(func(f *flag.Flag) {
			switch f.Name {
			case "rounds", "bench-time", "bench-transactions", "clients", "threads", "require", "profile":
				only = append(only, f.Name)
			}
		})
		if len(only) > 0 {
			return usageErrorf("compare: --%s goes with --proxies", only[0])
		}
		return nil
	}
	switch {
	case sessions > compareProxiesMaxSessions:
		return usageErrorf("compare: --sessions %d: with --proxies, at most %d", sessions, compareProxiesMaxSessions)
	case p.rounds < 1 || p.rounds > 100:
		return usageErrorf("compare: --rounds %d: must be 1 to 100", p.rounds)
	case p.benchTime < time.Second || p.benchTime%time.Second != 0:
		return usageErrorf("compare: --bench-time %v: must be whole seconds, at least 1s (pgbench -T)", p.benchTime)
	case p.benchTransactions < 0:
		return usageErrorf("compare: --bench-transactions %d: must not be negative", p.benchTransactions)
	case p.clients < 1 || p.clients > 100:
		return usageErrorf("compare: --clients %d: must be 1 to 100", p.clients)
	case p.threads < 1 || p.threads > p.clients:
		return usageErrorf("compare: --threads %d: must be 1 to --clients (%d)", p.threads, p.clients)
	case p.profile != "" && p.benchTransactions > 0:
		return usageErrorf("compare: --profile needs timed runs (--bench-time), not --bench-transactions")
	}
	if p.profile != "" {
		if fi, err := os.Stat(p.profile); err != nil || !fi.IsDir() {
			return usageErrorf("compare: --profile %s: not a directory", p.profile)
		}
	}
	return nil
}

// switchyardProxyArgv is the command line that runs "switchyard proxy":
// this binary. Tests replace it with their own binary.
var switchyardProxyArgv = defaultSwitchyardProxyArgv

func defaultSwitchyardProxyArgv() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("compare: finding this binary to run switchyard proxy: %w", err)
	}
	return []string{exe, "proxy"}, nil
}

// findTools finds pgbench, pgbouncer and pgpool-II; a missing pgbench, or
// a missing proxy with --require or SWITCHYARD_REQUIRE_SERVER, is an
// error, and another missing proxy a line on stderr.
func (p *proxiesFlags) findTools(stderr io.Writer) (compare.Tools, error) {
	bin, err := switchyardtest.FindBinaries()
	if err != nil {
		return compare.Tools{}, err
	}
	tools, missing := compare.FindTools(bin)
	require := p.require || os.Getenv(switchyardtest.RequireServerEnv) != ""
	for _, m := range missing {
		if tools.PgBench == "" || require {
			return compare.Tools{}, fmt.Errorf("compare: %w", m)
		}
		fmt.Fprintf(stderr, "compare: %v; skipping its arm\n", m)
	}
	if tools.Switchyard, err = switchyardProxyArgv(); err != nil {
		return compare.Tools{}, err
	}
	return tools, nil
}

// compareProxies runs the proxies comparison on lab c and prints its
// tables.
func compareProxies(ctx context.Context, c *switchyardtest.Cluster, tools compare.Tools, p proxiesFlags, stale compare.Options,
	lags []time.Duration, started time.Time, stdout, stderr io.Writer) error {
	cl := compare.Cluster{Primary: c.Primary().DSN()}
	for _, r := range c.Replicas() {
		cl.Replicas = append(cl.Replicas, r.DSN())
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "compare: "+format+"\n", args...)
	}
	stale.Logf = logf
	rep, err := compare.RunProxies(ctx, cl, compare.ProxyOptions{
		Tools:             tools,
		Rounds:            p.rounds,
		BenchTime:         p.benchTime,
		BenchTransactions: p.benchTransactions,
		Clients:           p.clients,
		Threads:           p.threads,
		Staleness:         stale,
		ProfileDir:        p.profile,
		Logf:              logf,
	})
	if err != nil {
		if errors.Is(err, compare.ErrMissingTool) {
			return fmt.Errorf("%w (see switchyard help compare)", err)
		}
		return err
	}
	rep.Lags = lags
	fmt.Fprintf(stdout, "switchyard compare --proxies: a primary and 2 streaming replicas on 127.0.0.1\n\n")
	if err := compare.WriteProxyReport(stdout, rep); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "compare: done in %v; stopping the lab\n", time.Since(started).Round(time.Millisecond))
	return nil
}
