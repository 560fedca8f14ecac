package switchyard_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// TestSettleSQL runs the settle wait on a real primary: it returns at once
// with nothing running, waits out its short bound (not the long one) for a
// transaction that stays open, and stays within half of a small
// statement_timeout.
func TestSettleSQL(t *testing.T) {
	ctx := testCtx(t)
	c := sharedLab(t)
	connect := func() *pgx.Conn {
		conn, err := pgx.Connect(ctx, c.Primary().DSN())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	settle, long := connect(), connect()
	timed := func() time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := settle.Exec(ctx, engine.SettleSQL); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	if d := timed(); d > 15*time.Millisecond {
		t.Errorf("with nothing running the settle took %v", d)
	}
	tx, err := long.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "SELECT pg_current_xact_id()"); err != nil {
		t.Fatal(err)
	}
	if d := timed(); d < 20*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("with a transaction left open the settle took %v, want its 20 ms bound (not the 1 s one)", d)
	}
	if _, err := settle.Exec(ctx, "SET statement_timeout = '10ms'"); err != nil {
		t.Fatal(err)
	}
	if d := timed(); d > 9*time.Millisecond+5*time.Millisecond {
		t.Errorf("under statement_timeout = 10ms the settle took %v", d)
	}
}
