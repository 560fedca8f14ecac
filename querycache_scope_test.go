package switchyard_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

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

// TestQueryCacheZeroColumns: a result without columns is kept without
// touching its connection once that has gone back to the pool, where
// another query is using it (the race detector caught the capture
// describing it there).
func TestQueryCacheZeroColumns(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	db := openDB(t, c, func(cfg *switchyard.Config) {
		cfg.ConfigurePool = func(p *pgxpool.Config) { p.MaxConns = 1 }
	})
	waitCaughtUp(t, c, db)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			var v int64
			if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&v); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 200 {
		qctx := switchyard.WithQueryCache(ctx)
		rows, err := db.Query(qctx, "SELECT FROM counters WHERE id = 0")
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil || n != 1 {
			t.Fatalf("%d rows, %v", n, err)
		}
	}
	close(stop)
	wg.Wait()
	if db.Stats().QueryCache.Misses == 0 {
		t.Error("no read went through the query cache")
	}
}

// TestQueryCacheEmptiedWhenAtomicEnds: the end of an Atomic block that
// wrote empties its context's query cache, as its start does, across
// clusters as on one: a result kept meanwhile (by a read of another
// session sharing the cache) predates the block's commit.
func TestQueryCacheEmptiedWhenAtomicEnds(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	db := openDB(t, c)
	for _, opts := range [][]switchyard.TxOption{nil, {switchyard.AcrossClusters()}} {
		qctx := switchyard.WithQueryCache(ctx)
		err := db.Atomic(qctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(qctx, "UPDATE counters SET v = v + 1 WHERE id = 0"); err != nil {
				return err
			}
			var v int64
			return db.QueryRow(switchyard.WithSession(qctx), "SELECT v FROM counters WHERE id = 0").Scan(&v)
		}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if entries, _ := switchyard.QueryCacheUsage(qctx); entries != 0 {
			t.Errorf("Atomic with %d options: %d entries in the cache after the block committed, want 0", len(opts), entries)
		}
	}
}
