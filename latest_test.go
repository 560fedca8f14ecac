package switchyard_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
)

// latestChild makes the test binary the reading process of TestLatest.
const latestChild = "SWITCHYARD_LATEST_CHILD"

// latestWait is the ReplicaWait of the child's second DB.
const latestWait = 100 * time.Millisecond

// TestLatest: one OS process writes and tells another (over a pipe), which
// reads with Latest: no read is stale, with a replica 20 ms behind, 1,000
// times. The child reads each value four ways: with Latest on a DB with
// no ReplicaWait (the replica has not replayed the write yet, so the read
// goes to the primary after the position query) and on one with
// ReplicaWait 100ms (every other round; it waits for the replica
// instead); on the primary (Primary(ctx), what Latest replaces); and with
// neither, to show what that costs. It logs each arm's replica share and
// latency.
func TestLatest(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	db := openDB(t, c)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLatestChild$", "-test.v")
	cmd.Env = append(os.Environ(), latestChild+"=1", "SWITCHYARD_LATEST_PRIMARY="+c.Primary().DSN(), "SWITCHYARD_LATEST_REPLICA="+c.Replicas()[0].DSN())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewScanner(outPipe)
	const rounds = 1000
	type arm struct {
		name                    string
		reads, stale, onReplica int
		times                   []time.Duration
	}
	arms := []*arm{{name: "Latest"}, {name: fmt.Sprintf("Latest, ReplicaWait %v", latestWait)}, {name: "Primary"}, {name: "neither"}}
	for i := 0; i < rounds; i++ {
		var v int64
		if err := db.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(in, v)
		var line string
		for out.Scan() {
			if line = out.Text(); strings.HasPrefix(line, "read ") {
				break
			}
		}
		fields := strings.Fields(line)
		if len(fields) != 1+3*len(arms) {
			t.Fatalf("child said %q", line)
		}
		for k, a := range arms {
			got, err1 := strconv.ParseInt(fields[1+3*k], 10, 64)
			rec, err2 := strconv.ParseBool(fields[2+3*k])
			d, err3 := strconv.ParseInt(fields[3+3*k], 10, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatalf("child said %q", line)
			}
			if got < 0 {
				continue // not read this round
			}
			a.reads++
			if got < v {
				a.stale++
			}
			if rec {
				a.onReplica++
			}
			a.times = append(a.times, time.Duration(d))
		}
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes in one process, each read at once by another (a replica 20 ms behind):", rounds)
	t.Logf("  %-28s %6s %6s %8s %9s %9s %9s", "read", "reads", "stale", "replica", "mean", "p50", "p99")
	for _, a := range arms {
		mean, p50, p99 := latencies(a.times)
		t.Logf("  %-28s %6d %6d %7d%% %9s %9s %9s", a.name, a.reads, a.stale, 100*a.onReplica/max(a.reads, 1), mean, p50, p99)
	}
	for _, a := range arms[:3] {
		if a.stale != 0 {
			t.Errorf("%s: %d of %d reads were stale", a.name, a.stale, a.reads)
		}
	}
	if a := arms[0]; a.reads != rounds {
		t.Errorf("%d Latest reads, want %d", a.reads, rounds)
	}
	if a := arms[3]; a.stale == 0 {
		t.Error("no read without Latest was stale: the replica was not behind, and the test shows nothing")
	}
	if a := arms[1]; a.onReplica < a.reads*9/10 {
		t.Errorf("with ReplicaWait %v, %d of %d Latest reads on the replica; want nearly all", latestWait, a.onReplica, a.reads)
	}
}

// latencies returns the mean, median and 99th percentile of ds, rounded.
func latencies(ds []time.Duration) (mean, p50, p99 time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	r := func(d time.Duration) time.Duration { return d.Round(time.Microsecond) }
	return r(sum / time.Duration(len(s))), r(s[len(s)/2]), r(s[len(s)*99/100])
}

// TestLatestChild is TestLatest's reading process. For each value the
// parent wrote it prints, per arm, the value read (-1: not read this
// round), whether a replica served it, and the read's time in
// nanoseconds. The arms' order rotates, so that none always goes first.
func TestLatestChild(t *testing.T) {
	if os.Getenv(latestChild) != "1" {
		t.Skip("runs in TestLatest's child process")
	}
	ctx := context.Background()
	open := func(wait time.Duration) *switchyard.DB {
		db, err := switchyard.Open(ctx, switchyard.Config{
			Primary:     os.Getenv("SWITCHYARD_LATEST_PRIMARY"),
			Replicas:    []string{os.Getenv("SWITCHYARD_LATEST_REPLICA")},
			ReplicaWait: wait,
		})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db, waiting := open(0), open(latestWait)
	defer db.Close()
	defer waiting.Close()
	type result struct {
		v   int64
		rec bool
		d   time.Duration
	}
	read := func(db *switchyard.DB, ctx context.Context) (r result) {
		start := time.Now()
		if err := db.QueryRow(ctx, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&r.v, &r.rec); err != nil {
			t.Fatal(err)
		}
		r.d = time.Since(start)
		return r
	}
	arms := []func() result{
		func() result { return read(db, switchyard.Latest(ctx)) },
		func() result { return read(waiting, switchyard.Latest(ctx)) },
		func() result { return read(db, switchyard.Primary(ctx)) },
		func() result { return read(db, ctx) },
	}
	in := bufio.NewScanner(os.Stdin)
	for round := 0; in.Scan(); round++ {
		if _, err := strconv.ParseInt(in.Text(), 10, 64); err != nil {
			t.Fatal(err)
		}
		results := make([]result, len(arms))
		for k := range arms {
			a := (k + round) % len(arms)
			if a == 1 && round%2 == 1 {
				results[a] = result{v: -1}
				continue
			}
			results[a] = arms[a]()
		}
		line := "read"
		for _, r := range results {
			line += fmt.Sprintf(" %d %t %d", r.v, r.rec, r.d)
		}
		fmt.Println(line)
	}
}

// externalWriter is a client that is not switchyard (another service, a
// psql session): it writes counter 0 on the primary on a connection of
// its own, so no DB in this process knows of its writes.
type externalWriter struct {
	t    *testing.T
	ctx  context.Context
	conn *pgx.Conn
}

func newExternalWriter(t *testing.T, dsn string) *externalWriter {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &externalWriter{t: t, ctx: ctx, conn: conn}
}

// tryWrite commits an increment of counter 0 and returns its new value.
func (w *externalWriter) tryWrite() (v int64, err error) {
	err = w.conn.QueryRow(w.ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v)
	return v, err
}

// write is tryWrite for the test's goroutine.
func (w *externalWriter) write() int64 {
	w.t.Helper()
	v, err := w.tryWrite()
	if err != nil {
		w.t.Fatal(err)
	}
	return v
}

// TestLatestConfig: with Config.Latest, a plain read sees what another
// client committed before it began, through the pgx API and through
// database/sql; Primary and MaxStaleness in the context still decide
// where their reads go (no position query). A DB without it reads the
// same writes stale, which shows that the replica was behind.
func TestLatestConfig(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.Latest = true })
	plain := openDB(t, c)
	sqlDB := stdlib.OpenDB(db)
	defer sqlDB.Close()
	w := newExternalWriter(t, c.Primary().DSN())
	const rounds = 200
	var stale, sqlStale, plainStale int
	for i := 0; i < rounds; i++ {
		v := w.write()
		var got, sqlGot, plainGot int64
		if err := plain.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&plainGot); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if err := sqlDB.QueryRowContext(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&sqlGot); err != nil {
			t.Fatal(err)
		}
		if got < v {
			stale++
		}
		if sqlGot < v {
			sqlStale++
		}
		if plainGot < v {
			plainStale++
		}
	}
	t.Logf("%d writes by another client: with Config.Latest %d stale (pgx), %d stale (database/sql); without %d stale", rounds, stale, sqlStale, plainStale)
	if stale != 0 || sqlStale != 0 {
		t.Errorf("with Config.Latest, %d (pgx) and %d (database/sql) of %d reads were stale", stale, sqlStale, rounds)
	}
	if plainStale == 0 {
		t.Error("no read without Latest was stale: the replica was not behind, and the test shows nothing")
	}
	if n := db.Stats().Routes.Latest; n == 0 || n > 2*rounds {
		t.Errorf("%d position queries for %d reads", n, 2*rounds)
	}

	// Primary and MaxStaleness go their own way, without a position query.
	waitCaughtUp(t, c, db)
	before := db.Stats().Routes
	var rec bool
	if err := db.QueryRow(switchyard.Primary(ctx), "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
		t.Errorf("a Primary read under Config.Latest: on a replica %v, %v", rec, err)
	}
	if err := db.QueryRow(switchyard.MaxStaleness(ctx, time.Minute), "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || !rec {
		t.Errorf("a MaxStaleness read under Config.Latest: on a replica %v, %v", rec, err)
	}
	if after := db.Stats().Routes; after.Latest != before.Latest {
		t.Errorf("Primary and MaxStaleness reads asked the primary for its position %d times", after.Latest-before.Latest)
	}
}

// TestLatestShared: 16 goroutines read with Latest while another client
// writes: none is stale, and each read makes at most one position query
// (reads that began before a query was sent share it; one that finds a
// query already under way cannot, as that query may miss commits made
// after it was sent but before the read began).
func TestLatestShared(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	db := openDB(t, c)
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
		time.Sleep(time.Millisecond)
	})
	const goroutines, each = 16, 100
	var stale, reads atomic.Int64
	before := db.Stats().Routes.Latest
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				want := committed.Load()
				var got int64
				if err := db.QueryRow(switchyard.Latest(ctx), "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
					errs <- err
					return
				}
				reads.Add(1)
				if got < want {
					stale.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	stopWriter()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := writeErr.Load(); err != nil {
		t.Fatal(err)
	}
	queries := db.Stats().Routes.Latest - before
	t.Logf("%d Latest reads by %d goroutines: %d position queries, %d stale; routes %+v", reads.Load(), goroutines, queries, stale.Load(), db.Stats().Routes.ByReason)
	if stale.Load() != 0 {
		t.Errorf("%d Latest reads were stale", stale.Load())
	}
	if queries == 0 || queries > uint64(reads.Load()) {
		t.Errorf("%d position queries for %d Latest reads; want at most one each", queries, reads.Load())
	}
}

// TestLatestBatch: a batch of reads with Latest sees what another client
// committed before it was sent.
func TestLatestBatch(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	db := openDB(t, c)
	w := newExternalWriter(t, c.Primary().DSN())
	stale := 0
	for i := 0; i < 100; i++ {
		v := w.write()
		b := &pgx.Batch{}
		b.Queue("SELECT v FROM counters WHERE id = 0")
		b.Queue("SELECT 1")
		br := db.SendBatch(switchyard.Latest(ctx), b)
		var got int64
		if err := br.QueryRow().Scan(&got); err != nil {
			t.Fatal(err)
		}
		if err := br.Close(); err != nil {
			t.Fatal(err)
		}
		if got < v {
			stale++
		}
	}
	if stale != 0 {
		t.Errorf("%d of 100 batches read with Latest were stale", stale)
	}
}

// TestLatestReadOnlyTransaction: a read-only transaction begun with
// Latest (BeginTx with pgx.ReadOnly, Atomic with ReadOnly) sees what
// another client committed before it began.
// (It did not: PlanTx routed a read-only transaction as a read of its
// session and never asked the primary for its position; now
// PlanTxLatest does.)
func TestLatestReadOnlyTransaction(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	db := openDB(t, c)
	w := newExternalWriter(t, c.Primary().DSN())
	stale, atomicStale := 0, 0
	for i := 0; i < 50; i++ {
		v := w.write()
		tx, err := db.BeginTx(switchyard.Latest(ctx), pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		err = tx.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got)
		tx.Rollback(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got < v {
			stale++
		}
		v = w.write()
		if err := db.Atomic(switchyard.Latest(ctx), func(tx pgx.Tx) error {
			return tx.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got)
		}, switchyard.ReadOnly()); err != nil {
			t.Fatal(err)
		}
		if got < v {
			atomicStale++
		}
	}
	if stale != 0 || atomicStale != 0 {
		t.Errorf("of 50 read-only transactions begun with Latest, %d (BeginTx) and %d (Atomic) were stale", stale, atomicStale)
	}
}

// TestLatestAfterOwnWrite: a Latest read after a write through the same
// process goes to a replica that has replayed the primary's position, as
// any Latest read does: that position, taken after the read began,
// covers the write, so the write gives no reason to use the primary.
func TestLatestAfterOwnWrite(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	for _, sctx := range []context.Context{ctx, switchyard.WithSession(ctx)} {
		var wrote int64
		if err := db.QueryRow(sctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&wrote); err != nil {
			t.Fatal(err)
		}
		waitCaughtUp(t, c, db)
		var got int64
		var rec bool
		if err := db.QueryRow(switchyard.Latest(sctx), "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&got, &rec); err != nil {
			t.Fatal(err)
		}
		if got < wrote {
			t.Errorf("a Latest read after a write read %d, want %d", got, wrote)
		}
		if !rec {
			t.Errorf("a Latest read after a write the replica had replayed went to the primary (session %v); routes %v", sctx != ctx, db.Stats().Routes.ByReason)
		}
	}
}
