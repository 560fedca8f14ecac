package switchyard_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestAtomicRetriesConflicts: serialization failures and deadlocks between
// concurrent blocks are retried until both commit.
func TestAtomicRetriesConflicts(t *testing.T) {
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	db := openDB(t, c)
	if _, err := db.Exec(ctx, "CREATE TABLE acct (id int PRIMARY KEY, n int NOT NULL); INSERT INTO acct VALUES (1, 0), (2, 0)"); err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int64
	var wg sync.WaitGroup
	const blocks = 10
	errs := make(chan error, blocks)
	for i := 0; i < blocks; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			first, second := 1, 2
			if i%2 == 1 {
				first, second = 2, 1 // opposite lock order: deadlocks
			}
			errs <- db.Atomic(ctx, func(tx pgx.Tx) error {
				attempts.Add(1)
				if _, err := tx.Exec(ctx, "UPDATE acct SET n = n + 1 WHERE id = $1", first); err != nil {
					return err
				}
				time.Sleep(2 * time.Millisecond)
				_, err := tx.Exec(ctx, "UPDATE acct SET n = n + 1 WHERE id = $1", second)
				return err
			}, switchyard.Isolation(pgx.Serializable))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Atomic: %v", err)
		}
	}
	var a, b int
	if err := db.QueryRow(ctx, "SELECT (SELECT n FROM acct WHERE id = 1), (SELECT n FROM acct WHERE id = 2)").Scan(&a, &b); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d blocks took %d attempts; AtomicRetries %d", blocks, attempts.Load(), db.Stats().Routes.AtomicRetries)
	if a != blocks || b != blocks {
		t.Errorf("counters %d and %d, want %d: a block ran twice or not at all", a, b, blocks)
	}
	if attempts.Load() == blocks {
		t.Log("no conflict happened this time")
	}

	// A constraint violation is not retried.
	attempts.Store(0)
	err := db.Atomic(ctx, func(tx pgx.Tx) error {
		attempts.Add(1)
		_, err := tx.Exec(ctx, "INSERT INTO acct VALUES (1, 0)")
		return err
	})
	if err == nil || attempts.Load() != 1 {
		t.Errorf("a unique violation: %v after %d attempts, want an error after 1", err, attempts.Load())
	}
	// A retryable error is retried up to MaxAttempts, then returned.
	attempts.Store(0)
	conflict := &pgconn.PgError{Code: "40001", Message: "could not serialize access"}
	if err := db.Atomic(ctx, func(tx pgx.Tx) error { attempts.Add(1); return conflict },
		switchyard.MaxAttempts(3)); !errors.Is(err, conflict) || attempts.Load() != 3 {
		t.Errorf("a serialization failure every time: %v after %d attempts, want it after 3", err, attempts.Load())
	}
	// Nor is an error of fn's own.
	attempts.Store(0)
	mine := errors.New("mine")
	if err := db.Atomic(ctx, func(tx pgx.Tx) error { attempts.Add(1); return mine }); !errors.Is(err, mine) || attempts.Load() != 1 {
		t.Errorf("fn's error: %v after %d attempts", err, attempts.Load())
	}
}

// outcome is what one Atomic call returned, by its operation id.
type outcome struct {
	op  int64
	err error
}

// TestAtomicSurvivesPrimaryCrashes crashes the primary (immediate stop or
// SIGKILL, alternately) at random moments while goroutines save a parent
// and three children in each Atomic block, and restarts it. Afterwards no
// parent lacks a child, every block that returned nil committed exactly
// once, and every block that returned another error left nothing.
func TestAtomicSurvivesPrimaryCrashes(t *testing.T) {
	crashes := 200
	if testing.Short() {
		crashes = 20
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c := switchyardtest.New(t, switchyardtest.Options{})
	goroutines := runtime.NumGoroutine()
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.PrimaryWait = 10 * time.Second })
	if _, err := db.Exec(ctx, `
		CREATE TABLE parent (op bigint PRIMARY KEY);
		CREATE TABLE child (op bigint NOT NULL REFERENCES parent, n int NOT NULL, PRIMARY KEY (op, n))`); err != nil {
		t.Fatal(err)
	}
	var nextOp atomic.Int64
	var mu sync.Mutex
	var outcomes []outcome
	save := func(ctx context.Context) {
		op := nextOp.Add(1)
		err := db.Atomic(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO parent VALUES ($1)", op); err != nil {
				return err
			}
			for n := 0; n < 3; n++ {
				if _, err := tx.Exec(ctx, "INSERT INTO child VALUES ($1, $2)", op, n); err != nil {
					return err
				}
			}
			return nil
		})
		mu.Lock()
		outcomes = append(outcomes, outcome{op, err})
		mu.Unlock()
	}

	// Four workers save blocks without pause while the primary is crashed
	// every 20-120 ms of uptime and restarted.
	stop := load(4, func(int) { save(ctx) })
	start := time.Now()
	for i := 0; i < crashes; i++ {
		time.Sleep(time.Duration(20_000+rand.IntN(100_000)) * time.Microsecond)
		var err error
		if i%2 == 0 {
			err = c.Primary().StopImmediate(ctx)
		} else {
			err = c.Primary().Kill()
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Primary().Start(ctx); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	elapsed := time.Since(start)

	var committed, failed, unknown int
	for _, o := range outcomes {
		var parents, children int
		if err := db.QueryRow(switchyard.Primary(ctx), "SELECT (SELECT count(*) FROM parent WHERE op = $1), (SELECT count(*) FROM child WHERE op = $1)", o.op).Scan(&parents, &children); err != nil {
			t.Fatal(err)
		}
		switch {
		case parents*3 != children:
			t.Errorf("op %d: partial transaction: %d parent, %d children", o.op, parents, children)
		case errors.Is(o.err, switchyard.ErrCommitUnknown):
			unknown++
		case o.err == nil && parents != 1:
			t.Errorf("op %d: Atomic returned nil, but %d parents were saved", o.op, parents)
		case o.err != nil && parents != 0:
			t.Errorf("op %d: Atomic returned %v, but the block was saved", o.op, o.err)
		case o.err == nil:
			committed++
		default:
			failed++
			if failed <= 3 {
				t.Logf("op %d failed (nothing saved): %v", o.op, o.err)
			}
		}
	}
	var orphans int
	if err := db.QueryRow(switchyard.Primary(ctx), "SELECT count(*) FROM parent p WHERE (SELECT count(*) FROM child c WHERE c.op = p.op) <> 3").Scan(&orphans); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 {
		t.Errorf("%d parents without all their children", orphans)
	}
	r := db.Stats().Routes
	t.Logf("%d crashes in %v: %d blocks committed, %d failed cleanly, %d ErrCommitUnknown; %d safe retries; in-doubt commits resolved committed %d, not committed %d, unknown %d",
		crashes, elapsed.Round(time.Second), committed, failed, unknown, r.AtomicRetries, r.InDoubtCommitted, r.InDoubtAborted, r.InDoubtUnknown)
	if committed == 0 {
		t.Error("no block committed")
	}
	closeAndCheckLeaks(t, c, db, goroutines)
}

// TestPrimaryDownReplicasUp: with the primary stopped, reads that replicas
// can serve go on, and writes fail with ErrNoPrimary after PrimaryWait.
func TestPrimaryDownReplicasUp(t *testing.T) {
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.PrimaryWait = 300 * time.Millisecond })
	if _, err := db.Exec(ctx, "CREATE TABLE t (id int)"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Primary().Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		var rec bool
		if err := db.QueryRow(switchyard.WithSession(ctx), "SELECT pg_is_in_recovery() FROM t UNION ALL SELECT true LIMIT 1").Scan(&rec); err != nil || !rec {
			t.Fatalf("read %d with the primary down: %v, %v", i, rec, err)
		}
	}
	begun := time.Now()
	_, err := db.Exec(ctx, "INSERT INTO t VALUES (1)")
	if !errors.Is(err, switchyard.ErrNoPrimary) {
		t.Fatalf("write with the primary down: %v, want ErrNoPrimary", err)
	}
	if waited := time.Since(begun); waited < 300*time.Millisecond {
		t.Errorf("ErrNoPrimary after %v, before PrimaryWait", waited)
	}
	if err := db.Atomic(ctx, func(tx pgx.Tx) error { return nil }); !errors.Is(err, switchyard.ErrNoPrimary) {
		t.Errorf("Atomic with the primary down: %v", err)
	}
	// Back: writes work again without a new DB.
	if err := c.Primary().Start(ctx); err != nil {
		t.Fatal(err)
	}
	db2Ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if _, err := db.Exec(db2Ctx, "INSERT INTO t VALUES (2)"); err == nil {
			break
		} else if db2Ctx.Err() != nil {
			t.Fatalf("writes did not come back: %v", err)
		}
	}
}

// TestFollowsPromotion: under a write load, the primary is stopped and a
// replica promoted; writes resume on it without a restart of the DB.
func TestFollowsPromotion(t *testing.T) {
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	goroutines := runtime.NumGoroutine()
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.PrimaryWait = 10 * time.Second })
	if _, err := db.Exec(ctx, "CREATE TABLE w (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	var writes, errs, unknown atomic.Int64
	var lastErr atomic.Value
	var mu sync.Mutex
	var okTimes []time.Time
	stop := load(4, func(int) {
		err := db.Atomic(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO w DEFAULT VALUES")
			return err
		})
		switch {
		case errors.Is(err, switchyard.ErrCommitUnknown):
			// The old primary went away during this COMMIT and another
			// became primary: the outcome cannot be learned, and
			// switchyard says so rather than guess.
			unknown.Add(1)
		case err != nil:
			errs.Add(1)
			lastErr.Store(err)
		default:
			writes.Add(1)
			mu.Lock()
			okTimes = append(okTimes, time.Now())
			mu.Unlock()
		}
	})
	time.Sleep(300 * time.Millisecond)
	old, next := c.Primary(), c.Replicas()[0]
	stopped := time.Now()
	if err := old.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Promote(ctx, next); err != nil {
		t.Fatal(err)
	}
	promoted := time.Now()
	time.Sleep(time.Second)
	stop()

	mu.Lock()
	var gap time.Duration
	var after int
	for i := 1; i < len(okTimes); i++ {
		gap = max(gap, okTimes[i].Sub(okTimes[i-1]))
		if okTimes[i].After(promoted) {
			after++
		}
	}
	mu.Unlock()
	if after == 0 {
		t.Fatalf("no write succeeded after the failover; %d errors, last: %v", errs.Load(), lastErr.Load())
	}
	var rec bool
	var port int32
	if err := db.QueryRow(switchyard.Primary(ctx), "SELECT pg_is_in_recovery(), inet_server_port()").Scan(&rec, &port); err != nil {
		t.Fatal(err)
	}
	if rec || int(port) != next.Port() {
		t.Errorf("the primary is now port %d (in recovery %v), want the promoted %d", port, rec, next.Port())
	}
	t.Logf("%d writes (%d after the promotion), %d errors (last: %v), %d ErrCommitUnknown; longest time without a successful write %v (stopping the old primary and promoting took %v)",
		writes.Load(), after, errs.Load(), lastErr.Load(), unknown.Load(), gap.Round(time.Millisecond), promoted.Sub(stopped).Round(time.Millisecond))
	if errs.Load() != 0 {
		t.Errorf("callers saw %d errors during the failover", errs.Load())
	}
	closeAndCheckLeaks(t, c, db, goroutines)
}
