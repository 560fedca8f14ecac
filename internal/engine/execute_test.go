package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/topology"
)

// onReplica plans a read of a fresh session onto a replica, begun.
func onReplica(t *testing.T, e *Engine, o *Options) *Plan {
	t.Helper()
	p := read(e, o)
	if p.Node.IsPrimary() {
		t.Fatal("planned on the primary")
	}
	p.Begin()
	return p
}

func TestAgainNotFresh(t *testing.T) {
	e, s := checkedSetup(t)
	p := read(e, &Options{Session: s})
	want(t, p, replica(e, 1), ReasonChecked, BeforeCheck, AfterNone)
	p.Begin()
	if !e.Again(context.Background(), p, fmt.Errorf("front: %w", ErrNotFresh)) {
		t.Fatal("not run again")
	}
	want(t, p, primary(e), ReasonNotFresh, BeforeNone, AfterCapture)
	r := replica(e, 1)
	if r.InFlight() != 0 || r.Errors() != 0 || !r.Healthy() || p.attempt != 0 {
		t.Errorf("replica: in flight %d, errors %d, healthy %v; attempt %d", r.InFlight(), r.Errors(), r.Healthy(), p.attempt)
	}
	if st := e.Stats(); st.CheckFailed != 1 || st.Retried != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestAgainReadOnlyOnReplicaWrites(t *testing.T) {
	e := newEngine(t, 1, Config{})
	s := NewSession()
	p := onReplica(t, e, &Options{Session: s})
	if !e.Again(context.Background(), p, pgErr("25006")) {
		t.Fatal("not run again")
	}
	want(t, p, primary(e), ReasonWrite, BeforeNone, AfterNone)
	if p.Policy != PolicyWrite || !p.Write || p.attempt != 1 {
		t.Errorf("policy %v write %v attempt %d", p.Policy, p.Write, p.attempt)
	}
	if !replica(e, 1).Healthy() || replica(e, 1).Errors() != 1 {
		t.Error("the replica is not to blame")
	}
	if e.Stats().Retried != 1 {
		t.Errorf("retried %d", e.Stats().Retried)
	}
	p.Begin() // now a write: it marks
	if !s.position(cluster(e).Key()).dirty() {
		t.Error("the write did not mark the session")
	}
}

func TestAgainRecoveryConflict(t *testing.T) {
	e := newEngine(t, 2, Config{})
	p := onReplica(t, e, &Options{Session: NewSession()})
	if !e.Again(context.Background(), p, pgErr("40001")) {
		t.Fatal("not run again")
	}
	want(t, p, primary(e), ReasonNotFresh, BeforeNone, AfterCapture)
	if p.Policy != PolicyRead || p.Write {
		t.Error("a read stays a read")
	}
	for _, n := range cluster(e).Nodes {
		if !n.Healthy() {
			t.Errorf("%s marked down", n.Name)
		}
	}
}

func TestAgainReplicaDown(t *testing.T) {
	var downs atomic.Int32
	e := newEngine(t, 2, Config{OnDown: func(*topology.Node) { downs.Add(1) }})
	for _, err := range []error{io.EOF, io.ErrUnexpectedEOF, syscall.ECONNRESET, &net.OpError{Op: "read", Err: syscall.ECONNRESET}, pgErr("57P01"), safeErr{}} {
		for _, n := range cluster(e).Nodes {
			n.MarkUp(time.Now().Add(time.Hour))
		}
		p := onReplica(t, e, nil)
		first := p.Node
		if !e.Again(context.Background(), p, err) {
			t.Fatalf("%v: not run again", err)
		}
		if first.Healthy() {
			t.Errorf("%v: %s still healthy", err, first.Name)
		}
		if p.Node == first || p.Node.IsPrimary() || p.Reason != ReasonReplica {
			t.Errorf("%v: re-routed to %s (%v)", err, p.Node.Name, p.Reason)
		}
	}
	if downs.Load() != 6 {
		t.Errorf("OnDown called %d times", downs.Load())
	}
	// Both replicas down: the primary.
	for _, n := range cluster(e).Nodes {
		n.MarkUp(time.Now().Add(time.Hour))
	}
	p := onReplica(t, e, nil)
	other := replica(e, 1)
	if other == p.Node {
		other = replica(e, 2)
	}
	other.MarkDown(time.Now())
	if !e.Again(context.Background(), p, io.EOF) {
		t.Fatal("not run again")
	}
	want(t, p, primary(e), ReasonNoReplica, BeforeNone, AfterNone)
}

func TestAgainPrimaryDownWaitsInReady(t *testing.T) {
	e := newEngine(t, 0, Config{PrimaryWait: 5 * time.Second})
	var runs []*topology.Node
	errc := make(chan error)
	go func() {
		errc <- e.Do(context.Background(), read(e, nil), func(p *Plan) error {
			runs = append(runs, p.Node)
			if len(runs) == 1 {
				return io.EOF
			}
			return nil
		})
	}()
	blockedIn(t, "topology.(*Cluster).wait")
	if primary(e).Healthy() {
		t.Fatal("the primary is still healthy")
	}
	primary(e).MarkUp(time.Now()) // a primary comes back at once
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[1] != primary(e) {
		t.Errorf("runs %v", runs)
	}
}

func TestAgainStops(t *testing.T) {
	e := newEngine(t, 1, Config{})
	// Other errors, on a replica or the primary.
	p := onReplica(t, e, nil)
	if e.Again(context.Background(), p, pgErr("42P01")) {
		t.Error("a failed statement run again")
	}
	if e.Again(context.Background(), onReplica(t, e, nil), errors.New("boom")) {
		t.Error("an unknown error run again")
	}
	q := read(e, &Options{Primary: true})
	q.Begin()
	if e.Again(context.Background(), q, pgErr("40001")) {
		t.Error("a conflict on the primary run again")
	}
	if !replica(e, 1).Healthy() || !primary(e).Healthy() {
		t.Error("marked down")
	}

	// A canceled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e.Again(ctx, onReplica(t, e, nil), io.EOF) {
		t.Error("run again after the context ended")
	}
	// A pinned statement, even on a dead connection, and without marking
	// its node down (the front's connection, not the node, is known bad).
	replica(e, 1).MarkUp(time.Now().Add(time.Hour))
	var pin Plan
	e.PlanPinned(&pin, nil, replica(e, 1), false)
	pin.Begin()
	if e.Again(context.Background(), &pin, io.EOF) {
		t.Error("a pinned statement run again")
	}
	if !replica(e, 1).Healthy() {
		t.Error("a pinned statement's failure marked the node down")
	}
	if replica(e, 1).InFlight() != 0 {
		t.Errorf("in flight %d", replica(e, 1).InFlight())
	}
	// A closed engine.
	p = onReplica(t, e, nil)
	e.Close()
	if e.Again(context.Background(), p, io.EOF) {
		t.Error("run again after Close")
	}
}

func TestAgainWritesOnlyWhenSafe(t *testing.T) {
	e := newEngine(t, 1, Config{})
	var w Plan
	e.PlanWrite(&w, nil, cluster(e))
	w.Begin()
	if !e.Again(context.Background(), &w, fmt.Errorf("acquire: %w", safeErr{})) {
		t.Error("a write that never left not sent again")
	}
	if w.Node != primary(e) || w.Policy != PolicyWrite {
		t.Errorf("%+v", w)
	}
	for _, err := range []error{io.EOF, pgErr("40001"), pgErr("25006"), pgErr("57P01")} {
		primary(e).MarkUp(time.Now())
		e.PlanWrite(&w, nil, cluster(e))
		w.Begin()
		if e.Again(context.Background(), &w, err) {
			t.Errorf("%v: a write sent again", err)
		}
	}
}

// The first node, each other once, and once more for a stale pooled
// connection: len(Nodes)+1 tries in all.
func TestAgainAttemptBound(t *testing.T) {
	e := newEngine(t, 2, Config{})
	var w Plan
	e.PlanWrite(&w, nil, cluster(e))
	tries := 0
	for {
		w.Begin()
		tries++
		if !e.Again(context.Background(), &w, safeErr{}) {
			break
		}
		if tries > 10 {
			t.Fatal("no bound")
		}
	}
	if tries != 4 || w.Attempt() != 3 {
		t.Errorf("%d tries, attempt %d", tries, w.Attempt())
	}

	// Reads: replica, replica, primary, primary again.
	// The primary comes back at once each time it is marked down.
	e = newEngine(t, 2, Config{OnDown: func(n *topology.Node) {
		if n.IsPrimary() {
			n.MarkUp(time.Now())
		}
	}})
	p := read(e, nil)
	var nodes []string
	err := e.Do(context.Background(), p, func(p *Plan) error {
		nodes = append(nodes, p.Node.Role())
		return safeErr{}
	})
	if !errors.As(err, new(safeErr)) || strings.Join(nodes, ",") != "replica,replica,primary,primary" {
		t.Errorf("%v after %v", err, nodes)
	}
}

func TestDo(t *testing.T) {
	e := newEngine(t, 2, Config{})
	// At once.
	calls := 0
	once := read(e, nil)
	if err := e.Do(context.Background(), once, func(p *Plan) error { calls++; return nil }); err != nil || calls != 1 {
		t.Fatalf("%v, %d calls", err, calls)
	}
	if once.Node.InFlight() != 1 {
		t.Errorf("in flight %d until Finish", once.Node.InFlight())
	}
	once.Finish(nil)
	// A replica dies: the next one.
	var nodes []*topology.Node
	p := read(e, nil)
	err := e.Do(context.Background(), p, func(p *Plan) error {
		nodes = append(nodes, p.Node)
		if len(nodes) == 1 {
			return io.EOF
		}
		return nil
	})
	p.Finish(err)
	if err != nil || len(nodes) != 2 || nodes[0] == nodes[1] || nodes[1].IsPrimary() {
		t.Fatalf("%v, %v", err, nodes)
	}
	if nodes[0].Healthy() || nodes[0].InFlight() != 0 || nodes[1].InFlight() != 0 {
		t.Error("counts")
	}
	// A failed statement comes back as is.
	want := pgErr("22012")
	calls = 0
	if err := e.Do(context.Background(), read(e, nil), func(p *Plan) error { calls++; return want }); err != want || calls != 1 {
		t.Fatalf("%v, %d calls", err, calls)
	}
	// A failed freshness check: the primary.
	e2, s := checkedSetup(t)
	nodes = nil
	err = e2.Do(context.Background(), read(e2, &Options{Session: s}), func(p *Plan) error {
		nodes = append(nodes, p.Node)
		if p.Before == BeforeCheck {
			return ErrNotFresh
		}
		return nil
	})
	if err != nil || len(nodes) != 2 || !nodes[1].IsPrimary() {
		t.Fatalf("%v, %v", err, nodes)
	}
	// Closed: nothing runs.
	e.Close()
	if err := e.Do(context.Background(), read(e, nil), func(p *Plan) error { t.Error("ran"); return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}

func TestReady(t *testing.T) {
	t.Run("waits for the primary", func(t *testing.T) {
		e := newEngine(t, 1, Config{PrimaryWait: 5 * time.Second})
		primary(e).MarkDown(time.Now())
		var w Plan
		e.PlanWrite(&w, nil, cluster(e))
		errc := make(chan error)
		go func() { errc <- e.Ready(context.Background(), &w) }()
		blockedIn(t, "topology.(*Cluster).wait")
		primary(e).MarkUp(time.Now())
		if err := <-errc; err != nil || w.Node != primary(e) {
			t.Fatalf("%v on %s", err, w.Node.Name)
		}
	})
	t.Run("no primary", func(t *testing.T) {
		e := newEngine(t, 1, Config{PrimaryWait: 20 * time.Millisecond})
		primary(e).MarkDown(time.Now())
		var w Plan
		e.PlanWrite(&w, nil, cluster(e))
		start := time.Now()
		err := e.Ready(context.Background(), &w)
		if !errors.Is(err, ErrNoPrimary) || !strings.Contains(err.Error(), primary(e).Name) || !strings.Contains(err.Error(), "20ms") {
			t.Fatalf("%v", err)
		}
		if time.Since(start) < 20*time.Millisecond {
			t.Error("did not wait")
		}
		// A replica plan does not wait.
		p := read(e, nil)
		if p.Node.IsPrimary() {
			t.Fatal("on the primary")
		}
		if err := e.Ready(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		e := newEngine(t, 0, Config{PrimaryWait: time.Hour})
		primary(e).MarkDown(time.Now())
		ctx, cancel := context.WithCancel(context.Background())
		var w Plan
		e.PlanWrite(&w, nil, cluster(e))
		errc := make(chan error)
		go func() { errc <- e.Ready(ctx, &w) }()
		blockedIn(t, "topology.(*Cluster).wait")
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatal(err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		e := newEngine(t, 0, Config{PrimaryWait: time.Hour})
		primary(e).MarkDown(time.Now())
		var w Plan
		e.PlanWrite(&w, nil, cluster(e))
		errc := make(chan error)
		go func() { errc <- e.Ready(context.Background(), &w) }()
		blockedIn(t, "topology.(*Cluster).wait")
		e.Close()
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Fatal(err)
		}
		if err := e.Ready(context.Background(), &w); !errors.Is(err, ErrClosed) || !e.Closed() {
			t.Fatal(err)
		}
	})
}

// promote makes node n the primary on timeline tli, as a poll after a
// failover shows it.
func promote(c *topology.Cluster, n *topology.Node, tli uint32) {
	now := time.Now()
	c.Observe(n, topology.Poll{InRecovery: false, Position: 1 << 30, Timeline: tli, ReplayAge: -1}, now, now, discard)
}

func TestBackoff(t *testing.T) {
	for attempt := -1; attempt < 40; attempt++ {
		d := min(10*time.Millisecond<<min(max(attempt, 1)-1, 10), time.Second)
		for range 50 {
			if b := Backoff(attempt); b < d/2 || b > d {
				t.Fatalf("Backoff(%d) = %v, want in [%v, %v]", attempt, b, d/2, d)
			}
		}
	}
	if Backoff(1) > 10*time.Millisecond || Backoff(100) < 500*time.Millisecond {
		t.Error("bounds")
	}
}

func TestRetryableTx(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{pgErr("40001"), true},
		{pgErr("40P01"), true},
		{pgErr("25006"), true},
		{pgErr("57P01"), true},
		{pgErr("57P02"), true},
		{pgErr("57P03"), true},
		{fmt.Errorf("wrapped: %w", pgErr("40001")), true},
		{&NotCommittedError{io.EOF}, true},
		{&NotCommittedError{pgErr("23505")}, true},
		{io.EOF, true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{safeErr{}, true},
		{pgErr("23505"), false},
		{pgErr("42P01"), false},
		{pgErr("08006"), false}, // a connection exception with a SQLSTATE: not a plain loss
		{errors.New("fn's own"), false},
		{fmt.Errorf("%w: x", ErrCommitUnknown), false},
		{fmt.Errorf("%w: x", ErrNoPrimary), false},
		{ErrClosed, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{&NotCommittedError{context.DeadlineExceeded}, false},
	} {
		if got := RetryableTx(c.err); got != c.want {
			t.Errorf("RetryableTx(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

func TestAtomic(t *testing.T) {
	e := newEngine(t, 0, Config{})
	t.Run("retries with backoff", func(t *testing.T) {
		calls := 0
		start := time.Now()
		err := e.Atomic(context.Background(), 10, func() error {
			calls++
			if calls < 3 {
				return pgErr("40001")
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("%v after %d calls", err, calls)
		}
		if d := time.Since(start); d < 5*time.Millisecond+10*time.Millisecond {
			t.Errorf("backoff: %v", d)
		}
	})
	t.Run("stops on others", func(t *testing.T) {
		calls := 0
		want := pgErr("23505")
		if err := e.Atomic(context.Background(), 10, func() error { calls++; return want }); err != want || calls != 1 {
			t.Fatalf("%v after %d calls", err, calls)
		}
		calls = 0
		if err := e.Atomic(context.Background(), 10, func() error { calls++; return ErrCommitUnknown }); err != ErrCommitUnknown || calls != 1 {
			t.Fatalf("%v after %d calls", err, calls)
		}
	})
	t.Run("max attempts", func(t *testing.T) {
		calls := 0
		if err := e.Atomic(context.Background(), 3, func() error { calls++; return pgErr("40P01") }); pgErrCode(err) != "40P01" || calls != 3 {
			t.Fatalf("%v after %d calls", err, calls)
		}
		calls = 0
		if err := e.Atomic(context.Background(), 0, func() error { calls++; return pgErr("40P01") }); err == nil || calls != 1 {
			t.Fatalf("%v after %d calls", err, calls)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		calls := 0
		err := e.Atomic(ctx, 1000, func() error {
			calls++
			if calls == 5 {
				cancel()
			}
			return pgErr("40001")
		})
		if pgErrCode(err) != "40001" || calls != 5 {
			t.Fatalf("%v after %d calls", err, calls)
		}
		// Canceled during the backoff.
		ctx, cancel = context.WithCancel(context.Background())
		calls = 0
		errc := make(chan error)
		go func() {
			errc <- e.Atomic(ctx, 1000, func() error { calls++; return pgErr("40001") })
		}()
		blockedIn(t, "engine.(*Engine).Atomic")
		cancel()
		if err := <-errc; pgErrCode(err) != "40001" {
			t.Fatal(err)
		}
	})
	t.Run("closed engine", func(t *testing.T) {
		e := newEngine(t, 0, Config{})
		errc := make(chan error)
		var calls atomic.Int32
		go func() {
			errc <- e.Atomic(context.Background(), 1000, func() error { calls.Add(1); return pgErr("40001") })
		}()
		blockedIn(t, "engine.(*Engine).Atomic")
		e.Close()
		if err := <-errc; pgErrCode(err) != "40001" {
			t.Fatal(err)
		}
		n := calls.Load()
		if err := e.Atomic(context.Background(), 1000, func() error { calls.Add(1); return pgErr("40001") }); err == nil || calls.Load() != n+1 {
			t.Fatal("closed: run more than once")
		}
	})
	if st := e.Stats(); st.AtomicRetries < 2+2+1 {
		t.Errorf("atomic retries %d", st.AtomicRetries)
	}
}

func pgErrCode(err error) string {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return pe.SQLState()
	}
	return ""
}

func TestStats(t *testing.T) {
	e, s := checkedSetup(t)
	o := &Options{Session: s}
	p := read(e, o)
	p.Begin()
	p.CheckPassed()
	p.Finish(nil)
	read(e, &Options{Primary: true}).Begin()
	var w Plan
	e.PlanWrite(&w, nil, cluster(e))
	w.Begin()
	w.Finish(nil)
	var tx Plan
	e.PlanTx(context.Background(), &tx, nil, cluster(e), false, false)
	tx.Begin()
	var pin Plan
	e.PlanPinned(&pin, nil, primary(e), false)
	pin.Begin()
	st := e.Stats()
	for r, n := range map[Reason]uint64{ReasonChecked: 1, ReasonForced: 1, ReasonWrite: 1, ReasonTransaction: 1, ReasonPinned: 1, ReasonReplica: 0} {
		if st.Routed[r] != n {
			t.Errorf("%v: %d, want %d", r, st.Routed[r], n)
		}
	}
	if st.CheckPassed != 1 {
		t.Errorf("check passed %d", st.CheckPassed)
	}
	if len(Reasons()) != int(numReasons) || Reason(200).String() != "unknown" || ReasonStaleOK.String() != "stale_ok" {
		t.Error("reasons")
	}
	for _, r := range Reasons() {
		if r.OnReplica() != (r <= ReasonStaleOK) || r.String() == "unknown" {
			t.Errorf("%v", r)
		}
	}
}
