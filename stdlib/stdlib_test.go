package stdlib_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // pgx's own database/sql driver, to compare with

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// withApp adds an application_name to a lab DSN, so that the test's
// server connections can be found in pg_stat_activity.
func withApp(dsn, app string) string { return dsn + "&application_name=" + app }

// openDB opens a DB on the shared lab, closed when the test ends.
func openDB(t testing.TB, edit ...func(*switchyard.Config)) *switchyard.DB {
	t.Helper()
	cfg := switchyard.Config{Primary: switchyardtest.Need(t, shared).Primary().DSN()}
	for _, r := range switchyardtest.Need(t, shared).Replicas() {
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

// oneConnPerServer makes every pool of the DB hold one connection, so that
// a test can find the server connection it used before.
func oneConnPerServer(c *switchyard.Config) {
	c.ConfigurePool = func(pc *pgxpool.Config) { pc.MaxConns = 1 }
}

// openSQL opens a *sql.DB on db, closed when the test ends (before db).
func openSQL(t testing.TB, db *switchyard.DB) *sql.DB {
	t.Helper()
	sqlDB := stdlib.OpenDB(db)
	t.Cleanup(func() {
		if err := sqlDB.Close(); err != nil {
			t.Error(err)
		}
	})
	return sqlDB
}

// rowQuerier is what *sql.DB, *sql.Conn and *sql.Tx share.
type rowQuerier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// server says which server and backend answered a statement.
type server struct {
	port       int32
	inRecovery bool
	pid        int32
}

func (s server) String() string {
	if s.inRecovery {
		return fmt.Sprintf("replica (port %d, pid %d)", s.port, s.pid)
	}
	return fmt.Sprintf("primary (port %d, pid %d)", s.port, s.pid)
}

// whoCols are the columns answeredBy reads, last in a query's select list.
const whoCols = "inet_server_port(), pg_is_in_recovery(), pg_backend_pid()"

// answeredBy runs query, whose last three columns are whoCols, and says
// which server answered.
func answeredBy(t *testing.T, q rowQuerier, ctx context.Context, query string, args ...any) server {
	t.Helper()
	var s server
	if err := q.QueryRowContext(ctx, query, args...).Scan(&s.port, &s.inRecovery, &s.pid); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return s
}

func primaryRouted(db *switchyard.DB) uint64 {
	for _, n := range db.Stats().Nodes {
		if n.Role == switchyard.RolePrimary {
			return n.Routed
		}
	}
	return 0
}

// TestRouting checks that statements through the *sql.DB are routed as
// through the DB: pure reads to replicas, everything else to the primary.
func TestRouting(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t)
	sqlDB := openSQL(t, db)
	// Reads right after a write go to the primary (reads see every write
	// made before them in the process); reads are checked on a DB that
	// writes nothing, in a session of their own, which has seen no write.
	rdb := openDB(t)
	reader := openSQL(t, rdb)
	fresh := switchyard.WithSession(ctx)
	for _, tc := range []struct {
		name, sql string
		replica   bool
	}{
		{"plain select", "SELECT " + whoCols, true},
		{"select from table", "SELECT " + whoCols + " FROM items WHERE id = 1", true},
		{"CTE of reads", "WITH d AS (SELECT id FROM items WHERE id = 1) SELECT " + whoCols + " FROM d", true},
		{"insert returning", "INSERT INTO items (v) VALUES (1) RETURNING " + whoCols, false},
		{"update returning", "UPDATE items SET v = v WHERE id = 1 RETURNING " + whoCols, false},
		{"for update", "SELECT " + whoCols + " FROM items WHERE id = 1 FOR UPDATE", false},
		{"for share", "SELECT " + whoCols + " FROM items WHERE id = 1 FOR SHARE", false},
		{"data-modifying CTE", "WITH d AS (UPDATE items SET v = v WHERE id = 1 RETURNING id) SELECT " + whoCols + " FROM d", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, qctx := sqlDB, ctx
			if tc.replica {
				q, qctx = reader, fresh
			}
			for i := 0; i < 3; i++ { // the first run of a text, and later ones
				if got := answeredBy(t, q, qctx, tc.sql); got.inRecovery != tc.replica {
					t.Errorf("%s\nran on the %s", tc.sql, got)
				}
			}
		})
	}
	t.Run("exec of a write", func(t *testing.T) {
		before := primaryRouted(db)
		res, err := sqlDB.ExecContext(ctx, "UPDATE items SET v = v WHERE id <= $1", 3)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := res.RowsAffected(); n != 3 || err != nil {
			t.Errorf("RowsAffected %d, %v; want 3", n, err)
		}
		if _, err := res.LastInsertId(); err == nil {
			t.Error("LastInsertId did not fail (PostgreSQL has no such thing)")
		}
		if primaryRouted(db) != before+1 {
			t.Error("the UPDATE did not go to the primary")
		}
	})
	t.Run("forced primary", func(t *testing.T) {
		if got := answeredBy(t, reader, switchyard.Primary(ctx), "SELECT "+whoCols); got.inRecovery {
			t.Errorf("a Primary(ctx) read ran on the %s", got)
		}
	})
	t.Run("rows", func(t *testing.T) {
		rows, err := reader.QueryContext(fresh, "SELECT id, pg_is_in_recovery() FROM items WHERE id <= 3 ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var ids []int
		for rows.Next() {
			var id int
			var rec bool
			if err := rows.Scan(&id, &rec); err != nil {
				t.Fatal(err)
			}
			if !rec {
				t.Error("a read ran on the primary")
			}
			ids = append(ids, id)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(ids) != "[1 2 3]" {
			t.Errorf("ids %v", ids)
		}
	})
	t.Run("empty result", func(t *testing.T) {
		err := reader.QueryRowContext(fresh, "SELECT id FROM items WHERE id < 0").Scan(new(int))
		if !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("got %v, want sql.ErrNoRows", err)
		}
	})
	t.Run("query error", func(t *testing.T) {
		_, err := reader.QueryContext(fresh, "SELECT 1/0")
		if err == nil || !strings.Contains(err.Error(), "division by zero") {
			t.Errorf("got %v, want division by zero", err)
		}
		_, err = sqlDB.ExecContext(ctx, "INSERT INTO no_such_table VALUES (1)")
		if err == nil || !strings.Contains(err.Error(), "no_such_table") {
			t.Errorf("got %v, want an error naming the table", err)
		}
	})
	if s := rdb.Stats(); s.Routes.Replica == 0 || s.Routes.Forced == 0 || s.Routes.Write != 0 {
		t.Errorf("reader's routes %+v", s.Routes)
	}
	if s := db.Stats(); s.Routes.Write == 0 {
		t.Errorf("writer's routes %+v", s.Routes)
	}
}

func TestPing(t *testing.T) {
	ctx := testCtx(t)
	sqlDB := openSQL(t, openDB(t))
	if err := sqlDB.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestTransactions checks that a *sql.Tx runs on one connection, that a
// read-only one runs on a replica, and the mapping of isolation levels.
func TestTransactions(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t)
	sqlDB := openSQL(t, db)
	// A read-only transaction right after a write begins on the primary (no
	// replica has the write yet); those are checked on a DB that writes
	// nothing, in a session that has seen no write.
	reader := openSQL(t, openDB(t))
	fresh := switchyard.WithSession(ctx)

	t.Run("read-write stays on one primary connection", func(t *testing.T) {
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		pids := map[int32]bool{}
		for _, q := range []string{
			"SELECT " + whoCols,
			"SELECT " + whoCols + " FROM items WHERE id = 1",
			"INSERT INTO items (v) VALUES (3) RETURNING " + whoCols,
			"SELECT " + whoCols,
		} {
			s := answeredBy(t, tx, ctx, q)
			if s.inRecovery {
				t.Errorf("%s: a read-write transaction ran on the %s", q, s)
			}
			pids[s.pid] = true
		}
		if _, err := tx.ExecContext(ctx, "UPDATE items SET v = v WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
		if len(pids) != 1 {
			t.Errorf("one transaction ran on %d backends", len(pids))
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); !errors.Is(err, sql.ErrTxDone) {
			t.Errorf("Rollback after Commit: %v", err)
		}
	})

	t.Run("rollback undoes", func(t *testing.T) {
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO items (v) VALUES (555001)"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := sqlDB.QueryRowContext(switchyard.Primary(ctx), "SELECT count(*) FROM items WHERE v = 555001").Scan(&n); err != nil || n != 0 {
			t.Errorf("rolled-back row: count %d, %v", n, err)
		}
	})

	t.Run("read-only on a replica, one snapshot", func(t *testing.T) {
		tx, err := reader.BeginTx(fresh, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var rec bool
		var iso, ro string
		var pid1, pid2 int32
		if err := tx.QueryRowContext(ctx, "SELECT pg_is_in_recovery(), current_setting('transaction_isolation'), current_setting('transaction_read_only'), pg_backend_pid()").Scan(&rec, &iso, &ro, &pid1); err != nil {
			t.Fatal(err)
		}
		if !rec || iso != "repeatable read" || ro != "on" {
			t.Errorf("read-only transaction: in recovery %v, isolation %q, read only %q; want a repeatable read, read-only transaction on a replica", rec, iso, ro)
		}
		if err := tx.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil || pid2 != pid1 {
			t.Errorf("second statement on backend %d (%v), first on %d", pid2, err, pid1)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO items (v) VALUES (1)"); err == nil {
			t.Error("a write in a read-only transaction did not fail")
		}
	})

	t.Run("isolation levels", func(t *testing.T) {
		for _, tc := range []struct {
			level    sql.IsolationLevel
			readOnly bool
			want     string
			replica  bool
		}{
			{sql.LevelDefault, false, "read committed", false},
			{sql.LevelReadUncommitted, false, "read uncommitted", false},
			{sql.LevelReadCommitted, false, "read committed", false},
			{sql.LevelRepeatableRead, false, "repeatable read", false},
			{sql.LevelSnapshot, false, "repeatable read", false},
			{sql.LevelSerializable, false, "serializable", false},
			{sql.LevelReadCommitted, true, "read committed", true},
			{sql.LevelSerializable, true, "serializable", false}, // standbys offer no serializable
		} {
			q, qctx := sqlDB, ctx
			if tc.readOnly {
				q, qctx = reader, fresh
			}
			tx, err := q.BeginTx(qctx, &sql.TxOptions{Isolation: tc.level, ReadOnly: tc.readOnly})
			if err != nil {
				t.Fatalf("%v: %v", tc.level, err)
			}
			var iso string
			var rec bool
			if err := tx.QueryRowContext(ctx, "SELECT current_setting('transaction_isolation'), pg_is_in_recovery()").Scan(&iso, &rec); err != nil {
				t.Fatal(err)
			}
			if iso != tc.want || rec != tc.replica {
				t.Errorf("%v (read only %v): isolation %q, on a replica %v; want %q, %v", tc.level, tc.readOnly, iso, rec, tc.want, tc.replica)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		for _, level := range []sql.IsolationLevel{sql.LevelWriteCommitted, sql.LevelLinearizable, 99} {
			_, err := sqlDB.BeginTx(ctx, &sql.TxOptions{Isolation: level})
			if err == nil || !strings.Contains(err.Error(), "not supported by PostgreSQL") {
				t.Errorf("%v: got %v, want a clear error", level, err)
			}
		}
	})

	t.Run("ended by its context", func(t *testing.T) {
		tctx, cancel := context.WithCancel(ctx)
		tx, err := sqlDB.BeginTx(tctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(tctx, "INSERT INTO items (v) VALUES (555002)"); err != nil {
			t.Fatal(err)
		}
		cancel()
		if err := tx.Commit(); err == nil {
			t.Error("Commit after the context ended did not fail")
		}
		var n int
		if err := sqlDB.QueryRowContext(switchyard.Primary(ctx), "SELECT count(*) FROM items WHERE v = 555002").Scan(&n); err != nil || n != 0 {
			t.Errorf("row of a canceled transaction: count %d, %v", n, err)
		}
	})
	waitIdle(t, db)
}

// waitIdle fails the test if the DB's pools do not get every connection
// back soon.
func waitIdle(t *testing.T, db *switchyard.DB) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		busy := 0
		for _, n := range db.Stats().Nodes {
			busy += int(n.Pool.AcquiredConns()) + int(n.InFlight)
		}
		if busy == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, n := range db.Stats().Nodes {
				t.Errorf("%s: %d connections acquired, %d statements in flight", n.Name, n.Pool.AcquiredConns(), n.InFlight)
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freshCount runs a count query on a new connection to the primary: a
// view of the server from outside the DB's pools.
func freshCount(t *testing.T, ctx context.Context, query string, args ...any) int {
	t.Helper()
	c, err := switchyardtest.Need(t, shared).Primary().Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int
	if err := c.QueryRow(ctx, query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

const (
	advisoryLocks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1"
	tempTables    = "SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND relname = $1"
)

// backendState is what a server connection keeps between statements.
type backendState struct {
	pid       int32
	workMem   string
	listening int
	prepared  int
	tempTable int
}

const backendStateSQL = `SELECT pg_backend_pid(), current_setting('work_mem'),
	(SELECT count(*) FROM pg_listening_channels()),
	(SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'test\_%'),
	(SELECT count(*) FROM pg_class WHERE relpersistence = 't')`

func stateOf(t *testing.T, q rowQuerier, ctx context.Context) backendState {
	t.Helper()
	var s backendState
	if err := q.QueryRowContext(ctx, backendStateSQL).Scan(&s.pid, &s.workMem, &s.listening, &s.prepared, &s.tempTable); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSessionStatePinsAndIsReset checks that session state pins a
// database/sql connection to one primary connection, that every statement
// of it runs there, and that once database/sql resets the connection
// nothing of that state remains on the server connection, which goes back
// to the pool and is reused.
func TestSessionStatePinsAndIsReset(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t, oneConnPerServer)
	sqlDB := openSQL(t, db)
	pctx := switchyard.Primary(ctx)

	// The primary's one pooled connection, with a statement in pgx's cache.
	var before backendState
	before = stateOf(t, sqlDB, pctx)
	if err := sqlDB.QueryRowContext(pctx, "SELECT count(*) FROM items WHERE id > $1", 0).Scan(new(int)); err != nil {
		t.Fatal(err)
	}

	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // a pinned connection held for ever would make db.Close wait for ever
	for _, q := range []string{
		"SET work_mem = '7MB'",
		"CREATE TEMP TABLE pin_tmp (x int)",
		"INSERT INTO pin_tmp VALUES (1)",
		"SELECT pg_advisory_lock(4242)",
		"LISTEN pin_chan",
		"PREPARE test_plan AS SELECT 1",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	pinned := stateOf(t, conn, ctx)
	if pinned.pid != before.pid || pinned.workMem != "7MB" || pinned.listening != 1 || pinned.prepared != 1 || pinned.tempTable != 1 {
		t.Errorf("pinned connection: %+v; want pid %d with the session state", pinned, before.pid)
	}
	// Reads, a prepared statement and a transaction of the pinned
	// connection all run on it.
	for i := 0; i < 3; i++ {
		if s := answeredBy(t, conn, ctx, "SELECT "+whoCols); s.inRecovery || s.pid != pinned.pid {
			t.Errorf("a read of the pinned connection ran on the %s", s)
		}
	}
	stmt, err := conn.PrepareContext(ctx, "SELECT count(*) FROM pin_tmp WHERE x = $1")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := stmt.QueryRowContext(ctx, 1).Scan(&n); err != nil || n != 1 {
		t.Errorf("prepared statement on the pinned connection: %d, %v", n, err)
	}
	stmt.Close()
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if s := answeredBy(t, tx, ctx, "SELECT "+whoCols+" FROM pin_tmp"); s.inRecovery || s.pid != pinned.pid {
		t.Errorf("a read-only transaction of the pinned connection ran on the %s", s)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if got := freshCount(t, ctx, advisoryLocks, 4242); got != 1 {
		t.Errorf("%d advisory locks while pinned, want 1", got)
	}

	// Back to the *sql.DB's pool; the next user gets it reset.
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	after := stateOf(t, sqlDB, pctx)
	if after.pid != before.pid {
		t.Errorf("after the reset the primary's connection is backend %d, was %d: it was not given back", after.pid, before.pid)
	}
	if after != before {
		t.Errorf("after the reset the server connection has %+v, want %+v as before the pin", after, before)
	}
	if got := freshCount(t, ctx, advisoryLocks, 4242); got != 0 {
		t.Errorf("%d advisory locks remain after the reset", got)
	}
	if got := freshCount(t, ctx, tempTables, "pin_tmp"); got != 0 {
		t.Errorf("%d temporary tables remain after the reset", got)
	}
	// pgx's statement cache was cleared along with the server's statements.
	if err := sqlDB.QueryRowContext(pctx, "SELECT count(*) FROM items WHERE id > $1", 0).Scan(new(int)); err != nil {
		t.Errorf("a cached statement after the reset: %v", err)
	}

	// A pinned connection that database/sql closes is cleaned too.
	conn, err = sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(4243)"); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	sqlDB.SetMaxIdleConns(0) // closes the idle connections
	if got := freshCount(t, ctx, advisoryLocks, 4243); got != 0 {
		t.Errorf("%d advisory locks remain after the connection was closed", got)
	}
	waitIdle(t, db)
}

// TestSessionStateInTransactionEndsWithIt checks that session state set
// inside a transaction on a pooled connection does not outlive the
// transaction, whether it commits, rolls back or fails, on the primary or a
// replica.
func TestSessionStateInTransactionEndsWithIt(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t, oneConnPerServer)
	sqlDB := openSQL(t, db)
	pctx := switchyard.Primary(ctx)
	clean := stateOf(t, sqlDB, pctx)

	for i, end := range []string{"commit", "rollback", "failed commit", "commit by SQL"} {
		t.Run(end, func(t *testing.T) {
			marker := 666000 + i
			lock := 4300 + i
			if err := switchyardtest.Need(t, shared).Primary().Exec(ctx, "DELETE FROM items WHERE v = $1", marker); err != nil {
				t.Fatal(err) // rows of an earlier run (go test -count)
			}
			tx, err := sqlDB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback() // after a failure: give the one connection back
			for _, q := range []string{
				"SET work_mem = '9MB'",
				fmt.Sprintf("SELECT pg_advisory_lock(%d)", lock),
				"CREATE TEMP TABLE tx_tmp (x int)",
				"LISTEN tx_chan",
				"PREPARE test_tx_plan AS SELECT 1",
				fmt.Sprintf("INSERT INTO items (v) VALUES (%d)", marker),
			} {
				if _, err := tx.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			inside := stateOf(t, tx, ctx)
			if inside.pid != clean.pid || inside.workMem != "9MB" || inside.tempTable != 1 {
				t.Errorf("inside the transaction: %+v", inside)
			}
			wantRows := 0
			switch end {
			case "commit":
				wantRows = 1
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			case "rollback":
				if err := tx.Rollback(); err != nil {
					t.Fatal(err)
				}
			case "failed commit":
				if _, err := tx.ExecContext(ctx, "SELECT 1/0"); err == nil {
					t.Fatal("1/0 did not fail")
				}
				if err := tx.Commit(); !errors.Is(err, pgx.ErrTxCommitRollback) {
					t.Errorf("Commit of a failed transaction: %v, want pgx.ErrTxCommitRollback", err)
				}
			case "commit by SQL":
				wantRows = 1
				if _, err := tx.ExecContext(ctx, "COMMIT"); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
			}
			if after := stateOf(t, sqlDB, pctx); after != clean {
				t.Errorf("after the transaction the server connection has %+v, want %+v", after, clean)
			}
			if got := freshCount(t, ctx, advisoryLocks, lock); got != 0 {
				t.Errorf("%d advisory locks remain", got)
			}
			if got := freshCount(t, ctx, "SELECT count(*) FROM items WHERE v = $1", marker); got != wantRows {
				t.Errorf("%d rows written, want %d", got, wantRows)
			}
		})
	}

	t.Run("read-only on a replica", func(t *testing.T) {
		// A DB that wrote nothing begins read-only transactions on replicas.
		sqlDB := openSQL(t, openDB(t, oneConnPerServer))
		tx, err := sqlDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var port, pid int32
		var rec bool
		if err := tx.QueryRowContext(ctx, "SELECT inet_server_port(), pg_backend_pid(), pg_is_in_recovery()").Scan(&port, &pid, &rec); err != nil {
			t.Fatal(err)
		}
		if !rec {
			t.Fatal("the read-only transaction began on the primary")
		}
		if _, err := tx.ExecContext(ctx, "SET work_mem = '11MB'"); err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_lock(4399)"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		// Reads go to either replica; find the one the transaction used.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			var p, id int32
			var wm string
			if err := sqlDB.QueryRowContext(ctx, "SELECT inet_server_port(), pg_backend_pid(), current_setting('work_mem')").Scan(&p, &id, &wm); err != nil {
				t.Fatal(err)
			}
			if p != port {
				continue
			}
			if id != pid || wm == "11MB" {
				t.Errorf("replica connection after the transaction: backend %d (was %d), work_mem %s", id, pid, wm)
			}
			return
		}
		t.Error("never read from the replica of the transaction again")
	})
	waitIdle(t, db)
}

// TestTransactionScopedStatements checks that SET LOCAL, savepoints and
// SET TRANSACTION work in a transaction and end with it (that they need no
// clean-up is TestTransactionScoped's).
func TestTransactionScopedStatements(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t, oneConnPerServer)
	sqlDB := openSQL(t, db)
	tx, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SET LOCAL work_mem = '13MB'", "SAVEPOINT a", "/* c */ RELEASE SAVEPOINT a", "set  transaction read write"} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var wm string
	if err := tx.QueryRowContext(ctx, "SELECT current_setting('work_mem')").Scan(&wm); err != nil || wm != "13MB" {
		t.Errorf("SET LOCAL inside: %s, %v", wm, err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.QueryRowContext(switchyard.Primary(ctx), "SELECT current_setting('work_mem')").Scan(&wm); err != nil || wm == "13MB" {
		t.Errorf("SET LOCAL after: %s, %v", wm, err)
	}
}

// TestPinnedConnectionLost checks that a database/sql connection whose
// pinned server connection died reports errors, is dropped, and leaves the
// *sql.DB working.
func TestPinnedConnectionLost(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t)
	sqlDB := openSQL(t, db)
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET work_mem = '5MB'"); err != nil {
		t.Fatal(err)
	}
	var pid int32
	if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if got := freshCount(t, ctx, "SELECT pg_terminate_backend($1)::int", pid); got != 1 {
		t.Fatalf("pg_terminate_backend(%d) said %d", pid, got)
	}
	if _, err := conn.ExecContext(ctx, "SELECT 1"); err == nil {
		t.Error("a statement on a lost pinned connection did not fail")
	}
	if err := conn.PingContext(ctx); err == nil {
		t.Error("Ping of a lost pinned connection did not fail")
	}
	conn.Close()
	for i := 0; i < 3; i++ {
		if _, err := sqlDB.ExecContext(ctx, "UPDATE items SET v = v WHERE id = 1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := sqlDB.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, db)
}

// TestTransactionLeftOpenBySQL checks that a BEGIN sent as SQL on a
// connection that is then given back is rolled back by the reset.
func TestTransactionLeftOpenBySQL(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t, oneConnPerServer)
	sqlDB := openSQL(t, db)
	conn, err := sqlDB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"BEGIN", "INSERT INTO items (v) VALUES (777001)", "SELECT pg_advisory_xact_lock(4400)"} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	conn.Close()
	var n int
	if err := sqlDB.QueryRowContext(switchyard.Primary(ctx), "SELECT count(*) FROM items WHERE v = 777001").Scan(&n); err != nil || n != 0 {
		t.Errorf("row of a transaction left open: count %d, %v", n, err)
	}
	if got := freshCount(t, ctx, advisoryLocks, 4400); got != 0 {
		t.Errorf("%d advisory locks remain", got)
	}
}

// TestPreparedStatements checks that a prepared statement is routed at each
// execution: reads to replicas, writes to the primary, inside a transaction
// to its connection.
func TestPreparedStatements(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t)
	sqlDB := openSQL(t, db)
	reader := openSQL(t, openDB(t))
	fresh := switchyard.WithSession(ctx) // has seen no write: its reads may go to any replica

	read, err := reader.PrepareContext(fresh, "SELECT "+whoCols+" FROM items WHERE id = $1")
	if err != nil {
		t.Fatal(err)
	}
	defer read.Close()
	write, err := sqlDB.PrepareContext(ctx, "UPDATE items SET v = v WHERE id = $1 RETURNING "+whoCols)
	if err != nil {
		t.Fatal(err)
	}
	defer write.Close()
	for i := 1; i <= 5; i++ {
		if s := answeredBy(t, stmtQ{read}, fresh, "", i); !s.inRecovery {
			t.Errorf("prepared read %d ran on the %s", i, s)
		}
		if s := answeredBy(t, stmtQ{write}, ctx, "", i); s.inRecovery {
			t.Errorf("prepared write %d ran on the %s", i, s)
		}
		if s := answeredBy(t, stmtQ{read}, switchyard.Primary(ctx), "", i); s.inRecovery {
			t.Errorf("prepared read %d with Primary(ctx) ran on the %s", i, s)
		}
	}

	tx, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	txPid := answeredBy(t, tx, ctx, "SELECT "+whoCols).pid
	txRead, err := tx.PrepareContext(ctx, "SELECT "+whoCols+" FROM items WHERE id = $1")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range []*sql.Stmt{txRead, tx.StmtContext(ctx, write)} {
		if s := answeredBy(t, stmtQ{st}, ctx, "", 1); s.pid != txPid || s.inRecovery {
			t.Errorf("prepared statement in a transaction ran on the %s, not the transaction's backend %d", s, txPid)
		}
	}
	inTx, err := tx.PrepareContext(ctx, "INSERT INTO items (v) VALUES ($1) RETURNING "+whoCols)
	if err != nil {
		t.Fatal(err)
	}
	if s := answeredBy(t, stmtQ{inTx}, ctx, "", 5); s.pid != txPid {
		t.Errorf("statement prepared in a transaction ran on the %s", s)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}

	// Exec of a prepared statement, and an error that shows at execution.
	ins, err := sqlDB.PrepareContext(ctx, "INSERT INTO items (v) VALUES ($1), ($2)")
	if err != nil {
		t.Fatal(err)
	}
	res, err := ins.ExecContext(ctx, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 2 {
		t.Errorf("RowsAffected %d", n)
	}
	ins.Close()
	bad, err := sqlDB.PrepareContext(ctx, "SELEC 1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bad.ExecContext(ctx); err == nil || !strings.Contains(err.Error(), "syntax error") {
		t.Errorf("bad statement: %v", err)
	}
	bad.Close()
}

// stmtQ lets answeredBy run a *sql.Stmt, whose SQL is its own (the query
// given is ignored).
type stmtQ struct{ *sql.Stmt }

func (s stmtQ) QueryRowContext(ctx context.Context, _ string, args ...any) *sql.Row {
	return s.Stmt.QueryRowContext(ctx, args...)
}

func bigInt(i int64) *big.Int { return big.NewInt(i) }

// money is a driver.Valuer of the test's own.
type money struct{ cents int64 }

func (m money) Value() (driver.Value, error) {
	return fmt.Sprintf("%d.%02d", m.cents/100, m.cents%100), nil
}

// TestArgumentsPassThrough checks that arguments reach pgx unchanged.
func TestArgumentsPassThrough(t *testing.T) {
	ctx := testCtx(t)
	sqlDB := openSQL(t, openDB(t))
	m := pgtype.NewMap()
	var (
		ints    []int32
		num     string
		uuid    string
		text    sql.NullString
		null    sql.NullInt64
		ts      time.Time
		valuer  string
		texts   []string
		numeric pgtype.Numeric
	)
	when := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	err := sqlDB.QueryRowContext(ctx,
		"SELECT $1::int4[], $2::numeric::text, $3::uuid, $4::text, $5::int8, $6::timestamptz, $7::numeric::text, $8::text[], $2::numeric",
		[]int32{1, 2, 3},
		pgtype.Numeric{Int: bigInt(12345), Exp: -2, Valid: true},
		pgtype.UUID{Bytes: [16]byte{0xa0, 0xee, 0xbc, 0x99}, Valid: true},
		sql.NullString{String: "x", Valid: true},
		nil,
		when,
		money{1234},
		[]string{"a", "b"},
	).Scan(m.SQLScanner(&ints), &num, &uuid, &text, &null, &ts, &valuer, m.SQLScanner(&texts), &numeric)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ints) != "[1 2 3]" || num != "123.45" || uuid != "a0eebc99-0000-0000-0000-000000000000" ||
		text.String != "x" || null.Valid || !ts.Equal(when) || valuer != "12.34" || fmt.Sprint(texts) != "[a b]" {
		t.Errorf("got %v %q %q %v %v %v %q %v", ints, num, uuid, text, null, ts, valuer, texts)
	}
	if f, _ := numeric.Float64Value(); f.Float64 != 123.45 {
		t.Errorf("numeric %v", f)
	}
	// sql.Named names are ignored: parameters are positional.
	var s string
	if err := sqlDB.QueryRowContext(ctx, "SELECT $1::text || $2::text", sql.Named("b", "x"), sql.Named("a", "y")).Scan(&s); err != nil || s != "xy" {
		t.Errorf("named arguments: %q, %v", s, err)
	}
}

// typesQuery returns one column of each common type, and NULLs.
const typesQuery = `SELECT 'text'::text AS t, 1::int2 AS i2, 2::int4 AS i4, 3::int8 AS i8,
	1.5::float4 AS f4, 2.5::float8 AS f8, true AS b, '\xdeadbeef'::bytea AS by,
	'2024-01-02 03:04:05.123456+00'::timestamptz AS tz, '2024-01-02 03:04:05'::timestamp AS ts,
	'2024-01-02'::date AS d, 'infinity'::timestamptz AS inf, 123.45::numeric(10,2) AS n, 1e30::numeric AS big,
	'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '{"a": 1}'::json AS j, '{"b": [1, 2]}'::jsonb AS jb,
	'{1,2,3}'::int4[] AS ia, '{a,"b c",NULL}'::text[] AS ta, NULL::int AS ni, NULL::text AS nt, NULL::bytea AS nb,
	'v'::varchar(20) AS vc, 'c'::char(5) AS ch, '1 day 02:03:04'::interval AS iv, '10.0.0.1/32'::inet AS ip,
	42::oid AS o, '<a/>'::xml AS x, '(1,2)'::point AS p, 'abc'::name AS nm, B'101'::varbit(8) AS vb,
	'1'::money AS m, '-0.0'::float8 AS nz`

// plainTypesQuery has only columns whose values come back identical
// without pgx stdlib's result formats (see shapes), so that its later runs
// go without them: numerics (in binary, turned into PostgreSQL's text),
// uuid, text, json.
const plainTypesQuery = `SELECT 0.00::numeric(10,2) AS zero2, '-0.0'::numeric AS negzero, 1.50::numeric AS n150,
	'NaN'::numeric AS nan, 'Infinity'::numeric AS inf, '-Infinity'::numeric AS ninf, 1e30::numeric AS big,
	-1e-30::numeric AS tiny, 0.000001::numeric AS small, 12345678901234567890.123456789::numeric AS long,
	10000.0000::numeric AS tenk, -99999999.99::numeric(10,2) AS neg, 3.14159265358979323846264338327950288::numeric AS pi,
	NULL::numeric AS nnull, 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'::uuid AS u, 'x'::text AS t,
	'{"a": [1, 2.50]}'::jsonb AS jb, 7::int8 AS i8, '2024-01-02 03:04:05.5+00'::timestamptz AS tz`

// TestValuesMatchPgxStdlib checks that values and column types are those
// pgx's own stdlib gives for the same query, on the first run of a SQL text
// and on later ones, on a replica and on the primary.
func TestValuesMatchPgxStdlib(t *testing.T) {
	for _, q := range []string{typesQuery, plainTypesQuery} {
		testValuesMatch(t, q)
	}
}

func testValuesMatch(t *testing.T, query string) {
	ctx := testCtx(t)
	sqlDB := openSQL(t, openDB(t))
	ref, err := sql.Open("pgx", switchyardtest.Need(t, shared).Replicas()[1].DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer ref.Close()

	read := func(db *sql.DB, ctx context.Context) ([]any, []*sql.ColumnType) {
		rows, err := db.QueryContext(ctx, query)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		types, err := rows.ColumnTypes()
		if err != nil {
			t.Fatal(err)
		}
		if !rows.Next() {
			t.Fatal(rows.Err())
		}
		vals := make([]any, len(types))
		ptrs := make([]any, len(types))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		return vals, types
	}
	want, wantTypes := read(ref, ctx)
	for _, c := range []struct {
		name string
		ctx  context.Context
	}{{"first run", ctx}, {"second run", ctx}, {"third run", ctx}, {"primary", switchyard.Primary(ctx)}} {
		got, gotTypes := read(sqlDB, c.ctx)
		for i, ct := range wantTypes {
			if !reflect.DeepEqual(got[i], want[i]) {
				t.Errorf("%s: column %s: got %#v, pgx's stdlib %#v", c.name, ct.Name(), got[i], want[i])
			}
			g := gotTypes[i]
			if g.Name() != ct.Name() || g.DatabaseTypeName() != ct.DatabaseTypeName() || g.ScanType() != ct.ScanType() {
				t.Errorf("%s: column %s: type %s %s %v, pgx's stdlib %s %s %v", c.name, ct.Name(),
					g.Name(), g.DatabaseTypeName(), g.ScanType(), ct.Name(), ct.DatabaseTypeName(), ct.ScanType())
			}
			gl, gok := g.Length()
			wl, wok := ct.Length()
			gp, gs, gdok := g.DecimalSize()
			wp, ws, wdok := ct.DecimalSize()
			_, gnok := g.Nullable()
			_, wnok := ct.Nullable()
			if gl != wl || gok != wok || gp != wp || gs != ws || gdok != wdok || gnok != wnok {
				t.Errorf("%s: column %s: length %d %v, decimal %d,%d %v, nullable known %v; pgx's stdlib %d %v, %d,%d %v, %v",
					c.name, ct.Name(), gl, gok, gp, gs, gdok, gnok, wl, wok, wp, ws, wdok, wnok)
			}
		}
	}
	// Spot checks, in case both were wrong the same way.
	if query == plainTypesQuery {
		if want[0] != "0.00" || want[1] != "0.0" || want[3] != "NaN" || want[14] != "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11" {
			t.Errorf("pgx's stdlib values %#v", want)
		}
		return
	}
	if want[0] != "text" || want[3] != int64(3) || want[4] != float64(1.5) || want[12] != "123.45" ||
		string(want[15].([]byte)) != `{"a": 1}` || want[17] != "{1,2,3}" || want[19] != nil {
		t.Errorf("pgx's stdlib values %#v", want)
	}
}

// TestNilDB checks that a *sql.DB on a nil DB fails clearly and never
// panics.
func TestNilDB(t *testing.T) {
	ctx := testCtx(t)
	sqlDB := stdlib.OpenDB(nil)
	defer sqlDB.Close()
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, switchyard.ErrConfig) || !strings.Contains(err.Error(), "nil *switchyard.DB") {
			t.Errorf("%s: %v, want an error wrapping switchyard.ErrConfig that names the nil DB", what, err)
		}
	}
	check("Ping", sqlDB.PingContext(ctx))
	_, err := sqlDB.ExecContext(ctx, "SELECT 1")
	check("Exec", err)
	_, err = sqlDB.QueryContext(ctx, "SELECT 1")
	check("Query", err)
	check("QueryRow", sqlDB.QueryRowContext(ctx, "SELECT 1").Scan(new(int)))
	_, err = sqlDB.BeginTx(ctx, nil)
	check("BeginTx", err)
	_, err = sqlDB.PrepareContext(ctx, "SELECT 1")
	check("Prepare", err)
	if err := sqlDB.Close(); err != nil {
		t.Error(err)
	}
	if _, err := sql.Open("switchyard", "x"); err == nil {
		t.Error(`sql.Open("switchyard") worked; the driver is not registered`)
	}
	if _, err := stdlib.OpenDB(nil).Driver().Open("postgres://x"); err == nil || !strings.Contains(err.Error(), "OpenDB") {
		t.Errorf("Driver().Open: %v", err)
	}
}

// TestClosedDB checks that statements after the DB closed fail with
// switchyard.ErrClosed.
func TestClosedDB(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t)
	sqlDB := openSQL(t, db)
	if err := sqlDB.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := sqlDB.ExecContext(ctx, "SELECT 1"); !errors.Is(err, switchyard.ErrClosed) {
		t.Errorf("Exec: %v", err)
	}
	if err := sqlDB.QueryRowContext(ctx, "SELECT 1").Scan(new(int)); !errors.Is(err, switchyard.ErrClosed) {
		t.Errorf("QueryRow: %v", err)
	}
	if _, err := sqlDB.BeginTx(ctx, nil); !errors.Is(err, switchyard.ErrClosed) {
		t.Errorf("BeginTx: %v", err)
	}
	if _, err := sqlDB.ExecContext(ctx, "SET work_mem = '1MB'"); !errors.Is(err, switchyard.ErrClosed) {
		t.Errorf("Exec of session state: %v", err)
	}
	if err := sqlDB.PingContext(ctx); !errors.Is(err, switchyard.ErrClosed) {
		t.Errorf("Ping: %v", err)
	}
}

// TestConcurrentUse runs reads, writes, transactions and pinned
// connections from many goroutines at once (for the race detector), and
// checks that every server connection is back afterwards.
func TestConcurrentUse(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t)
	sqlDB := openSQL(t, db)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				var err error
				switch (g + i) % 4 {
				case 0:
					err = sqlDB.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(new(int))
				case 1:
					_, err = sqlDB.ExecContext(ctx, "UPDATE items SET v = v WHERE id = $1", i%10+1)
				case 2:
					var tx *sql.Tx
					if tx, err = sqlDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: i%2 == 0}); err == nil {
						err = tx.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(new(int))
						if i%3 == 0 {
							tx.Rollback()
						} else if cerr := tx.Commit(); err == nil {
							err = cerr
						}
					}
				case 3:
					var c *sql.Conn
					if c, err = sqlDB.Conn(ctx); err == nil {
						if _, err = c.ExecContext(ctx, "SET work_mem = '6MB'"); err == nil {
							err = c.QueryRowContext(ctx, "SELECT 1").Scan(new(int))
						}
						c.Close()
					}
				}
				if err != nil {
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
	if err := sqlDB.Close(); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, db)
}

// TestNoLeaks checks that closing the *sql.DB and then the DB leaves no
// server connection and no goroutine behind.
func TestNoLeaks(t *testing.T) {
	ctx := testCtx(t)
	const app = "switchyard_stdlib_leaks"
	goroutines := runtime.NumGoroutine()
	cfg := switchyard.Config{Primary: withApp(switchyardtest.Need(t, shared).Primary().DSN(), app)}
	for _, r := range switchyardtest.Need(t, shared).Replicas() {
		cfg.Replicas = append(cfg.Replicas, withApp(r.DSN(), app))
	}
	db, err := switchyard.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sqlDB := stdlib.OpenDB(db)
	for i := 0; i < 5; i++ {
		sqlDB.QueryRowContext(ctx, "SELECT 1").Scan(new(int))
		sqlDB.ExecContext(ctx, "UPDATE items SET v = v WHERE id = 1")
	}
	conn, err := sqlDB.Conn(ctx) // pinned, and left idle in the pool
	if err != nil {
		t.Fatal(err)
	}
	conn.ExecContext(ctx, "SET work_mem = '3MB'")
	conn.Close()
	tx, _ := sqlDB.BeginTx(ctx, nil)
	tx.ExecContext(ctx, "SET work_mem = '3MB'")
	tx.Commit()
	if n := countApp(t, ctx, app); n == 0 {
		t.Fatal("no connection of the test's own was seen; the check below would prove nothing")
	}

	if err := sqlDB.Close(); err != nil {
		t.Fatal(err)
	}
	db.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := countApp(t, ctx, app)
		g := runtime.NumGoroutine()
		if n == 0 && g <= goroutines {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing: %d server connections named %s, %d goroutines (were %d)", n, app, g, goroutines)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countApp counts the connections named app on every server of the lab.
func countApp(t *testing.T, ctx context.Context, app string) int {
	total := 0
	for _, n := range switchyardtest.Need(t, shared).Nodes() {
		c, err := n.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var k int
		err = c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&k)
		c.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += k
	}
	return total
}
