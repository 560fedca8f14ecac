package stdlib_test

import (
	"context"
	"database/sql"
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

// refusedTracer counts, per server port, the statements a server refused
// because their prepared form was thrown out under them (0A000, 26000):
// what the *sql.DB hides from its callers, seen below it.
type refusedTracer struct {
	mu     sync.Mutex
	byPort map[uint16]int
}

func (r *refusedTracer) note(conn *pgx.Conn, err error) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" && pgErr.Code != "26000" {
		return
	}
	r.mu.Lock()
	if r.byPort == nil {
		r.byPort = map[uint16]int{}
	}
	r.byPort[conn.Config().Port]++
	r.mu.Unlock()
}

func (r *refusedTracer) count(nodes ...*switchyardtest.Node) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, node := range nodes {
		n += r.byPort[uint16(node.Port())]
	}
	return n
}

func (r *refusedTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (r *refusedTracer) TraceQueryEnd(_ context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	r.note(c, d.Err)
}
func (r *refusedTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (r *refusedTracer) TraceBatchQuery(_ context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.note(c, d.Err)
}
func (r *refusedTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// traced sets tr on every pool of the DB, and at most maxConns
// connections per server (0: pgx's default).
func traced(tr *refusedTracer, maxConns int32) func(*switchyard.Config) {
	return func(cfg *switchyard.Config) {
		cfg.ConfigurePool = func(pc *pgxpool.Config) {
			pc.ConnConfig.Tracer = tr
			if maxConns > 0 {
				pc.MaxConns = maxConns
			}
		}
	}
}

// pollUntil polls cond until it holds, failing the test after 30 s.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMigrationUnderReads: through a *sql.DB, a table gains a column and
// then changes a column's type while 16 goroutines read it with SELECT *
// (a quarter on the primary, the rest where routing sends them: the
// replicas, once they have replayed the change). Each server connection
// has the statement prepared (pgx's default), and fails it once after
// each change; no caller sees an error.
func TestMigrationUnderReads(t *testing.T) {
	ctx := testCtx(t)
	lab := switchyardtest.Need(t, shared)
	if err := lab.Primary().Exec(ctx, `DROP TABLE IF EXISTS stdlib_migrated;
		CREATE TABLE stdlib_migrated (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO stdlib_migrated SELECT g, g FROM generate_series(1, 100) g`); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	tr := &refusedTracer{}
	sqlDB := openSQL(t, openDB(t, traced(tr, 0)))
	var reads, fails atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	done := make(chan struct{})
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for call := 0; ; call++ {
				select {
				case <-done:
					return
				default:
				}
				rctx := ctx
				if call%4 == g%4 {
					rctx = switchyard.Primary(ctx)
				}
				err := selectStar(rctx, sqlDB, call%100+1)
				reads.Add(1)
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	stop := func() { close(done); wg.Wait() }
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	primary, replicas := lab.Primary(), lab.Replicas()
	change := func(what, ddl string) {
		t.Helper()
		p0, r0 := tr.count(primary), tr.count(replicas...)
		if _, err := sqlDB.ExecContext(ctx, ddl); err != nil {
			t.Fatal(err)
		}
		at := reads.Load()
		pollUntil(t, what+": statements refused on the primary and on a replica, and 2,000 reads since", func() bool {
			return tr.count(primary) > p0 && tr.count(replicas...) > r0 && reads.Load() > at+2000
		})
	}
	pollUntil(t, "reads under way", func() bool { return reads.Load() > 500 })
	change("ADD COLUMN", "ALTER TABLE stdlib_migrated ADD COLUMN note text NOT NULL DEFAULT 'x'")
	change("ALTER COLUMN TYPE", "ALTER TABLE stdlib_migrated ALTER COLUMN v TYPE bigint")
	stop()
	stopped = true
	t.Logf("%d reads through a *sql.DB across two schema changes: %d errors to callers; servers refused %d statements on the primary, %d on replicas",
		reads.Load(), fails.Load(), tr.count(primary), tr.count(replicas...))
	if n := fails.Load(); n != 0 {
		t.Errorf("%d reads failed; first: %v", n, firstErr.Load())
	}
}

// selectStar reads every column of stdlib_migrated's row id through q.
func selectStar(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, id int) error {
	rows, err := q.QueryContext(ctx, "SELECT * FROM stdlib_migrated WHERE id = $1", id)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	for rows.Next() {
		dst := make([]any, len(cols))
		for i := range dst {
			dst[i] = new(any)
		}
		if err := rows.Scan(dst...); err != nil {
			return err
		}
	}
	return rows.Err()
}

// TestStaleStatementPinnedAndInTransaction: a *sql.Conn pinned to one
// server connection by session state (SET) runs a statement that a
// migration made stale again, invisibly; in a *sql.Tx the error goes to
// the caller.
func TestStaleStatementPinnedAndInTransaction(t *testing.T) {
	ctx := testCtx(t)
	lab := switchyardtest.Need(t, shared)
	if err := lab.Primary().Exec(ctx, `DROP TABLE IF EXISTS stdlib_migrated;
		CREATE TABLE stdlib_migrated (id int PRIMARY KEY, v int NOT NULL);
		INSERT INTO stdlib_migrated VALUES (1, 1)`); err != nil {
		t.Fatal(err)
	}
	tr := &refusedTracer{}
	sqlDB := openSQL(t, openDB(t, traced(tr, 2)))
	alter := func(i int) {
		t.Helper()
		if err := lab.Primary().Exec(ctx, fmt.Sprintf("ALTER TABLE stdlib_migrated ADD COLUMN c%d int", i)); err != nil {
			t.Fatal(err)
		}
	}

	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET application_name = 'stdlib_migration'"); err != nil {
		t.Fatal(err)
	}
	if err := selectStar(ctx, conn, 1); err != nil {
		t.Fatal(err)
	}
	before := tr.count(lab.Primary())
	alter(1)
	if err := selectStar(ctx, conn, 1); err != nil {
		t.Errorf("a pinned connection's read after the table changed: %v", err)
	}
	if tr.count(lab.Primary()) != before+1 {
		t.Errorf("the primary refused %d statements, want 1: the test did not make the statement stale", tr.count(lab.Primary())-before)
	}
	var app string
	if err := conn.QueryRowContext(ctx, "SELECT current_setting('application_name')").Scan(&app); err != nil || app != "stdlib_migration" {
		t.Errorf("the pinned connection's setting after the read: %q, %v", app, err)
	}

	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	alter(2)
	err = selectStar(ctx, tx, 1)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		t.Errorf("a stale statement in a transaction returned %v, want the server's 0A000", err)
	}
}
