package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Every test of CommitAcross runs in a synctest bubble against scripted
// primaries reached in memory: waits for a primary (PrimaryWait) pass on
// the bubble's clock, synctest.Wait tells when the commit is stuck waiting,
// and the bubble fails the test if a goroutine is left behind.

func TestCommitAcrossWithoutWritersCommitsEachPart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 3, Config{})
		phase := phases(t)
		parts := a.begin(t, false, false, false)
		if err := a.commit(context.Background(), parts); err != nil {
			t.Fatal(err)
		}
		for i, s := range a.srv {
			if h := strings.Join(s.History(), "|"); h != "BEGIN|COMMIT" {
				t.Errorf("cluster %d: %q", i, h)
			}
		}
		if phase() != "" || a.lend.calls.Load() != 0 {
			t.Errorf("phases %q, %d connections lent", phase(), a.lend.calls.Load())
		}
		idleOrBroken(t, parts)
	})
}

func TestCommitAcrossOneWriterCommitsAlone(t *testing.T) {
	for _, c := range []struct {
		name   string
		commit pgscript.Reply
		want   func(error) bool
	}{
		{"committed", pgscript.Tag("COMMIT"), func(err error) bool { return err == nil }},
		{"rolled back", pgscript.Tag("ROLLBACK"), func(err error) bool { return errors.Is(err, errRolledBack) }},
		{"refused", pgscript.Fail("40001", "could not serialize access"), func(err error) bool { return pgErrCode(err) == "40001" }},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 2, Config{})
				phase := phases(t)
				parts := a.begin(t, false, true)
				a.on(1, "COMMIT", func(pgscript.Query) pgscript.Reply {
					r := c.commit
					r.TxStatus = 'I'
					return r
				})
				if err := a.commit(context.Background(), parts); !c.want(err) {
					t.Fatalf("%v", err)
				}
				// The reader commits first; the writer as any transaction
				// does: its id, then COMMIT, in one round trip.
				if h := strings.Join(a.srv[0].History(), "|"); h != "BEGIN|COMMIT" {
					t.Errorf("reader: %q", h)
				}
				if h := strings.Join(a.srv[1].History(), "|"); h != "BEGIN|"+xidSQL+"|COMMIT" {
					t.Errorf("writer: %q", h)
				}
				if phase() != "" {
					t.Errorf("two-phase commit for one writer: %q", phase())
				}
				idleOrBroken(t, parts)
			})
		})
	}
}

func TestCommitAcrossReaderCommitRefusedRollsBackTheRest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 3, Config{})
		parts := a.begin(t, false, false, true)
		a.on(1, "COMMIT", func(pgscript.Query) pgscript.Reply {
			r := pgscript.Fail("40001", "could not serialize access due to read/write dependencies")
			r.TxStatus = 'I'
			return r
		})
		if err := a.commit(context.Background(), parts); pgErrCode(err) != "40001" {
			t.Fatalf("%v", err)
		}
		if h := strings.Join(a.srv[2].History(), "|"); h != "BEGIN|ROLLBACK" {
			t.Errorf("the writer: %q", h)
		}
		idleOrBroken(t, parts)
	})
}

var gidPattern = regexp.MustCompile(`^switchyard:` + fmt.Sprint(uint64(testSystem)) + `:` + nameTag("default") + `:[0-9a-f]{24}$`)

func TestCommitAcrossCommitsEveryPart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 3, Config{})
		phase := phases(t)
		parts := a.begin(t, true, true, true)
		if err := a.commit(context.Background(), parts); err != nil {
			t.Fatal(err)
		}
		if got := phase(); got != "preparing prepared decided committed" {
			t.Errorf("phases %q", got)
		}
		gid := a.gid(t, 1)
		if !gidPattern.MatchString(gid) || a.gid(t, 2) != gid {
			t.Fatalf("gids %q, %q", gid, a.gid(t, 2))
		}
		// The coordinator (the first writer) made the decisions table, then
		// inserted the decision in its transaction and committed it.
		if h := strings.Join(a.srv[0].History(), "|"); h != "BEGIN|"+DecisionsSQL+"|"+decisionSQL+"|"+xidSQL+"|COMMIT" {
			t.Errorf("coordinator: %q", h)
		}
		if committed, ok := a.srv[0].decision(gid); !ok || !committed {
			t.Errorf("decision row %v %v", committed, ok)
		}
		for i := 1; i < 3; i++ {
			if h := strings.Join(a.srv[i].History(), "|"); h != "BEGIN|PREPARE TRANSACTION '"+gid+"'|COMMIT PREPARED '"+gid+"'" {
				t.Errorf("part %d: %q", i, h)
			}
			if left := a.srv[i].preparedGIDs(); len(left) != 0 {
				t.Errorf("part %d: still prepared: %v", i, left)
			}
		}
		idleOrBroken(t, parts)
		for _, p := range parts {
			if p.Conn.IsClosed() {
				t.Error("a part's connection closed")
			}
		}
		// The session reads its writes: the next read of every cluster
		// goes to its primary, with a capture.
		for i := range a.srv {
			var p Plan
			a.e.PlanRead(context.Background(), &p, &Options{Session: a.s}, a.cluster(i))
			if p.Reason != ReasonAfterWrite || p.After != AfterCapture {
				t.Errorf("cluster %d: the next read: %v, after %d", i, p.Reason, p.After)
			}
		}

		// The table is made once; every block has a gid of its own.
		parts = a.begin(t, true, true, true)
		if err := a.commit(context.Background(), parts); err != nil {
			t.Fatal(err)
		}
		if made, _, _ := a.srv[0].counts(); made != 1 {
			t.Errorf("decisions table made %d times", made)
		}
		if ended := a.srv[1].ended(); len(ended) != 2 || ended[0] == ended[1] {
			t.Errorf("ended %v", ended)
		}
	})
}

// noneCommitted checks that a block across clusters left nothing
// committed and nothing prepared: no decision row, every prepared part
// rolled back.
func noneCommitted(t *testing.T, a *across, gid string) {
	t.Helper()
	if committed, ok := a.srv[0].decision(gid); ok && committed {
		t.Error("the decision to commit is recorded")
	}
	for i, s := range a.srv {
		if left := s.preparedGIDs(); len(left) != 0 {
			t.Errorf("cluster %d: still prepared: %v", i, left)
		}
		for _, e := range s.ended() {
			if strings.HasPrefix(e, "COMMIT") {
				t.Errorf("cluster %d: %s", i, e)
			}
		}
	}
}

func TestCommitAcrossPrepareRefused(t *testing.T) {
	for _, c := range []struct {
		name, code string
		retryable  bool
	}{
		// A conflict with another transaction: running the block again can
		// succeed.
		{"serialization failure", "40001", true},
		// A deferred constraint checked at PREPARE: the block's own
		// failure, as it would be at a single cluster's COMMIT.
		{"deferred unique constraint", "23505", false},
		{"deferred foreign key", "23503", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				phase := phases(t)
				parts := a.begin(t, true, true, true)
				a.on(1, "PREPARE TRANSACTION", func(pgscript.Query) pgscript.Reply {
					r := pgscript.Fail(c.code, "refused")
					r.TxStatus = 'I' // PREPARE that fails is a ROLLBACK
					return r
				})
				err := a.commit(context.Background(), parts)
				if pgErrCode(err) != c.code || RetryableTx(err) != c.retryable || notCommitted(err) != c.retryable {
					t.Fatalf("%v: retryable %v, not committed %v", err, RetryableTx(err), notCommitted(err))
				}
				if phase() != "preparing" {
					t.Errorf("phases %q", phase())
				}
				gid := a.gid(t, 2)
				noneCommitted(t, a, gid)
				// The coordinator rolled back; the part that prepared was
				// rolled back on its connection; the one that refused was
				// not asked again.
				if !slices.Contains(a.srv[0].History(), "ROLLBACK") {
					t.Error("the coordinator was not rolled back")
				}
				if got := a.srv[2].ended(); !slices.Equal(got, []string{"ROLLBACK " + gid}) {
					t.Errorf("the prepared part: %v", got)
				}
				if a.srv[1].sent("ROLLBACK PREPARED") {
					t.Error("the part that refused got ROLLBACK PREPARED")
				}
				idleOrBroken(t, parts)
			})
		})
	}
}

// The coordinator's insert of the decision fails on its key: recovery
// recorded an abort for the gid first (a part prepared longer ago than
// RecoveryGrace). Nothing is committed, and the block may run again.
func TestCommitAcrossDecisionKeyTakenRunsAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 2, Config{})
		parts := a.begin(t, true, true)
		a.on(0, decisionSQL, func(q pgscript.Query) pgscript.Reply {
			a.srv[0].decide(q.Param(0), false)
			return a.srv[0].answer(q)
		})
		err := a.commit(context.Background(), parts)
		if pgErrCode(err) != "23505" || !notCommitted(err) || !RetryableTx(err) {
			t.Fatalf("%v", err)
		}
		gid := a.gid(t, 1)
		noneCommitted(t, a, gid)
		if got := a.srv[1].ended(); !slices.Equal(got, []string{"ROLLBACK " + gid}) {
			t.Errorf("the prepared part: %v", got)
		}
		idleOrBroken(t, parts)
	})
}

// cameBack waits until every other goroutine of the bubble is blocked,
// checks that the commit has not returned and that cluster i's primary is
// out of rotation (the commit waits for it), and brings it back, as the
// monitor would once it answers.
func (a *across) cameBack(t *testing.T, i int, errc <-chan error) {
	t.Helper()
	synctest.Wait()
	select {
	case err := <-errc:
		t.Fatalf("returned without waiting for the primary: %v", err)
	default:
	}
	n := a.cluster(i).Primary()
	if n.Healthy() {
		t.Fatalf("cluster %d's primary is still in rotation", i)
	}
	n.MarkUp(time.Now())
}

func TestCommitAcrossPrepareConnectionLost(t *testing.T) {
	for _, c := range []struct {
		name string
		ran  bool // PREPARE ran before the connection dropped
	}{
		{"before PREPARE ran", false},
		{"after PREPARE ran", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				parts := a.begin(t, true, true, true)
				if c.ran {
					a.on(1, "PREPARE TRANSACTION", ranThenDropped(a.srv[1]))
				} else {
					a.on(1, "PREPARE TRANSACTION", dropped)
				}
				errc := make(chan error, 1)
				go func() { errc <- a.commit(context.Background(), parts) }()
				// The part may be prepared: it is rolled back once its
				// primary answers again, on a new connection.
				a.cameBack(t, 1, errc)
				err := <-errc
				if !notCommitted(err) || !RetryableTx(err) {
					t.Fatalf("%v", err)
				}
				gid := a.gid(t, 2)
				noneCommitted(t, a, gid)
				if !a.srv[1].sent("ROLLBACK PREPARED '" + gid + "'") {
					t.Error("the part whose connection was lost was not rolled back")
				}
				if want := c.ran; slices.Contains(a.srv[1].ended(), "ROLLBACK "+gid) != want {
					t.Errorf("ended %v", a.srv[1].ended())
				}
				if !parts[1].Conn.IsClosed() {
					t.Error("the lost connection is open")
				}
				idleOrBroken(t, parts)
			})
		})
	}
}

func TestCommitAcrossDecisionRefused(t *testing.T) {
	for _, c := range []struct {
		name   string
		commit pgscript.Reply
		want   func(error) bool
	}{
		{"serialization failure", pgscript.Fail("40001", "could not serialize access"), func(err error) bool {
			return pgErrCode(err) == "40001" && notCommitted(err) && RetryableTx(err)
		}},
		{"deferred constraint", pgscript.Fail("23505", "duplicate key value"), func(err error) bool {
			return pgErrCode(err) == "23505" && !RetryableTx(err)
		}},
		{"rolled back", pgscript.Tag("ROLLBACK"), func(err error) bool { return errors.Is(err, errRolledBack) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				phase := phases(t)
				parts := a.begin(t, true, true, true)
				a.on(0, "COMMIT", func(q pgscript.Query) pgscript.Reply {
					a.srv[0].answer(pgscript.Query{SQL: "ROLLBACK", Conn: q.Conn})
					r := c.commit
					r.TxStatus = 'I'
					return r
				})
				err := a.commit(context.Background(), parts)
				if !c.want(err) || errors.Is(err, ErrCommitUnknown) {
					t.Fatalf("%v", err)
				}
				if phase() != "preparing prepared" {
					t.Errorf("phases %q", phase())
				}
				gid := a.gid(t, 1)
				noneCommitted(t, a, gid)
				for i := 1; i < 3; i++ {
					if got := a.srv[i].ended(); !slices.Equal(got, []string{"ROLLBACK " + gid}) {
						t.Errorf("part %d: %v", i, got)
					}
				}
				idleOrBroken(t, parts)
			})
		})
	}
}

// The coordinator's COMMIT is lost and pg_xact_status cannot tell (too
// old to look up): the decision row says what became of it, once the
// coordinator's primary answers again.
func TestCommitAcrossDecisionInDoubtReadBack(t *testing.T) {
	for _, c := range []struct {
		name string
		// ran: COMMIT ran before the connection dropped.
		ran bool
		// lostAgain: the first connection to read the decision is refused
		// too (the primary goes out of rotation once more).
		lostAgain bool
	}{
		{"committed", true, false},
		{"committed, read on a second try", true, true},
		// No row: the abort is recorded, so that the lost COMMIT, were it
		// still on its way, would fail on the key.
		{"aborted", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				phase := phases(t)
				parts := a.begin(t, true, true, true)
				tooOld := resolved(nil, testStarted, "f", "0:1", nil)
				a.srv[0].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
					switch {
					case q.Conn == a.partConn[0] && q.SQL == "COMMIT" && c.ran:
						return ranThenDropped(a.srv[0])(q), true
					case q.Conn == a.partConn[0] && q.SQL == "COMMIT":
						return pgscript.Reply{Drop: true}, true
					case q.SQL == resolveSQL:
						return tooOld, true
					}
					return pgscript.Reply{}, false
				})
				if c.lostAgain {
					// Loans: 1 the table, 2 pg_xact_status, 3 the decision.
					a.lend.failWith(func(_ *topology.Node, call int64) error {
						if call == 3 {
							return refused
						}
						return nil
					})
				}
				errc := make(chan error, 1)
				go func() { errc <- a.commit(context.Background(), parts) }()
				a.cameBack(t, 0, errc)
				if c.lostAgain {
					a.cameBack(t, 0, errc)
				}
				err := <-errc
				gid := a.gid(t, 1)
				if c.ran {
					if err != nil {
						t.Fatal(err)
					}
					if got := phase(); got != "preparing prepared decided committed" {
						t.Errorf("phases %q", got)
					}
					for i := 1; i < 3; i++ {
						if got := a.srv[i].ended(); !slices.Equal(got, []string{"COMMIT " + gid}) {
							t.Errorf("part %d: %v", i, got)
						}
					}
				} else {
					if !notCommitted(err) || !RetryableTx(err) || errors.Is(err, ErrCommitUnknown) {
						t.Fatalf("%v", err)
					}
					if !slices.Equal(a.srv[0].abortsRecorded(), []string{gid}) {
						t.Errorf("aborts recorded %v", a.srv[0].abortsRecorded())
					}
					noneCommitted(t, a, gid)
					if phase() != "preparing prepared" {
						t.Errorf("phases %q", phase())
					}
				}
				if st := a.e.Stats(); st.InDoubtUnknown != 1 {
					t.Errorf("stats %+v", st)
				}
				idleOrBroken(t, parts)
			})
		})
	}
}

// The connection to the coordinator is lost before its transaction's id
// arrived: COMMIT never ran, but that is not known. Reading the decision
// finds no row and records an abort (so that a COMMIT still on its way
// would fail on the key), and every prepared part is rolled back.
func TestCommitAcrossDecisionInDoubtAbortRecorded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 3, Config{})
		phase := phases(t)
		parts := a.begin(t, true, true, true)
		a.on(0, xidSQL, dropped)
		err := a.commit(context.Background(), parts)
		if !notCommitted(err) || !RetryableTx(err) || errors.Is(err, ErrCommitUnknown) || !strings.Contains(err.Error(), "decision was to abort") {
			t.Fatalf("%v", err)
		}
		if phase() != "preparing prepared" {
			t.Errorf("phases %q", phase())
		}
		gid := a.gid(t, 1)
		if committed, ok := a.srv[0].decision(gid); !ok || committed {
			t.Errorf("decision row %v %v, want the abort recorded", committed, ok)
		}
		noneCommitted(t, a, gid)
		for i := 1; i < 3; i++ {
			if got := a.srv[i].ended(); !slices.Equal(got, []string{"ROLLBACK " + gid}) {
				t.Errorf("part %d: %v", i, got)
			}
		}
		idleOrBroken(t, parts)
	})
}

// The coordinator's COMMIT is lost, and pg_xact_status answers: no need
// for the decision row.
func TestCommitAcrossDecisionInDoubtResolved(t *testing.T) {
	for _, c := range []struct {
		status    string
		committed bool
	}{
		{"committed", true},
		{"aborted", false},
	} {
		t.Run(c.status, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 2, Config{})
				parts := a.begin(t, true, true)
				a.srv[0].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
					switch {
					case q.Conn == a.partConn[0] && q.SQL == "COMMIT":
						if c.committed {
							return ranThenDropped(a.srv[0])(q), true
						}
						return pgscript.Reply{Drop: true}, true
					case q.SQL == resolveSQL:
						return resolved(c.status, testStarted, "f", "0:1", nil), true
					}
					return pgscript.Reply{}, false
				})
				err := a.commit(context.Background(), parts)
				gid := a.gid(t, 1)
				if c.committed {
					if err != nil {
						t.Fatal(err)
					}
					if got := a.srv[1].ended(); !slices.Equal(got, []string{"COMMIT " + gid}) {
						t.Errorf("part: %v", got)
					}
				} else {
					if !notCommitted(err) || !RetryableTx(err) {
						t.Fatalf("%v", err)
					}
					noneCommitted(t, a, gid)
				}
				if a.srv[0].sent(recordAbortSQL) {
					t.Error("the decision row was read although pg_xact_status answered")
				}
			})
		})
	}
}

// The coordinator's COMMIT is lost and its primary does not come back
// within PrimaryWait: the outcome is unknown, the prepared parts are left
// for recovery, which commits them once the coordinator answers (its
// COMMIT had run).
func TestCommitAcrossDecisionInDoubtLeftToRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		setFor(t, &RecoveryGrace, 0)
		a := newAcross(t, 3, Config{PrimaryWait: 2 * time.Second})
		parts := a.begin(t, true, true, true)
		a.srv[0].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
			switch {
			case q.Conn == a.partConn[0] && q.SQL == "COMMIT":
				return ranThenDropped(a.srv[0])(q), true
			case q.SQL == resolveSQL:
				return resolved(nil, testStarted, "f", "0:1", nil), true
			}
			return pgscript.Reply{}, false
		})
		start := time.Now()
		err := a.commit(context.Background(), parts)
		if !errors.Is(err, ErrCommitUnknown) || RetryableTx(err) {
			t.Fatalf("%v", err)
		}
		// pg_xact_status answered at once; then the decision waited
		// PrimaryWait for the primary.
		if d := time.Since(start); d != 2*time.Second {
			t.Errorf("gave up after %v", d)
		}
		if !strings.Contains(a.logs.String(), "recovery will finish it") {
			t.Errorf("logs: %s", a.logs)
		}
		gid := a.gid(t, 1)
		for i := 1; i < 3; i++ {
			if got := a.srv[i].preparedGIDs(); !slices.Equal(got, []string{gid}) {
				t.Errorf("part %d: prepared %v", i, got)
			}
		}
		// The session's marks are balanced: its next read after the
		// monitor's next capture is not stuck on the primary.
		for i := 1; i < 3; i++ {
			if m := parts[i].Plan.pos.marks.Load(); m%2 != 0 {
				t.Errorf("part %d: %d marks", i, m)
			}
		}

		a.cluster(0).Primary().MarkUp(time.Now())
		n, err := a.e.Recover(context.Background(), a.lend.lend)
		if err != nil || n != 2 {
			t.Fatalf("recovered %d: %v", n, err)
		}
		for i := 1; i < 3; i++ {
			if got := a.srv[i].ended(); !slices.Equal(got, []string{"COMMIT " + gid}) {
				t.Errorf("part %d: %v", i, got)
			}
		}
	})
}

func TestCommitAcrossCommitPreparedConnectionLost(t *testing.T) {
	for _, c := range []struct {
		name string
		ran  bool // COMMIT PREPARED ran before the connection dropped
		// refusedOnce: the first new connection is refused too (the
		// primary goes out of rotation again).
		refusedOnce bool
	}{
		{"before COMMIT PREPARED ran", false, false},
		{"after COMMIT PREPARED ran", true, false},
		{"the first new connection refused", false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				phase := phases(t)
				parts := a.begin(t, true, true, true)
				if c.ran {
					a.on(1, "COMMIT PREPARED", ranThenDropped(a.srv[1]))
				} else {
					a.on(1, "COMMIT PREPARED", dropped)
				}
				if c.refusedOnce {
					b, once := a.cluster(1).Primary(), false
					a.lend.failWith(func(n *topology.Node, _ int64) error {
						if n == b && !once {
							once = true
							return refused
						}
						return nil
					})
				}
				errc := make(chan error, 1)
				go func() { errc <- a.commit(context.Background(), parts) }()
				// Finished on a new connection once the primary answers.
				a.cameBack(t, 1, errc)
				if c.refusedOnce {
					a.cameBack(t, 1, errc)
				}
				if err := <-errc; err != nil {
					t.Fatal(err)
				}
				if got := phase(); got != "preparing prepared decided committed" {
					t.Errorf("phases %q", got)
				}
				gid := a.gid(t, 1)
				for i := 1; i < 3; i++ {
					if got := a.srv[i].ended(); !slices.Equal(got, []string{"COMMIT " + gid}) {
						t.Errorf("part %d: %v", i, got)
					}
				}
				if n := strings.Count(strings.Join(a.srv[1].History(), "\n"), "COMMIT PREPARED"); n != 2 {
					t.Errorf("COMMIT PREPARED sent %d times", n)
				}
				if strings.Contains(a.logs.String(), "recovery will") {
					t.Errorf("logs: %s", a.logs)
				}
				idleOrBroken(t, parts)
			})
		})
	}
}

// COMMIT PREPARED's connection is lost and the part's primary does not
// come back within PrimaryWait: the block is committed all the same (the
// decision is durable); recovery commits the part later.
func TestCommitAcrossCommitPreparedLeftToRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		setFor(t, &RecoveryGrace, time.Second)
		a := newAcross(t, 2, Config{})
		parts := a.begin(t, true, true)
		a.on(1, "COMMIT PREPARED", dropped)
		if err := a.commit(context.Background(), parts); err != nil {
			t.Fatal(err)
		}
		gid := a.gid(t, 1)
		if got := a.srv[1].preparedGIDs(); !slices.Equal(got, []string{gid}) {
			t.Fatalf("prepared %v", got)
		}
		if !strings.Contains(a.logs.String(), "could not be finished now; recovery will") {
			t.Errorf("logs: %s", a.logs)
		}
		a.cluster(1).Primary().MarkUp(time.Now())
		time.Sleep(RecoveryGrace)
		if n, err := a.e.Recover(context.Background(), a.lend.lend); err != nil || n != 1 {
			t.Fatalf("recovered %d: %v", n, err)
		}
		if got := a.srv[1].ended(); !slices.Equal(got, []string{"COMMIT " + gid}) {
			t.Errorf("part: %v", got)
		}
	})
}

func TestCommitAcrossWithoutPreparedTransactions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 3, Config{})
		if err := a.e.CheckTwoPhase(); err != nil {
			t.Fatal(err)
		}
		a.cluster(1).MaxPrepared = 0
		parts := a.begin(t, true, true, false)
		err := a.commit(context.Background(), parts)
		if !errors.Is(err, ErrNoPreparedTransactions) || RetryableTx(err) ||
			!strings.Contains(err.Error(), "cluster b") || !strings.Contains(err.Error(), "max_prepared_transactions = 0") {
			t.Fatalf("%v", err)
		}
		for i, want := range []string{"BEGIN|ROLLBACK", "BEGIN|ROLLBACK", "BEGIN|COMMIT"} {
			if h := strings.Join(a.srv[i].History(), "|"); h != want {
				t.Errorf("cluster %d: %q, want %q", i, h, want)
			}
		}
		idleOrBroken(t, parts)
	})
}

func TestCommitAcrossDecisionsTable(t *testing.T) {
	for _, c := range []struct {
		name string
		// made answers DecisionsSQL; nil: the connection is refused.
		made      *pgscript.Reply
		committed bool
		retryable bool
	}{
		// Another process made it at the same time: it exists.
		{"made concurrently", ptr(pgscript.Fail("42P07", `relation "decisions" already exists`)), true, false},
		{"schema made concurrently", ptr(pgscript.Fail("42P06", `schema "switchyard" already exists`)), true, false},
		{"catalog race", ptr(pgscript.Fail("23505", `duplicate key value violates unique constraint "pg_namespace_nspname_index"`)), true, false},
		// The coordinator's primary is down: nothing was sent, run again.
		{"primary unreachable", nil, false, true},
		// The server says why it cannot work: as is.
		{"permission denied", ptr(pgscript.Fail("42501", "permission denied for database app")), false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 2, Config{})
				parts := a.begin(t, true, true)
				if c.made == nil {
					a.lend.failWith(func(*topology.Node, int64) error { return refused })
				} else {
					a.srv[0].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) { return *c.made, q.SQL == DecisionsSQL })
				}
				err := a.commit(context.Background(), parts)
				if c.committed {
					if err != nil {
						t.Fatal(err)
					}
					return
				}
				if err == nil || RetryableTx(err) != c.retryable {
					t.Fatalf("%v: retryable %v", err, RetryableTx(err))
				}
				if c.made != nil && (pgErrCode(err) != c.made.Error.Code || !strings.Contains(err.Error(), "making switchyard.decisions on cluster default")) {
					t.Errorf("%v", err)
				}
				if a.srv[1].sent("PREPARE") {
					t.Error("prepared without a decisions table")
				}
				for i, s := range a.srv {
					if !s.sent("ROLLBACK") || s.sent("COMMIT") || s.sent("PREPARE") {
						t.Errorf("cluster %d: %q", i, s.History())
					}
				}
				idleOrBroken(t, parts)
				// Not made: the next block tries again.
				a.lend.failWith(nil)
				a.srv[0].on.Store(nil)
				if err := a.commit(context.Background(), a.begin(t, true, true)); err != nil {
					t.Fatal(err)
				}
				if made, _, _ := a.srv[0].counts(); made != 1 {
					t.Errorf("made %d times", made)
				}
			})
		})
	}
}

func ptr[T any](v T) *T { return &v }

// A coordinator whose decisions table is being made (its primary hangs)
// holds up no block coordinated elsewhere.
func TestCommitAcrossDecisionsTableOfAnotherCluster(t *testing.T) {
	a := newAcross(t, 3, Config{})
	hung := make(chan struct{})
	a.srv[1].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
		if q.SQL == DecisionsSQL {
			close(hung)
			return pgscript.Reply{Hang: true}, true
		}
		return pgscript.Reply{}, false
	})
	// Coordinated by b, whose primary hangs making the table.
	stuck := a.begin(t, false, true, true)
	ctx, cancel := context.WithCancel(context.Background())
	stuckErr := make(chan error, 1)
	go func() { stuckErr <- a.commit(ctx, stuck) }()
	defer func() {
		cancel()
		if err := <-stuckErr; err == nil {
			t.Error("the stuck block committed")
		}
	}()
	<-hung
	// Coordinated by default.
	parts := a.begin(t, true, false, true)
	errc := make(chan error, 1)
	go func() { errc <- a.commit(ctxT(t), parts) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a block coordinated by default waited for cluster b's decisions table")
	}
}

// The caller's context ends while a part's PREPARE runs (its reply is
// lost with the connection that pgconn closes): the part may be prepared,
// so it is rolled back at once on a new connection, rather than left
// holding its locks until recovery; its primary, which did nothing wrong,
// stays in rotation.
func TestCommitAcrossContextEndsDuringPrepare(t *testing.T) {
	for _, c := range []struct {
		name        string
		unreachable bool // no new connection can be had: recovery's job
	}{
		{"rolled back at once", false},
		{"left to recovery", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				parts := a.begin(t, true, true, true)
				a.on(1, "PREPARE TRANSACTION", func(q pgscript.Query) pgscript.Reply {
					a.srv[1].answer(q)
					return pgscript.Reply{Hang: true}
				})
				if c.unreachable {
					b := a.cluster(1).Primary()
					a.lend.failWith(func(n *topology.Node, _ int64) error {
						if n == b {
							return refused
						}
						return nil
					})
				}
				ctx, cancel := context.WithCancel(context.Background())
				errc := make(chan error, 1)
				go func() { errc <- a.commit(ctx, parts) }()
				synctest.Wait()
				cancel()
				err := <-errc
				if !errors.Is(err, context.Canceled) || RetryableTx(err) {
					t.Fatalf("%v", err)
				}
				gid := a.gid(t, 2)
				if committed, ok := a.srv[0].decision(gid); ok && committed {
					t.Error("the decision to commit is recorded")
				}
				if got := a.srv[2].ended(); !slices.Equal(got, []string{"ROLLBACK " + gid}) {
					t.Errorf("the part that prepared: %v", got)
				}
				if c.unreachable {
					if got := a.srv[1].preparedGIDs(); !slices.Equal(got, []string{gid}) {
						t.Errorf("prepared %v", got)
					}
					if !strings.Contains(a.logs.String(), "could not be rolled back now; recovery will") {
						t.Errorf("logs: %s", a.logs)
					}
				} else {
					noneCommitted(t, a, gid)
					if got := a.srv[1].ended(); !slices.Equal(got, []string{"ROLLBACK " + gid}) {
						t.Errorf("the part whose PREPARE was cut short: %v", got)
					}
				}
				for i := range a.srv {
					if !a.cluster(i).Primary().Healthy() {
						t.Errorf("cluster %d's primary out of rotation", i)
					}
				}
				idleOrBroken(t, parts)
			})
		})
	}
}
