package engine

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgscript"
)

// latestSetup is an engine of one cluster whose primary (scripted, in
// memory) answers CaptureSQL with answer(n) for its n-th time (from 1),
// after gate, if set, is closed.
type latestSetup struct {
	e    *Engine
	srv  *pgscript.Server
	lend *memLender
	gate chan struct{}
	// asked counts CaptureSQL queries that reached the primary.
	asked atomic.Int64
}

func newLatest(t *testing.T, replicas int, cfg Config, gated bool, answer func(n int64) pgscript.Reply) *latestSetup {
	t.Helper()
	l := &latestSetup{e: newEngine(t, replicas, cfg), lend: newMemLender()}
	l.e.latests = make([]latestFetch, len(l.e.clusters))
	if gated {
		l.gate = make(chan struct{})
	}
	l.srv = pgscript.NewServer(pgscript.Config{Handler: func(q pgscript.Query) pgscript.Reply {
		if q.SQL != CaptureSQL {
			return pgscript.Fail("42601", "unexpected: "+q.SQL)
		}
		n := l.asked.Add(1)
		if l.gate != nil {
			<-l.gate
		}
		return answer(n)
	}})
	t.Cleanup(l.srv.Close)
	l.lend.serve(primary(l.e), l.srv)
	return l
}

// position answers every query with l.
func position(l lsn.LSN) func(int64) pgscript.Reply {
	return func(int64) pgscript.Reply { return pgscript.Row(l.String()) }
}

func (l *latestSetup) plan(ctx context.Context, o *Options) (*Plan, error) {
	p := new(Plan)
	err := l.e.PlanLatest(ctx, p, o, cluster(l.e), l.lend.lend)
	return p, err
}

// planAsync plans a Latest read on a goroutine of its own.
func (l *latestSetup) planAsync(ctx context.Context) <-chan planned {
	c := make(chan planned, 1)
	go func() {
		p, err := l.plan(ctx, nil)
		c <- planned{p, err}
	}()
	return c
}

type planned struct {
	p   *Plan
	err error
}

func TestPlanLatestRoutes(t *testing.T) {
	const pos = lsn.LSN(0x3000000)
	for _, c := range []struct {
		name string
		// answer is the primary's insert position.
		answer lsn.LSN
		// r1, r2: the replicas' polled positions and lags.
		r1, r2     lsn.LSN
		lag1, lag2 time.Duration
		node       int // 0 the primary, i replica i
		reason     Reason
		before     Before
		check      lsn.LSN
	}{
		{name: "a replica that has replayed the primary's position", answer: pos,
			r1: pos, r2: pos - 1, lag1: time.Second, lag2: 0,
			node: 1, reason: ReasonReplica},
		{name: "a replica that lags little proves it in the read's round trip", answer: pos,
			r1: pos - 0x1000, r2: pos - 0x1000, lag1: 5 * time.Millisecond, lag2: time.Second,
			node: 1, reason: ReasonChecked, before: BeforeCheck, check: pos},
		{name: "replicas that lag much: the primary", answer: pos,
			r1: pos - 1, r2: pos - 1, lag1: time.Second, lag2: time.Second,
			node: 0, reason: ReasonNotFresh},
		// 0/3000018 is 24 bytes into a WAL page: just past its header,
		// where a replica may stop for ever; its page's start will do.
		{name: "a position just past a page header is rounded down", answer: pos + 24,
			r1: pos, r2: pos - 1, lag1: time.Second, lag2: time.Second,
			node: 1, reason: ReasonReplica},
		{name: "a position further into a page is not", answer: pos + 48,
			r1: pos, r2: pos - 1, lag1: time.Second, lag2: time.Second,
			node: 0, reason: ReasonNotFresh},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newLatest(t, 2, Config{}, false, position(c.answer))
				cluster(l.e).BlockSize = 8192
				polled := time.Now().Add(-time.Second) // before the read began
				for i, r := range []struct {
					pos lsn.LSN
					lag time.Duration
				}{{c.r1, c.lag1}, {c.r2, c.lag2}} {
					n := replica(l.e, i+1)
					at(n, r.pos, polled)
					n.SetLag(r.lag)
					n.SetCheckSafe(true)
				}
				p, err := l.plan(context.Background(), nil)
				if err != nil {
					t.Fatal(err)
				}
				want(t, p, cluster(l.e).Nodes[c.node], c.reason, c.before, AfterNone)
				if p.Check != c.check || p.Policy != PolicyRead || p.Write {
					t.Errorf("check %v, policy %v, write %v", p.Check, p.Policy, p.Write)
				}
				if l.asked.Load() != 1 || l.lend.lent.Load() != 1 || l.lend.released.Load() != 1 {
					t.Errorf("asked %d, lent %d, released %d", l.asked.Load(), l.lend.lent.Load(), l.lend.released.Load())
				}
				// The position query counts as a statement on the primary.
				if st := l.e.Stats(); st.Routed[ReasonLatest] != 1 || primary(l.e).InFlight() != 0 {
					t.Errorf("routed %d, in flight %d", st.Routed[ReasonLatest], primary(l.e).InFlight())
				}
			})
		})
	}
}

// Latest reads that begin before the position query is sent share it.
func TestPlanLatestSharesOneQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLatest(t, 1, Config{}, true, position(0x3000000))
		var reads []<-chan planned
		for range 5 {
			reads = append(reads, l.planAsync(context.Background()))
		}
		synctest.Wait()
		if n := l.asked.Load(); n != 1 {
			t.Fatalf("%d queries for 5 concurrent reads", n)
		}
		close(l.gate)
		for _, r := range reads {
			got := <-r
			if got.err != nil || got.p.atLeast != 0x3000000 {
				t.Errorf("%v at %v", got.err, got.p.atLeast)
			}
		}
		if l.asked.Load() != 1 || l.lend.calls.Load() != 1 {
			t.Errorf("asked %d, lent %d", l.asked.Load(), l.lend.calls.Load())
		}
	})
}

// A read that begins after the position query was sent cannot use its
// answer (it may predate a commit the read must see): it asks again.
func TestPlanLatestAfterTheQueryWasSentAsksAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLatest(t, 1, Config{}, true, func(n int64) pgscript.Reply {
			return pgscript.Row(lsn.LSN(n << 24).String())
		})
		first := l.planAsync(context.Background())
		synctest.Wait()
		time.Sleep(time.Millisecond)
		second := l.planAsync(context.Background())
		synctest.Wait()
		if n := l.asked.Load(); n != 2 {
			t.Fatalf("%d queries", n)
		}
		close(l.gate)
		a, b := <-first, <-second
		if a.err != nil || b.err != nil || a.p.atLeast != 1<<24 || b.p.atLeast != 2<<24 {
			t.Errorf("first %v at %v, second %v at %v", a.err, a.p.atLeast, b.err, b.p.atLeast)
		}
	})
}

func TestPlanLatestErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		answer pgscript.Reply
		want   string
	}{
		{"refused", pgscript.Fail("55000", "recovery is in progress"), "SQLSTATE 55000"},
		{"no position", pgscript.Row(nil), "no WAL position"},
		{"not a position", pgscript.Row("nonsense"), "nonsense"},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newLatest(t, 1, Config{}, false, func(int64) pgscript.Reply { return c.answer })
				_, err := l.plan(context.Background(), nil)
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("%v", err)
				}
				// Asked once; a statement's error takes no node down.
				if l.asked.Load() != 1 || !primary(l.e).Healthy() || primary(l.e).InFlight() != 0 {
					t.Errorf("asked %d, healthy %v", l.asked.Load(), primary(l.e).Healthy())
				}
			})
		})
	}
}

// The reads that shared a query that failed try again, sharing one query
// among them.
func TestPlanLatestSharersOfAFailedQueryShareTheNext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLatest(t, 1, Config{}, true, func(n int64) pgscript.Reply {
			if n == 1 {
				return pgscript.Fail("57014", "canceling statement due to statement timeout")
			}
			return pgscript.Row("0/3000000")
		})
		var reads []<-chan planned
		for range 4 {
			reads = append(reads, l.planAsync(context.Background()))
		}
		synctest.Wait()
		close(l.gate)
		failed := 0
		for _, r := range reads {
			got := <-r
			switch {
			case got.err != nil:
				failed++
			case got.p.atLeast != 0x3000000:
				t.Errorf("at %v", got.p.atLeast)
			}
		}
		// The read whose query failed fails; the others share a second.
		if failed != 1 || l.asked.Load() != 2 {
			t.Errorf("%d failed; %d queries", failed, l.asked.Load())
		}
	})
}

func TestPlanLatestSharerContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLatest(t, 1, Config{}, true, position(0x3000000))
		first := l.planAsync(context.Background())
		synctest.Wait()
		ctx, cancel := context.WithCancel(context.Background())
		second := l.planAsync(ctx)
		synctest.Wait()
		cancel()
		if got := <-second; !errors.Is(got.err, context.Canceled) {
			t.Fatalf("%v", got.err)
		}
		close(l.gate)
		if got := <-first; got.err != nil || got.p.atLeast != 0x3000000 {
			t.Fatalf("%v at %v", got.err, got.p.atLeast)
		}
		if l.asked.Load() != 1 {
			t.Errorf("asked %d", l.asked.Load())
		}
	})
}

// A primary that does not answer: the read waits PrimaryWait for one, as
// reads that need the primary do, then fails.
func TestPlanLatestPrimaryDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLatest(t, 1, Config{PrimaryWait: 2 * time.Second}, false, position(0x3000000))
		primary(l.e).MarkDown(time.Now())
		start := time.Now()
		_, err := l.plan(context.Background(), nil)
		if !errors.Is(err, ErrNoPrimary) {
			t.Fatalf("%v", err)
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("failed after %v", d)
		}
		if l.lend.calls.Load() != 0 {
			t.Errorf("lent %d", l.lend.calls.Load())
		}
	})
}

// The primary's connection is lost during the query: the primary goes out
// of rotation, and the query is asked again once it answers.
func TestPlanLatestPrimaryConnectionLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLatest(t, 1, Config{}, false, func(n int64) pgscript.Reply {
			if n == 1 {
				return pgscript.Reply{Drop: true}
			}
			return pgscript.Row("0/3000000")
		})
		read := l.planAsync(context.Background())
		synctest.Wait()
		if primary(l.e).Healthy() {
			t.Fatal("the primary whose connection died is in rotation")
		}
		primary(l.e).MarkUp(time.Now())
		got := <-read
		if got.err != nil || got.p.atLeast != 0x3000000 || l.asked.Load() != 2 {
			t.Fatalf("%v at %v after %d queries", got.err, got.p.atLeast, l.asked.Load())
		}
	})
}

// A read-only transaction's BEGIN needs the primary's position too; it
// cannot carry a freshness check (it is plain), so a replica that only
// probably has it will not do.
func TestPlanTxLatest(t *testing.T) {
	const pos = lsn.LSN(0x3000000)
	for _, c := range []struct {
		name   string
		r1     lsn.LSN
		node   int
		reason Reason
	}{
		{"a replica that has replayed the position", pos, 1, ReasonReplica},
		{"a replica that lags little: the primary", pos - 0x1000, 0, ReasonNotFresh},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := newLatest(t, 1, Config{}, false, position(pos))
				r := replica(l.e, 1)
				at(r, c.r1, time.Now().Add(-time.Second))
				r.SetLag(time.Millisecond)
				r.SetCheckSafe(true)
				p := new(Plan)
				if err := l.e.PlanTxLatest(context.Background(), p, nil, cluster(l.e), l.lend.lend); err != nil {
					t.Fatal(err)
				}
				want(t, p, cluster(l.e).Nodes[c.node], c.reason, BeforeNone, AfterNone)
				if !p.ReadOnlyTx || p.Policy != PolicyRead || p.atLeast != pos {
					t.Errorf("read-only %v, policy %v, at least %v", p.ReadOnlyTx, p.Policy, p.atLeast)
				}
			})
		})
	}
	t.Run("the position cannot be had", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := newLatest(t, 1, Config{}, false, func(int64) pgscript.Reply { return pgscript.Fail("55000", "no") })
			if err := l.e.PlanTxLatest(context.Background(), new(Plan), nil, cluster(l.e), l.lend.lend); pgErrCode(err) != "55000" {
				t.Fatalf("%v", err)
			}
		})
	})
	t.Run("shares the query with Latest reads", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := newLatest(t, 1, Config{}, true, position(pos))
			read := l.planAsync(context.Background())
			tx := make(chan error, 1)
			go func() { tx <- l.e.PlanTxLatest(context.Background(), new(Plan), nil, cluster(l.e), l.lend.lend) }()
			synctest.Wait()
			close(l.gate)
			if got := <-read; got.err != nil {
				t.Fatal(got.err)
			}
			if err := <-tx; err != nil {
				t.Fatal(err)
			}
			if l.asked.Load() != 1 {
				t.Errorf("%d queries", l.asked.Load())
			}
		})
	})
}

// With no replica in rotation and none to wait for, a Latest read or
// read-only transaction goes to the primary without asking it its position
// first; with ReplicaWait it asks, since a replica may come back in time.
// A replica that comes back after the decision does not get the read.
func TestPlanLatestNoReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newLatest(t, 1, Config{}, false, position(0x3000000))
		r := replica(l.e, 1)
		at(r, 0x3000000, time.Now())
		r.SetCheckSafe(true)
		r.MarkDown(time.Now())
		p, err := l.plan(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, p, primary(l.e), ReasonNoReplica, BeforeNone, AfterNone)
		tx := new(Plan)
		if err := l.e.PlanTxLatest(context.Background(), tx, nil, cluster(l.e), l.lend.lend); err != nil {
			t.Fatal(err)
		}
		want(t, tx, primary(l.e), ReasonNoReplica, BeforeNone, AfterNone)
		if !tx.ReadOnlyTx {
			t.Error("the transaction is no longer read-only")
		}
		if n := l.asked.Load(); n != 0 {
			t.Errorf("%d position queries with no replica to serve the reads", n)
		}

		// Decided before the replica came back: still the primary.
		p = new(Plan)
		l.e.bind(p, nil, cluster(l.e))
		p.Policy, p.atLeast = PolicyRead, primaryOnly
		r.MarkUp(time.Now().Add(time.Hour)) // past its ban
		l.e.route(context.Background(), p)
		want(t, p, primary(l.e), ReasonNotFresh, BeforeNone, AfterNone)

		r.MarkDown(time.Now())
		w := newLatest(t, 1, Config{ReplicaWait: time.Millisecond}, false, position(0x3000000))
		replica(w.e, 1).MarkDown(time.Now())
		if _, err := w.plan(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if n := w.asked.Load(); n != 1 {
			t.Errorf("with ReplicaWait: %d position queries, want 1", n)
		}
	})
}
