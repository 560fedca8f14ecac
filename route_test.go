package switchyard_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openDB opens a DB on cluster c and closes it when the test ends.
func openDB(t testing.TB, c *switchyardtest.Cluster, edit ...func(*switchyard.Config)) *switchyard.DB {
	t.Helper()
	cfg := switchyard.Config{Primary: c.Primary().DSN()}
	for _, r := range c.Replicas() {
		cfg.Replicas = append(cfg.Replicas, r.DSN())
	}
	for _, e := range edit {
		e(&cfg)
	}
	db, err := switchyard.Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// server says which server answered a statement.
type server struct {
	port       int32
	inRecovery bool
}

func (s server) String() string {
	if s.inRecovery {
		return "replica"
	}
	return "primary"
}

// setupRouting makes the tables and sequence the routing tests use, on the
// shared lab, and waits until the replicas have them.
var setupOnce sync.Once

func setupRouting(t *testing.T) {
	t.Helper()
	setupOnce.Do(func() {
		ctx := testCtx(t)
		if err := sharedLab(t).Primary().Exec(ctx, `
			CREATE TABLE items (id serial PRIMARY KEY, v int NOT NULL DEFAULT 0);
			INSERT INTO items (v) SELECT g FROM generate_series(1, 10) g;
			CREATE SEQUENCE seq;`); err != nil {
			t.Fatal(err)
		}
		if err := sharedLab(t).WaitReplicas(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRouting checks every routing rule by which server answered.
func TestRouting(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	db := openDB(t, sharedLab(t))
	const who = "inet_server_port(), pg_is_in_recovery()"
	for _, tc := range []struct {
		name, sql string
		replica   bool
	}{
		{"plain select", "SELECT " + who, true},
		{"select from table", "SELECT " + who + " FROM items WHERE id = 1", true},
		{"values", "VALUES (inet_server_port(), pg_is_in_recovery())", true},
		{"insert returning", "INSERT INTO items (v) VALUES (1) RETURNING " + who, false},
		{"update returning", "UPDATE items SET v = v WHERE id = 1 RETURNING " + who, false},
		{"delete returning", "DELETE FROM items WHERE id = (SELECT max(id) FROM items) RETURNING " + who, false},
		{"for update", "SELECT " + who + " FROM items WHERE id = 1 FOR UPDATE", false},
		{"for no key update", "SELECT " + who + " FROM items WHERE id = 1 FOR NO KEY UPDATE", false},
		{"for share", "SELECT " + who + " FROM items WHERE id = 1 FOR SHARE", false},
		{"for key share", "SELECT " + who + " FROM items WHERE id = 1 FOR KEY SHARE", false},
		{"for update skip locked", "SELECT " + who + " FROM items WHERE id = 1 FOR UPDATE SKIP LOCKED", false},
		{"lowercase locking, odd spacing", "select " + who + " from items where id = 1\n\tfor   no key\nupdate", false},
		{"locking in a subquery", "SELECT " + who + " FROM items WHERE id IN (SELECT id FROM items WHERE id = 1 FOR UPDATE)", false},
		{"comment inside locking clause", "SELECT " + who + " FROM items WHERE id = 1 FOR /* hmm */ UPDATE", false},
		{"nextval", "SELECT nextval('seq'), " + who, false},
		{"schema-qualified nextval", "SELECT pg_catalog.nextval('seq'), " + who, false},
		{"setval", "SELECT setval('seq', 100), " + who, false},
		{"advisory lock", "SELECT pg_advisory_xact_lock(1), " + who, false},
		{"data-modifying CTE", "WITH d AS (UPDATE items SET v = v WHERE id = 1 RETURNING id) SELECT " + who + " FROM d", false},
		{"CTE of reads", "WITH d AS (SELECT id FROM items WHERE id = 1) SELECT " + who + " FROM d", true},
		{"FOR UPDATE in a block comment", "SELECT " + who + " /* FOR UPDATE */", true},
		{"FOR UPDATE in a nested comment", "SELECT " + who + " /* /* nested */ FOR UPDATE */", true},
		{"FOR UPDATE in a line comment", "SELECT " + who + " -- FOR UPDATE", true},
		{"FOR UPDATE in a string", "SELECT 'FOR UPDATE', " + who, true},
		{"INSERT in an E string", `SELECT E'\' INSERT INTO items VALUES (1)', ` + who, true},
		{"INSERT in dollar quotes", "SELECT $tag$ INSERT INTO items $tag$, " + who, true},
		{"keyword as quoted identifier", `SELECT 1 AS "for update", ` + who, true},
		{"comment before write", "/* SELECT */ INSERT INTO items (v) VALUES (2) RETURNING " + who, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A new session: earlier cases' writes need not be seen.
			got := answeredBy(t, db, switchyard.WithSession(ctx), tc.sql)
			if got.inRecovery != tc.replica {
				t.Errorf("%s\nran on the %s (port %d)", tc.sql, got, got.port)
			}
		})
	}
	t.Run("several statements with a write", func(t *testing.T) {
		before := primaryRouted(db)
		if _, err := db.Exec(ctx, "SELECT 1; UPDATE items SET v = v WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		if primaryRouted(db) != before+1 {
			t.Error("a string holding a write did not go to the primary")
		}
	})
	t.Run("forced primary", func(t *testing.T) {
		var got server
		if err := db.QueryRow(switchyard.Primary(ctx), "SELECT "+who).Scan(&got.port, &got.inRecovery); err != nil {
			t.Fatal(err)
		}
		if got.inRecovery {
			t.Error("Primary(ctx) read ran on a replica")
		}
	})
}

// answeredBy runs sql, whose last two columns are inet_server_port() and
// pg_is_in_recovery(), and says which server answered.
func answeredBy(t *testing.T, db *switchyard.DB, ctx context.Context, sql string) server {
	t.Helper()
	rows, err := db.Query(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatalf("%s: no row (%v)", sql, rows.Err())
	}
	vals, err := rows.Values()
	if err != nil {
		t.Fatal(err)
	}
	return server{port: vals[len(vals)-2].(int32), inRecovery: vals[len(vals)-1].(bool)}
}

func primaryRouted(db *switchyard.DB) uint64 {
	for _, n := range db.Stats().Nodes {
		if n.Role == switchyard.RolePrimary {
			return n.Routed
		}
	}
	return 0
}

func TestExecAndCopyGoToThePrimary(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	db := openDB(t, sharedLab(t))
	before := primaryRouted(db)
	if _, err := db.Exec(ctx, "UPDATE items SET v = v + 1 WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	n, err := db.CopyFrom(ctx, pgx.Identifier{"items"}, []string{"v"}, pgx.CopyFromRows([][]any{{7}, {8}}))
	if err != nil || n != 2 {
		t.Fatalf("CopyFrom: %d, %v", n, err)
	}
	if got := primaryRouted(db) - before; got != 2 {
		t.Errorf("%d of Exec(UPDATE) and CopyFrom reached the primary, want 2", got)
	}
}

func TestTransactionsStayOnOneConnection(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	db := openDB(t, sharedLab(t))

	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	pids := map[int32]bool{}
	for _, sql := range []string{
		"SELECT pg_backend_pid(), pg_is_in_recovery()",
		"SELECT pg_backend_pid(), pg_is_in_recovery() FROM items WHERE id = 1",
		"INSERT INTO items (v) VALUES (3) RETURNING pg_backend_pid(), pg_is_in_recovery()",
		"SELECT pg_backend_pid(), pg_is_in_recovery()",
	} {
		var pid int32
		var rec bool
		if err := tx.QueryRow(ctx, sql).Scan(&pid, &rec); err != nil {
			t.Fatal(err)
		}
		if rec {
			t.Errorf("%s: a read-write transaction ran on a replica", sql)
		}
		pids[pid] = true
	}
	// Nested Begin is a savepoint on the same connection.
	sp, err := tx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var pid int32
	if err := sp.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	pids[pid] = true
	if err := sp.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if len(pids) != 1 {
		t.Errorf("one transaction ran on %d backends", len(pids))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); !errors.Is(err, pgx.ErrTxClosed) {
		t.Errorf("Rollback after Commit: %v", err)
	}

	// A read-only transaction runs on a replica, in one snapshot (in a new
	// session: this one just wrote, so only the primary would do).
	ro, err := db.BeginTx(switchyard.WithSession(ctx), pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Rollback(ctx)
	var rec bool
	var iso, ro2 string
	if err := ro.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('transaction_isolation'), current_setting('transaction_read_only')").Scan(&rec, &iso, &ro2); err != nil {
		t.Fatal(err)
	}
	if !rec || iso != "repeatable read" || ro2 != "on" {
		t.Errorf("read-only transaction: in recovery %v, isolation %q, read only %q; want a repeatable read, read-only transaction on a replica", rec, iso, ro2)
	}
	if err := ro.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	// Serializable read-only cannot run on a standby: the primary takes it.
	sr, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	if err := sr.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
		t.Errorf("serializable read-only transaction: in recovery %v, %v", rec, err)
	}
	sr.Rollback(ctx)
}

func TestBatchRouting(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	db := openDB(t, sharedLab(t))
	// Earlier tests' writes are part of this process's position, and a
	// batch carries neither a capture nor a check: take the position with
	// a read of its own, and wait until the replicas have it.
	if _, err := db.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, sharedLab(t), db)

	reads := &pgx.Batch{}
	reads.Queue("SELECT pg_is_in_recovery()")
	reads.Queue("SELECT count(*) > 0 FROM items")
	br := db.SendBatch(ctx, reads)
	var rec, any bool
	if err := br.QueryRow().Scan(&rec); err != nil {
		t.Fatal(err)
	}
	if err := br.QueryRow().Scan(&any); err != nil {
		t.Fatal(err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if !rec {
		t.Error("a batch of reads ran on the primary")
	}

	mixed := &pgx.Batch{}
	mixed.Queue("SELECT pg_is_in_recovery()")
	mixed.Queue("UPDATE items SET v = v WHERE id = 1")
	br = db.SendBatch(ctx, mixed)
	if err := br.QueryRow().Scan(&rec); err != nil {
		t.Fatal(err)
	}
	if _, err := br.Exec(); err != nil {
		t.Fatal(err)
	}
	if err := br.Close(); err != nil {
		t.Fatal(err)
	}
	if rec {
		t.Error("a batch holding a write ran on a replica")
	}
}

func TestAtomic(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	db := openDB(t, sharedLab(t))
	count := func(marker int) int {
		var n int
		if err := db.QueryRow(switchyard.Primary(ctx), "SELECT count(*) FROM items WHERE v = $1", marker).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(tx pgx.Tx, marker int) error {
		_, err := tx.Exec(ctx, "INSERT INTO items (v) VALUES ($1)", marker)
		return err
	}

	if err := db.Atomic(ctx, func(tx pgx.Tx) error {
		if err := insert(tx, 1001); err != nil {
			return err
		}
		return insert(tx, 1001)
	}); err != nil {
		t.Fatal(err)
	}
	if n := count(1001); n != 2 {
		t.Errorf("committed block left %d rows, want 2", n)
	}

	boom := errors.New("boom")
	if err := db.Atomic(ctx, func(tx pgx.Tx) error {
		if err := insert(tx, 1002); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Errorf("Atomic returned %v, want fn's error", err)
	}
	if n := count(1002); n != 0 {
		t.Errorf("failed block left %d rows, want 0", n)
	}

	func() {
		defer func() {
			if p := recover(); p != "panic in fn" {
				t.Errorf("recovered %v, want fn's panic", p)
			}
		}()
		db.Atomic(ctx, func(tx pgx.Tx) error {
			insert(tx, 1003)
			panic("panic in fn")
		})
	}()
	if n := count(1003); n != 0 {
		t.Errorf("panicking block left %d rows, want 0", n)
	}

	var rec bool
	var iso string
	if err := db.Atomic(switchyard.WithSession(ctx), func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('transaction_isolation')").Scan(&rec, &iso)
	}, switchyard.ReadOnly()); err != nil {
		t.Fatal(err)
	}
	if !rec || iso != "repeatable read" {
		t.Errorf("read-only Atomic: in recovery %v, isolation %q", rec, iso)
	}
	// Every pooled connection is back: nothing leaked by the failures.
	for _, n := range db.Stats().Nodes {
		if n.InFlight != 0 || n.Pool.AcquiredConns() != 0 {
			t.Errorf("%s: %d in flight, %d connections acquired after the blocks ended", n.Name, n.InFlight, n.Pool.AcquiredConns())
		}
	}
}

func TestBalancingFollowsWeights(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	db := openDB(t, sharedLab(t), func(c *switchyard.Config) { c.ReplicaWeights = []int{1, 3} })
	counts := map[int32]int{}
	for i := 0; i < 400; i++ {
		var port int32
		if err := db.QueryRow(switchyard.WithSession(ctx), "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		counts[port]++
	}
	r1, r2 := counts[int32(sharedLab(t).Replicas()[0].Port())], counts[int32(sharedLab(t).Replicas()[1].Port())]
	t.Logf("replica1 %d, replica2 %d (weights 1:3)", r1, r2)
	if r1 == 0 || r2 <= r1 || r1+r2 != 400 {
		t.Errorf("reads per replica %d and %d with weights 1 and 3", r1, r2)
	}
}

func TestStats(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	db := openDB(t, sharedLab(t))
	// This process's earlier writes (other tests') are taken care of first.
	db.Exec(ctx, "SELECT 1")
	waitCaughtUp(t, sharedLab(t), db)
	before := db.Stats().Routes
	db.Exec(ctx, "SELECT 1")
	db.Exec(ctx, "UPDATE items SET v = v WHERE id = 1")
	db.Exec(switchyard.Primary(ctx), "SELECT 1")
	tx, _ := db.Begin(ctx)
	tx.Rollback(ctx)
	s := db.Stats()
	r := s.Routes
	if r.Replica-before.Replica != 1 || r.Write-before.Write != 1 || r.Forced-before.Forced != 1 || r.Transaction-before.Transaction != 1 {
		t.Errorf("routes %+v, before %+v", r, before)
	}
	if len(s.Nodes) != 3 || s.Nodes[0].Role != switchyard.RolePrimary || s.Nodes[1].Role != switchyard.RoleReplica {
		t.Fatalf("nodes %+v", s.Nodes)
	}
	for _, n := range s.Nodes {
		if !n.Healthy || n.Name == "" || !strings.Contains(n.Position, "/") {
			t.Errorf("node %+v", n)
		}
	}
}

// TestHiddenWriteRetriedOnPrimary: a function that writes, which the
// classifier cannot know of, fails on a replica (25006) and is run again on
// the primary without the caller seeing it; listed in WriteFunctions, it
// goes to the primary at once.
func TestHiddenWriteRetriedOnPrimary(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	if err := sharedLab(t).Primary().Exec(ctx, `CREATE OR REPLACE FUNCTION bump() RETURNS int
		LANGUAGE sql AS 'UPDATE items SET v = v + 1 WHERE id = 3 RETURNING v'`); err != nil {
		t.Fatal(err)
	}
	if err := sharedLab(t).WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, sharedLab(t))
	var v int
	var rec bool
	if err := db.QueryRow(switchyard.WithSession(ctx), "SELECT bump(), pg_is_in_recovery()").Scan(&v, &rec); err != nil {
		t.Fatalf("a hidden write: %v", err)
	}
	if rec {
		t.Error("the hidden write ran on a replica")
	}
	if r := db.Stats().Routes; r.Retried != 1 || r.Replica != 1 {
		t.Errorf("routes %+v: want one replica attempt, retried once", r)
	}

	// With a query cache, the read that turned out to write empties it,
	// as any write does.
	qctx := switchyard.WithQueryCache(switchyard.WithSession(ctx))
	cleared := db.Stats().QueryCache.Cleared
	if err := db.QueryRow(qctx, "SELECT bump()").Scan(&v); err != nil {
		t.Fatalf("a hidden write with a query cache: %v", err)
	}
	if got := db.Stats().QueryCache.Cleared - cleared; got == 0 {
		t.Error("a hidden write left its query cache as it was")
	}

	listed := openDB(t, sharedLab(t), func(c *switchyard.Config) { c.WriteFunctions = []string{"bump"} })
	if err := listed.QueryRow(switchyard.WithSession(ctx), "SELECT bump(), pg_is_in_recovery()").Scan(&v, &rec); err != nil || rec {
		t.Errorf("a listed write function: on a replica %v, %v", rec, err)
	}
	if r := listed.Stats().Routes; r.Retried != 0 || r.Write != 1 {
		t.Errorf("routes %+v: want straight to the primary", r)
	}
}
