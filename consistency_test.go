package switchyard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// laggingLab starts a primary with replicas delayed by delays and a table of
// counters, one row per id in [0, rows).
func laggingLab(t *testing.T, rows int, delays ...time.Duration) *switchyardtest.Cluster {
	t.Helper()
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: len(delays), ApplyDelay: delays})
	if err := c.Primary().Exec(ctx, fmt.Sprintf(`CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);
		INSERT INTO counters SELECT g, 0 FROM generate_series(0, %d) g`, rows-1)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// tortureResult is what a torture run saw.
type tortureResult struct {
	reads, writes, onReplica, stale atomic.Int64
	firstStale                      atomic.Value
}

// torture runs sessions against db until they have done reads reads in all:
// half of the sessions write their own counter (a third of their
// operations) and read every counter; the other half only read. Every
// operation is followed by up to 2 ms of think time. Every read checks that
// it sees at least what its session wrote (read-your-writes) and, for every
// counter, at least what its session read before (monotonic reads).
func torture(t *testing.T, db *switchyard.DB, sessions, counters int, reads int64, during func()) *tortureResult {
	ctx := testCtx(t)
	res := &tortureResult{}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < sessions; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx := switchyard.WithSession(ctx)
			writer := i%2 == 0
			id := i % counters
			seen := make([]int64, counters)
			var wrote int64
			var history []string
			for res.reads.Load() < reads {
				select {
				case <-stop:
					return
				default:
				}
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				if writer && rand.IntN(3) == 0 {
					if err := db.QueryRow(sctx, "UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v", id).Scan(&wrote); err != nil {
						t.Errorf("write: %v", err)
						return
					}
					res.writes.Add(1)
					continue
				}
				rows, err := db.Query(sctx, "SELECT id, v, pg_is_in_recovery(), inet_server_port(), pg_last_wal_replay_lsn()::text FROM counters ORDER BY id")
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				var cid int
				var v int64
				var onReplica bool
				var port int32
				var replay *string
				stale := ""
				var snap []int64
				_, err = pgx.ForEachRow(rows, []any{&cid, &v, &onReplica, &port, &replay}, func() error {
					snap = append(snap, v)
					if v < seen[cid] && stale == "" {
						stale = fmt.Sprintf("counter %d: read %d after reading %d", cid, v, seen[cid])
					}
					if writer && cid == id && v < wrote && stale == "" {
						stale = fmt.Sprintf("counter %d: read %d after writing %d", cid, v, wrote)
					}
					seen[cid] = max(seen[cid], v)
					return nil
				})
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				rp := "-"
				if replay != nil {
					rp = *replay
				}
				history = append(history, fmt.Sprintf("port %d replay %s %v", port, rp, snap))
				if len(history) > 6 {
					history = history[1:]
				}
				if stale != "" {
					stale += "\n" + strings.Join(history, "\n")
				}
				res.reads.Add(1)
				if onReplica {
					res.onReplica.Add(1)
				}
				if stale != "" {
					res.stale.Add(1)
					res.firstStale.CompareAndSwap(nil, stale)
				}
			}
		}()
	}
	if during != nil {
		during()
	}
	wg.Wait()
	close(stop)
	return res
}

func (r *tortureResult) check(t *testing.T, db *switchyard.DB) {
	t.Helper()
	reads, writes := r.reads.Load(), r.writes.Load()
	share := float64(r.onReplica.Load()) / float64(reads)
	t.Logf("%d reads, %d writes (%.0f%% of operations), %d stale reads, %.0f%% of reads served by replicas; routes %+v",
		reads, writes, 100*float64(writes)/float64(reads+writes), r.stale.Load(), 100*share, db.Stats().Routes)
	if n := r.stale.Load(); n != 0 {
		t.Errorf("%d stale reads; first: %v", n, r.firstStale.Load())
	}
	if float64(writes) < 0.1*float64(reads+writes) {
		t.Errorf("writes are %d of %d operations, want at least 10%%", writes, reads+writes)
	}
	if share < 0.2 {
		t.Errorf("only %.0f%% of reads reached a replica", 100*share)
	}
}

// TestTorture: 16 sessions, replicas 20 ms and 50 ms behind, at least
// 100,000 reads, every one checked: no stale read, most on replicas.
func TestTorture(t *testing.T) {
	reads := int64(100_000)
	if testing.Short() {
		reads = 10_000
	}
	c := laggingLab(t, 16, 20*time.Millisecond, 50*time.Millisecond)
	db := openDB(t, c)
	torture(t, db, 16, 16, reads, nil).check(t, db)
}

// TestTorturePausedReplay pauses one replica's replay in the middle of the
// run and resumes it.
func TestTorturePausedReplay(t *testing.T) {
	reads := int64(30_000)
	if testing.Short() {
		reads = 5_000
	}
	ctx := testCtx(t)
	c := laggingLab(t, 16, 0, 20*time.Millisecond)
	db := openDB(t, c)
	var paused atomic.Bool
	res := torture(t, db, 16, 16, reads, func() {
		time.Sleep(300 * time.Millisecond)
		if err := c.Replicas()[0].PauseReplay(ctx); err != nil {
			t.Error(err)
			return
		}
		paused.Store(true)
		time.Sleep(time.Second)
		if err := c.Replicas()[0].ResumeReplay(ctx); err != nil {
			t.Error(err)
		}
	})
	if !paused.Load() {
		t.Fatal("replay was never paused")
	}
	res.check(t, db)
}

// TestDefaultSessionIsTheDB: without a session, a write made through the DB
// by one goroutine is seen by a read of another that learned of it over a
// channel.
func TestDefaultSessionIsTheDB(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 30*time.Millisecond, 50*time.Millisecond)
	db := openDB(t, c)
	values := make(chan int64)
	done := make(chan struct{}) // the reader gave up: the writer must not block on values
	go func() {
		defer close(values)
		for i := 0; i < 1000; i++ {
			var v int64
			if err := db.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v); err != nil {
				t.Error(err)
				return
			}
			select {
			case values <- v:
			case <-done:
				return
			}
		}
	}()
	defer close(done)
	var stale, reads int
	for v := range values {
		var got int64
		if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
			t.Error(err)
			return
		}
		reads++
		if got < v {
			stale++
		}
	}
	t.Logf("%d reads, %d stale; routes %+v", reads, stale, db.Stats().Routes)
	if stale != 0 || reads != 1000 {
		t.Errorf("%d of %d reads were stale", stale, reads)
	}
}

// TestTokenAcrossDBs: a session's token, handed from one DB (app server) to
// another, makes the second see the first's writes.
func TestTokenAcrossDBs(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 50*time.Millisecond)
	db1, db2 := openDB(t, c), openDB(t, c)
	stale := 0
	for i := 0; i < 200; i++ {
		s1 := switchyard.WithSession(ctx)
		var v int64
		if err := db1.QueryRow(s1, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v); err != nil {
			t.Fatal(err)
		}
		tok, err := db1.Token(s1)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) > 32 {
			t.Fatalf("token %q is %d characters", tok, len(tok))
		}
		s2, err := switchyard.WithToken(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		if err := db2.QueryRow(s2, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got < v {
			stale++
		}
	}
	if stale != 0 {
		t.Errorf("%d of 200 reads through a token were stale", stale)
	}
	// After the replica caught up, a token's session reads from it.
	tok, err := db1.Token(switchyard.WithSession(ctx))
	if err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, c, db2)
	s, _ := switchyard.WithToken(ctx, tok)
	var rec bool
	if err := db2.QueryRow(s, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || !rec {
		t.Errorf("a caught-up token's read: in recovery %v, %v", rec, err)
	}
}

// TestTokenCostsOneQueryOnlyAfterAWrite, and write tracking costs no round
// trip: a write followed by a read reaches the primary in two round trips,
// as on a bare pool.
func TestRoundTrips(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	var primaryTrips atomic.Int64
	primaryPort := uint16(c.Primary().Port())
	db := openDB(t, c, func(cfg *switchyard.Config) {
		cfg.ConfigurePool = func(pc *pgxpool.Config) {
			if pc.ConnConfig.Port == primaryPort {
				pc.ConnConfig.Tracer = &tripCounter{&primaryTrips}
			}
		}
	})
	sequence := func(sctx context.Context) (int64, int64) {
		before := primaryTrips.Load()
		if _, err := db.Exec(sctx, "UPDATE counters SET v = v + 1 WHERE id = 0"); err != nil {
			t.Fatal(err)
		}
		var v int64
		if err := db.QueryRow(sctx, "SELECT v FROM counters WHERE id = 0").Scan(&v); err != nil {
			t.Fatal(err)
		}
		mid := primaryTrips.Load()
		if _, err := db.Token(sctx); err != nil {
			t.Fatal(err)
		}
		return mid - before, primaryTrips.Load() - mid
	}
	sequence(switchyard.WithSession(ctx)) // warm the statement caches
	writeRead, token := sequence(switchyard.WithSession(ctx))
	if writeRead != 2 {
		t.Errorf("a write and a read took %d round trips to the primary, want 2 (as on a bare pool)", writeRead)
	}
	if token != 0 {
		t.Errorf("Token after the read took %d round trips, want 0", token)
	}
	// A token asked for right after a write costs one query.
	s := switchyard.WithSession(ctx)
	if _, err := db.Exec(s, "UPDATE counters SET v = v + 1 WHERE id = 0"); err != nil {
		t.Fatal(err)
	}
	// (The engine asks on the pooled connection itself, below pgx's
	// tracer: count the statements the primary was sent.)
	before := primaryRouted(db)
	if _, err := db.Token(s); err != nil {
		t.Fatal(err)
	}
	if n := primaryRouted(db) - before; n != 1 {
		t.Errorf("Token right after a write took %d round trips, want 1", n)
	}
	// A session that carries a token (as httpsession's do) gets its next
	// token after a replica read without a query either.
	tok, err := db.Token(switchyard.WithSession(ctx))
	if err != nil {
		t.Fatal(err)
	}
	tctx, err := switchyard.WithToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, c, db)
	var rec bool
	if err := db.QueryRow(tctx, "SELECT pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&rec); err != nil || !rec {
		t.Fatalf("the token's read: on a replica %v, %v", rec, err)
	}
	before = primaryRouted(db)
	if _, err := db.Token(tctx); err != nil {
		t.Fatal(err)
	}
	if n := primaryRouted(db) - before; n != 0 {
		t.Errorf("Token after a replica read took %d round trips to the primary, want 0", n)
	}
}

// tripCounter counts round trips: each query and each batch is one.
type tripCounter struct{ n *atomic.Int64 }

func (c *tripCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *tripCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *tripCounter) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *tripCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestMaxStaleness: a replica 500 ms behind serves reads that accept a
// second of staleness, and not those that accept 50 ms.
func TestMaxStaleness(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 500*time.Millisecond)
	db := openDB(t, c)
	// Keep the primary writing, so that the replica is really behind: once
	// it has replayed a commit made under this load, it is behind by the
	// delay for as long as the load lasts.
	var loadStart time.Time
	queryNode(t, c.Primary(), "SELECT now()", &loadStart)
	defer load(1, func(int) {
		time.Sleep(5 * time.Millisecond)
		c.Primary().Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0")
	})()
	waitFor(t, "the replica to replay a commit of the load", func() bool {
		var replayed bool
		queryNodeArgs(t, c.Replicas()[0], "SELECT coalesce(pg_last_xact_replay_timestamp() > $1, false)", []any{loadStart}, &replayed)
		return replayed
	})
	waitFor(t, "the monitor to poll it since", func() bool { return db.Stats().Nodes[1].Healthy })
	onReplica := func(d time.Duration) bool {
		var rec bool
		if err := db.QueryRow(switchyard.MaxStaleness(ctx, d), "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	if !onReplica(2 * time.Second) {
		t.Error("a read accepting 2s of staleness went to the primary")
	}
	if onReplica(50 * time.Millisecond) {
		t.Error("a read accepting 50ms of staleness went to a replica 500ms behind")
	}
}

// TestReplicaWait: with Config.ReplicaWait, a read right after a write waits
// for the replica instead of going to the primary.
func TestReplicaWait(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 100*time.Millisecond)
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.ReplicaWait = 5 * time.Second })
	s := switchyard.WithSession(ctx)
	var v int64
	if err := db.QueryRow(s, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v); err != nil {
		t.Fatal(err)
	}
	// The first read takes the write's position (on the primary); the next
	// waits for the replica to replay it.
	var got int64
	var rec bool
	db.QueryRow(s, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&got, &rec)
	if err := db.QueryRow(s, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&got, &rec); err != nil {
		t.Fatal(err)
	}
	if got < v || !rec {
		t.Errorf("read %d (wrote %d), on a replica: %v; routes %+v", got, v, rec, db.Stats().Routes)
	}
}

// TestReplicaWaitHurries: a read waiting for a replica that replays at once
// is served by it as soon as it has replayed, not at the monitor's next
// regular poll (2 s away here, longer than the read may wait): the
// monitor polls the replicas every millisecond while reads wait.
func TestReplicaWaitHurries(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	db := openDB(t, c, func(cfg *switchyard.Config) {
		cfg.MonitorInterval, cfg.ReplicaWait = 2*time.Second, time.Second
	})
	waitCaughtUp(t, c, db)
	const rounds = 20
	var waits []time.Duration
	for i := range rounds {
		s := switchyard.WithSession(ctx)
		var v, got int64
		var rec bool
		if err := db.QueryRow(s, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v); err != nil {
			t.Fatal(err)
		}
		// The first read takes the write's position on the primary; the
		// next waits for the replica.
		if err := db.QueryRow(s, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := db.QueryRow(s, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&got, &rec); err != nil {
			t.Fatal(err)
		}
		waits = append(waits, time.Since(start))
		if got < v || !rec {
			t.Fatalf("round %d: read %d (wrote %d), on a replica: %v; routes %+v", i, got, v, rec, db.Stats().Routes)
		}
	}
	slices.Sort(waits)
	t.Logf("%d reads waited for the replica: median %v, slowest %v; routes %+v", rounds, waits[rounds/2], waits[rounds-1], db.Stats().Routes)
	// A read may find the replica polled since it replayed (a poll hurried
	// by the read before): most wait.
	if w := db.Stats().Routes.Waited; w < rounds/2 {
		t.Errorf("%d of %d reads waited for the replica", w, rounds)
	}
}

// TestRetriedReadAdvancesSession: a read re-run on the primary (here a
// function that writes, which failed on the replica with 25006) carries the
// session's position along like any primary read, so the session's next
// read sees what it did, even with the replica 300 ms behind.
func TestRetriedReadAdvancesSession(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 300*time.Millisecond)
	if err := c.Primary().Exec(ctx, `CREATE FUNCTION bump() RETURNS bigint
		LANGUAGE sql AS 'UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v'`); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	for i := 0; i < 5; i++ {
		s := switchyard.WithSession(ctx)
		var bumped, seen int64
		if err := db.QueryRow(s, "SELECT bump()").Scan(&bumped); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(s, "SELECT v FROM counters WHERE id = 0").Scan(&seen); err != nil {
			t.Fatal(err)
		}
		if seen < bumped {
			t.Fatalf("round %d: read %d after the session's function wrote %d", i, seen, bumped)
		}
	}
	if r := db.Stats().Routes; r.Retried == 0 {
		t.Errorf("routes %+v: the function never went to the replica first", r)
	}
}
