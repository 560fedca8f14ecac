package switchyard_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard"
)

// readsUnderFault runs 16 readers through db for a second, then for 5 s
// while fault is on (it is turned on and off by the two functions), then
// for a second more; every read is timed. It reports the reads per second
// in each phase, the slowest read and the errors.
func readsUnderFault(t *testing.T, db *switchyard.DB, on, off func()) {
	t.Helper()
	ctx := testCtx(t)
	var phase atomic.Int32 // 0 before, 1 during, 2 after
	var counts [3]atomic.Int64
	var errs atomic.Int64
	var firstErr atomic.Value
	var mu sync.Mutex
	var lat []time.Duration
	var slowest time.Duration
	var slowestAt time.Time
	begin := time.Now()
	stop := load(16, func(call int) {
		start := time.Now()
		var v int64
		err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = $1", call%16).Scan(&v)
		d := time.Since(start)
		if err != nil {
			errs.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
		counts[phase.Load()].Add(1)
		mu.Lock()
		lat = append(lat, d)
		if d > slowest {
			slowest, slowestAt = d, start
		}
		mu.Unlock()
	})
	time.Sleep(time.Second) // the phases are the fault's script: a second of normal reads,
	phase.Store(1)
	on()
	time.Sleep(5 * time.Second) // five seconds of the fault,
	off()
	phase.Store(2)
	time.Sleep(time.Second) // and a second after it
	stop()
	slices.Sort(lat)
	before, during := float64(counts[0].Load()), float64(counts[1].Load())/5
	// The reads slower than 50 ms are those a hedged read (a second copy
	// sent elsewhere once the first has waited far too long) would have
	// sped up: what it could buy, against what it costs everywhere.
	slow := len(lat) - sort.Search(len(lat), func(i int) bool { return lat[i] > 50*time.Millisecond })
	t.Logf("reads/s: %.0f before, %.0f during the fault, %.0f after; latency p50 %v, p99 %v, max %v (begun %v into the run, the fault from 1s to 6s); %d of %d reads over 50 ms; %d errors; retried %d",
		before, during, float64(counts[2].Load()), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1], slowestAt.Sub(begin).Round(time.Millisecond), slow, len(lat), errs.Load(), db.Stats().Routes.Retried)
	if n := errs.Load(); n != 0 {
		t.Errorf("%d reads failed; first: %v", n, firstErr.Load())
	}
	if max := lat[len(lat)-1]; max > time.Second {
		t.Errorf("the slowest read took %v, want under 1s", max)
	}
	if during < before/2 {
		t.Errorf("%.0f reads/s during the fault, %.0f before: want at least half", during, before)
	}
}

// TestFrozenReplica: every process of a replica stopped (SIGSTOP) for 5 s,
// as a frozen VM, a stalled disk or a partition looks (the TCP peer is
// there, nothing answers): the reads waiting on it are interrupted and run
// elsewhere once the monitor finds it silent, and the rest go to the other
// replica.
func TestFrozenReplica(t *testing.T) {
	c := laggingLab(t, 16, 0, 0)
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	r := c.Replicas()[0]
	readsUnderFault(t, db, func() {
		if err := r.Freeze(); err != nil {
			t.Fatal(err)
		}
	}, func() {
		if err := r.Thaw(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestBlackholedReplica: the same with the replica behind a relay that
// stops passing data both ways.
func TestBlackholedReplica(t *testing.T) {
	c := laggingLab(t, 16, 0, 0)
	relay := c.Replicas()[0].NewRelay(t)
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.Replicas[0] = relay.DSN() })
	waitCaughtUp(t, c, db)
	readsUnderFault(t, db, relay.Blackhole, relay.Heal)
}

// TestSlowReplica: a replica whose every reply comes 200 ms late is slow,
// not hung: it is (back) in rotation, and gets at most a tenth of the
// reads.
func TestSlowReplica(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 16, 0, 0)
	relay := c.Replicas()[0].NewRelay(t)
	relay.SetLatency(200 * time.Millisecond)
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.Replicas[0] = relay.DSN() })
	waitFor(t, "the slow replica in rotation", func() bool { return db.Stats().Nodes[1].Healthy })
	slowName := db.Stats().Nodes[1].Name
	before := db.Stats().Nodes[1].Routed
	var reads atomic.Int64
	stop := load(16, func(call int) {
		var v int64
		if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = $1", call%16).Scan(&v); err != nil {
			t.Error(err)
		}
		reads.Add(1)
	})
	time.Sleep(3 * time.Second) // three seconds of reads
	stop()
	s := db.Stats()
	slow := s.Nodes[1].Routed - before
	t.Logf("%d reads, %d to the replica 200 ms away (%s); nodes %+v", reads.Load(), slow, slowName, s.Nodes)
	if float64(slow) > 0.1*float64(reads.Load()) {
		t.Errorf("the slow replica got %d of %d reads, want at most 10%%", slow, reads.Load())
	}
}

// TestFrozenPrimary: the primary frozen for 5 s under 4 writers running
// Atomic blocks and 8 readers in sessions of their own. No block is
// partial, every block's outcome is what Atomic said, reads go on
// meanwhile (on the replicas), and writes resume within a second of the
// thaw.
func TestFrozenPrimary(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 16, 0, 0)
	if err := c.Primary().Exec(ctx, `CREATE TABLE parents (id serial PRIMARY KEY, marker text UNIQUE NOT NULL);
		CREATE TABLE children (parent int NOT NULL REFERENCES parents, n int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	var mu sync.Mutex
	outcomes := map[string]error{}
	var frozen atomic.Bool
	var thawedAt atomic.Int64
	var firstWriteAfter atomic.Int64
	var readsDuring, readErrs atomic.Int64
	stopWriters := load(4, func(call int) {
		marker := fmt.Sprintf("%d-%d", call, time.Now().UnixNano())
		err := db.Atomic(ctx, func(tx pgx.Tx) error {
			var id int
			if err := tx.QueryRow(ctx, "INSERT INTO parents (marker) VALUES ($1) RETURNING id", marker).Scan(&id); err != nil {
				return err
			}
			for n := 0; n < 3; n++ {
				if _, err := tx.Exec(ctx, "INSERT INTO children VALUES ($1, $2)", id, n); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil && thawedAt.Load() != 0 {
			firstWriteAfter.CompareAndSwap(0, time.Now().UnixNano())
		}
		mu.Lock()
		outcomes[marker] = err
		mu.Unlock()
	})
	stopReaders := load(8, func(call int) {
		sctx := switchyard.WithSession(ctx)
		var v int64
		if err := db.QueryRow(sctx, "SELECT v FROM counters WHERE id = $1", call%16).Scan(&v); err != nil {
			readErrs.Add(1)
			return
		}
		if frozen.Load() {
			readsDuring.Add(1)
		}
	})
	time.Sleep(time.Second) // a second of normal work,
	if err := c.Primary().Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen.Store(true)
	time.Sleep(5 * time.Second) // five seconds frozen,
	frozen.Store(false)
	if err := c.Primary().Thaw(); err != nil {
		t.Fatal(err)
	}
	thawedAt.Store(time.Now().UnixNano())
	waitFor(t, "a write after the thaw", func() bool { return firstWriteAfter.Load() != 0 })
	time.Sleep(500 * time.Millisecond) // and half a second more
	stopWriters()
	stopReaders()

	committed := map[string]int{}
	rows, err := db.Query(switchyard.Primary(ctx), "SELECT p.marker, count(c.n) FROM parents p LEFT JOIN children c ON c.parent = p.id GROUP BY p.marker")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m string
		var n int
		if err := rows.Scan(&m, &n); err != nil {
			t.Fatal(err)
		}
		committed[m] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var ok, failed, unknown, partial, wrong int
	kinds := map[string]int{}
	for m, err := range outcomes {
		n, in := committed[m]
		if in && n != 3 {
			partial++
		}
		switch {
		case err == nil:
			ok++
			if !in {
				wrong++
				t.Errorf("block %s: Atomic returned nil, but nothing of it is committed", m)
			}
		case errors.Is(err, switchyard.ErrCommitUnknown):
			unknown++
		default:
			failed++
			kinds[errorKind(err)]++
			if in {
				wrong++
				t.Errorf("block %s: Atomic returned %v, but it is committed", m, err)
			}
		}
	}
	resume := time.Duration(firstWriteAfter.Load() - thawedAt.Load())
	t.Logf("%d blocks: %d committed, %d failed %v, %d unknown; %d partial, %d wrong; %d session reads during the freeze (%d errors); first write %v after the thaw",
		len(outcomes), ok, failed, kinds, unknown, partial, wrong, readsDuring.Load(), readErrs.Load(), resume)
	if partial != 0 {
		t.Errorf("%d partial blocks", partial)
	}
	if readsDuring.Load() == 0 {
		t.Error("no session read succeeded while the primary was frozen")
	}
	if resume > time.Second {
		t.Errorf("writes resumed %v after the thaw, want within 1s", resume)
	}
}

// errorKind names an error by its SQLSTATE or its switchyard sentinel.
func errorKind(err error) string {
	for _, e := range []error{switchyard.ErrNoPrimary, switchyard.ErrCommitUnknown, switchyard.ErrClosed} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return fmt.Sprintf("%T", err)
}
