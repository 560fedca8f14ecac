package switchyard_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// The consistency scopes, measured on one workload (docs/consistency.md).
//
// A lab with two replicas, one replaying as fast as it can and one 20 ms
// late. Another client (not switchyard: a connection of its own) commits
// an increment of counter 0 every 5 ms, as another service would. Four
// workers each own a counter; an operation is a write of their counter
// (15%) or a read of their counter and counter 0 in one statement, with
// 1-5 ms of think time between operations. Each scope runs alone for
// 250 ms blocks, the scopes taking turns, so that a scope's counts are its
// own and machine noise falls on all of them alike.
//
// Every read is checked against what its scope promises:
//   - session: its session's own writes (read-your-writes) and nothing
//     older than the session read before (monotonic reads); a session is
//     one "request" of 5 operations;
//   - token: the same across requests, each request starting from the
//     token the one before ended with (DB.Token);
//   - DB: every write made through the process before the read began;
//   - Latest: that, and every commit of the other client before it began;
//   - MaxStaleness(100ms): every commit made more than 100 ms before it
//     began;
//   - Primary: everything.

// scopeArm is one scope in the comparison.
type scopeArm struct {
	name string
	db   *switchyard.DB
	// ctx returns the context for a worker's operation number op, from
	// base and the worker's state for this arm.
	ctx func(base context.Context, w *armState, op int) context.Context
	// after ends a request (token: asks for the token).
	after func(base context.Context, w *armState, op int) error
	// what a read must see
	ownFloor    func(w *armState, worker *scopeWorker) int64
	extFloor    func(w *armState, started int64) int64
	maxStale    time.Duration
	requestSize int

	mu                                sync.Mutex
	reads, writes, stale, onReplica   int
	times                             []time.Duration
	trips, primaryTrips, latestTrips  uint64
	checkFailed                       uint64
	tokens                            int
	firstStale                        string
	maxSeenStaleness, sumSeenStalness time.Duration
}

// armState is a worker's state in one arm.
type armState struct {
	ctx        context.Context
	token      string
	wroteInReq int64 // the worker's counter after its last write in this session (or token chain)
	lastExt    int64 // the newest value of counter 0 this session saw
}

type scopeWorker struct {
	id        int
	lastWrote int64 // its counter after its last write, through any arm
	arms      []armState
	rng       *rand.Rand
}

// extLog is the other client's commits: the time each value's COMMIT
// returned.
type extLog struct {
	mu    sync.Mutex
	at    []time.Time // at[v] for v >= 1
	value atomic.Int64
}

func (e *extLog) committed(v int64, at time.Time) {
	e.mu.Lock()
	for int64(len(e.at)) <= v {
		e.at = append(e.at, time.Time{})
	}
	e.at[v] = at
	e.mu.Unlock()
	e.value.Store(v)
}

// staleness is how old a read that began at start and saw value got of
// counter 0 was: how long before start the first value it did not see
// had been committed (0 if it saw every value committed by then).
func (e *extLog) staleness(got int64, start time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := got + 1
	if next >= int64(len(e.at)) || e.at[next].IsZero() || !e.at[next].Before(start) {
		return 0
	}
	return start.Sub(e.at[next])
}

func TestScopes(t *testing.T) {
	if testing.Short() {
		t.Skip("a 30-second measurement")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	const workers = 4
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2, ApplyDelay: []time.Duration{0, 20 * time.Millisecond}})
	if err := c.Primary().Exec(ctx, fmt.Sprintf(`CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);
		INSERT INTO counters SELECT g, 0 FROM generate_series(0, %d) g;
		CREATE TABLE big (id int PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL);
		INSERT INTO big SELECT g, g, repeat('x', 100) FROM generate_series(1, 1000) g`, workers)); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, c)
	waiting := openDB(t, c, func(cfg *switchyard.Config) { cfg.ReplicaWait = 50 * time.Millisecond })
	waitCaughtUp(t, c, db)
	waitCaughtUp(t, c, waiting)

	// The other client.
	ext := &extLog{}
	extConn, err := pgx.Connect(ctx, c.Primary().DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer extConn.Close(context.Background())
	var extErr atomic.Value
	stopExt := load(1, func(int) {
		var v int64
		if err := extConn.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v); err != nil {
			extErr.CompareAndSwap(nil, err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		ext.committed(v, time.Now())
		time.Sleep(5 * time.Millisecond)
	})
	defer stopExt()

	const maxStale = 100 * time.Millisecond
	none := func(*armState, int64) int64 { return 0 }
	session := func(a *armState, _ *scopeWorker) int64 { return a.wroteInReq }
	process := func(_ *armState, w *scopeWorker) int64 { return w.lastWrote }
	monotonic := func(a *armState, _ int64) int64 { return a.lastExt }
	everything := func(a *armState, started int64) int64 { return max(a.lastExt, started) }
	plain := func(base context.Context, _ *armState, _ int) context.Context { return base }
	arms := []*scopeArm{
		{name: "session (WithSession)", db: db, requestSize: 5, ownFloor: session, extFloor: monotonic,
			ctx: func(base context.Context, a *armState, op int) context.Context {
				if op%5 == 0 || a.ctx == nil {
					a.ctx, a.wroteInReq, a.lastExt = switchyard.WithSession(base), 0, 0
				}
				return a.ctx
			}},
		{name: "token (WithToken, Token)", db: db, requestSize: 5, ownFloor: session, extFloor: monotonic,
			ctx: func(base context.Context, a *armState, op int) context.Context {
				if op%5 == 0 || a.ctx == nil {
					if a.token == "" {
						a.ctx = switchyard.WithSession(base)
					} else {
						var err error
						if a.ctx, err = switchyard.WithToken(base, a.token); err != nil {
							panic(err)
						}
					}
				}
				return a.ctx
			},
			after: func(_ context.Context, a *armState, op int) (err error) {
				if op%5 == 4 {
					a.token, err = db.Token(a.ctx)
				}
				return err
			}},
		{name: "DB (no session)", db: db, ownFloor: process, extFloor: none, ctx: plain},
		{name: "Latest", db: db, ownFloor: process, extFloor: everything,
			ctx: func(base context.Context, _ *armState, _ int) context.Context { return switchyard.Latest(base) }},
		{name: "Latest, ReplicaWait 50ms", db: waiting, ownFloor: process, extFloor: everything,
			ctx: func(base context.Context, _ *armState, _ int) context.Context { return switchyard.Latest(base) }},
		{name: fmt.Sprintf("MaxStaleness(%v)", maxStale), db: db, maxStale: maxStale, extFloor: none,
			ctx: func(base context.Context, _ *armState, _ int) context.Context {
				return switchyard.MaxStaleness(base, maxStale)
			}},
		{name: "Primary", db: db, ownFloor: process, extFloor: everything,
			ctx: func(base context.Context, _ *armState, _ int) context.Context { return switchyard.Primary(base) }},
	}

	ws := make([]*scopeWorker, workers)
	for i := range ws {
		ws[i] = &scopeWorker{id: i + 1, arms: make([]armState, len(arms)), rng: rand.New(rand.NewPCG(uint64(i), 7))}
	}
	ops := make([]int, workers)
	const block, cycles = 250 * time.Millisecond, 12
	errs := make(chan error, workers)
	for cycle := 0; cycle < cycles; cycle++ {
		for k := range arms {
			ai := (k + cycle) % len(arms)
			arm := arms[ai]
			before := snapshotTrips(arm.db)
			deadline := time.Now().Add(block)
			var wg sync.WaitGroup
			for wi, w := range ws {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for time.Now().Before(deadline) {
						if err := scopeOp(ctx, arm, ai, w, ops[wi], ext); err != nil {
							errs <- err
							return
						}
						ops[wi]++
						time.Sleep(time.Millisecond + time.Duration(w.rng.IntN(4000))*time.Microsecond)
					}
				}()
			}
			wg.Wait()
			select {
			case err := <-errs:
				t.Fatal(err)
			default:
			}
			after := snapshotTrips(arm.db)
			arm.trips += after.all - before.all
			arm.primaryTrips += after.primary - before.primary
			arm.latestTrips += after.latest - before.latest
			arm.checkFailed += after.checkFailed - before.checkFailed
		}
	}
	stopExt()
	if err := extErr.Load(); err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%d workers, 15%% writes, 1-5 ms think time; another client commits every 5 ms; replicas 0 and 20 ms behind; %d blocks of %v per scope\n", workers, cycles, block)
	fmt.Fprintf(&b, "| scope | reads | stale | on replicas | round trips per read | to the primary per read | read p50 | read p99 | mean |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range arms {
		mean, p50, p99 := latencies(a.times)
		readTrips := float64(a.trips-uint64(a.writes)) / float64(max(a.reads, 1))
		primaryTrips := float64(a.primaryTrips-uint64(a.writes)) / float64(max(a.reads, 1))
		fmt.Fprintf(&b, "| %s | %d | %d | %d%% | %.2f | %.2f | %v | %v | %v |\n",
			a.name, a.reads, a.stale, 100*a.onReplica/max(a.reads, 1), readTrips, primaryTrips, ms(p50), ms(p99), ms(mean))
	}
	for _, a := range arms {
		if a.maxStale > 0 {
			fmt.Fprintf(&b, "%s: data seen at most %v old (mean %v)\n", a.name, ms(a.maxSeenStaleness), ms(a.sumSeenStalness/time.Duration(max(a.reads, 1))))
		}
		if a.tokens > 0 {
			queries := int64(a.trips) - int64(a.writes) - int64(a.reads) - int64(a.checkFailed)
			fmt.Fprintf(&b, "%s: %d tokens asked for (one per request of 5 operations), %d of them with a query (counted in its round trips)\n", a.name, a.tokens, queries)
		}
		if a.checkFailed > 0 {
			fmt.Fprintf(&b, "%s: %d freshness checks failed (the read then went to the primary: a round trip more)\n", a.name, a.checkFailed)
		}
		if a.latestTrips > 0 {
			fmt.Fprintf(&b, "%s: %d position queries for %d reads\n", a.name, a.latestTrips, a.reads)
		}
	}
	t.Log("\n" + b.String())
	for _, a := range arms {
		if a.stale != 0 {
			t.Errorf("%s: %d of %d reads broke its promise; first: %s", a.name, a.stale, a.reads, a.firstStale)
		}
		if a.reads < 100 {
			t.Errorf("%s: only %d reads", a.name, a.reads)
		}
	}
	if path := os.Getenv("SWITCHYARD_SCOPES_OUT"); path != "" {
		os.WriteFile(path, []byte(b.String()), 0o644)
	}
}

// ms rounds d for a table: to 10 µs.
func ms(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// scopeOp runs worker w's operation op in arm a (number ai).
func scopeOp(base context.Context, a *scopeArm, ai int, w *scopeWorker, op int, ext *extLog) error {
	st := &w.arms[ai]
	ctx := a.ctx(base, st, op)
	if w.rng.IntN(100) < 15 {
		var v int64
		if err := a.db.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v", w.id).Scan(&v); err != nil {
			return fmt.Errorf("%s: write: %w", a.name, err)
		}
		w.lastWrote, st.wroteInReq = v, v
		a.mu.Lock()
		a.writes++
		a.mu.Unlock()
	} else {
		own, extFloor := int64(0), int64(0)
		if a.ownFloor != nil {
			own = a.ownFloor(st, w)
		}
		extNow := ext.value.Load()
		extFloor = a.extFloor(st, extNow)
		start := time.Now()
		var gotOwn, gotExt int64
		var rec bool
		if err := a.db.QueryRow(ctx, "SELECT a.v, b.v, pg_is_in_recovery() FROM counters a, counters b WHERE a.id = $1 AND b.id = 0", w.id).Scan(&gotOwn, &gotExt, &rec); err != nil {
			return fmt.Errorf("%s: read: %w", a.name, err)
		}
		d := time.Since(start)
		stale := ""
		switch {
		case gotOwn < own:
			stale = fmt.Sprintf("its own counter %d after writing %d", gotOwn, own)
		case gotExt < extFloor:
			stale = fmt.Sprintf("counter 0 at %d, having to see %d", gotExt, extFloor)
		}
		age := ext.staleness(gotExt, start)
		if a.maxStale > 0 && age > a.maxStale {
			stale = fmt.Sprintf("counter 0 at %d, %v old", gotExt, age)
		}
		st.lastExt = max(st.lastExt, gotExt)
		a.mu.Lock()
		a.reads++
		a.times = append(a.times, d)
		if rec {
			a.onReplica++
		}
		if stale != "" {
			a.stale++
			if a.firstStale == "" {
				a.firstStale = stale
			}
		}
		a.maxSeenStaleness = max(a.maxSeenStaleness, age)
		a.sumSeenStalness += age
		a.mu.Unlock()
	}
	if a.after != nil {
		if err := a.after(base, st, op); err != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		if op%5 == 4 {
			a.mu.Lock()
			a.tokens++
			a.mu.Unlock()
		}
	}
	return nil
}

// trips are a DB's round trips so far: statements and batches sent to
// any server, to the primary, and Latest's position queries.
type trips struct{ all, primary, latest, checkFailed uint64 }

func snapshotTrips(db *switchyard.DB) trips {
	s := db.Stats()
	var t trips
	for _, n := range s.Nodes {
		t.all += n.Routed
		if n.Role == switchyard.RolePrimary {
			t.primary += n.Routed
		}
	}
	t.latest, t.checkFailed = s.Routes.Latest, s.Routes.CheckFailed
	return t
}

// TestLatestLargeReads: where Latest pays. A read of 1,000 rows (~110 kB)
// while another client commits every 5 ms, replicas 0 and 20 ms behind:
// with Latest, with Latest and ReplicaWait 50ms, on the primary, and as a
// plain read (which does not see the other client's latest commits), the
// four interleaved read by read. The primary's share of the work is what
// Latest saves: for each read served by a replica the primary answers a
// one-row position query instead of sending the rows.
func TestLatestLargeReads(t *testing.T) {
	if testing.Short() {
		t.Skip("a measurement")
	}
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2, ApplyDelay: []time.Duration{0, 20 * time.Millisecond}})
	if err := c.Primary().Exec(ctx, `CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL); INSERT INTO counters VALUES (0, 0);
		CREATE TABLE big (id int PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL);
		INSERT INTO big SELECT g, g, repeat('x', 100) FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, c)
	waiting := openDB(t, c, func(cfg *switchyard.Config) { cfg.ReplicaWait = 50 * time.Millisecond })
	waitCaughtUp(t, c, db)
	waitCaughtUp(t, c, waiting)
	w := newExternalWriter(t, c.Primary().DSN())
	var committed atomic.Int64
	var writeErr atomic.Value
	stopWriter := load(1, func(int) {
		v, err := w.tryWrite()
		if err != nil {
			writeErr.CompareAndSwap(nil, err)
			time.Sleep(10 * time.Millisecond)
			return
		}
		committed.Store(v)
		time.Sleep(5 * time.Millisecond)
	})
	defer stopWriter()

	type arm struct {
		name                    string
		db                      *switchyard.DB
		ctx                     context.Context
		mustSee                 bool // every commit before it began
		reads, stale, onReplica int
		primaryBytes, bytes     int64
		times                   []time.Duration
		primaryTrips, before    uint64
	}
	arms := []*arm{
		{name: "Latest", db: db, ctx: switchyard.Latest(ctx), mustSee: true},
		{name: "Latest, ReplicaWait 50ms", db: waiting, ctx: switchyard.Latest(ctx), mustSee: true},
		{name: "Primary", db: db, ctx: switchyard.Primary(ctx), mustSee: true},
		{name: "plain (misses other clients' writes)", db: db, ctx: ctx},
	}
	const sql = "SELECT b.id, b.v, b.pad, c.v, pg_is_in_recovery() FROM big b, counters c WHERE c.id = 0 ORDER BY b.id"
	read := func(a *arm) {
		want := committed.Load()
		start := time.Now()
		rows, err := a.db.Query(a.ctx, sql)
		if err != nil {
			t.Fatal(err)
		}
		var n, size int64
		var ext int64
		var rec bool
		for rows.Next() {
			for _, v := range rows.RawValues() {
				size += int64(len(v))
			}
			if n == 0 {
				var id, v int64
				var pad string
				if err := rows.Scan(&id, &v, &pad, &ext, &rec); err != nil {
					t.Fatal(err)
				}
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil || n != 1000 {
			t.Fatalf("%s: %d rows, %v", a.name, n, err)
		}
		a.times = append(a.times, time.Since(start))
		a.reads++
		a.bytes += size
		if rec {
			a.onReplica++
		} else {
			a.primaryBytes += size
		}
		if ext < want {
			a.stale++
		}
	}
	primaryRoutedOf := func(db *switchyard.DB) uint64 { return snapshotTrips(db).primary }
	for _, a := range arms {
		a.before = primaryRoutedOf(a.db)
	}
	const rounds = 300
	for i := 0; i < rounds; i++ {
		for k := range arms {
			a := arms[(k+i)%len(arms)]
			before := primaryRoutedOf(a.db)
			read(a)
			a.primaryTrips += primaryRoutedOf(a.db) - before
		}
	}
	stopWriter()
	if err := writeErr.Load(); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "1,000-row reads (%d kB each) while another client commits every 5 ms; replicas 0 and 20 ms behind; %d rounds, the arms interleaved\n", arms[0].bytes/int64(max(arms[0].reads, 1))/1000, rounds)
	fmt.Fprintf(&b, "| read | reads | stale | on replicas | primary round trips per read | kB from the primary per read | p50 | p99 | mean |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range arms {
		mean, p50, p99 := latencies(a.times)
		fmt.Fprintf(&b, "| %s | %d | %d | %d%% | %.2f | %.1f | %v | %v | %v |\n", a.name, a.reads, a.stale, 100*a.onReplica/max(a.reads, 1),
			float64(a.primaryTrips)/float64(max(a.reads, 1)), float64(a.primaryBytes)/float64(max(a.reads, 1))/1000, ms(p50), ms(p99), ms(mean))
	}
	t.Log("\n" + b.String())
	for _, a := range arms {
		if a.mustSee && a.stale != 0 {
			t.Errorf("%s: %d of %d reads missed a commit made before they began", a.name, a.stale, a.reads)
		}
	}
	if a := arms[0]; a.onReplica == 0 {
		t.Errorf("no Latest read of %d was served by a replica", a.reads)
	}
}
