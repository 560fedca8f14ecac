package switchyard_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// staleTracer counts, per server port, the statements a server refused
// because their prepared form was thrown out under them (0A000 "cached
// plan must not change result type", 26000 "prepared statement ... does
// not exist"): what switchyard hides from its callers, seen below it.
type staleTracer struct {
	mu     sync.Mutex
	byPort map[uint16]int
}

func (s *staleTracer) note(conn *pgx.Conn, err error) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" && pgErr.Code != "26000" {
		return
	}
	s.mu.Lock()
	if s.byPort == nil {
		s.byPort = map[uint16]int{}
	}
	s.byPort[conn.Config().Port]++
	s.mu.Unlock()
}

// count is how many such errors servers with the ports gave.
func (s *staleTracer) count(ports ...int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, p := range ports {
		n += s.byPort[uint16(p)]
	}
	return n
}

func (s *staleTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (s *staleTracer) TraceQueryEnd(_ context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	s.note(c, d.Err)
}
func (s *staleTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (s *staleTracer) TraceBatchQuery(_ context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	s.note(c, d.Err)
}
func (s *staleTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// tracing sets tr on every pool of the DB, and at most maxConns
// connections per server (0: pgx's default).
func tracing(tr *staleTracer, maxConns int32) func(*switchyard.Config) {
	return func(cfg *switchyard.Config) {
		cfg.ConfigurePool = func(pc *pgxpool.Config) {
			pc.ConnConfig.Tracer = tr
			if maxConns > 0 {
				pc.MaxConns = maxConns
			}
		}
	}
}

// replicaPorts are the ports of c's replicas.
func replicaPorts(c *switchyardtest.Cluster) []int {
	var ports []int
	for _, r := range c.Replicas() {
		ports = append(ports, r.Port())
	}
	return ports
}

// TestMigrationUnderReads: a table's columns change (a column added, then
// one's type changed) while 16 goroutines read it with SELECT * through
// replicas and the primary, in pgx's default mode, which prepares each
// statement on every pooled connection. PostgreSQL then fails the old
// prepared statement once per connection ("cached plan must not change
// result type"); switchyard runs it again, prepared afresh, and the
// callers see no error. A tracer under switchyard shows that the servers
// did refuse statements, on the primary and on replicas, after each
// change.
func TestMigrationUnderReads(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0, 20*time.Millisecond)
	if err := c.Primary().Exec(ctx, "CREATE TABLE migrated (id int PRIMARY KEY, v int NOT NULL); INSERT INTO migrated SELECT g, g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	tr := &staleTracer{}
	db := openDB(t, c, tracing(tr, 0))
	var reads, fails, stale, wide atomic.Int64
	var firstErr atomic.Value
	stop := load(16, func(call int) {
		rctx := ctx
		if call%4 == 0 {
			rctx = switchyard.Primary(ctx)
		}
		rows, err := db.Query(rctx, "SELECT * FROM migrated WHERE id = $1", call%100+1)
		if err == nil {
			for rows.Next() {
				var vals []any
				if vals, err = rows.Values(); err != nil {
					break
				}
				if len(vals) == 3 {
					wide.Add(1)
				}
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		reads.Add(1)
		if err != nil {
			fails.Add(1)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && (pgErr.Code == "0A000" || pgErr.Code == "26000") {
				stale.Add(1)
			}
			firstErr.CompareAndSwap(nil, err)
		}
	})
	defer stop()
	primary, replicas := []int{c.Primary().Port()}, replicaPorts(c)
	change := func(what, ddl string) {
		t.Helper()
		p0, r0 := tr.count(primary...), tr.count(replicas...)
		if _, err := db.Exec(ctx, ddl); err != nil {
			t.Fatal(err)
		}
		at := reads.Load()
		waitFor(t, what+": statements refused on the primary and on a replica, and 2,000 reads since", func() bool {
			return tr.count(primary...) > p0 && tr.count(replicas...) > r0 && reads.Load() > at+2000
		})
	}
	waitFor(t, "reads under way", func() bool { return reads.Load() > 500 })
	change("ADD COLUMN", "ALTER TABLE migrated ADD COLUMN note text NOT NULL DEFAULT 'x'")
	change("ALTER COLUMN TYPE", "ALTER TABLE migrated ALTER COLUMN v TYPE bigint")
	stop()
	t.Logf("%d reads (%d with the new column) across two schema changes: %d errors to callers (%d stale statements); servers refused %d statements on the primary, %d on replicas; routes %v",
		reads.Load(), wide.Load(), fails.Load(), stale.Load(), tr.count(primary...), tr.count(replicas...), db.Stats().Routes.ByReason)
	if n := fails.Load(); n != 0 {
		t.Errorf("%d reads failed; first: %v", n, firstErr.Load())
	}
}

// staleLab is a lab with one replica and a table t, and a DB on it with
// one connection per server, so that a test knows which connection holds
// which prepared statement.
func staleLab(t *testing.T) (*switchyardtest.Cluster, *switchyard.DB, *staleTracer) {
	t.Helper()
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	if err := c.Primary().Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL); INSERT INTO t VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	tr := &staleTracer{}
	db := openDB(t, c, tracing(tr, 1))
	return c, db, tr
}

// alter changes t's columns behind the DB's back (on a connection of the
// lab's) and waits until the replica has the change.
func alter(t *testing.T, c *switchyardtest.Cluster, i int) {
	t.Helper()
	ctx := testCtx(t)
	if err := c.Primary().Exec(ctx, fmt.Sprintf("ALTER TABLE t ADD COLUMN c%d int", i)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
}

// count is t's n, read on the primary by the lab.
func countOf(t *testing.T, c *switchyardtest.Cluster) int64 {
	var n int64
	queryNode(t, c.Primary(), "SELECT n FROM t WHERE id = 1", &n)
	return n
}

// TestStaleStatementOutsideTransaction: a statement outside a
// transaction whose prepared form a migration made stale (0A000), or
// that something deallocated on the server (26000), is run again once,
// invisibly: reads on a replica and on the primary, and writes, which
// take effect exactly once.
func TestStaleStatementOutsideTransaction(t *testing.T) {
	ctx := testCtx(t)
	c, db, tr := staleLab(t)
	waitCaughtUp(t, c, db)
	primary, replica := c.Primary().Port(), c.Replicas()[0].Port()

	// Reads, on the replica and on the primary.
	for i, rctx := range []context.Context{ctx, switchyard.Primary(ctx)} {
		port := replica
		if i == 1 {
			port = primary
		}
		read := func() (vals []any, rec bool, err error) {
			rows, err := db.Query(rctx, "SELECT *, pg_is_in_recovery() FROM t WHERE id = $1", 1)
			if err != nil {
				return nil, false, err
			}
			defer rows.Close()
			if !rows.Next() {
				return nil, false, fmt.Errorf("no row (%v)", rows.Err())
			}
			vals, err = rows.Values()
			return vals, vals[len(vals)-1].(bool), err
		}
		// Prepare it there (a replica the monitor found slow on a busy
		// machine is out of rotation for a moment: read until it is back).
		waitFor(t, fmt.Sprintf("a read on port %d", port), func() bool {
			_, rec, err := read()
			if err != nil {
				t.Fatal(err)
			}
			return rec == (port == replica)
		})
		before := tr.count(port)
		alter(t, c, 10+i)
		waitCaughtUp(t, c, db)
		vals, rec, err := read()
		if err == nil && rec != (port == replica) {
			t.Logf("the read after the change went elsewhere (routes %v): reading again", db.Stats().Routes.ByReason)
			waitCaughtUp(t, c, db)
			vals, _, err = read()
		}
		if err != nil {
			t.Errorf("a read after the table changed (on port %d): %v", port, err)
		} else if len(vals) != 4+i {
			t.Errorf("a read after the table changed has %d columns, want %d", len(vals), 4+i)
		}
		if tr.count(port) != before+1 {
			t.Errorf("the server refused %d statements, want 1: the test did not make the statement stale", tr.count(port)-before)
		}
	}

	// Writes: Exec and Query, each applied once.
	for i, write := range []func() error{
		func() error {
			_, err := db.Exec(ctx, "UPDATE t SET n = n + 1 WHERE id = $1", 1)
			return err
		},
		func() error {
			rows, err := db.Query(ctx, "UPDATE t SET n = n + 1 WHERE id = $1 RETURNING *", 1)
			if err != nil {
				return err
			}
			rows.Close()
			return rows.Err()
		},
	} {
		if err := write(); err != nil {
			t.Fatal(err)
		}
		before, n := tr.count(primary), countOf(t, c)
		alter(t, c, 20+i)
		if i == 0 {
			// An UPDATE without RETURNING keeps its result type: its plan
			// is replanned silently. Deallocate it instead.
			if _, err := db.Exec(ctx, "DEALLOCATE ALL"); err != nil {
				t.Fatal(err)
			}
		}
		if err := write(); err != nil {
			t.Errorf("write %d after the table changed: %v", i, err)
		}
		if got := countOf(t, c); got != n+1 {
			t.Errorf("write %d after the table changed: applied %d times", i, got-n)
		}
		if tr.count(primary) != before+1 {
			t.Errorf("write %d: the server refused %d statements, want 1", i, tr.count(primary)-before)
		}
	}

	// A prepared statement deallocated under a read.
	var n int64
	if err := db.QueryRow(switchyard.Primary(ctx), "SELECT n FROM t WHERE id = $1", 1).Scan(&n); err != nil {
		t.Fatal(err)
	}
	before := tr.count(primary)
	if _, err := db.Exec(ctx, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(switchyard.Primary(ctx), "SELECT n FROM t WHERE id = $1", 1).Scan(&n); err != nil {
		t.Errorf("a read whose prepared statement was deallocated: %v", err)
	}
	if tr.count(primary) != before+1 {
		t.Errorf("the server refused %d statements, want 1: DEALLOCATE ALL did not reach the read's connection", tr.count(primary)-before)
	}
}

// TestStaleStatementInTransaction: inside a transaction the error goes to
// the caller (the transaction is aborted; nothing can be run again in
// it), while Atomic runs its block again, which then succeeds.
func TestStaleStatementInTransaction(t *testing.T) {
	ctx := testCtx(t)
	c, db, tr := staleLab(t)
	primary := c.Primary().Port()
	readAll := func(q interface {
		Query(context.Context, string, ...any) (pgx.Rows, error)
	}) error {
		_, err := selectAll(ctx, q)
		return err
	}
	// Prepare it on the primary's one connection.
	if err := db.Atomic(ctx, func(tx pgx.Tx) error { return readAll(tx) }); err != nil {
		t.Fatal(err)
	}

	alter(t, c, 1)
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = readAll(tx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		t.Errorf("a stale statement in a transaction returned %v, want the server's 0A000", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	// Atomic: the block runs again, once per statement of it that a
	// migration made stale (pgx drops the one that failed), but only once
	// after a reset (26000: the connection forgets every statement), and
	// its write is applied once.
	if err := db.Atomic(ctx, func(tx pgx.Tx) error { return readAll(tx) }); err != nil {
		t.Fatal(err)
	}
	for _, reset := range []struct {
		what  string
		do    func()
		stale int // attempts that meet a stale statement
	}{
		{"ALTER TABLE (SELECT * stale)", func() { alter(t, c, 2) }, 1},
		{"DEALLOCATE ALL (both statements gone)", func() {
			if _, err := db.Exec(ctx, "DEALLOCATE ALL"); err != nil {
				t.Fatal(err)
			}
		}, 1},
	} {
		reset.do()
		before, retries, n := tr.count(primary), db.Stats().Routes.AtomicRetries, countOf(t, c)
		attempts := 0
		err := db.Atomic(ctx, func(tx pgx.Tx) error {
			attempts++
			if _, err := tx.Exec(ctx, "UPDATE t SET n = n + 1 WHERE id = $1", 1); err != nil {
				return err
			}
			return readAll(tx)
		})
		if err != nil {
			t.Errorf("Atomic after %s: %v", reset.what, err)
		}
		if retried := db.Stats().Routes.AtomicRetries - retries; attempts != 1+reset.stale || retried != uint64(reset.stale) {
			t.Errorf("Atomic after %s: %d attempts, %d retries counted; want %d and %d", reset.what, attempts, retried, 1+reset.stale, reset.stale)
		}
		if got := countOf(t, c); got != n+1 {
			t.Errorf("Atomic after %s: its write applied %d times", reset.what, got-n)
		}
		if refused := tr.count(primary) - before; refused != reset.stale {
			t.Errorf("Atomic after %s: the server refused %d statements, want %d", reset.what, refused, reset.stale)
		}
	}
}

// TestStaleStatementOnConn: a statement on an acquired Conn, outside a
// transaction, is run again like any other (the connection is idle after
// the failure: nothing else of the caller's ran in its implicit
// transaction); inside a transaction begun on the Conn, the error goes
// to the caller.
func TestStaleStatementOnConn(t *testing.T) {
	ctx := testCtx(t)
	c, db, _ := staleLab(t)
	conn, err := db.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := selectAll(ctx, conn); err != nil {
		t.Fatal(err)
	}
	alter(t, c, 1)
	if n, err := selectAll(ctx, conn); err != nil || n != 3 {
		t.Errorf("a read on a Conn after the table changed: %d columns, %v", n, err)
	}
	if _, err := selectAll(ctx, conn); err != nil { // prepared as the table is now
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	alter(t, c, 2)
	if _, err := selectAll(ctx, tx); pgErrCode(err) != "0A000" {
		t.Errorf("a stale statement in a transaction on a Conn returned %v, want the server's 0A000", err)
	}
}

// selectAll reads every column of t's row 1 through q and returns how
// many there were.
func selectAll(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}) (int, error) {
	rows, err := q.Query(ctx, "SELECT * FROM t WHERE id = $1", 1)
	if err != nil {
		return 0, err
	}
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return 0, err
		}
		n = len(vals)
	}
	rows.Close()
	return n, rows.Err()
}

func pgErrCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestStaleStatementsAfterResetInAtomic: after something drops every
// prepared statement of a connection (DEALLOCATE ALL, DISCARD ALL, a
// pooler's reset), an Atomic block of more distinct statements than
// MaxAttempts still commits.
// (pgx drops only the statement that failed, so each attempt used to fail
// on its next stale statement, and a block of 12 gave up after 10
// attempts; a 26000 means the server's statements were reset, and the
// connection now forgets them all before it goes back to the pool.)
func TestStaleStatementsAfterResetInAtomic(t *testing.T) {
	ctx := testCtx(t)
	_, db, _ := staleLab(t)
	block := func(tx pgx.Tx) error {
		for i := 0; i < 12; i++ {
			var n int
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT n + %d FROM t WHERE id = $1", i), 1).Scan(&n); err != nil {
				return err
			}
		}
		return nil
	}
	if err := db.Atomic(ctx, block); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "DEALLOCATE ALL"); err != nil {
		t.Fatal(err)
	}
	attempts := 0
	if err := db.Atomic(ctx, func(tx pgx.Tx) error { attempts++; return block(tx) }); err != nil {
		t.Errorf("a 12-statement block after DEALLOCATE ALL: %v", err)
	}
	if attempts > 2 {
		t.Errorf("a 12-statement block after DEALLOCATE ALL took %d attempts, want 2", attempts)
	}
}
