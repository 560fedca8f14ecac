package switchyard_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestReplicaKilledUnderLoad kills a replica with SIGKILL while 16
// goroutines read, and checks that no read fails, that reads stop going to
// the dead replica, and that it rejoins when it is back.
func TestReplicaKilledUnderLoad(t *testing.T) {
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	if err := c.Primary().Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 100) g"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	goroutines := runtime.NumGoroutine()
	db := openDB(t, c)
	victim := c.Replicas()[0]
	victimName := fmt.Sprintf("127.0.0.1:%d", victim.Port())
	routedTo := func(name string) uint64 {
		for _, n := range db.Stats().Nodes {
			if n.Name == name {
				return n.Routed
			}
		}
		t.Fatalf("no node %s", name)
		return 0
	}

	var reads, failures atomic.Int64
	var firstErr atomic.Value
	stop := load(16, func(i int) {
		var err error
		if i%2 == 0 {
			var v string
			err = db.QueryRow(ctx, "SELECT v FROM t WHERE id = $1", i%100+1).Scan(&v)
		} else {
			// A failed Query's rows carry its error; CollectRows returns it.
			rows, _ := db.Query(ctx, "SELECT v FROM t WHERE id <= 5 ORDER BY id")
			var vs []string
			vs, err = pgx.CollectRows(rows, pgx.RowTo[string])
			if err == nil && len(vs) != 5 {
				err = fmt.Errorf("%d rows", len(vs))
			}
		}
		reads.Add(1)
		if err != nil {
			failures.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
	})
	time.Sleep(300 * time.Millisecond)
	if routedTo(victimName) == 0 {
		t.Fatal("the victim served no reads before it was killed")
	}
	killed := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	// Wait until reads stop reaching the dead replica.
	var settled time.Duration
	last := routedTo(victimName)
	for stable := 0; stable < 10; {
		time.Sleep(10 * time.Millisecond)
		now := routedTo(victimName)
		if now == last {
			stable++
		} else {
			stable, last = 0, now
			settled = time.Since(killed)
		}
	}
	time.Sleep(300 * time.Millisecond)
	after := routedTo(victimName)
	if after != last {
		t.Errorf("reads still reach the dead replica (%d -> %d)", last, after)
	}
	if err := victim.Start(ctx); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	for routedTo(victimName) == after {
		if time.Since(back) > 30*time.Second {
			t.Fatal("the restarted replica never got reads again")
		}
		time.Sleep(10 * time.Millisecond)
	}
	rejoined := time.Since(back)
	stop()
	t.Logf("%d reads, %d failed; reads stopped reaching the dead replica %v after SIGKILL; it rejoined %v after restart; routes %+v",
		reads.Load(), failures.Load(), settled.Round(time.Millisecond), rejoined.Round(time.Millisecond), db.Stats().Routes)
	if failures.Load() != 0 {
		t.Errorf("%d of %d reads failed; first: %v", failures.Load(), reads.Load(), firstErr.Load())
	}
	closeAndCheckLeaks(t, c, db, goroutines)
}

// TestEveryReplicaDown: reads go to the primary, without errors.
func TestEveryReplicaDown(t *testing.T) {
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	db := openDB(t, c)
	for _, r := range c.Replicas() {
		if err := r.Kill(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 50; i++ {
		var rec bool
		if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		if rec {
			t.Fatal("a read reached a dead replica")
		}
	}
	if s := db.Stats().Routes; s.NoHealthyReplica == 0 {
		t.Errorf("routes %+v: no read counted as 'no healthy replica'", s)
	}
}

// TestCloseLeaksNothing: after Close, no goroutine of the DB and no
// connection of its pools or monitor is left, and the DB says it is closed.
func TestCloseLeaksNothing(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	before := runtime.NumGoroutine()
	db := openDB(t, sharedLab(t))
	for i := 0; i < 20; i++ {
		var n int
		db.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n)
		db.Exec(ctx, "UPDATE items SET v = v WHERE id = 1")
	}
	closeAndCheckLeaks(t, sharedLab(t), db, before)
	db.Close()
	if _, err := db.Exec(ctx, "SELECT 1"); err != switchyard.ErrClosed {
		t.Errorf("Exec after Close: %v", err)
	}
}
