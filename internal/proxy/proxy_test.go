package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/connstr"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/proxy"
	"github.com/switchyard-db/switchyard/internal/topology"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// running is a proxy in front of a lab.
type running struct {
	addr   string
	srv    *proxy.Server
	engine *engine.Engine
	lab    *switchyardtest.Cluster
}

// dsn is a connection string to the proxy as user postgres.
func (r *running) dsn() string {
	return "postgres://postgres@" + r.addr + "/postgres?sslmode=disable"
}

func (r *running) connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx := testCtx(t)
	c, err := pgx.Connect(ctx, r.dsn())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// startProxy starts a proxy in front of lab c, stopped when the test ends.
func startProxy(t testing.TB, c *switchyardtest.Cluster, edit ...func(*proxy.Config)) *running {
	t.Helper()
	var dsns []string
	for _, n := range c.Nodes() {
		dsns = append(dsns, n.DSN())
	}
	r := startProxyOn(t, dsns, edit...)
	r.lab = c
	return r
}

// startProxyOn starts a proxy in front of the servers dsns name (the
// primary first), stopped when the test ends.
func startProxyOn(t testing.TB, dsns []string, edit ...func(*proxy.Config)) *running {
	t.Helper()
	ctx := testCtx(t)
	nodes := []connstr.Node{}
	for i, dsn := range dsns {
		cn, err := connstr.ParseNode(fmt.Sprintf("node %d", i), dsn, nil)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, cn)
	}
	spec, secrets := connstr.Cluster("default", nodes, false)
	var srv *proxy.Server
	e, err := engine.Open(ctx, engine.Config{Clusters: []engine.ClusterSpec{spec}, Secrets: secrets,
		OnDown: func(n *topology.Node) {
			if srv != nil {
				srv.NodeDown(n)
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	configs := make([]*pgxpool.Config, len(nodes))
	for i, n := range e.Nodes() {
		configs[i] = nodes[n.Index].Config
	}
	cfg := proxy.Config{Engine: e, Nodes: configs}
	for _, f := range edit {
		f(&cfg)
	}
	srv, err = proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Start()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		e.Close()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &running{addr: l.Addr().String(), srv: srv, engine: e}
}

// laggingLab is a primary with one replica per delay and a counters table.
func laggingLab(t *testing.T, delays ...time.Duration) *switchyardtest.Cluster {
	t.Helper()
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: len(delays), ApplyDelay: delays})
	if err := c.Primary().Exec(ctx, `CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);
		INSERT INTO counters SELECT g, 0 FROM generate_series(0, 15) g`); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestGlobalReadYourWrites: in global mode, a write on one client
// connection followed by a read on another sees the write, with the
// replica 50 ms behind; most reads of a session that did not write still
// go to the replica.
func TestGlobalReadYourWrites(t *testing.T) {
	c := laggingLab(t, 50*time.Millisecond)
	p := startProxy(t, c)
	ctx := testCtx(t)
	writer, reader := p.connect(t), p.connect(t)
	const rounds = 1000
	stale, onReplica := 0, 0
	for i := 0; i < rounds; i++ {
		var wrote, got int64
		var rec bool
		if err := writer.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&wrote); err != nil {
			t.Fatal(err)
		}
		if err := reader.QueryRow(ctx, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&got, &rec); err != nil {
			t.Fatal(err)
		}
		if got < wrote {
			stale++
		}
		if rec {
			onReplica++
		}
	}
	t.Logf("%d write-then-read rounds on two connections: %d stale, %d reads on the replica; routes %+v", rounds, stale, onReplica, p.engine.Stats())
	if stale != 0 {
		t.Errorf("%d stale reads in %d rounds", stale, rounds)
	}
	// Reads with nothing written meanwhile reach the replica.
	waitFor(t, "a read on the replica", func() bool {
		var rec bool
		if err := reader.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			t.Fatal(err)
		}
		return rec
	})
}

// TestGlobalReadAfterAReplicaRead: in global mode, a reader that has just
// read from the replica (and is pinned there until the monitor polls it
// again, to keep its own reads monotonic) and then reads after another
// connection's write must still see the write: the pin does not make the
// replica fresh for the proxy's position. (Found by the psycopg2 test
// under load: 4 stale reads in 1,000, each right after a replica read.)
func TestGlobalReadAfterAReplicaRead(t *testing.T) {
	c := laggingLab(t, 50*time.Millisecond)
	p := startProxy(t, c)
	ctx := testCtx(t)
	writer, reader := p.connect(t), p.connect(t)
	const rounds = 50
	stale := 0
	for i := 0; i < rounds; i++ {
		// Read until the replica serves the reader (it has caught up).
		waitFor(t, "a read on the replica", func() bool {
			var rec bool
			if err := reader.QueryRow(ctx, "SELECT pg_is_in_recovery() FROM counters WHERE id = 5").Scan(&rec); err != nil {
				t.Fatal(err)
			}
			return rec
		})
		var wrote, got int64
		if err := writer.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 5 RETURNING v").Scan(&wrote); err != nil {
			t.Fatal(err)
		}
		if err := reader.QueryRow(ctx, "SELECT v FROM counters WHERE id = 5").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got < wrote {
			stale++
		}
	}
	t.Logf("%d rounds of a replica read, a write on another connection, and a read: %d stale", rounds, stale)
	if stale != 0 {
		t.Errorf("%d stale reads in %d rounds", stale, rounds)
	}
}

// TestConnectionSession: in connection mode, each connection reads its
// own writes (and another's are not waited for).
func TestConnectionSession(t *testing.T) {
	c := laggingLab(t, 50*time.Millisecond)
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.Consistency = proxy.Connection })
	ctx := testCtx(t)
	conn := p.connect(t)
	for i := 0; i < 200; i++ {
		var wrote, got int64
		if err := conn.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 1 RETURNING v").Scan(&wrote); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT v FROM counters WHERE id = 1").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got < wrote {
			t.Fatalf("round %d: read %d after writing %d", i, got, wrote)
		}
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestTransactions: every statement of a transaction runs on one server
// session; a read-only one runs on a replica; BEGIN is held back until the
// first statement, so an empty transaction touches no server.
func TestTransactions(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c)
	ctx := testCtx(t)
	conn := p.connect(t)
	waitFor(t, "the replica in rotation", func() bool { return p.engine.Nodes()[1].Healthy() })

	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid0 int32
	var rec bool
	if err := tx.QueryRow(ctx, "SELECT pg_backend_pid(), pg_is_in_recovery()").Scan(&pid0, &rec); err != nil {
		t.Fatal(err)
	}
	if rec {
		t.Error("a read-write transaction began on a replica")
	}
	for i := 0; i < 5; i++ {
		var pid int32
		if err := tx.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 2 RETURNING pg_backend_pid()").Scan(&pid); err != nil {
			t.Fatal(err)
		}
		if pid != pid0 {
			t.Fatalf("statement %d of a transaction ran on backend %d, the first on %d", i, pid, pid0)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// Once the replica has the commit, read-only transactions run there.
	waitFor(t, "a read-only transaction on the replica", func() bool {
		ro, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead})
		if err != nil {
			t.Fatal(err)
		}
		var v int64
		if err := ro.QueryRow(ctx, "SELECT pg_is_in_recovery(), v FROM counters WHERE id = 2").Scan(&rec, &v); err != nil {
			t.Fatal(err)
		}
		if v != 5 {
			t.Fatalf("a read-only transaction after the commit read %d, want 5 (on a replica: %v)", v, rec)
		}
		if err := ro.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return rec
	})

	// An empty transaction, and a rolled-back one.
	for _, end := range []string{"COMMIT", "ROLLBACK"} {
		if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, end); err != nil {
			t.Fatal(err)
		}
	}
	tx, err = conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE counters SET v = -1 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	var v int64
	if err := conn.QueryRow(ctx, "SELECT v FROM counters WHERE id = 2").Scan(&v); err != nil || v != 5 {
		t.Errorf("after a commit of 5 updates and a rollback: v = %d, %v", v, err)
	}
	// A failed statement leaves the transaction failed, and COMMIT says
	// so as the server does.
	tx, _ = conn.Begin(ctx)
	if _, err := tx.Exec(ctx, "SELECT 1/0"); pgCode(err) != "22012" {
		t.Errorf("division by zero: %v", err)
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("COMMIT of a failed transaction: %v", err)
	}
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestErrorsPassThrough: the server's errors reach the client with their
// SQLSTATE and fields.
func TestErrorsPassThrough(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c)
	ctx := testCtx(t)
	conn := p.connect(t)
	_, err := conn.Exec(ctx, "SELEC 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42601" || pgErr.Position == 0 {
		t.Errorf("syntax error: %#v", err)
	}
	_, err = conn.Exec(ctx, "INSERT INTO counters VALUES (0, 0)")
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" || pgErr.ConstraintName != "counters_pkey" || pgErr.TableName != "counters" {
		t.Errorf("unique violation: %#v", err)
	}
	// The connection goes on.
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Errorf("after errors: %v", err)
	}
}

// TestPreparedAcrossServers: clients' prepared statements (pgx prepares
// every statement by name) work on whichever server connection runs them,
// with far more clients than server connections.
func TestPreparedAcrossServers(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.PoolSize = 2 })
	ctx := testCtx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(ctx, p.dsn())
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(ctx)
			for i := 0; i < 100; i++ {
				var v int64
				if err := conn.QueryRow(ctx, "SELECT v FROM counters WHERE id = $1", i%16).Scan(&v); err != nil {
					errs <- err
					return
				}
				if _, err := conn.Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = $1", 8+g%8); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestCopy: COPY FROM STDIN and COPY TO STDOUT through the proxy.
func TestCopy(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c)
	ctx := testCtx(t)
	conn := p.connect(t)
	if _, err := conn.Exec(ctx, "CREATE TABLE copied (id int, name text)"); err != nil {
		t.Fatal(err)
	}
	rows := make([][]any, 10_000)
	for i := range rows {
		rows[i] = []any{int32(i), fmt.Sprintf("name %d", i)}
	}
	n, err := conn.CopyFrom(ctx, pgx.Identifier{"copied"}, []string{"id", "name"}, pgx.CopyFromRows(rows))
	if err != nil || n != int64(len(rows)) {
		var pe *pgconn.PgError
		errors.As(err, &pe)
		t.Fatalf("CopyFrom: %d, %v: %s", n, err, pe.Detail)
	}
	var out strings.Builder
	tag, err := conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT id, name FROM copied ORDER BY id) TO STDOUT")
	if err != nil || tag.RowsAffected() != int64(len(rows)) || !strings.HasPrefix(out.String(), "0\tname 0\n1\tname 1\n") {
		t.Fatalf("CopyTo: %v, %v, %q...", tag, err, out.String()[:min(40, out.Len())])
	}
	// A COPY the server refuses.
	_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader("not a number\tx\n"), "COPY copied FROM STDIN")
	if pgCode(err) != "22P02" {
		t.Errorf("bad COPY data: %v", err)
	}
	var count int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM copied").Scan(&count); err != nil || count != len(rows) {
		t.Errorf("after the failed COPY: %d rows, %v", count, err)
	}
}

// TestListenNotify: a listening client keeps its server session, and gets
// notifications while it waits.
func TestListenNotify(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c)
	ctx := testCtx(t)
	listener, notifier := p.connect(t), p.connect(t)
	if _, err := listener.Exec(ctx, "LISTEN news"); err != nil {
		t.Fatal(err)
	}
	if _, err := notifier.Exec(ctx, "NOTIFY news, 'hello'"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil || n.Payload != "hello" || n.Channel != "news" {
		t.Fatalf("notification: %+v, %v", n, err)
	}
	// One that arrives while the listener is idle.
	sent := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond) // let the listener wait first
		_, err := notifier.Exec(ctx, "NOTIFY news, 'later'")
		sent <- err
	}()
	n, err = listener.WaitForNotification(wctx)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err != nil || n.Payload != "later" {
		t.Fatalf("idle notification: %+v, %v", n, err)
	}
	// The listener's session goes on.
	var one int
	if err := listener.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
}

// TestCancel: a client's cancel request (sent on a new connection, with
// the key the proxy gave it) reaches the server running its query.
func TestCancel(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c)
	ctx := testCtx(t)
	conn := p.connect(t)
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := conn.Exec(ctx, "SELECT pg_sleep(30)")
		done <- err
	}()
	// Cancel once the query runs.
	waitFor(t, "the query to start", func() bool {
		for _, node := range c.Nodes() {
			var n int
			queryNode(t, node, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'", &n)
			if n == 1 {
				return true
			}
		}
		return false
	})
	if err := conn.PgConn().CancelRequest(ctx); err != nil {
		t.Fatal(err)
	}
	err := <-done
	if pgCode(err) != "57014" {
		t.Errorf("the canceled query: %v, want SQLSTATE 57014", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the canceled query took %v", d)
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		t.Errorf("after the cancel: %v", err)
	}
}

// queryNode runs a one-row query on lab node n.
func queryNode(t testing.TB, n *switchyardtest.Node, sql string, dst ...any) {
	t.Helper()
	ctx := testCtx(t)
	conn, err := n.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql).Scan(dst...); err != nil {
		t.Fatal(err)
	}
}

// TestSessionState: session state (SET, temporary tables) keeps the client
// on one server session, until DISCARD ALL.
func TestSessionState(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c)
	ctx := testCtx(t)
	conn := p.connect(t)
	if _, err := conn.Exec(ctx, "SET application_name = 'pinned-client'"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TEMP TABLE scratch AS SELECT 7 AS v"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		var v int
		var app string
		if err := conn.QueryRow(ctx, "SELECT v, current_setting('application_name') FROM scratch").Scan(&v, &app); err != nil || v != 7 || app != "pinned-client" {
			t.Fatalf("read %d of session state: %d %q %v", i, v, app, err)
		}
	}
	if _, err := conn.Exec(ctx, "DISCARD ALL"); err != nil {
		t.Fatal(err)
	}
	var app string
	if err := conn.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil || app == "pinned-client" {
		t.Errorf("after DISCARD ALL: %q, %v", app, err)
	}
}

// TestDisconnectMidTransaction: a client that goes away in a transaction
// leaves nothing committed, and its server connection goes back clean.
func TestDisconnectMidTransaction(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.PoolSize = 1 })
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, p.dsn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "UPDATE counters SET v = 999 WHERE id = 3"); err != nil {
		t.Fatal(err)
	}
	conn.PgConn().Conn().Close() // gone, without a word
	waitFor(t, "the client's session to end", func() bool { return p.srv.Sessions() == 0 })
	other := p.connect(t)
	var v int64
	var state string
	if err := other.QueryRow(ctx, "SELECT v FROM counters WHERE id = 3").Scan(&v); err != nil || v == 999 {
		t.Errorf("the abandoned transaction's write: %d, %v", v, err)
	}
	// The one server connection is the same, and idle.
	if err := other.QueryRow(ctx, "SELECT state FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = 'postgres' AND query LIKE 'UPDATE counters SET v = 999%' LIMIT 1").Scan(&state); err == nil && state != "idle" {
		t.Errorf("the abandoned connection is %q", state)
	}
}

// TestToken: SHOW switchyard.token gives a session's position, and SET
// switchyard.token on another connection (say, another process's) makes
// its reads see what the first had written.
func TestToken(t *testing.T) {
	c := laggingLab(t, 200*time.Millisecond)
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.Consistency = proxy.Connection })
	ctx := testCtx(t)
	a, b := p.connect(t), p.connect(t)
	var wrote int64
	if err := a.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 4 RETURNING v").Scan(&wrote); err != nil {
		t.Fatal(err)
	}
	var tok string
	if err := a.QueryRow(ctx, "SHOW switchyard.token").Scan(&tok); err != nil || tok == "" {
		t.Fatalf("SHOW switchyard.token: %q, %v", tok, err)
	}
	if _, err := b.Exec(ctx, "SET switchyard.token = '"+tok+"'"); err != nil {
		t.Fatal(err)
	}
	var got int64
	if err := b.QueryRow(ctx, "SELECT v FROM counters WHERE id = 4").Scan(&got); err != nil || got < wrote {
		t.Errorf("read %d through the token after writing %d: %v", got, wrote, err)
	}
	if _, err := b.Exec(ctx, "SET switchyard.token = 'garbage!'"); pgCode(err) != "22023" {
		t.Errorf("a malformed token: %v", err)
	}
}

// TestShutdownLeavesNothing: after Shutdown no goroutine and no server
// connection is left.
func TestShutdownLeavesNothing(t *testing.T) {
	c := laggingLab(t, 0)
	before := runtime.NumGoroutine()
	p := startProxy(t, c)
	ctx := testCtx(t)
	conn := p.connect(t)
	if _, err := conn.Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = 5"); err != nil {
		t.Fatal(err)
	}
	// A listener (pinned, watched between round trips) and a client in a
	// transaction that never ends (closed when the grace period is over).
	listener := p.connect(t)
	if _, err := listener.Exec(ctx, "LISTEN news"); err != nil {
		t.Fatal(err)
	}
	stuck := p.connect(t)
	if _, err := stuck.Exec(ctx, "BEGIN; UPDATE counters SET v = v + 1 WHERE id = 5"); err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := p.srv.Shutdown(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown with a transaction that never ends: %v", err)
	}
	p.engine.Close()
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+2 })
	// No server connection of the proxy's is left on any server.
	for _, n := range c.Nodes() {
		waitFor(t, "the proxy's server connections to close on "+n.Name(), func() bool {
			var left int
			queryNode(t, n, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()", &left)
			return left == 0
		})
	}
}

// passwordRole makes a role that must log in with a password (SCRAM),
// on lab c, and returns its name.
func passwordRole(t *testing.T, c *switchyardtest.Cluster, password string) string {
	t.Helper()
	ctx := testCtx(t)
	const role = "pwuser"
	if err := c.Primary().Exec(ctx, "CREATE ROLE "+role+" LOGIN PASSWORD '"+password+"'; GRANT SELECT, UPDATE ON counters TO "+role); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Nodes() {
		hba := filepath.Join(n.DataDir(), "pg_hba.conf")
		old, err := os.ReadFile(hba)
		if err != nil {
			t.Fatal(err)
		}
		// Rewritten in place, so that it keeps its owner.
		if err := os.WriteFile(hba, append([]byte("host all "+role+" 127.0.0.1/32 scram-sha-256\n"), old...), 0); err != nil {
			t.Fatal(err)
		}
		if err := n.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
	}
	return role
}

// selfSigned makes a TLS certificate for 127.0.0.1.
func selfSigned(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchyard test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// TestPasswords: a role with a password logs in with it, checked by the
// servers, over TLS; a wrong one gets the server's own error; without TLS
// the proxy will not take a password unless told to on loopback.
func TestPasswords(t *testing.T) {
	c := laggingLab(t, 0)
	role := passwordRole(t, c, "right-pw")
	tlsOn := startProxy(t, c, func(cfg *proxy.Config) { cfg.TLS = selfSigned(t) })
	ctx := testCtx(t)
	url := func(addr, pw, sslmode string) string {
		return "postgres://" + role + ":" + pw + "@" + addr + "/postgres?sslmode=" + sslmode
	}
	conn, err := pgx.Connect(ctx, url(tlsOn.addr, "right-pw", "require"))
	if err != nil {
		t.Fatal(err)
	}
	var who string
	var ssl bool
	if err := conn.QueryRow(ctx, "SELECT current_user, true").Scan(&who, &ssl); err != nil || who != role {
		t.Errorf("logged in as %q, %v", who, err)
	}
	if _, err := conn.Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = 6"); err != nil {
		t.Errorf("a write as the role: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE nope (id int)"); pgCode(err) != "42501" {
		t.Errorf("the role's grants do not hold: %v", err)
	}
	conn.Close(ctx)

	_, err = pgx.Connect(ctx, url(tlsOn.addr, "wrong-pw", "require"))
	if pgCode(err) != "28P01" {
		t.Errorf("a wrong password: %v, want SQLSTATE 28P01", err)
	}
	_, err = pgx.Connect(ctx, url(tlsOn.addr, "right-pw", "disable"))
	if pgCode(err) != "28000" || !strings.Contains(err.Error(), "clear text") {
		t.Errorf("a password without TLS: %v, want SQLSTATE 28000 naming the remedy", err)
	}
	if strings.Contains(fmt.Sprint(err), "right-pw") {
		t.Errorf("the error shows the password: %v", err)
	}
	loopback := startProxy(t, c, func(cfg *proxy.Config) { cfg.LoopbackPasswords = true })
	conn, err = pgx.Connect(ctx, url(loopback.addr, "right-pw", "disable"))
	if err != nil {
		t.Fatalf("a password on loopback with LoopbackPasswords: %v", err)
	}
	conn.Close(ctx)
	// The servers' own codes for other failed logins.
	for dsn, code := range map[string]string{
		"postgres://postgres@" + loopback.addr + "/nosuchdb?sslmode=disable":   "3D000",
		"postgres://nosuchrole@" + loopback.addr + "/postgres?sslmode=disable": "28000",
	} {
		if _, err := pgx.Connect(ctx, dsn); pgCode(err) != code {
			t.Errorf("%s: %v, want SQLSTATE %s", dsn, err, code)
		}
	}
	// TLS is refused where the proxy has no certificate.
	if _, err := pgx.Connect(ctx, url(loopback.addr, "right-pw", "require")); err == nil {
		t.Error("sslmode=require succeeded against a proxy without a certificate")
	}
}
