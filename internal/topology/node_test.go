package topology

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// newTestCluster makes a cluster of a primary and n replicas, all healthy,
// never polled.
func newTestCluster(n int) *Cluster {
	nodes := []*Node{NewNode("p", 0, 1)}
	for i := range n {
		nodes = append(nodes, NewNode("r"+string(rune('1'+i)), i+1, 1))
	}
	return NewCluster("test", 0, nodes)
}

// eventually polls cond until it holds or 5 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockedIn waits until a goroutine is blocked in a function whose name
// contains fn.
func blockedIn(t *testing.T, fn string) {
	t.Helper()
	eventually(t, "a goroutine blocked in "+fn, func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, "[select") {
				return true
			}
		}
		return false
	})
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestBan(t *testing.T) {
	for f, want := range map[int]time.Duration{
		-3: MinBan, 0: MinBan, 1: MinBan, 2: 2 * MinBan, 3: 4 * MinBan, 6: 32 * MinBan, 7: MaxBan, 8: MaxBan, 1000: MaxBan,
	} {
		if got := Ban(f); got != want {
			t.Errorf("Ban(%d) = %v, want %v", f, got, want)
		}
	}
}

// upAt reports the first moment (to the millisecond) at which a down node
// comes back, searching from from.
func upAt(t *testing.T, n *Node, from time.Time) time.Time {
	t.Helper()
	until := time.Unix(0, n.bannedUntil.Load())
	if n.MarkUp(until.Add(-time.Nanosecond)) {
		t.Fatalf("%s up before its ban ended", n.Name)
	}
	if !n.MarkUp(until) {
		t.Fatalf("%s not up when its ban ended", n.Name)
	}
	return until
}

func TestBanDoublingAndReset(t *testing.T) {
	c := newTestCluster(1)
	r := c.Nodes[1]
	now := time.Unix(1_000_000, 0)
	// A node that keeps failing soon after it comes back: the ban doubles
	// up to MaxBan.
	for i := 1; i <= 9; i++ {
		if !r.MarkDown(now) {
			t.Fatalf("failure %d: not taken down", i)
		}
		if r.MarkDown(now.Add(time.Millisecond)) {
			t.Fatal("taken down twice")
		}
		if got, want := time.Duration(r.bannedUntil.Load()-now.UnixNano()), Ban(i); got != want {
			t.Fatalf("failure %d: banned for %v, want %v", i, got, want)
		}
		if !r.DownSince().Equal(now) {
			t.Errorf("down since %v", r.DownSince())
		}
		now = upAt(t, r, now).Add(time.Second) // fails again a second later
	}
	// A ban is not extended while the node stays down.
	r.MarkDown(now)
	until := r.bannedUntil.Load()
	r.MarkDown(now.Add(time.Second))
	if r.bannedUntil.Load() != until {
		t.Error("extended")
	}
	now = upAt(t, r, now)
	// MaxBan of good health: the next failure starts over.
	now = now.Add(MaxBan + time.Nanosecond)
	r.MarkDown(now)
	if got := time.Duration(r.bannedUntil.Load() - now.UnixNano()); got != MinBan {
		t.Errorf("after a long good run: %v", got)
	}
	// Exactly MaxBan is still "soon".
	now = upAt(t, r, now).Add(MaxBan)
	r.MarkDown(now)
	if got := time.Duration(r.bannedUntil.Load() - now.UnixNano()); got != 2*MinBan {
		t.Errorf("after exactly MaxBan: %v", got)
	}
}

func TestMarkDownUp(t *testing.T) {
	c := newTestCluster(1)
	p, r := c.Nodes[0], c.Nodes[1]
	if !r.DownSince().IsZero() || !r.Healthy() || r.MarkUp(time.Now()) {
		t.Fatal("a new node")
	}
	ch := c.Changed()
	now := time.Now()
	if !r.MarkDown(now) || r.Healthy() || !closed(ch) {
		t.Fatal("down")
	}
	ch = c.Changed()
	if r.MarkUp(now.Add(MinBan/2)) || closed(ch) {
		t.Fatal("up during its ban")
	}
	if !r.MarkUp(now.Add(MinBan)) || !r.Healthy() || !closed(ch) {
		t.Fatal("not up after its ban")
	}
	// The primary, which nothing stands in for, is back at once.
	if !p.MarkDown(now) || !p.MarkUp(now) || !p.Healthy() {
		t.Fatal("the primary")
	}
	if p.Role() != "primary" || r.Role() != "replica" || !p.IsPrimary() || r.IsPrimary() || r.Cluster() != c {
		t.Error("roles")
	}
}

func TestOnDownCalledOnce(t *testing.T) {
	c := newTestCluster(1)
	var calls atomic.Int32
	c.OnDown = func(n *Node) {
		if n != c.Nodes[1] {
			t.Errorf("OnDown(%s)", n.Name)
		}
		calls.Add(1)
	}
	var wg sync.WaitGroup
	var wins atomic.Int32
	for range 16 {
		wg.Go(func() {
			if c.Nodes[1].MarkDown(time.Now()) {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if calls.Load() != 1 || wins.Load() != 1 {
		t.Errorf("OnDown %d times, %d MarkDowns reported", calls.Load(), wins.Load())
	}
	// A node outside any cluster can go down too.
	n := NewNode("alone", 0, 0)
	if !n.MarkDown(time.Now()) || n.Weight() != 1 {
		t.Error("alone")
	}
}

func TestNodeCounters(t *testing.T) {
	n := NewNode("n", 0, 3)
	n.Start()
	n.Start()
	n.Done(false)
	n.Done(true)
	if n.InFlight() != 0 || n.Routed() != 2 || n.Errors() != 1 || n.Weight() != 3 {
		t.Errorf("in flight %d routed %d errors %d", n.InFlight(), n.Routed(), n.Errors())
	}
	sent := time.Now()
	if !n.SetPosition(100, sent) || n.Position() != 100 || n.PolledAt() != sent.UnixNano() {
		t.Fatal("position")
	}
	later := sent.Add(time.Second)
	if n.SetPosition(50, later) || n.Position() != 100 || n.PolledAt() != later.UnixNano() {
		t.Error("a position moved back, or the poll time did not move")
	}
	if n.SetPosition(100, later) {
		t.Error("an equal position rose")
	}
	n.SetCheckSafe(true)
	n.SetLag(time.Second)
	n.SetWritable(true)
	n.SetTimeline(4)
	if !n.CheckSafe() || n.Lag() != time.Second || !n.Writable() || n.Timeline() != 4 {
		t.Error("setters")
	}
}

func TestSystemKey(t *testing.T) {
	if SystemKey(0) != 1 || SystemKey(1<<32|1) != 1 || SystemKey(0x12345678_00000000) != 0x12345678 {
		t.Error("keys")
	}
	c := newTestCluster(0)
	c.System = 0xAB_00000001
	if c.Key() != 0xAA {
		t.Errorf("key %x", c.Key())
	}
}

func TestWaitPrimary(t *testing.T) {
	c := newTestCluster(1)
	p := c.Nodes[0]
	stop := make(chan struct{})
	if c.WaitPrimary(context.Background(), stop, time.Hour) != p {
		t.Fatal("healthy primary")
	}
	p.MarkDown(time.Now())
	if c.WaitPrimary(context.Background(), stop, 0) != nil {
		t.Fatal("no wait")
	}
	start := time.Now()
	if c.WaitPrimary(context.Background(), stop, 20*time.Millisecond) != nil || time.Since(start) < 20*time.Millisecond {
		t.Fatal("timeout")
	}
	got := make(chan *Node)
	go func() { got <- c.WaitPrimary(context.Background(), stop, time.Hour) }()
	blockedIn(t, "topology.(*Cluster).wait")
	c.Nodes[1].SetPosition(5, time.Now()) // no notify: nothing to see
	c.Nodes[1].MarkDown(time.Now())       // a change, but not the primary
	p.MarkUp(time.Now())
	if <-got != p {
		t.Fatal("woken without the primary")
	}

	p.MarkDown(time.Now())
	ctx, cancel := context.WithCancel(context.Background())
	go func() { got <- c.WaitPrimary(ctx, stop, time.Hour) }()
	blockedIn(t, "topology.(*Cluster).wait")
	cancel()
	if <-got != nil {
		t.Fatal("ctx")
	}
	go func() { got <- c.WaitPrimary(context.Background(), stop, time.Hour) }()
	blockedIn(t, "topology.(*Cluster).wait")
	close(stop)
	if <-got != nil {
		t.Fatal("stop")
	}
}

func TestWaitReplica(t *testing.T) {
	c := newTestCluster(2)
	r1, r2 := c.Nodes[1], c.Nodes[2]
	stop := make(chan struct{})
	if n := c.WaitReplica(context.Background(), stop, time.Hour, 0); n != r1 && n != r2 {
		t.Fatal("at once")
	}
	got := make(chan *Node)
	go func() { got <- c.WaitReplica(context.Background(), stop, time.Hour, 100) }()
	blockedIn(t, "topology.(*Cluster).wait")
	now := time.Now()
	c.Observe(r1, Poll{InRecovery: true, Position: 50, ReplayAge: -1}, now, now, discard)
	c.Observe(r2, Poll{InRecovery: true, Position: 150, ReplayAge: -1}, now, now, discard)
	if <-got != r2 {
		t.Fatal("not r2")
	}
	// None healthy: nothing comes before the timeout.
	r1.MarkDown(now)
	r2.MarkDown(now)
	start := time.Now()
	if c.WaitReplica(context.Background(), stop, 20*time.Millisecond, 0) != nil || time.Since(start) < 20*time.Millisecond {
		t.Fatal("timeout")
	}
	if all, healthy := c.Replicas(); all != 2 || healthy != 0 {
		t.Errorf("replicas %d %d", all, healthy)
	}
}

// TestRTT: a node's round trip is the shortest of the monitor's latest
// (a busy machine's slow polls do not make a near replica look far), and
// moves when the path does; LastRTT is the latest.
func TestRTT(t *testing.T) {
	n := NewNode("n", 0, 1)
	if n.RTT() != 0 || n.LastRTT() != 0 {
		t.Fatal("before any poll")
	}
	for range rttMinSamples - 1 {
		n.ObserveRTT(time.Millisecond)
	}
	if n.RTT() != 0 || n.LastRTT() != time.Millisecond {
		t.Errorf("after %d polls: %v, last %v; want unknown and 1ms", rttMinSamples-1, n.RTT(), n.LastRTT())
	}
	for i := range 40 {
		d := 300 * time.Microsecond
		if i%3 == 0 {
			d = 4 * time.Millisecond // the scheduler's delays
		}
		n.ObserveRTT(d)
	}
	if n.RTT() != 300*time.Microsecond {
		t.Errorf("noisy polls: %v, want the path's 300µs", n.RTT())
	}
	for range rttWindow {
		n.ObserveRTT(200 * time.Millisecond)
	}
	if n.RTT() != 200*time.Millisecond || n.LastRTT() != 200*time.Millisecond {
		t.Errorf("a path 200 ms longer: %v, last %v", n.RTT(), n.LastRTT())
	}
	n.ObserveRTT(5 * time.Millisecond)
	if n.LastRTT() != 5*time.Millisecond {
		t.Errorf("last %v", n.LastRTT())
	}
}
