package switchyard_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
)

// TestQueryCacheKeepsTheScopesPromise: a query cache hands out a result
// only where a read of the same scope run now could have returned it.
// Another client's commit must be seen by a read with Config.Latest that
// began after it, and by a MaxStaleness(d) read that began more than d
// after it, cache or not. (A plain session's cached read may miss it: its
// scope promises only the session's own writes.)
func TestQueryCacheKeepsTheScopesPromise(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	w := newExternalWriter(t, c.Primary().DSN())
	const readSQL = "SELECT v FROM counters WHERE id = 0"
	read := func(db *switchyard.DB, ctx context.Context) int64 {
		t.Helper()
		var v int64
		if err := db.QueryRow(ctx, readSQL).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	t.Run("Config.Latest", func(t *testing.T) {
		db := openDB(t, c, func(cfg *switchyard.Config) { cfg.Latest = true })
		qctx := switchyard.WithQueryCache(ctx)
		before := read(db, qctx)
		if again := read(db, qctx); again != before {
			t.Fatalf("two reads with no write between: %d, then %d", before, again)
		}
		v := w.write()
		if got := read(db, qctx); got < v {
			t.Errorf("a read with Config.Latest after another client committed %d returned %d (from the query cache: %d hits)",
				v, got, db.Stats().QueryCache.Hits)
		}
	})

	t.Run("MaxStaleness", func(t *testing.T) {
		db := openDB(t, c)
		waitCaughtUp(t, c, db)
		const bound = 100 * time.Millisecond // several monitor intervals
		qctx := switchyard.MaxStaleness(switchyard.WithQueryCache(switchyard.WithSession(ctx)), bound)
		before := read(db, qctx)
		if again := read(db, qctx); again != before {
			t.Fatalf("two reads with no write between: %d, then %d", before, again)
		}
		if db.Stats().QueryCache.Hits == 0 {
			t.Fatal("the second read was not served from the cache: the test shows nothing")
		}
		v := w.write()
		written := time.Now()
		waitCaughtUp(t, c, db)
		waitFor(t, "the write to be older than the bound", func() bool { return time.Since(written) > 2*bound })
		if got := read(db, qctx); got < v {
			t.Errorf("a MaxStaleness(%v) read begun %v after another client committed %d returned %d (from the query cache)",
				bound, time.Since(written).Round(time.Millisecond), v, got)
		}
	})
}
