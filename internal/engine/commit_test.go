package engine

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

const (
	testXid     = "1234"
	testStarted = "1700000000.5"
)

// commitScript is a primary that answers xidSQL, COMMIT and resolveSQL as
// a test needs.
type commitScript struct {
	xid, commit pgscript.Reply
	// resolve answers resolveSQL's call-th time (from 1); nil: committed.
	resolve  func(call int64, q pgscript.Query) pgscript.Reply
	resolves atomic.Int64
	sawXid   atomic.Value // the parameter resolveSQL was asked about
}

func (cs *commitScript) handle(q pgscript.Query) pgscript.Reply {
	switch q.SQL {
	case "BEGIN":
		return pgscript.Reply{}
	case xidSQL:
		return cs.xid
	case "COMMIT":
		return cs.commit
	case resolveSQL:
		cs.sawXid.Store(q.Param(0))
		n := cs.resolves.Add(1)
		if cs.resolve == nil {
			return resolved("committed", testStarted, "f", "0:1", nil)
		}
		return cs.resolve(n, q)
	}
	return pgscript.Fail("42601", "unexpected: "+q.SQL)
}

// resolved is resolveSQL's answer: status, server start, whether the
// checkpoint is the end of recovery, its next_xid, and whether the commit
// predates the start (nil for NULL).
func resolved(status, started, endOfRecovery, nextXid, committedBeforeStart any) pgscript.Reply {
	return pgscript.Rows(pgscript.TextColumns("status", "started", "eor", "next", "before"),
		[]any{status, started, endOfRecovery, nextXid, committedBeforeStart})
}

type commitCase struct {
	e      *Engine
	srv    *pgscript.Server
	script *commitScript
	conn   *pgconn.PgConn
	plan   *Plan
	lend   *lender
	s      *Session
}

// newCommit opens a transaction on a scripted primary, as BeginTx would.
func newCommit(t *testing.T, cfg Config, cs *commitScript) *commitCase {
	t.Helper()
	if cs.xid.Columns == nil && cs.xid.Error == nil && !cs.xid.Drop && !cs.xid.Hang {
		cs.xid = pgscript.Row(testXid, testStarted)
	}
	if cs.commit.Tag == "" && cs.commit.Error == nil && !cs.commit.Drop && !cs.commit.Hang {
		cs.commit.Tag = "COMMIT"
	}
	e := newEngine(t, 1, cfg)
	primary(e).SetTimeline(1)
	srv := scripted(t, cs.handle)
	l := newLender(t)
	l.serve(primary(e), srv)
	conn := dial(t, srv)
	if _, err := conn.Exec(ctxT(t), "BEGIN").ReadAll(); err != nil {
		t.Fatal(err)
	}
	s := NewSession()
	var p Plan
	e.PlanTx(context.Background(), &p, &Options{Session: s}, cluster(e), false, false)
	if err := e.Ready(context.Background(), &p); err != nil {
		t.Fatal(err)
	}
	p.Begin()
	return &commitCase{e: e, srv: srv, script: cs, conn: conn, plan: &p, lend: l, s: s}
}

func (c *commitCase) commit(t *testing.T) (string, error) {
	t.Helper()
	tag, err := c.e.Commit(ctxT(t), c.plan, c.conn, c.lend.lend)
	c.plan.Finish(err)
	return tag.String(), err
}

func notCommitted(err error) bool {
	var nc *NotCommittedError
	return errors.As(err, &nc)
}

var refused = &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}

func TestCommitSuccess(t *testing.T) {
	c := newCommit(t, Config{}, &commitScript{})
	tag, err := c.commit(t)
	if err != nil || tag != "COMMIT" {
		t.Fatalf("%q %v", tag, err)
	}
	if h := c.srv.History(); strings.Join(h, "|") != "BEGIN|"+xidSQL+"|COMMIT" {
		t.Errorf("history %q", h)
	}
	pos := c.s.position(cluster(c.e).Key())
	if pos.marks.Load() != 2 || !pos.dirty() || e2g(c.e).marks.Load() != 2 {
		t.Errorf("marks %d, DB-wide %d", pos.marks.Load(), e2g(c.e).marks.Load())
	}
	if !primary(c.e).Healthy() || c.lend.calls.Load() != 0 || c.conn.IsClosed() {
		t.Error("side effects")
	}
	if c.conn.TxStatus() != 'I' {
		t.Errorf("tx status %c", c.conn.TxStatus())
	}
}

func e2g(e *Engine) *Position { return e.global.position(cluster(e).Key()) }

func TestCommitRollbackTag(t *testing.T) {
	c := newCommit(t, Config{}, &commitScript{commit: pgscript.Tag("ROLLBACK")})
	if tag, err := c.commit(t); err != nil || tag != "ROLLBACK" {
		t.Fatalf("%q %v", tag, err)
	}
}

func TestCommitReplyThenConnectionBroke(t *testing.T) {
	c := newCommit(t, Config{}, &commitScript{commit: pgscript.Reply{Tag: "COMMIT", DropAfter: true}})
	if tag, err := c.commit(t); err != nil || tag != "COMMIT" {
		t.Fatalf("%q %v", tag, err)
	}
	if !primary(c.e).Healthy() || c.script.resolves.Load() != 0 {
		t.Error("a known outcome was resolved")
	}
}

func TestCommitErrorBeforeXid(t *testing.T) {
	for name, reply := range map[string]pgscript.Reply{
		"error": pgscript.Fail("25P02", "current transaction is aborted"),
		"fatal": pgscript.Fatal("57P01", "terminating connection due to administrator command"),
	} {
		t.Run(name, func(t *testing.T) {
			c := newCommit(t, Config{}, &commitScript{xid: reply})
			_, err := c.commit(t)
			if !notCommitted(err) || pgErrCode(err) != reply.Error.Code || !RetryableTx(err) {
				t.Fatalf("%v", err)
			}
			for _, q := range c.srv.History() {
				if q == "COMMIT" {
					t.Error("COMMIT reached the handler")
				}
			}
			if c.script.resolves.Load() != 0 || !primary(c.e).Healthy() {
				t.Error("resolved")
			}
		})
	}
}

func TestCommitErrorReturnedAsIs(t *testing.T) {
	for _, code := range []string{"40001", "23505"} {
		c := newCommit(t, Config{}, &commitScript{commit: pgscript.Fail(code, "could not commit")})
		_, err := c.commit(t)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != code || notCommitted(err) || errors.Is(err, ErrCommitUnknown) {
			t.Fatalf("%s: %v", code, err)
		}
		if c.script.resolves.Load() != 0 || !primary(c.e).Healthy() || c.conn.IsClosed() {
			t.Error("side effects")
		}
	}
}

func TestCommitConnectionLostBeforeXid(t *testing.T) {
	c := newCommit(t, Config{}, &commitScript{xid: pgscript.Reply{Drop: true}})
	_, err := c.commit(t)
	if !errors.Is(err, ErrCommitUnknown) || RetryableTx(err) || !strings.Contains(err.Error(), "before the transaction id") {
		t.Fatalf("%v", err)
	}
	if c.e.Stats().InDoubtUnknown != 1 || c.lend.calls.Load() != 0 {
		t.Errorf("stats %+v, lent %d", c.e.Stats(), c.lend.calls.Load())
	}
	// A reply without the id is no better.
	c = newCommit(t, Config{}, &commitScript{xid: pgscript.Row(testXid)})
	if _, err := c.commit(t); !errors.Is(err, ErrCommitUnknown) {
		t.Fatalf("short reply: %v", err)
	}
}

func TestCommitXidNull(t *testing.T) {
	c := newCommit(t, Config{}, &commitScript{xid: pgscript.Row(nil, testStarted), commit: pgscript.Reply{Drop: true}})
	_, err := c.commit(t)
	if !notCommitted(err) || c.script.resolves.Load() != 0 {
		t.Fatalf("%v, %d resolves", err, c.script.resolves.Load())
	}
}

func TestCommitNothingSent(t *testing.T) {
	c := newCommit(t, Config{}, &commitScript{})
	c.conn.Close(context.Background())
	_, err := c.commit(t)
	if !pgconn.SafeToRetry(err) || !RetryableTx(err) || notCommitted(err) || errors.Is(err, ErrCommitUnknown) {
		t.Fatalf("%v", err)
	}
	if len(c.srv.History()) != 1 { // BEGIN only
		t.Errorf("history %q", c.srv.History())
	}
}

// doubtful: the id arrives, then the connection drops instead of answering
// COMMIT.
func doubtful(resolve func(int64, pgscript.Query) pgscript.Reply) *commitScript {
	return &commitScript{commit: pgscript.Reply{Drop: true}, resolve: resolve}
}

func always(r pgscript.Reply) func(int64, pgscript.Query) pgscript.Reply {
	return func(int64, pgscript.Query) pgscript.Reply { return r }
}

func TestCommitInDoubtCommitted(t *testing.T) {
	c := newCommit(t, Config{}, doubtful(nil))
	tag, err := c.commit(t)
	if err != nil {
		t.Fatalf("%q %v", tag, err)
	}
	if v := c.script.sawXid.Load(); v != testXid {
		t.Errorf("asked about %v", v)
	}
	if st := c.e.Stats(); st.InDoubtCommitted != 1 || st.InDoubtAborted != 0 || st.InDoubtUnknown != 0 {
		t.Errorf("stats %+v", st)
	}
	if primary(c.e).Healthy() {
		t.Error("the primary whose connection died during COMMIT is still in rotation")
	}
	if pos := c.s.position(cluster(c.e).Key()); pos.marks.Load() != 2 {
		t.Errorf("marks %d", pos.marks.Load())
	}
	eventually(t, "the lent connection to close", func() bool { return c.srv.Open() == 0 })
}

func TestCommitInDoubtAfterFatal(t *testing.T) {
	// A FATAL can follow a commit (a canceled synchronous replication
	// wait): asked, not assumed.
	cs := doubtful(nil)
	cs.commit = pgscript.Fatal("57P01", "terminating connection due to administrator command")
	c := newCommit(t, Config{}, cs)
	if _, err := c.commit(t); err != nil {
		t.Fatal(err)
	}
	if c.script.resolves.Load() != 1 {
		t.Errorf("%d resolves", c.script.resolves.Load())
	}
}

func TestCommitInDoubtAfterContextEnded(t *testing.T) {
	// COMMIT hangs until the caller's context ends; the outcome is still
	// asked for, past the caller's end.
	cs := doubtful(nil)
	arrived := make(chan struct{})
	cs.commit = pgscript.Reply{Hang: true}
	c := newCommit(t, Config{}, cs)
	c.srv.SetHandler(func(q pgscript.Query) pgscript.Reply {
		if q.SQL == "COMMIT" {
			close(arrived)
		}
		return cs.handle(q)
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := c.e.Commit(ctx, c.plan, c.conn, c.lend.lend)
		errc <- err
	}()
	<-arrived
	// The id is in: Commit waits for COMMIT's reply.
	stackedIn(t, "engine.readTag", "[IO wait")
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if c.e.Stats().InDoubtCommitted != 1 {
		t.Errorf("stats %+v", c.e.Stats())
	}
}

func TestCommitInDoubtAborted(t *testing.T) {
	c := newCommit(t, Config{}, doubtful(always(resolved("aborted", testStarted, "f", "0:1", nil))))
	_, err := c.commit(t)
	if !notCommitted(err) || !RetryableTx(err) || c.e.Stats().InDoubtAborted != 1 {
		t.Fatalf("%v %+v", err, c.e.Stats())
	}
	if !pgerrIsConnLoss(err) {
		t.Errorf("cause lost: %v", err)
	}
}

func pgerrIsConnLoss(err error) bool {
	var nc *NotCommittedError
	return errors.As(err, &nc) && nc.Cause != nil && !strings.Contains(nc.Error(), "sqlstate")
}

func TestCommitInDoubtStillInProgressThenCommitted(t *testing.T) {
	c := newCommit(t, Config{}, doubtful(func(n int64, _ pgscript.Query) pgscript.Reply {
		if n < 3 {
			return resolved("in progress", testStarted, "f", "0:1", nil)
		}
		return resolved("committed", testStarted, "f", "0:1", nil)
	}))
	if _, err := c.commit(t); err != nil {
		t.Fatal(err)
	}
	if n := c.script.resolves.Load(); n != 3 {
		t.Errorf("%d resolves", n)
	}
}

func TestCommitInDoubtTooOld(t *testing.T) {
	c := newCommit(t, Config{}, doubtful(always(resolved(nil, testStarted, "f", "0:1", nil))))
	_, err := c.commit(t)
	if !errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "too old") || RetryableTx(err) {
		t.Fatalf("%v", err)
	}
	if c.e.Stats().InDoubtUnknown != 1 {
		t.Errorf("stats %+v", c.e.Stats())
	}
}

func TestCommitInDoubtPrimaryChanged(t *testing.T) {
	t.Run("promoted", func(t *testing.T) {
		c := newCommit(t, Config{}, doubtful(nil))
		// The primary does not answer; meanwhile a replica is promoted.
		c.lend.fail = func(n *topology.Node, call int64) error {
			if call == 1 {
				promote(cluster(c.e), replica(c.e, 1), 2)
			}
			return refused
		}
		_, err := c.commit(t)
		if !errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "primary changed") {
			t.Fatalf("%v", err)
		}
		if c.lend.calls.Load() != 1 {
			t.Errorf("asked %d times", c.lend.calls.Load())
		}
	})
	t.Run("new timeline", func(t *testing.T) {
		c := newCommit(t, Config{}, doubtful(nil))
		c.lend.fail = func(n *topology.Node, call int64) error {
			n.SetTimeline(2)
			return refused
		}
		if _, err := c.commit(t); !errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "primary changed") {
			t.Fatalf("%v", err)
		}
	})
}

func TestCommitInDoubtPrimaryUnreachableThenCommitted(t *testing.T) {
	c := newCommit(t, Config{}, doubtful(nil))
	c.lend.fail = func(n *topology.Node, call int64) error {
		if call <= 3 {
			return refused
		}
		return nil
	}
	if _, err := c.commit(t); err != nil {
		t.Fatal(err)
	}
	if c.lend.calls.Load() != 4 || c.script.resolves.Load() != 1 {
		t.Errorf("calls %d, resolves %d", c.lend.calls.Load(), c.script.resolves.Load())
	}
	// A query that dies with its connection is asked again too.
	c = newCommit(t, Config{}, doubtful(func(n int64, _ pgscript.Query) pgscript.Reply {
		if n == 1 {
			return pgscript.Reply{Drop: true}
		}
		return resolved("aborted", testStarted, "f", "0:1", nil)
	}))
	if _, err := c.commit(t); !notCommitted(err) || c.script.resolves.Load() != 2 {
		t.Fatalf("%v after %d resolves", err, c.script.resolves.Load())
	}
}

func TestCommitInDoubtRestartedXidReused(t *testing.T) {
	// The server restarted; recovery's next_xid (0:1000) is at or below
	// our id: recovery never saw it, so its WAL was lost and the id may
	// have been handed out again: whatever the status says, not ours.
	c := newCommit(t, Config{}, doubtful(always(resolved("committed", "1700000999.25", "t", "0:1000", nil))))
	_, err := c.commit(t)
	if !notCommitted(err) || c.e.Stats().InDoubtAborted != 1 {
		t.Fatalf("%v", err)
	}
	// Below next_xid: recovery accounted for it, and the status is ours.
	c = newCommit(t, Config{}, doubtful(always(resolved("committed", "1700000999.25", "t", "0:2000", nil))))
	if _, err := c.commit(t); err != nil {
		t.Fatal(err)
	}
}

func TestCommitInDoubtRestartedCheckpointGone(t *testing.T) {
	for _, eor := range []any{"f", nil} {
		c := newCommit(t, Config{}, doubtful(always(resolved("committed", "1700000999.25", eor, "0:2000", nil))))
		_, err := c.commit(t)
		if !errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "checkpoint since is gone") {
			t.Fatalf("eor %v: %v", eor, err)
		}
	}
	// Aborted is aborted, whoever owns the id.
	c := newCommit(t, Config{}, doubtful(always(resolved("aborted", "1700000999.25", "f", nil, nil))))
	if _, err := c.commit(t); !notCommitted(err) {
		t.Fatal(err)
	}
}

func TestCommitInDoubtCommitTimestamp(t *testing.T) {
	// Committed before the restart: ours, even if recovery's next_xid says
	// the id could have been reused.
	c := newCommit(t, Config{}, doubtful(always(resolved("committed", "1700000999.25", "t", "0:1000", "t"))))
	if _, err := c.commit(t); err != nil {
		t.Fatal(err)
	}
	// Committed after it: the id's new owner.
	c = newCommit(t, Config{}, doubtful(always(resolved("committed", "1700000999.25", "t", "0:2000", "f"))))
	if _, err := c.commit(t); !notCommitted(err) {
		t.Fatal(err)
	}
}

func TestCommitInDoubtAskFailed(t *testing.T) {
	c := newCommit(t, Config{Secrets: []string{"hunter2"}}, doubtful(always(pgscript.Fail("42883", "function pg_xact_status(xid8) does not exist, password hunter2"))))
	_, err := c.commit(t)
	if !errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "asking failed") {
		t.Fatalf("%v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("a secret in the error: %v", err)
	}
	// An answer of the wrong shape.
	c = newCommit(t, Config{}, doubtful(always(pgscript.Row("committed"))))
	if _, err := c.commit(t); !errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "unexpected answer") {
		t.Fatalf("%v", err)
	}
}

// The primary never answers: the outcome is unknown once ResolveWindow
// (PrimaryWait and 5 s) has passed. It runs in a synctest bubble, on its
// fake clock, against a scripted primary reached in memory: the 5 s pass at
// once.
func TestCommitInDoubtNoAnswer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEngine(t, 0, Config{PrimaryWait: time.Millisecond})
		cs := doubtful(nil)
		cs.xid, cs.commit.Tag = pgscript.Row(testXid, testStarted), "COMMIT"
		srv := pgscript.NewServer(pgscript.Config{Handler: cs.handle})
		defer srv.Close()
		cfg := config(t, srv)
		cfg.DialFunc = srv.Dial
		conn, err := pgconn.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "BEGIN").ReadAll(); err != nil {
			t.Fatal(err)
		}
		var p Plan
		e.PlanTx(context.Background(), &p, nil, cluster(e), false, false)
		p.Begin()
		l := newLender(t)
		l.fail = func(*topology.Node, int64) error { return refused }
		start := time.Now()
		_, err = e.Commit(context.Background(), &p, conn, l.lend)
		p.Finish(err)
		if !errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "did not answer") {
			t.Fatalf("%v", err)
		}
		if d := time.Since(start); d < e.ResolveWindow() || d > e.ResolveWindow()+resolvePoll {
			t.Errorf("gave up after %v, the window is %v", d, e.ResolveWindow())
		}
		// Asked every resolvePoll all along.
		if n, want := l.calls.Load(), int64(e.ResolveWindow()/resolvePoll); n < want-1 || n > want+1 {
			t.Errorf("asked %d times, want about %d", n, want)
		}
		if e.Stats().InDoubtUnknown != 1 || cs.resolves.Load() != 0 {
			t.Errorf("stats %+v", e.Stats())
		}
	})
}

func TestJudge(t *testing.T) {
	d := inDoubt{xid: "5000", started: testStarted}
	b := func(s string) []byte {
		if s == "NULL" {
			return nil
		}
		return []byte(s)
	}
	row := func(status, started, eor, next, before string) resolveRow {
		return resolveRow{b(status), b(started), b(eor), b(next), b(before)}
	}
	const other = "1700000999.25"
	for _, c := range []struct {
		name                  string
		r                     resolveRow
		committed, known, why bool
	}{
		{"too old", row("NULL", testStarted, "f", "0:1", "NULL"), false, false, true},
		{"in progress", row("in progress", testStarted, "f", "0:1", "NULL"), false, false, false},
		{"committed", row("committed", testStarted, "f", "0:1", "NULL"), true, true, false},
		{"aborted", row("aborted", testStarted, "f", "0:1", "NULL"), false, true, false},
		{"same start, timestamp ignored", row("committed", testStarted, "f", "0:1", "f"), true, true, false},
		{"restarted, committed before start", row("committed", other, "f", "NULL", "t"), true, true, false},
		{"restarted, committed after start", row("committed", other, "t", "0:9999", "f"), false, true, false},
		{"restarted, aborted, timestamp t", row("aborted", other, "t", "0:9999", "t"), false, true, false},
		{"restarted, below next_xid", row("committed", other, "t", "0:5001", "NULL"), true, true, false},
		{"restarted, at next_xid", row("committed", other, "t", "0:5000", "NULL"), false, true, false},
		{"restarted, next epoch", row("committed", other, "t", "1:0", "NULL"), true, true, false},
		{"restarted, no end-of-recovery checkpoint", row("committed", other, "f", "0:9999", "NULL"), false, false, true},
		{"restarted, end of recovery unknown", row("committed", other, "NULL", "0:9999", "NULL"), false, false, true},
		{"restarted, next_xid unknown", row("committed", other, "t", "NULL", "NULL"), false, false, true},
		{"restarted, aborted, checkpoint gone", row("aborted", other, "f", "NULL", "NULL"), false, true, false},
		{"start unknown", row("committed", "NULL", "t", "0:9999", "NULL"), true, true, false},
		{"start unknown, reused", row("committed", "NULL", "t", "0:10", "NULL"), false, true, false},
	} {
		committed, known, why := judge(d, c.r)
		if committed != c.committed || known != c.known || (why != "") != c.why {
			t.Errorf("%s: committed %v known %v why %q", c.name, committed, known, why)
		}
	}
}

func TestXidBelow(t *testing.T) {
	for _, c := range []struct {
		xid, next string
		want      bool
	}{
		{"5", "0:6", true},
		{"6", "0:6", false},
		{"7", "0:6", false},
		{"4294967296", "1:0", false},
		{"4294967295", "1:0", true},
		{"4294967297", "1:2", true},
		{"18446744073709551615", "4294967295:4294967295", false},
		{"0", "0:1", true},
		{"", "0:6", false},
		{"x", "0:6", false},
		{"-1", "0:6", false},
		{"5", "6", false},
		{"5", ":6", false},
		{"5", "0:", false},
		{"5", "4294967296:0", false},
		{"5", "0:4294967296", false},
		{"5", "a:b", false},
	} {
		if got := xidBelow(c.xid, c.next); got != c.want {
			t.Errorf("xidBelow(%q, %q) = %v", c.xid, c.next, got)
		}
	}
}
