package proxy_test

import (
	"bytes"
	"context"

	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/proxy"
)

// pgbench runs pgbench against the proxy (as postgres) and returns its
// output and exit status.
func (cl *clientLab) pgbench(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 10*time.Minute)
	defer cancel()
	if args[0] != "-i" {
		// No vacuum and no TRUNCATE of the history before the run: the
		// balances add up to the history of every run (checkBalances).
		args = append([]string{"-n"}, args...)
	}
	cmd := exec.CommandContext(ctx, bin, append(args, "-h", "127.0.0.1", "-p", cl.p.port(), "-U", "postgres", "postgres")...)
	cmd.Env = cl.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if err != nil {
		code = -1
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
	}
	return out.String(), code
}

// port is the proxy's port.
func (r *running) port() string { return r.addr[strings.LastIndexByte(r.addr, ':')+1:] }

var (
	processedRE = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	failedRE    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	tpsRE       = regexp.MustCompile(`tps = ([0-9.]+)`)
)

// pgbenchFigures reads a run's processed and failed transactions and tps.
func pgbenchFigures(t *testing.T, out string) (processed, failed int, tps string) {
	t.Helper()
	m, f, r := processedRE.FindStringSubmatch(out), failedRE.FindStringSubmatch(out), tpsRE.FindStringSubmatch(out)
	if m == nil || f == nil || r == nil {
		t.Fatalf("no figures in pgbench's output:\n%s", out)
	}
	processed, _ = strconv.Atoi(m[1])
	failed, _ = strconv.Atoi(f[1])
	return processed, failed, r[1]
}

// initPgbench creates pgbench's tables through the proxy.
func (cl *clientLab) initPgbench(t *testing.T, bin string) {
	t.Helper()
	if out, code := cl.pgbench(t, bin, "-i", "-s", "1", "-q"); code != 0 {
		t.Fatalf("pgbench -i: exit %d\n%s", code, out)
	}
}

// checkBalances checks on the primary that every pgbench transaction was
// all or nothing: the accounts', tellers' and branches' balances add up to
// the history's deltas.
func (cl *clientLab) checkBalances(t *testing.T) {
	t.Helper()
	var a, tl, br, h int64
	queryNode(t, cl.lab.Primary(), `SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM pgbench_tellers),
		(SELECT sum(bbalance) FROM pgbench_branches), (SELECT coalesce(sum(delta), 0) FROM pgbench_history)`, &a, &tl, &br, &h)
	if a != h || tl != h || br != h {
		t.Errorf("balances do not add up to the history: accounts %d, tellers %d, branches %d, history %d", a, tl, br, h)
	}
}

// TestPgbench runs pgbench's TPC-B-like transactions in its three query
// modes: simple, extended (unnamed statements) and prepared (named ones,
// prepared once per client connection and run on whichever server
// connection the transaction gets).
func TestPgbench(t *testing.T) {
	pgbench := pgTool(t, "pgbench")
	cl := newClientLab(t, func(cfg *proxy.Config) { cfg.PoolSize = 4 })
	cl.initPgbench(t, pgbench)
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			out, code := cl.pgbench(t, pgbench, "-M", mode, "-c", "8", "-j", "2", "-t", "100")
			processed, failed, tps := pgbenchFigures(t, out)
			t.Logf("pgbench -M %s -c 8 -t 100 over 4 server connections: %d transactions, %d failed, %s tps", mode, processed, failed, tps)
			if code != 0 || processed != 800 || failed != 0 {
				t.Errorf("exit %d:\n%s", code, out)
			}
		})
	}
	cl.checkBalances(t)
}

// TestPgbenchPreparedManyClients: 64 pgbench clients in prepared mode
// over 4 server connections per node, and never "prepared statement does
// not exist". CI runs 1,280 transactions; SWITCHYARD_PGBENCH_TRANSACTIONS
// asks for more (the figure: 100000).
func TestPgbenchPreparedManyClients(t *testing.T) {
	pgbench := pgTool(t, "pgbench")
	total := 64 * 20
	if v := os.Getenv("SWITCHYARD_PGBENCH_TRANSACTIONS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 64 {
			t.Fatalf("SWITCHYARD_PGBENCH_TRANSACTIONS=%q: want a number of transactions, 64 or more", v)
		}
		total = n
	}
	perClient := (total + 63) / 64
	cl := newClientLab(t, func(cfg *proxy.Config) { cfg.PoolSize = 4 })
	cl.initPgbench(t, pgbench)
	start := time.Now()
	out, code := cl.pgbench(t, pgbench, "-M", "prepared", "-c", "64", "-j", "2", "-t", strconv.Itoa(perClient))
	processed, failed, tps := pgbenchFigures(t, out)
	t.Logf("pgbench -M prepared -c 64 -j 2 -t %d over 4 server connections per node: %d transactions in %v, %d failed, %s tps",
		perClient, processed, time.Since(start).Round(time.Millisecond), failed, tps)
	if strings.Contains(out, "does not exist") || code != 0 || processed != 64*perClient || failed != 0 {
		t.Errorf("exit %d:\n%s", code, out)
	}
	for _, n := range cl.lab.Nodes() {
		var conns int
		// The proxy's server connections for postgres, less the engine's
		// own (its monitor's, which polls in a transaction) and this one.
		queryNode(t, n, `SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = 'postgres'
			AND pid <> pg_backend_pid() AND query NOT LIKE 'BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY;%'`, &conns)
		if conns > 4 {
			t.Errorf("%s: %d server connections of the proxy's, want at most 4", n, conns)
		}
	}
	cl.checkBalances(t)
}

// TestPgbenchReplicaKilled: a replica serving pgbench's reads is killed;
// pgbench sees no error (reads in flight there run again on the primary).
func TestPgbenchReplicaKilled(t *testing.T) {
	pgbench := pgTool(t, "pgbench")
	cl := newClientLab(t, func(cfg *proxy.Config) { cfg.PoolSize = 4 })
	cl.initPgbench(t, pgbench)
	if err := cl.lab.WaitReplicas(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	replica, primary := cl.p.node(1), cl.p.node(0)
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		out, code := cl.pgbench(t, pgbench, "-S", "-M", "prepared", "-c", "8", "-j", "2", "-T", "8")
		done <- result{out, code}
	}()
	before := replica.Routed()
	waitFor(t, "reads on the replica", func() bool { return replica.Routed() > before+100 })
	if err := cl.lab.Replicas()[0].Kill(); err != nil {
		t.Fatal(err)
	}
	onPrimary := primary.Routed()
	waitFor(t, "reads on the primary", func() bool { return primary.Routed() > onPrimary+100 })
	r := <-done
	processed, failed, tps := pgbenchFigures(t, r.out)
	t.Logf("pgbench -S -M prepared -c 8 -T 8, the replica killed after %d reads: %d transactions, %d failed, %s tps; the primary served %d reads after the kill",
		replica.Routed()-before, processed, failed, tps, primary.Routed()-onPrimary)
	if r.code != 0 || failed != 0 || strings.Contains(r.out, "aborted") {
		t.Errorf("exit %d:\n%s", r.code, r.out)
	}
}

// TestPgbenchPromotion: under pgbench's read-write load the primary dies
// and its replica is promoted; the proxy sends the writes to the new
// primary without a restart. Transactions under way on the old primary
// when it died fail (pgbench ends those clients); a pgbench run after the
// promotion, through the same proxy, sees no error, and every transaction
// was all or nothing.
func TestPgbenchPromotion(t *testing.T) {
	pgbench := pgTool(t, "pgbench")
	cl := newClientLab(t, func(cfg *proxy.Config) { cfg.PoolSize = 4 })
	cl.initPgbench(t, pgbench)
	old, next := cl.p.node(0), cl.p.node(1)
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		out, code := cl.pgbench(t, pgbench, "-M", "prepared", "-c", "4", "-j", "2", "-T", "6")
		done <- result{out, code}
	}()
	before := old.Routed()
	waitFor(t, "transactions on the primary", func() bool { return old.Routed() > before+100 })
	ctx := testCtx(t)
	killed := time.Now()
	if err := cl.lab.Primary().Kill(); err != nil {
		t.Fatal(err)
	}
	if err := cl.lab.Promote(ctx, cl.lab.Replicas()[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the proxy to follow the new primary", func() bool { return next.IsPrimary() })
	followed := time.Since(killed)
	r := <-done
	aborted := strings.Count(r.out, "aborted in command")
	t.Logf("the primary killed under pgbench -M prepared -c 4 -T 6, its replica promoted: the proxy took the replica for the primary %v after the kill; %d of 4 clients ended by the failure (their transactions were under way on the old primary)",
		followed.Round(time.Millisecond), aborted)
	if r.code != 0 && r.code != 2 {
		t.Errorf("pgbench: exit %d:\n%s", r.code, r.out)
	}
	var history0 int
	queryNode(t, cl.lab.Primary(), "SELECT count(*) FROM pgbench_history", &history0)
	out, code := cl.pgbench(t, pgbench, "-M", "prepared", "-c", "4", "-j", "2", "-t", "100")
	processed, failed, tps := pgbenchFigures(t, out)
	t.Logf("after the promotion: %d transactions, %d failed, %s tps", processed, failed, tps)
	if code != 0 || processed != 400 || failed != 0 {
		t.Errorf("pgbench after the promotion: exit %d:\n%s", code, out)
	}
	var history int
	queryNode(t, cl.lab.Primary(), "SELECT count(*) FROM pgbench_history", &history)
	if history != history0+400 {
		t.Errorf("the new primary's history grew by %d rows, want 400", history-history0)
	}
	cl.checkBalances(t)
}
