package engine

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// want checks a plan's node, reason and extras.
func want(t *testing.T, p *Plan, node *topology.Node, r Reason, before Before, after After) {
	t.Helper()
	if p.Node != node || p.Reason != r || p.Before != before || p.After != after {
		name := "<nil>"
		if p.Node != nil {
			name = p.Node.Name
		}
		t.Fatalf("plan: %s, %v, before %d, after %d; want %s, %v, before %d, after %d",
			name, p.Reason, p.Before, p.After, node.Name, r, before, after)
	}
}

func read(e *Engine, o *Options) *Plan {
	var p Plan
	e.PlanRead(context.Background(), &p, o, cluster(e))
	return &p
}

func TestRoutePrimaryOption(t *testing.T) {
	e := newEngine(t, 2, Config{})
	want(t, read(e, &Options{Primary: true}), primary(e), ReasonForced, BeforeNone, AfterNone)
	// An explicit session takes the primary's position along.
	want(t, read(e, &Options{Primary: true, Session: NewSession()}), primary(e), ReasonForced, BeforeNone, AfterCapture)

	var w Plan
	e.PlanWrite(&w, &Options{Primary: true}, cluster(e))
	if w.Reason != ReasonForced || w.Node != primary(e) || !w.Write || w.Policy != PolicyWrite {
		t.Errorf("forced write: %+v", w)
	}
	e.PlanWrite(&w, nil, cluster(e))
	if w.Reason != ReasonWrite {
		t.Errorf("write: %v", w.Reason)
	}
}

func TestRouteMaxStaleness(t *testing.T) {
	e := newEngine(t, 2, Config{})
	c := cluster(e)
	o := &Options{MaxStaleness: 10 * time.Second, Session: NewSession()}
	// No poll of the primary yet: nothing bounds a replica's staleness.
	want(t, read(e, o), primary(e), ReasonNotFresh, BeforeNone, AfterNone)

	now := time.Now()
	c.RecordPrimary(100, now.Add(-30*time.Second))
	c.RecordPrimary(200, now.Add(-5*time.Second))
	c.RecordPrimary(300, now)
	at(replica(e, 1), 150, now)
	at(replica(e, 2), 250, now)
	for range 20 {
		// Only r2 had what the primary had ten seconds ago.
		want(t, read(e, o), replica(e, 2), ReasonStaleOK, BeforeNone, AfterNone)
	}
	// A write does not change that: the caller accepts stale data.
	setPos(o.Session, c, 300, now).mark()
	want(t, read(e, o), replica(e, 2), ReasonStaleOK, BeforeNone, AfterNone)

	// Out of bounds: the primary, without a capture.
	o.MaxStaleness = 100 * time.Millisecond
	want(t, read(e, o), primary(e), ReasonNotFresh, BeforeNone, AfterNone)
	// The primary not polled for longer than the bound (it stopped
	// answering): its newest poll bounds nothing, even for replicas that
	// have everything it knew.
	quiet := newEngine(t, 1, Config{})
	cluster(quiet).RecordPrimary(300, now.Add(-2*time.Second))
	at(replica(quiet, 1), 300, now)
	want(t, read(quiet, &Options{MaxStaleness: time.Second}), primary(quiet), ReasonNotFresh, BeforeNone, AfterNone)
	want(t, read(quiet, &Options{MaxStaleness: 3 * time.Second}), replica(quiet, 1), ReasonStaleOK, BeforeNone, AfterNone)
	replica(e, 1).MarkDown(now)
	replica(e, 2).MarkDown(now)
	o.MaxStaleness = time.Hour
	want(t, read(e, o), primary(e), ReasonNoReplica, BeforeNone, AfterNone)
}

func TestRouteDirtySession(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	s := NewSession()
	o := &Options{Session: s}
	at(replica(e, 1), 1000, time.Now())

	var w Plan
	e.PlanWrite(&w, o, c)
	w.Begin() // mark 1, the session's and the DB-wide one's
	r := read(e, o)
	want(t, r, primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	if r.seen != 1 || r.seenGlobal != 1 || r.global != e.global.position(c.Key()) {
		t.Fatalf("marks seen: %d, global %d", r.seen, r.seenGlobal)
	}
	r.Begin()
	w.Finish(nil) // mark 2: after the capture was planned
	r.Served()
	r.Captured(500)
	r.Finish(nil)
	pos := s.position(c.Key())
	if pos.LSN() != 500 || !pos.dirty() {
		t.Fatalf("after a capture that predates the write's end: %v, dirty %v", pos.LSN(), pos.dirty())
	}
	if g := e.global.position(c.Key()); g.LSN() != 500 || !g.dirty() {
		t.Fatalf("DB-wide: %v, dirty %v", g.LSN(), g.dirty())
	}
	r = read(e, o)
	want(t, r, primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	if r.seen != 2 {
		t.Fatalf("seen %d", r.seen)
	}
	r.Captured(600)
	if pos.dirty() || pos.LSN() != 600 {
		t.Fatalf("clean after the second capture: %v, dirty %v", pos.LSN(), pos.dirty())
	}
	want(t, read(e, o), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)

	// The DB-wide session was marked too, and covered by the same
	// captures.
	want(t, read(e, nil), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
	// Its own write: dirty, captured without an explicit session's extras.
	e.PlanWrite(&w, nil, c)
	w.Begin()
	w.Finish(nil)
	g := read(e, nil)
	if g.global != nil {
		t.Fatal("the DB-wide session's plan points at itself")
	}
	want(t, g, primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	g.Captured(700)
	want(t, read(e, nil), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
}

// A write whose end never comes (rows nobody closes) leaves one mark, which
// the next capture covers: the session is clean again.
func TestWriteThatNeverFinishes(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	s := NewSession()
	o := &Options{Session: s}
	at(replica(e, 1), 1000, time.Now())
	var w Plan
	e.PlanWrite(&w, o, c)
	w.Begin()
	r := read(e, o)
	want(t, r, primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	r.Captured(900)
	for range 3 {
		want(t, read(e, o), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
	}
	if pos := s.position(c.Key()); pos.marks.Load() != 1 || pos.covered.Load() != 1 {
		t.Errorf("marks %d, covered %d", pos.marks.Load(), pos.covered.Load())
	}
	// Its end, should it come, is a new mark.
	w.Finish(nil)
	want(t, read(e, o), primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
}

func TestWriteMarksAtBeginAndFinish(t *testing.T) {
	e := newEngine(t, 0, Config{})
	s := NewSession()
	var w Plan
	e.PlanWrite(&w, &Options{Session: s}, cluster(e))
	pos, g := s.position(cluster(e).Key()), e.global.position(cluster(e).Key())
	w.Begin()
	if pos.marks.Load() != 1 || g.marks.Load() != 1 || !pos.dirty() {
		t.Fatalf("after Begin: %d, %d", pos.marks.Load(), g.marks.Load())
	}
	w.Finish(nil)
	w.Finish(nil) // only the first counts
	if pos.marks.Load() != 2 || g.marks.Load() != 2 {
		t.Fatalf("after Finish: %d, %d", pos.marks.Load(), g.marks.Load())
	}
	if primary(e).InFlight() != 0 || primary(e).Routed() != 1 || primary(e).Errors() != 0 {
		t.Errorf("in flight %d, routed %d, errors %d", primary(e).InFlight(), primary(e).Routed(), primary(e).Errors())
	}
	// A read marks nothing.
	r := read(e, &Options{Session: s})
	r.Begin()
	r.Finish(pgErr("42P01"))
	if pos.marks.Load() != 2 || primary(e).Errors() != 1 {
		t.Errorf("a read marked: %d; errors %d", pos.marks.Load(), primary(e).Errors())
	}
}

func TestRouteCleanSessionFreshReplica(t *testing.T) {
	e := newEngine(t, 2, Config{})
	c := cluster(e)
	s := NewSession()
	setPos(s, c, 100, time.Now())
	at(replica(e, 1), 50, time.Now())
	at(replica(e, 2), 150, time.Now())
	for range 50 {
		p := read(e, &Options{Session: s})
		want(t, p, replica(e, 2), ReasonReplica, BeforeNone, AfterNone)
		if p.Policy != PolicyRead || p.Write {
			t.Fatalf("policy %v write %v", p.Policy, p.Write)
		}
	}
	// The DB-wide session at 0: either replica.
	seen := map[*topology.Node]bool{}
	for range 200 {
		seen[read(e, nil).Node] = true
	}
	if !seen[replica(e, 1)] || !seen[replica(e, 2)] || seen[primary(e)] {
		t.Errorf("DB-wide reads went to %v", seen)
	}
}

// checkedSetup: the session's position (200, taken a second ago) is past
// every replica's polled position; r1 was polled two seconds ago, lags
// 10 ms and is READ COMMITTED: it has probably replayed the position.
func checkedSetup(t *testing.T) (*Engine, *Session) {
	e := newEngine(t, 1, Config{})
	s := NewSession()
	now := time.Now()
	setPos(s, cluster(e), 200, now.Add(-time.Second))
	r := replica(e, 1)
	at(r, 100, now.Add(-2*time.Second))
	r.SetLag(10 * time.Millisecond)
	r.SetCheckSafe(true)
	return e, s
}

func TestRouteChecked(t *testing.T) {
	e, s := checkedSetup(t)
	p := read(e, &Options{Session: s})
	want(t, p, replica(e, 1), ReasonChecked, BeforeCheck, AfterNone)
	if p.Check != 200 {
		t.Errorf("check %v", p.Check)
	}

	t.Run("not READ COMMITTED", func(t *testing.T) {
		e, s := checkedSetup(t)
		replica(e, 1).SetCheckSafe(false)
		want(t, read(e, &Options{Session: s}), primary(e), ReasonNotFresh, BeforeNone, AfterCapture)
	})
	t.Run("lag above the position's age", func(t *testing.T) {
		e, s := checkedSetup(t)
		replica(e, 1).SetLag(5 * time.Second)
		want(t, read(e, &Options{Session: s}), primary(e), ReasonNotFresh, BeforeNone, AfterCapture)
	})
	t.Run("polled since the position rose", func(t *testing.T) {
		e, s := checkedSetup(t)
		at(replica(e, 1), 100, time.Now())
		want(t, read(e, &Options{Session: s}), primary(e), ReasonNotFresh, BeforeNone, AfterCapture)
	})
	t.Run("plain", func(t *testing.T) {
		e, s := checkedSetup(t)
		var p Plan
		p.Plain()
		e.PlanRead(context.Background(), &p, &Options{Session: s}, cluster(e))
		want(t, &p, primary(e), ReasonNotFresh, BeforeNone, AfterNone)
	})
	t.Run("DB-wide session", func(t *testing.T) {
		e, _ := checkedSetup(t)
		setPos(e.global, cluster(e), 200, time.Now().Add(-time.Second))
		want(t, read(e, nil), replica(e, 1), ReasonChecked, BeforeCheck, AfterNone)
		replica(e, 1).SetCheckSafe(false)
		// The DB-wide session, clean, takes no position along.
		want(t, read(e, nil), primary(e), ReasonNotFresh, BeforeNone, AfterNone)
	})
}

// Plain plans never carry a Before or an After, whatever the session.
func TestPlainCarriesNothing(t *testing.T) {
	e, s := checkedSetup(t)
	c := cluster(e)
	check := func(what string, o *Options) {
		t.Helper()
		var p Plan
		p.Plain()
		e.PlanRead(context.Background(), &p, o, c)
		if p.Before != BeforeNone || p.After != AfterNone {
			t.Errorf("%s: before %d after %d on %s", what, p.Before, p.After, p.Node.Name)
		}
	}
	check("checked", &Options{Session: s})
	check("forced", &Options{Session: s, Primary: true})
	pos := s.position(c.Key())
	pos.sawReplica.Store(true)
	pos.mark()
	check("dirty, saw a replica", &Options{Session: s})
	check("DB-wide dirty", nil)
	e.global.position(c.Key()).mark()
	check("DB-wide dirty", nil)
	replica(e, 1).MarkDown(time.Now())
	check("no replica", &Options{Session: s})
}

func TestRouteNoHealthyReplica(t *testing.T) {
	e := newEngine(t, 2, Config{})
	replica(e, 1).MarkDown(time.Now())
	replica(e, 2).MarkDown(time.Now())
	want(t, read(e, nil), primary(e), ReasonNoReplica, BeforeNone, AfterNone)
	want(t, read(e, &Options{Session: NewSession()}), primary(e), ReasonNoReplica, BeforeNone, AfterCapture)

	alone := newEngine(t, 0, Config{})
	want(t, read(alone, nil), primary(alone), ReasonNoReplica, BeforeNone, AfterNone)

	// Healthy but behind: not fresh.
	e = newEngine(t, 1, Config{})
	setPos(e.global, cluster(e), 10, time.Now())
	want(t, read(e, nil), primary(e), ReasonNotFresh, BeforeNone, AfterNone)
	// A writable node is no replica, even before the monitor takes it out.
	e = newEngine(t, 1, Config{})
	replica(e, 1).SetWritable(true)
	want(t, read(e, nil), primary(e), ReasonNotFresh, BeforeNone, AfterNone)
}

func TestSessionPinsItsReplica(t *testing.T) {
	e := newEngine(t, 2, Config{})
	c := cluster(e)
	s := NewSession()
	o := &Options{Session: s}
	now := time.Now()
	at(replica(e, 1), 100, now.Add(-time.Second))
	at(replica(e, 2), 100, now.Add(-time.Second))
	first := read(e, o)
	if first.Node.IsPrimary() {
		t.Fatal("first read on the primary")
	}
	first.Begin()
	first.Served()
	first.Finish(nil)
	pin, pinAt := s.position(c.Key()).pinState()
	if pin != first.Node || !s.position(c.Key()).sawReplica.Load() {
		t.Fatalf("pin %v", pin)
	}
	for range 50 {
		want(t, read(e, o), first.Node, ReasonReplica, BeforeNone, AfterNone)
	}
	// The other replica polled since changes nothing: it may be behind
	// what the read saw.
	other := replica(e, 1)
	if other == first.Node {
		other = replica(e, 2)
	}
	at(other, 100, time.Unix(0, pinAt+1))
	want(t, read(e, o), first.Node, ReasonReplica, BeforeNone, AfterNone)

	// The monitor polls the pinned node after the read: its position is
	// the session's, and any replica that far along will do.
	at(first.Node, 300, time.Unix(0, pinAt+1))
	p := read(e, o)
	want(t, p, first.Node, ReasonReplica, BeforeNone, AfterNone) // the only one at 300
	if pos := s.position(c.Key()); pos.LSN() != 300 {
		t.Fatalf("position %v", pos.LSN())
	}
	if pin, _ := s.position(c.Key()).pinState(); pin != nil {
		t.Fatal("still pinned")
	}
	at(other, 300, time.Now())
	seen := map[*topology.Node]bool{}
	for range 100 {
		seen[read(e, o).Node] = true
	}
	if len(seen) != 2 || seen[primary(e)] {
		t.Errorf("unpinned reads went to %v", seen)
	}
}

func TestPinOnUnhealthyNodeOrPrimary(t *testing.T) {
	e := newEngine(t, 2, Config{})
	s := NewSession()
	o := &Options{Session: s}
	r := read(e, o)
	r.Served()
	r.Node.MarkDown(time.Now())
	// The pinned replica is down: the primary, settled (the session saw a
	// replica) and captured.
	p := read(e, o)
	want(t, p, primary(e), ReasonNotFresh, BeforeSettle, AfterCapture)
	p.Served()
	p.Captured(10)
	if pin, _ := s.position(cluster(e).Key()).pinState(); pin != nil || s.position(cluster(e).Key()).sawReplica.Load() {
		t.Fatal("a capture kept the pin")
	}

	// A plain read on the primary pins the primary: the next goes there
	// too, and captures.
	var q Plan
	q.Plain()
	e.PlanRead(context.Background(), &q, &Options{Session: s, Primary: true}, cluster(e))
	want(t, &q, primary(e), ReasonForced, BeforeNone, AfterNone)
	q.Served()
	want(t, read(e, o), primary(e), ReasonNotFresh, BeforeNone, AfterCapture)
}

// A session used with two engines over the same cluster (two DBs) may hold
// a pin on the other engine's node: this engine's primary resolves it once
// polled after the read.
func TestForeignPin(t *testing.T) {
	a := newEngine(t, 1, Config{})
	b := newEngine(t, 1, Config{})
	s := NewSession()
	o := &Options{Session: s}
	rb := read(b, o)
	if rb.Node.IsPrimary() {
		t.Fatal("b read on its primary")
	}
	rb.Served()
	_, pinAt := s.position(cluster(b).Key()).pinState()

	want(t, read(a, o), primary(a), ReasonNotFresh, BeforeSettle, AfterCapture)
	at(primary(a), 500, time.Unix(0, pinAt-1)) // polled before: no help
	want(t, read(a, o), primary(a), ReasonNotFresh, BeforeSettle, AfterCapture)
	at(primary(a), 500, time.Unix(0, pinAt+1))
	at(replica(a, 1), 500, time.Now())
	want(t, read(a, o), replica(a, 1), ReasonReplica, BeforeNone, AfterNone)
	if pos := s.position(cluster(a).Key()); pos.LSN() != 500 {
		t.Errorf("position %v", pos.LSN())
	}
}

func TestSawReplicaSettlesOnPrimary(t *testing.T) {
	e := newEngine(t, 1, Config{})
	s := NewSession()
	o := &Options{Session: s}
	r := read(e, o)
	r.Served()
	var w Plan
	e.PlanWrite(&w, o, cluster(e))
	w.Begin()
	w.Finish(nil)
	p := read(e, o)
	want(t, p, primary(e), ReasonAfterWrite, BeforeSettle, AfterCapture)
	p.Captured(100)
	// Captured: no settle any more.
	e.PlanWrite(&w, o, cluster(e))
	w.Begin()
	w.Finish(nil)
	want(t, read(e, o), primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	// The DB-wide session never settles (nor pins).
	g := read(e, nil)
	g.Served()
	if pin, _ := e.global.position(cluster(e).Key()).pinState(); pin != nil || e.global.position(cluster(e).Key()).sawReplica.Load() {
		t.Fatal("the DB-wide session pinned")
	}
}

func TestGlobalSessionNeverPins(t *testing.T) {
	e := newEngine(t, 2, Config{})
	for range 20 {
		p := read(e, nil)
		p.Served()
	}
	if pin, _ := e.global.position(cluster(e).Key()).pinState(); pin != nil {
		t.Fatal("pinned")
	}
	seen := map[*topology.Node]bool{}
	for range 200 {
		seen[read(e, nil).Node] = true
	}
	if len(seen) != 2 {
		t.Errorf("DB-wide reads went to %d nodes", len(seen))
	}
}

func TestGlobalAdvancedByExplicitCaptures(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	s := NewSession()
	var w Plan
	e.PlanWrite(&w, &Options{Session: s}, c)
	w.Begin()
	w.Finish(nil)
	// The DB-wide session is dirty too: every write through the DB is
	// visible to every later read through it.
	want(t, read(e, nil), primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	p := read(e, &Options{Session: s})
	p.Captured(4242)
	g := e.global.position(c.Key())
	if g.LSN() != 4242 || g.dirty() {
		t.Fatalf("DB-wide: %v, dirty %v", g.LSN(), g.dirty())
	}
	at(replica(e, 1), 4242, time.Now())
	want(t, read(e, nil), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
}

func TestCapturedRoundsDownPageHeader(t *testing.T) {
	e := newEngine(t, 0, Config{})
	cluster(e).BlockSize = 8192
	s := NewSession()
	p := read(e, &Options{Session: s})
	p.Captured(lsn.LSN(3*8192 + 24))
	if got := s.position(cluster(e).Key()).LSN(); got != 3*8192 {
		t.Errorf("position %v", got)
	}
}

func TestReplicaWait(t *testing.T) {
	e := newEngine(t, 2, Config{ReplicaWait: 5 * time.Second})
	c := cluster(e)
	setPos(e.global, c, 500, time.Now())
	done := make(chan *Plan)
	go func() { done <- read(e, nil) }()
	blockedIn(t, "topology.(*Cluster).wait")
	// A poll of a replica that is not there yet wakes the wait, which goes
	// on; one that is there ends it.
	sent := time.Now()
	c.Observe(replica(e, 1), topology.Poll{InRecovery: true, Position: 400, ReplayAge: -1}, sent, sent, discard)
	c.Observe(replica(e, 2), topology.Poll{InRecovery: true, Position: 600, ReplayAge: -1}, sent, sent, discard)
	p := <-done
	want(t, p, replica(e, 2), ReasonWaited, BeforeNone, AfterNone)
}

func TestReplicaWaitTimesOut(t *testing.T) {
	e := newEngine(t, 1, Config{ReplicaWait: 30 * time.Millisecond})
	setPos(e.global, cluster(e), 500, time.Now())
	start := time.Now()
	want(t, read(e, nil), primary(e), ReasonNotFresh, BeforeNone, AfterNone)
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("waited only %v", d)
	}
	// Without a healthy replica, for nothing: the same bound.
	replica(e, 1).MarkDown(time.Now())
	want(t, read(e, nil), primary(e), ReasonNoReplica, BeforeNone, AfterNone)
	// The wait ends with the engine.
	e.cfg.ReplicaWait = time.Hour
	replica(e, 1).MarkUp(time.Now().Add(time.Hour))
	done := make(chan *Plan)
	go func() { done <- read(e, nil) }()
	blockedIn(t, "topology.(*Cluster).wait")
	e.Close()
	want(t, <-done, primary(e), ReasonNotFresh, BeforeNone, AfterNone)
}

func TestPlanTx(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	s := NewSession()
	o := &Options{Session: s}
	var p Plan
	e.PlanTx(context.Background(), &p, o, c, false, false)
	want(t, &p, primary(e), ReasonTransaction, BeforeNone, AfterNone)
	if p.Policy != PolicyWrite || p.ReadOnlyTx || p.Write {
		t.Errorf("read-write: %+v", p)
	}
	e.PlanTx(context.Background(), &p, o, c, true, true)
	want(t, &p, primary(e), ReasonTransaction, BeforeNone, AfterNone)
	if p.Policy != PolicyRead || !p.ReadOnlyTx {
		t.Errorf("serializable read-only: %+v", p)
	}
	e.PlanTx(context.Background(), &p, o, c, true, false)
	want(t, &p, replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
	if p.Policy != PolicyRead || !p.ReadOnlyTx {
		t.Errorf("read-only: %+v", p)
	}

	// Dirty: on the primary, with a capture as its first statement.
	s.position(c.Key()).mark()
	e.PlanTx(context.Background(), &p, o, c, true, false)
	want(t, &p, primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	if p.seen != 1 {
		t.Errorf("seen %d", p.seen)
	}
	p.Captured(100)

	// Dirty after reading from a replica: the capture is planned after a
	// settle (which the front must run ahead of it).
	at(replica(e, 1), 100, time.Now())
	r := read(e, o)
	want(t, r, replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
	r.Served()
	s.position(c.Key()).mark()
	e.PlanTx(context.Background(), &p, o, c, true, false)
	want(t, &p, primary(e), ReasonAfterWrite, BeforeSettle, AfterCapture)

	// Clean, but no replica fresh enough for a check-free start: the
	// primary, plain (a check cannot ride with BEGIN).
	e2, s2 := checkedSetup(t)
	e2.PlanTx(context.Background(), &p, &Options{Session: s2}, cluster(e2), true, false)
	want(t, &p, primary(e2), ReasonNotFresh, BeforeNone, AfterNone)
}

func TestPlanPinned(t *testing.T) {
	e := newEngine(t, 1, Config{})
	s := NewSession()
	var p Plan
	e.PlanPinned(&p, &Options{Session: s}, replica(e, 1), false)
	if p.Node != replica(e, 1) || p.Policy != PolicyPinned || p.Reason != ReasonPinned || p.Write {
		t.Fatalf("%+v", p)
	}
	if p.Session() != s || p.Attempt() != 0 {
		t.Error("session or attempt")
	}
	replica(e, 1).MarkDown(time.Now())
	primary(e).MarkDown(time.Now())
	if err := e.Ready(context.Background(), &p); err != nil {
		t.Fatalf("ready: %v", err)
	}
	var w Plan
	e.PlanPinned(&w, &Options{Session: s}, primary(e), true)
	w.Begin()
	if !s.position(cluster(e).Key()).dirty() {
		t.Error("a pinned write did not mark")
	}
	w.Finish(nil)
	if (&Plan{engine: e}).Session() != e.global {
		t.Error("a plan without options is the DB-wide session's")
	}
}

// TestPinYieldsToTheProcessPosition: a session pinned to the replica that
// served its last read (the proxy's connections, in global mode) must not
// read there again once the process's position (another session's write,
// Options.Global) is past what that replica is known to have: the pin
// keeps the session's reads monotonic, it does not make the replica fresh.
// Found by the proxy's psycopg2 test under load: a write on one connection
// then a read on another read the old row.
func TestPinYieldsToTheProcessPosition(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	s := NewSession()
	o := &Options{Session: s, Global: true}
	at(replica(e, 1), 100, time.Now().Add(-time.Second))
	first := read(e, o)
	if first.Node != replica(e, 1) {
		t.Fatalf("first read on %v", first.Node)
	}
	first.Begin()
	first.Served()
	first.Finish(nil)
	if pin, _ := s.position(c.Key()).pinState(); pin != replica(e, 1) {
		t.Fatalf("pin %v", pin)
	}
	want(t, read(e, o), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
	// Another session writes, and its capture moves the process's
	// position past the replica's polled one.
	setPos(e.global, c, 500, time.Now())
	want(t, read(e, o), primary(e), ReasonNotFresh, BeforeSettle, AfterCapture)
	// A replica where a freshness check is safe may prove it in the
	// read's round trip (it is the one the session read from: monotonic).
	replica(e, 1).SetCheckSafe(true)
	if p := read(e, o); p.Node != replica(e, 1) || p.Before != BeforeCheck || p.Check != 500 {
		t.Fatalf("a check-safe pinned replica: %v %v %v", p.Node, p.Before, p.Check)
	}
	// Without Global the session's own position rules: the pin holds.
	want(t, read(e, &Options{Session: s}), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
	// Once the replica is polled past 500, it serves again.
	at(replica(e, 1), 600, time.Now())
	if p := read(e, o); p.Node != replica(e, 1) {
		t.Errorf("a replica at 600: read on %v", p.Node)
	}
}

// TestReadOnlyTxSettlesOnThePrimary: a read-only transaction of a session
// that read from a replica and then begins on the primary (its replica
// down, say) settles first and takes the position along, as a read does,
// though the session wrote nothing: its snapshot must not miss a commit
// the replica already showed it.
func TestReadOnlyTxSettlesOnThePrimary(t *testing.T) {
	e := newEngine(t, 1, Config{})
	s := NewSession()
	o := &Options{Session: s}
	at(replica(e, 1), 100, time.Now().Add(-time.Second))
	first := read(e, o)
	first.Begin()
	first.Served()
	first.Finish(nil)
	if !s.position(cluster(e).Key()).sawReplica.Load() {
		t.Fatal("the read did not mark the session")
	}
	replica(e, 1).MarkDown(time.Now())
	var p Plan
	e.PlanTx(ctxT(t), &p, o, cluster(e), true, false)
	want(t, &p, primary(e), ReasonNotFresh, BeforeSettle, AfterCapture)
}
