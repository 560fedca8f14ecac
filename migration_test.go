package switchyard_test

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard"
)

// TestMigrationUnderReads: a table's columns change (a column added, then
// one's type changed) while 16 goroutines read it with SELECT * through
// replicas and the primary, in pgx's default mode, which prepares each
// statement on every pooled connection. PostgreSQL then fails the old
// prepared statement once per connection ("cached plan must not change
// result type"); switchyard runs it again, prepared afresh, and the
// callers see no error.
func TestMigrationUnderReads(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0, 20*time.Millisecond)
	if err := c.Primary().Exec(ctx, "CREATE TABLE migrated (id int PRIMARY KEY, v int NOT NULL); INSERT INTO migrated SELECT g, g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, c)
	var reads, fails, stale atomic.Int64
	var firstErr atomic.Value
	stop := load(16, func(call int) {
		rctx := ctx
		if call%4 == 0 {
			rctx = switchyard.Primary(ctx)
		}
		rows, err := db.Query(rctx, "SELECT * FROM migrated WHERE id = $1", call%100+1)
		if err == nil {
			for rows.Next() {
				if _, err = rows.Values(); err != nil {
					break
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
			if errors.As(err, &pgErr) && pgErr.Code == "0A000" {
				stale.Add(1)
			}
			firstErr.CompareAndSwap(nil, err)
		}
	})
	waitFor(t, "reads under way", func() bool { return reads.Load() > 500 })
	if _, err := db.Exec(ctx, "ALTER TABLE migrated ADD COLUMN note text NOT NULL DEFAULT 'x'"); err != nil {
		t.Fatal(err)
	}
	at := reads.Load()
	waitFor(t, "reads after the first change", func() bool { return reads.Load() > at+2000 })
	if _, err := db.Exec(ctx, "ALTER TABLE migrated ALTER COLUMN v TYPE bigint"); err != nil {
		t.Fatal(err)
	}
	at = reads.Load()
	waitFor(t, "reads after the second change", func() bool { return reads.Load() > at+2000 })
	stop()
	t.Logf("%d reads across two schema changes: %d errors (%d stale plans); routes %+v", reads.Load(), fails.Load(), stale.Load(), db.Stats().Routes)
	if n := fails.Load(); n != 0 {
		t.Errorf("%d reads failed; first: %v", n, firstErr.Load())
	}
}
