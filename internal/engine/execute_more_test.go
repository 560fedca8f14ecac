package engine

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// staleErr is the error of a prepared statement whose result type changed
// under it (a migration altered the table).
func staleErr() error {
	return &pgconn.PgError{Severity: "ERROR", Code: "0A000", Message: "cached plan must not change result type", Routine: "RevalidateCachedQuery"}
}

// A prepared statement that the server threw out did not run: it runs once
// more, on the same connection (which prepares it afresh), and no node is
// to blame.
func TestAgainStaleStatement(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		stale bool
	}{
		{"result type changed", staleErr(), true},
		{"statement gone", pgErr("26000"), true},
		{"another 0A000", pgErr("0A000"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEngine(t, 1, Config{})
			var w Plan
			e.PlanWrite(&w, nil, cluster(e))
			for _, p := range []*Plan{onReplica(t, e, nil), &w} {
				if p.Write {
					p.Begin()
				}
				node := p.Node
				if got := e.Again(context.Background(), p, c.err); got != c.stale {
					t.Fatalf("%s: run again %v", node.Role(), got)
				}
				if !c.stale {
					continue
				}
				if p.Node != node || p.Attempt() != 0 || !node.Healthy() {
					t.Errorf("%s: now on %s, attempt %d, healthy %v", node.Role(), p.Node.Name, p.Attempt(), node.Healthy())
				}
				if !p.SameConnection() || p.SameConnection() {
					t.Errorf("%s: SameConnection is not true once", node.Role())
				}
				// Once only: thrown out again, it is an error like any.
				p.Begin()
				if e.Again(context.Background(), p, c.err) {
					t.Errorf("%s: run again a second time", node.Role())
				}
				if p.SameConnection() {
					t.Errorf("%s: SameConnection after the second", node.Role())
				}
			}
			if st := e.Stats(); st.Retried != 0 {
				t.Errorf("retried %d", st.Retried)
			}
		})
	}
}

func TestDoRunsAStaleStatementAgainOnItsConnection(t *testing.T) {
	e := newEngine(t, 2, Config{})
	var same []bool
	var nodes []*topology.Node
	p := read(e, nil)
	err := e.Do(context.Background(), p, func(p *Plan) error {
		same = append(same, p.SameConnection())
		nodes = append(nodes, p.Node)
		if len(same) == 1 {
			return staleErr()
		}
		return nil
	})
	p.Finish(err)
	if err != nil || len(same) != 2 || same[0] || !same[1] || nodes[0] != nodes[1] {
		t.Fatalf("%v: same connection %v", err, same)
	}
	if nodes[0].InFlight() != 0 || nodes[0].Errors() != 1 {
		t.Errorf("in flight %d, errors %d", nodes[0].InFlight(), nodes[0].Errors())
	}
}

func TestRetryableTxStaleStatement(t *testing.T) {
	if !RetryableTx(staleErr()) || !RetryableTx(pgErr("26000")) || RetryableTx(pgErr("0A000")) {
		t.Error("a transaction whose prepared statement the server threw out did not commit, and may run again")
	}
}

// A write that never left the process (the connection to the primary
// could not be made) is sent again, to the primary of the moment.
func TestAgainWriteNotSentGoesToThePrimaryAgain(t *testing.T) {
	e := newEngine(t, 1, Config{})
	var w Plan
	e.PlanWrite(&w, nil, cluster(e))
	var nodes []*topology.Node
	err := e.Do(context.Background(), &w, func(p *Plan) error {
		nodes = append(nodes, p.Node)
		if len(nodes) == 1 {
			// A failover meanwhile: the replica is promoted.
			promote(cluster(e), replica(e, 1), 2)
			return safeErr{}
		}
		return nil
	})
	w.Finish(err)
	if err != nil || len(nodes) != 2 || nodes[0] == nodes[1] || nodes[1] != replica(e, 1) {
		t.Fatalf("%v on %v", err, nodes)
	}
}

// CaptureWrite: a write whose position is read after it in the same round
// trip marks nothing if the capture arrives, and its start and end if not.
func TestCaptureWrite(t *testing.T) {
	for _, captured := range []bool{true, false} {
		e := newEngine(t, 1, Config{})
		s := NewSession()
		var w Plan
		e.PlanWrite(&w, &Options{Session: s}, cluster(e))
		w.CaptureWrite()
		if w.After != AfterCapture {
			t.Fatalf("after %d", w.After)
		}
		w.Begin()
		pos := s.position(cluster(e).Key())
		if pos.marks.Load() != 0 {
			t.Errorf("a captured write marked at its start")
		}
		if captured {
			w.Captured(0x5000000)
		}
		w.Finish(nil)
		switch {
		case captured && (pos.dirty() || pos.LSN() != 0x5000000 || pos.marks.Load() != 0):
			t.Errorf("captured: dirty %v at %v, %d marks", pos.dirty(), pos.LSN(), pos.marks.Load())
		case !captured && (!pos.dirty() || pos.marks.Load() != 2):
			t.Errorf("no capture: dirty %v, %d marks", pos.dirty(), pos.marks.Load())
		}
		// The DB-wide position knows the write too.
		if g := e2g(e); captured != !g.dirty() {
			t.Errorf("captured %v: DB-wide dirty %v", captured, g.dirty())
		}
	}
	// A read has nothing to capture that way.
	e := newEngine(t, 1, Config{})
	p := read(e, &Options{Primary: true})
	p.CaptureWrite()
	if p.After != AfterNone {
		t.Errorf("a read: after %d", p.After)
	}
}

// MarkWritten: a write the plan did not see (a COMMIT inside a string of
// statements) leaves the session, and the DB, dirty.
func TestMarkWritten(t *testing.T) {
	e := newEngine(t, 1, Config{})
	s := NewSession()
	var pin Plan
	e.PlanPinned(&pin, &Options{Session: s}, primary(e), false)
	pin.MarkWritten()
	if pos := s.position(cluster(e).Key()); !pos.dirty() || pos.marks.Load() != 2 || !e2g(e).dirty() {
		t.Errorf("dirty %v (%d marks), DB-wide dirty %v", pos.dirty(), pos.marks.Load(), e2g(e).dirty())
	}
	want(t, read(e, &Options{Session: s}), primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
}

// WillCapture: a pinned read's capture covers the session's marks as of
// when it was planned; a pinned write's is CaptureWrite's.
func TestWillCapture(t *testing.T) {
	e := newEngine(t, 1, Config{})
	s := NewSession()
	pos := setPos(s, cluster(e), 0x1000000, time.Now())
	pos.mark()
	pos.mark() // a write, uncaptured
	var r Plan
	e.PlanPinned(&r, &Options{Session: s}, primary(e), false)
	r.WillCapture()
	if r.After != AfterCapture || r.seen != 2 {
		t.Fatalf("after %d, seen %d", r.After, r.seen)
	}
	pos.mark() // a write that starts meanwhile: not covered
	r.Begin()
	r.Captured(0x2000000)
	r.Finish(nil)
	if pos.LSN() != 0x2000000 || pos.covered.Load() != 2 || !pos.dirty() {
		t.Errorf("at %v, covered %d, dirty %v", pos.LSN(), pos.covered.Load(), pos.dirty())
	}

	var w Plan
	e.PlanPinned(&w, &Options{Session: s}, primary(e), true)
	w.WillCapture()
	if w.After != AfterCapture || w.seen != 0 {
		t.Errorf("write: after %d, seen %d", w.After, w.seen)
	}
	before := pos.marks.Load()
	w.Begin()
	if pos.marks.Load() != before {
		t.Error("a captured write marked at its start")
	}
}

// Atomic gives up after MaxAttempts tries, saying so, with the last error
// still there for errors.Is and errors.As; between tries it waits
// Backoff: exponential from 10 ms, capped at 1 s, jittered in [d/2, d].
// On the bubble's clock the waits are measured exactly.
func TestAtomicGivesUpAfterMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine(t, 0, Config{})
		const attempts = 12
		var at []time.Time
		cause := pgErr("40P01")
		err := e.Atomic(context.Background(), attempts, func() error {
			at = append(at, time.Now())
			return cause
		})
		if len(at) != attempts {
			t.Fatalf("%d tries", len(at))
		}
		if err == nil || !strings.HasPrefix(err.Error(), "switchyard: gave up after 12 attempts: ") || !errors.Is(err, cause) || pgErrCode(err) != "40P01" {
			t.Fatalf("%v", err)
		}
		for i := 1; i < len(at); i++ {
			d := min(10*time.Millisecond<<(i-1), time.Second)
			if gap := at[i].Sub(at[i-1]); gap < d/2 || gap > d {
				t.Errorf("wait after try %d: %v, want in [%v, %v]", i, gap, d/2, d)
			}
		}
		if st := e.Stats(); st.AtomicRetries != attempts-1 {
			t.Errorf("atomic retries %d", st.AtomicRetries)
		}
	})
}

// What proves nothing committed is run again; what does not, never.
func TestAtomicRunsAgainOnlyWhatDidNotCommit(t *testing.T) {
	for _, c := range []struct {
		name  string
		err   error
		again bool
	}{
		{"serialization failure", pgErr("40001"), true},
		{"connection lost before COMMIT", io.EOF, true},
		{"server shutting down", &pgconn.PgError{Code: "57P01", Severity: "FATAL"}, true},
		{"in-doubt COMMIT found aborted", &NotCommittedError{errors.New("EOF")}, true},
		{"stale statement", staleErr(), true},
		{"in-doubt COMMIT unknown", ErrCommitUnknown, false},
		{"no primary", ErrNoPrimary, false},
		{"the caller's own", errors.New("insufficient funds"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				e := newEngine(t, 0, Config{})
				calls := 0
				err := e.Atomic(context.Background(), 3, func() error {
					calls++
					if calls == 2 {
						return nil
					}
					return c.err
				})
				if c.again && (err != nil || calls != 2) || !c.again && (!errors.Is(err, c.err) || calls != 1) {
					t.Errorf("%v after %d calls", err, calls)
				}
			})
		})
	}
}

// A Commit that carries a capture: the session's position is read after
// COMMIT in the same round trip and nothing is marked; if the capture does
// not arrive, the commit stands and the session is marked dirty.
func TestCommitCapture(t *testing.T) {
	for _, c := range []struct {
		name    string
		capture func() any // the reply's value; nil: a failure
		fail    bool
		pos     lsn.LSN
	}{
		{name: "captured", capture: func() any { return "0/5000000" }, pos: 0x5000000},
		{name: "just past a page header", capture: func() any { return "0/5000018" }, pos: 0x5000000},
		{name: "refused", fail: true},
		{name: "NULL", capture: func() any { return nil }},
	} {
		t.Run(c.name, func(t *testing.T) {
			cs := &commitScript{}
			cc := newCommit(t, Config{}, cs)
			cluster(cc.e).BlockSize = 8192
			cc.srv.SetHandler(func(q pgscript.Query) pgscript.Reply {
				if q.SQL == CaptureSQL {
					if c.fail {
						return pgscript.Fail("55000", "no")
					}
					return pgscript.Row(c.capture())
				}
				return cs.handle(q)
			})
			cc.plan.WillCapture()
			tag, err := cc.commit(t)
			if err != nil || tag != "COMMIT" {
				t.Fatalf("%q %v", tag, err)
			}
			if h := cc.srv.History(); strings.Join(h, "|") != "BEGIN|"+xidSQL+"|COMMIT|"+CaptureSQL {
				t.Errorf("history %q", h)
			}
			pos := cc.s.position(cluster(cc.e).Key())
			if c.pos != 0 {
				if pos.dirty() || pos.LSN() != c.pos || pos.marks.Load() != 0 {
					t.Errorf("dirty %v at %v, %d marks", pos.dirty(), pos.LSN(), pos.marks.Load())
				}
				return
			}
			if !pos.dirty() || pos.marks.Load() != 2 {
				t.Errorf("no capture: dirty %v, %d marks", pos.dirty(), pos.marks.Load())
			}
		})
	}
}
