package engine

import (
	"context"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// gidOf is a gid as CommitAcross makes it, of a block coordinated by the
// cluster with system identifier sys.
func gidOf(sys uint64, id string) string {
	name := "default" // newAcross's clusters: "default", then "b", "c", ...
	if sys != testSystem {
		name = string(rune('a' + int(sys-testSystem)))
	}
	return GID(sys, name, id)
}

var (
	g1 = gidOf(testSystem, "000000000000000000000001")
	g2 = gidOf(testSystem, "000000000000000000000002")
	g3 = gidOf(testSystem, "000000000000000000000003")
)

// TestRecover leaves prepared transactions on cluster b, coordinated by
// cluster default, as a process that died between the phases would, and
// runs one round of recovery.
func TestRecover(t *testing.T) {
	old := time.Minute
	for _, c := range []struct {
		name  string
		setup func(a *across)
		done  int
		// ended are the prepared transactions finished on b; left, those
		// still prepared there.
		ended, left []string
		// aborts are the gids whose abort recovery recorded.
		aborts []string
		pruned bool
		log    string
	}{
		{
			name: "decided to commit",
			setup: func(a *across) {
				a.srv[0].decide(g1, true)
				a.srv[1].prepare(g1, old)
			},
			done: 1, ended: []string{"COMMIT " + g1}, pruned: true,
		},
		{
			name: "decided to abort",
			setup: func(a *across) {
				a.srv[0].decide(g1, false)
				a.srv[1].prepare(g1, old)
			},
			done: 1, ended: []string{"ROLLBACK " + g1}, pruned: true,
		},
		{
			name:  "orphan: its abort is recorded",
			setup: func(a *across) { a.srv[1].prepare(g1, old) },
			done:  1, ended: []string{"ROLLBACK " + g1}, aborts: []string{g1}, pruned: true,
		},
		{
			name: "oldest first",
			setup: func(a *across) {
				a.srv[0].decide(g2, true)
				a.srv[1].prepare(g1, old)
				a.srv[1].prepare(g2, 2*old)
				a.srv[1].prepare(g3, old/2)
			},
			done: 3, ended: []string{"COMMIT " + g2, "ROLLBACK " + g1, "ROLLBACK " + g3}, aborts: []string{g1, g3}, pruned: true,
		},
		{
			// Most likely being committed by a live process: no abort is
			// recorded for it, and pruning goes on.
			name:  "young: left alone within RecoveryGrace",
			setup: func(a *across) { a.srv[1].prepare(g1, RecoveryGrace-time.Millisecond) },
			left:  []string{g1}, pruned: true,
		},
		{
			name:  "coordinator unknown: left alone",
			setup: func(a *across) { a.srv[1].prepare(gidOf(42, "000000000000000000000001"), old) },
			left:  []string{gidOf(42, "000000000000000000000001")},
			log:   "names a coordinator cluster this DB does not have",
		},
		{
			name: "malformed gids: left alone",
			setup: func(a *across) {
				a.srv[1].prepare("switchyard:7300000000000000001", old)
				a.srv[1].prepare("switchyard:x:000000000000000000000001", old)
				a.srv[1].prepare("another:1:2", old)
			},
			left: []string{"another:1:2", "switchyard:7300000000000000001", "switchyard:x:000000000000000000000001"},
			log:  "names a coordinator cluster this DB does not have",
		},
		{
			name: "coordinator does not answer: left alone",
			setup: func(a *across) {
				a.srv[1].prepare(g1, old)
				a.srv[0].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
					return pgscript.Reply{Drop: true}, q.SQL == recordAbortSQL
				})
			},
			left: []string{g1},
			log:  "cannot read the decision of a prepared transaction yet",
		},
		{
			name: "finished meanwhile",
			setup: func(a *across) {
				a.srv[0].decide(g1, true)
				a.srv[1].prepare(g1, old)
				a.srv[1].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
					return pgscript.Fail("42704", "prepared transaction does not exist"), strings.HasPrefix(q.SQL, "COMMIT PREPARED")
				})
			},
			done: 1, left: []string{g1}, pruned: true,
		},
		{
			name: "finishing fails",
			setup: func(a *across) {
				a.srv[0].decide(g1, true)
				a.srv[1].prepare(g1, old)
				a.srv[1].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
					return pgscript.Fail("XX000", "could not access status of transaction"), strings.HasPrefix(q.SQL, "COMMIT PREPARED")
				})
			},
			left: []string{g1},
			log:  "finishing a prepared transaction failed",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				c.setup(a)
				done, err := a.e.Recover(context.Background(), a.lend.lend)
				if err != nil || done != c.done {
					t.Fatalf("finished %d, want %d: %v", done, c.done, err)
				}
				if got := a.srv[1].ended(); !slices.Equal(got, c.ended) {
					t.Errorf("ended %v, want %v", got, c.ended)
				}
				if got := a.srv[1].preparedGIDs(); !slices.Equal(got, c.left) {
					t.Errorf("left %v, want %v", got, c.left)
				}
				if got := a.srv[0].abortsRecorded(); !slices.Equal(got, c.aborts) {
					t.Errorf("aborts recorded %v, want %v", got, c.aborts)
				}
				for i, s := range a.srv {
					if _, _, prunes := s.counts(); (prunes == 1) != c.pruned {
						t.Errorf("cluster %d: pruned %d times, want %v", i, prunes, c.pruned)
					}
				}
				if c.log != "" && !strings.Contains(a.logs.String(), c.log) {
					t.Errorf("logs: %s", a.logs)
				}
			})
		})
	}
}

// A cluster that does not answer does not stop the others' recovery, but
// stops pruning: its prepared transactions may still need their
// decisions.
func TestRecoverClusterNotAnswering(t *testing.T) {
	for _, c := range []struct {
		name string
		fail func(a *across)
		want string
	}{
		{"unreachable", func(a *across) {
			b := a.cluster(1).Primary()
			a.lend.failWith(func(n *topology.Node, _ int64) error {
				if n == b {
					return refused
				}
				return nil
			})
		}, "connection refused"},
		{"pg_prepared_xacts refused", func(a *across) {
			a.srv[1].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
				return pgscript.Fail("42501", "permission denied"), strings.Contains(q.SQL, "pg_prepared_xacts")
			})
		}, "SQLSTATE 42501"},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 3, Config{})
				a.srv[0].decide(g1, true)
				a.srv[1].prepare(g1, time.Minute)
				a.srv[2].prepare(g1, time.Minute)
				c.fail(a)
				done, err := a.e.Recover(context.Background(), a.lend.lend)
				if err == nil || !strings.Contains(err.Error(), "cluster b: ") || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("%v", err)
				}
				if done != 1 || !slices.Equal(a.srv[2].ended(), []string{"COMMIT " + g1}) {
					t.Errorf("finished %d; cluster c: %v", done, a.srv[2].ended())
				}
				if !slices.Equal(a.srv[1].preparedGIDs(), []string{g1}) {
					t.Errorf("cluster b: %v", a.srv[1].preparedGIDs())
				}
				for i, s := range a.srv {
					if _, _, prunes := s.counts(); prunes != 0 {
						t.Errorf("cluster %d pruned", i)
					}
				}
			})
		})
	}
}

func TestRecoverPrunesOncePerInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 3, Config{})
		a.cluster(2).MaxPrepared = 0 // it cannot have prepared transactions
		round := func() {
			t.Helper()
			if _, err := a.e.Recover(context.Background(), a.lend.lend); err != nil {
				t.Fatal(err)
			}
		}
		prunes := func() []int {
			var n []int
			for _, s := range a.srv {
				_, _, p := s.counts()
				n = append(n, p)
			}
			return n
		}
		round()
		if got := prunes(); !slices.Equal(got, []int{1, 1, 0}) {
			t.Fatalf("prunes %v", got)
		}
		if len(a.srv[2].History()) != 0 {
			t.Errorf("cluster c without prepared transactions was asked: %q", a.srv[2].History())
		}
		if h := a.srv[0].History(); !strings.Contains(h[len(h)-1], "at < now() - interval '86400 seconds'") {
			t.Errorf("prune %q", h[len(h)-1])
		}
		round()
		time.Sleep(PruneInterval - time.Nanosecond)
		round()
		if got := prunes(); !slices.Equal(got, []int{1, 1, 0}) {
			t.Fatalf("pruned again within PruneInterval: %v", got)
		}
		time.Sleep(time.Nanosecond)
		round()
		if got := prunes(); !slices.Equal(got, []int{2, 2, 0}) {
			t.Fatalf("prunes %v", got)
		}

		// A round that leaves something it should have finished does not
		// prune, nor use up the interval: the next complete round prunes.
		time.Sleep(PruneInterval)
		foreign := gidOf(42, "000000000000000000000001")
		a.srv[1].prepare(foreign, time.Minute)
		round()
		if got := prunes(); !slices.Equal(got, []int{2, 2, 0}) {
			t.Fatalf("pruned with a transaction left: %v", got)
		}
		a.srv[1].mu.Lock()
		delete(a.srv[1].prepared, foreign)
		a.srv[1].mu.Unlock()
		round()
		if got := prunes(); !slices.Equal(got, []int{3, 3, 0}) {
			t.Fatalf("prunes %v", got)
		}
	})
}

func TestRecoverPruneErrors(t *testing.T) {
	for _, c := range []struct {
		code string
		fail bool
	}{
		{"42P01", false}, // no table: never coordinated anything
		{"3F000", false}, // no schema
		{"57014", true},
	} {
		t.Run(c.code, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 2, Config{})
				a.srv[1].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
					return pgscript.Fail(c.code, "prune failed"), strings.HasPrefix(q.SQL, "DELETE")
				})
				_, err := a.e.Recover(context.Background(), a.lend.lend)
				if (err != nil) != c.fail || c.fail && !strings.Contains(err.Error(), "cluster b: pruning decisions") {
					t.Fatalf("%v", err)
				}
				if _, _, p := a.srv[0].counts(); p != 1 {
					t.Error("the other cluster was not pruned")
				}
			})
		})
	}
}

// A round of recovery opens at most one connection per node (while it
// stays open), and releases every one it opened.
func TestRecoverOneConnectionPerNode(t *testing.T) {
	t.Run("connections stay open", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAcross(t, 3, Config{})
			a.srv[0].decide(g1, true)
			for _, gid := range []string{g1, g2, g3} {
				a.srv[1].prepare(gid, time.Minute)
			}
			a.srv[2].prepare(g1, time.Minute)
			done, err := a.e.Recover(context.Background(), a.lend.lend)
			if err != nil || done != 4 {
				t.Fatalf("finished %d: %v", done, err)
			}
			if lent, released := a.lend.lent.Load(), a.lend.released.Load(); lent != 3 || released != 3 {
				t.Errorf("lent %d, released %d; want 3 (one per node)", lent, released)
			}
		})
	})
	t.Run("a connection breaks", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := newAcross(t, 2, Config{})
			a.srv[1].prepare(g1, 2*time.Minute) // first
			a.srv[1].prepare(g2, time.Minute)
			// The coordinator's connection drops while reading g1's
			// decision: g2's is read on a new one.
			a.srv[0].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
				return pgscript.Reply{Drop: true}, q.SQL == recordAbortSQL && q.Param(0) == g1
			})
			done, err := a.e.Recover(context.Background(), a.lend.lend)
			if err != nil || done != 1 || !slices.Equal(a.srv[1].preparedGIDs(), []string{g1}) {
				t.Fatalf("finished %d, left %v: %v", done, a.srv[1].preparedGIDs(), err)
			}
			if lent, released := a.lend.lent.Load(), a.lend.released.Load(); lent != 3 || released != lent {
				t.Errorf("lent %d, released %d", lent, released)
			}
		})
	})
}

func TestDecide(t *testing.T) {
	for _, c := range []struct {
		name      string
		setup     func(s *tpc)
		commit    bool
		err       string
		recorded  bool // an abort is recorded
		tableMade bool
	}{
		{name: "committed", setup: func(s *tpc) { s.decide(g1, true) }, commit: true},
		{name: "aborted", setup: func(s *tpc) { s.decide(g1, false) }},
		{name: "no row: an abort is recorded", setup: func(*tpc) {}, recorded: true},
		{name: "recording refused", setup: func(s *tpc) {
			s.onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
				return pgscript.Fail("25006", "cannot execute INSERT in a read-only transaction"), q.SQL == recordAbortSQL
			})
		}, err: "SQLSTATE 25006"},
		{name: "reading refused", setup: func(s *tpc) {
			s.decide(g1, true)
			s.onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
				return pgscript.Fail("42501", "permission denied"), q.SQL == readDecisionSQL
			})
		}, err: "SQLSTATE 42501"},
		{name: "row vanished", setup: func(s *tpc) {
			s.onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
				// A conflict, then no row: pruned in between.
				return pgscript.Reply{Columns: committedColumn, Tag: "INSERT 0 0"}, q.SQL == recordAbortSQL
			})
		}, err: "vanished"},
		{name: "no decisions table", setup: func(s *tpc) {
			s.onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
				return pgscript.Fail("42501", "permission denied for schema switchyard"), q.SQL == DecisionsSQL
			})
		}, err: "making switchyard.decisions"},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, 2, Config{})
				c.setup(a.srv[0])
				commit, err := a.e.decide(context.Background(), a.cluster(0), g1, a.lend.lend)
				if c.err != "" {
					if err == nil || !strings.Contains(err.Error(), c.err) {
						t.Fatalf("%v, %v", commit, err)
					}
					return
				}
				if err != nil || commit != c.commit {
					t.Fatalf("%v, %v", commit, err)
				}
				committed, ok := a.srv[0].decision(g1)
				if ok != true || committed != c.commit {
					t.Errorf("row %v %v", committed, ok)
				}
				if got := a.srv[0].abortsRecorded(); (len(got) == 1) != c.recorded {
					t.Errorf("aborts recorded %v", got)
				}
			})
		})
	}
}

// startRecovery runs Recover at once and every RecoveryInterval, on the
// engine's own connections (Config.Dial), until Close.
func TestStartRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 2, Config{})
		a.e.cfg.Dial = a.lend.lend
		a.srv[1].prepare(g1, time.Minute)
		a.e.startRecovery()
		synctest.Wait()
		if _, xacts, _ := a.srv[1].counts(); xacts != 1 || !slices.Equal(a.srv[1].ended(), []string{"ROLLBACK " + g1}) {
			t.Fatalf("first round: %d queries, ended %v", xacts, a.srv[1].ended())
		}
		// A round that fails is logged, and the next one comes.
		a.srv[1].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
			return pgscript.Fail("57P03", "the database system is starting up"), strings.Contains(q.SQL, "pg_prepared_xacts")
		})
		time.Sleep(RecoveryInterval)
		synctest.Wait()
		if _, xacts, _ := a.srv[0].counts(); xacts != 2 {
			t.Errorf("%d rounds after one interval", xacts)
		}
		if !strings.Contains(a.logs.String(), "recovery of commits across clusters") {
			t.Errorf("logs: %s", a.logs)
		}
		a.e.Close()
		time.Sleep(3 * RecoveryInterval)
		synctest.Wait()
		if _, xacts, _ := a.srv[0].counts(); xacts != 2 {
			t.Errorf("%d rounds; recovery went on after Close", xacts)
		}
		if lent, released := a.lend.lent.Load(), a.lend.released.Load(); lent != released {
			t.Errorf("lent %d, released %d", lent, released)
		}
	})
}

// Close does not wait for a round that hangs (a primary that stopped
// answering): the round's context ends with the engine.
func TestStartRecoveryCloseEndsAHungRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAcross(t, 2, Config{})
		a.e.cfg.Dial = a.lend.lend
		a.srv[1].onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
			return pgscript.Reply{Hang: true}, strings.Contains(q.SQL, "pg_prepared_xacts")
		})
		a.e.startRecovery()
		synctest.Wait()
		if !a.srv[1].sent("SELECT gid") {
			t.Fatalf("cluster b not asked: %q", a.srv[1].History())
		}
		start := time.Now()
		a.e.Close()
		if d := time.Since(start); d != 0 {
			t.Errorf("Close waited %v for the hung round", d)
		}
		if lent, released := a.lend.lent.Load(), a.lend.released.Load(); lent != released {
			t.Errorf("lent %d, released %d", lent, released)
		}
	})
}

// Without a lender, or with one cluster, nothing runs in the background.
func TestStartRecoveryNeedsClustersAndADialer(t *testing.T) {
	for _, c := range []struct {
		name     string
		clusters int
		dial     bool
	}{
		{"one cluster", 1, true},
		{"no Dial", 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := newAcross(t, c.clusters, Config{})
				if c.dial {
					a.e.cfg.Dial = a.lend.lend
				}
				a.e.startRecovery()
				time.Sleep(2 * RecoveryInterval)
				synctest.Wait()
				if a.lend.calls.Load() != 0 {
					t.Errorf("%d connections lent", a.lend.calls.Load())
				}
			})
		})
	}
}

// TestCoordinatorOfClustersSharingASystem: clusters that share a system
// identifier (clones of one physical backup) are told apart by the name
// the gid carries, so that recovery reads each decision on the cluster
// that holds it; a gid naming neither is left alone.
func TestCoordinatorOfClustersSharingASystem(t *testing.T) {
	e := newEngine(t, 0, Config{})
	b := addCluster(e, "b", testSystem, 0)
	a := e.clusters[0]
	for gid, want := range map[string]*topology.Cluster{
		GID(testSystem, "default", "000000000000000000000001"):         a,
		GID(testSystem, "b", "000000000000000000000001"):               b,
		GID(testSystem, "c", "000000000000000000000001"):               nil,
		GID(testSystem+1, "b", "000000000000000000000001"):             nil,
		"switchyard:" + "7300000000000000001:000000000000000000000001": nil, // no name tag
	} {
		if got := e.coordinatorOf(gid); got != want {
			t.Errorf("coordinatorOf(%q) = %v, want %v", gid, got, want)
		}
	}
}
