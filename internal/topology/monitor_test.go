package topology

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgscript"
)

// pollServer is a scripted server answering PollSQL.
type pollServer struct {
	*pgscript.Server
	inRecovery atomic.Bool
	pos        atomic.Uint64
	fail       atomic.Pointer[pgscript.Reply]
}

func newPollServer(t *testing.T, inRecovery bool, pos lsn.LSN) *pollServer {
	t.Helper()
	s := newPollScript(inRecovery, pos)
	srv, err := pgscript.Start(s.answer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	s.Server = srv
	return s
}

// newMemPollServer is a pollServer in memory, for a synctest bubble;
// config dials it.
func newMemPollServer(t *testing.T, inRecovery bool, pos lsn.LSN) (*pollServer, *pgconn.Config) {
	t.Helper()
	s := newPollScript(inRecovery, pos)
	s.Server = pgscript.NewServer(pgscript.Config{Handler: s.answer})
	t.Cleanup(s.Close)
	cfg, err := pgconn.ParseConfig(s.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = s.Dial
	return s, cfg
}

func newPollScript(inRecovery bool, pos lsn.LSN) *pollServer {
	s := &pollServer{}
	s.inRecovery.Store(inRecovery)
	s.pos.Store(uint64(pos))
	return s
}

// answer answers PollQuery with the server's state, or fails as told.
func (s *pollServer) answer(q pgscript.Query) pgscript.Reply {
	if r := s.fail.Load(); r != nil {
		return *r
	}
	if q.SQL != PollQuery {
		return pgscript.Fail("42601", "unexpected")
	}
	tli := 1
	if s.inRecovery.Load() {
		tli = 0
	}
	return pgscript.Row(s.inRecovery.Load(), lsn.LSN(s.pos.Load()).String(), tli, "read committed", "0.001", false)
}

func (s *pollServer) failWith(r *pgscript.Reply) { s.fail.Store(r) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func monitorGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Count(string(buf), "topology.(*Monitor).watch")
}

func TestMonitor(t *testing.T) {
	before := monitorGoroutines()
	// A primary and a replica for each way of failing: dropping the
	// connection, an error (with a secret in it), an answer without a row,
	// an answer that does not parse.
	ps := newPollServer(t, false, 0x5000000)
	servers := []*pollServer{ps}
	for range 4 {
		servers = append(servers, newPollServer(t, true, 0x5000000)) // caught up
	}
	c := newTestCluster(4)
	p, r := c.Nodes[0], c.Nodes[1]
	var configs []*pgconn.Config
	for _, s := range servers {
		cfg, err := pgconn.ParseConfig(s.ConnString())
		if err != nil {
			t.Fatal(err)
		}
		configs = append(configs, cfg)
	}
	logs := &syncBuffer{}
	m := StartMonitor(c, configs, 5*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)),
		func(s string) string { return strings.ReplaceAll(s, "hunter2", "xxxxx") })
	defer m.Close()
	if d := m.pollTimeout(c.Nodes[0]); d != 200*time.Millisecond {
		t.Errorf("poll timeout %v", d)
	}
	eventually(t, "the first polls", func() bool {
		for _, n := range c.Nodes[1:] {
			if n.Position() != 0x5000000 {
				return false
			}
		}
		return p.Position() == 0x5000000
	})
	if !p.Writable() || r.Writable() || p.Timeline() != 1 || !r.CheckSafe() || r.Lag() > time.Millisecond {
		t.Errorf("poll applied: writable %v %v, tli %d, lag %v", p.Writable(), r.Writable(), p.Timeline(), r.Lag())
	}
	// One connection each, reused.
	rs := servers[1]
	polls := rs.Queries()
	eventually(t, "more polls", func() bool { return rs.Queries() > polls+3 })
	if rs.Conns() != 1 {
		t.Errorf("%d connections for the replica's polls", rs.Conns())
	}

	// Each replica fails its way: down at once.
	servers[1].failWith(&pgscript.Reply{Drop: true})
	servers[2].failWith(&pgscript.Reply{Error: &pgscript.Error{Code: "XX000", Message: "secret hunter2"}})
	noRow := pgscript.Rows(pgscript.TextColumns("a", "b", "c", "d", "e"))
	servers[3].failWith(&noRow)
	badLSN := pgscript.Row("t", "bad", "0", "t", nil)
	servers[4].failWith(&badLSN)
	for _, n := range c.Nodes[1:] {
		eventually(t, "replica down", func() bool { return !n.Healthy() && !n.Writable() })
	}
	downAt := r.DownSince()
	// Answering again, a replica is back once its ban has expired, not
	// before.
	rs.failWith(nil)
	eventually(t, "the replica back", func() bool { return r.Healthy() })
	if back := time.Since(downAt); back < MinBan {
		t.Errorf("back after %v, within its ban", back)
	}
	out := logs.String()
	if !strings.Contains(out, "node down") || !strings.Contains(out, "node back") {
		t.Errorf("logs: %s", out)
	}
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "xxxxx") {
		t.Errorf("logs: %s", out)
	}
	// The primary comes back at once.
	ps.failWith(&pgscript.Reply{Drop: true})
	// Down, and no longer taken for writable (the monitor sets the two one
	// after the other).
	eventually(t, "the primary down", func() bool { return !p.Healthy() && !p.Writable() })
	ps.failWith(nil)
	eventually(t, "the primary back", func() bool { return p.Healthy() })

	m.Close()
	eventually(t, "no watcher after Close", func() bool { return monitorGoroutines() == before })
	for _, s := range servers {
		eventually(t, "the monitor's connections closed", func() bool { return s.Open() == 0 })
	}
}

// TestMonitorHurries: a read that waits for a replica to catch up does not
// wait for the next regular poll (an hour away here): the replicas are
// polled at once and soon after while it waits, the primary is not, polls
// that reach nothing a read needs space out, and once no read waits the
// polls stop. In a synctest bubble, on servers in memory: the counts are
// exact, whatever else the machine does.
func TestMonitorHurries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ps, pcfg := newMemPollServer(t, false, 0x300)
		rs, rcfg := newMemPollServer(t, true, 0x100)
		c := newTestCluster(1)
		m := StartMonitor(c, []*pgconn.Config{pcfg, rcfg}, time.Hour, discard, nil)
		defer m.Close()
		synctest.Wait()
		r := c.Nodes[1]
		if r.Position() != 0x100 || c.Nodes[0].Position() != 0x300 {
			t.Fatalf("first polls: %v %v", c.Nodes[0].Position(), r.Position())
		}
		primaryPolls, polls := ps.Queries(), rs.Queries()

		got := make(chan *Node)
		go func() { got <- c.WaitReplica(context.Background(), nil, 10*time.Second, 0x200) }()
		time.Sleep(10 * time.Millisecond)
		// At once, then 1, 3 and 7 ms later (pauses of 1, 2 and 4 ms): 4
		// polls in 10 ms.
		if n := rs.Queries() - polls; !c.Waiting() || n != 4 {
			t.Errorf("waiting %v; %d polls of the replica in the first 10 ms of a wait, want 4", c.Waiting(), n)
		}
		rs.pos.Store(0x200)
		if n := <-got; n != r {
			t.Fatalf("the wait returned %v, want the replica once it replayed 0x200", n)
		}
		if c.Waiting() {
			t.Error("still waiting after WaitReplica returned")
		}
		if n := ps.Queries(); n != primaryPolls {
			t.Errorf("the primary was polled %d times more while a read waited for a replica", n-primaryPolls)
		}
		// The pause after the poll that released the read may end in one
		// more poll; then the ticker's hour.
		polls = rs.Queries()
		time.Sleep(time.Minute)
		if n := rs.Queries() - polls; n > 1 {
			t.Errorf("%d polls of the replica in the minute after the wait ended", n)
		}
		// A replica that does not reach what the read needs is polled half
		// as often after each poll, up to every HurryMaxGap: in 300 ms, at
		// once, after 1, 3 and 7 ms, then every 5 ms to 297 ms: 62 polls, not 300.
		polls = rs.Queries()
		if n := c.WaitReplica(context.Background(), nil, 300*time.Millisecond, 0x900); n != nil {
			t.Errorf("a wait for a position no replica has returned %v", n)
		}
		if n := rs.Queries() - polls; n != 62 {
			t.Errorf("%d polls of a replica that never caught up during a 300 ms wait, want 62", n)
		}
		// A caught-up replica is returned without waiting or hurrying.
		hurry := c.Hurried()
		if n := c.WaitReplica(context.Background(), nil, time.Second, 0x200); n != r {
			t.Errorf("caught up: %v", n)
		}
		select {
		case <-hurry:
			t.Error("a read that did not wait hurried the monitor")
		default:
		}
		m.Close()
	})
}

func TestMonitorUnreachableAndDefaultRedact(t *testing.T) {
	s := newPollServer(t, true, 1)
	cfg, _ := pgconn.ParseConfig(s.ConnString())
	s.Close() // nothing listens there now
	c := newTestCluster(0)
	m := StartMonitor(c, []*pgconn.Config{cfg}, 5*time.Millisecond, discard, nil)
	defer m.Close()
	eventually(t, "the node down", func() bool { return !c.Nodes[0].Healthy() })
	if m.redact("x") != "x" {
		t.Error("default redact")
	}
}

// TestPollTimeout: a poll waits eight intervals (at least 200 ms), or four
// of the node's round trips where those are longer; after a poll that
// timed out, twice as long each time up to maxPollTimeout, so that a node
// that became slow is seen answering; after an answer it comes back down a
// quarter of the way each poll. Other failures leave it at the base.
func TestPollTimeout(t *testing.T) {
	m := &Monitor{interval: 5 * time.Millisecond}
	n := NewNode("n", 0, 1)
	const base = 200 * time.Millisecond
	if d := m.pollTimeout(n); d != base {
		t.Fatalf("base %v", d)
	}
	timedOut := fmt.Errorf("poll: %w", context.DeadlineExceeded)
	d := base
	for _, want := range []time.Duration{400, 800, 1600, 3200, 5000, 5000} {
		if d = m.nextPollTimeout(n, d, timedOut); d != want*time.Millisecond {
			t.Fatalf("after a timeout: %v, want %vms", d, want)
		}
	}
	if d = m.nextPollTimeout(n, d, nil); d != 5*time.Second-(5*time.Second-base)/4 {
		t.Errorf("after an answer: %v", d)
	}
	if d = m.nextPollTimeout(n, d, errors.New("connection refused")); d != base {
		t.Errorf("after another failure: %v", d)
	}
	for range 100 {
		d = m.nextPollTimeout(n, 5*time.Second, nil)
		n.ObserveRTT(300 * time.Millisecond)
	}
	if got := m.pollTimeout(n); got < 1190*time.Millisecond || got > 1200*time.Millisecond {
		t.Errorf("a node 300 ms away: base %v, want four round trips", got)
	}
	slow := &Monitor{interval: time.Second}
	if d := slow.nextPollTimeout(n, 8*time.Second, timedOut); d != 8*time.Second {
		t.Errorf("with a 1 s interval, after a timeout: %v, want eight intervals", d)
	}
}
