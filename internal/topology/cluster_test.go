package topology

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// polled makes n look as a poll at sent showed it.
func polled(n *Node, writable bool, tli uint32, sent time.Time) {
	n.SetWritable(writable)
	n.SetTimeline(tli)
	n.SetPosition(n.Position(), sent)
}

func TestElectPromotion(t *testing.T) {
	c := newTestCluster(2)
	p, r1 := c.Nodes[0], c.Nodes[1]
	now := time.Now()
	polled(p, true, 1, now)
	c.RecordPrimary(100, now)
	if c.Elect(now) {
		t.Fatal("elected with nothing to elect")
	}
	// A replica promoted onto timeline 2 while the primary was still up:
	// a split brain, which the newer timeline wins.
	polled(r1, true, 2, now)
	r1.MarkDown(now)
	ch := c.Changed()
	if !c.Elect(now) || c.Primary() != r1 || !closed(ch) {
		t.Fatal("not elected")
	}
	if !r1.Healthy() || r1.upSince.Load() != now.UnixNano() {
		t.Error("a promoted node starts in rotation")
	}
	if pos, ok := c.PrimaryPositionSince(time.Time{}); pos != 0 || ok || len(c.history) != 0 {
		t.Error("the old timeline's history survived")
	}
	if c.Elect(now) {
		t.Error("elected again")
	}
	// The same timeline elsewhere does not win.
	polled(c.Nodes[2], true, 2, now)
	if c.Elect(now) || c.Primary() != r1 {
		t.Error("a tie changed the primary")
	}
}

func TestElectPrimaryDown(t *testing.T) {
	c := newTestCluster(1)
	p, r := c.Nodes[0], c.Nodes[1]
	now := time.Now()
	polled(p, true, 1, now)
	p.MarkDown(now)
	p.SetWritable(false)
	// Writable but never polled: not elected.
	r.SetWritable(true)
	r.SetTimeline(2)
	if c.Elect(now) || c.Primary() != p {
		t.Fatal("an unpolled node elected")
	}
	r.SetPosition(0, now)
	if !c.Elect(now) || c.Primary() != r {
		t.Fatal("the promoted replica not elected")
	}
	// A primary that is healthy but in recovery is replaced too.
	c = newTestCluster(1)
	p, r = c.Nodes[0], c.Nodes[1]
	polled(p, false, 1, now)
	polled(r, true, 2, now)
	if !c.Elect(now) || c.Primary() != r {
		t.Fatal("not replaced")
	}
}

func TestObserveFailover(t *testing.T) {
	c := newTestCluster(2)
	p, r1, r2 := c.Nodes[0], c.Nodes[1], c.Nodes[2]
	now := time.Now()
	c.Observe(p, Poll{Position: 1000, Timeline: 1, ReadCommitted: true, ReplayAge: -1}, now, now, discard)
	c.Observe(r1, Poll{InRecovery: true, Position: 900, ReplayAge: -1}, now, now, discard)
	c.Observe(r2, Poll{InRecovery: true, Position: 900, ReplayAge: -1}, now, now, discard)
	// r1 is promoted.
	c.Observe(r1, Poll{Position: 2000, Timeline: 2, ReplayAge: -1}, now, now, discard)
	if c.Primary() != r1 || !r1.Healthy() {
		t.Fatal("not following the new primary")
	}
	// The old primary, still writable on its timeline: out of reads.
	c.Observe(p, Poll{Position: 1100, Timeline: 1, ReplayAge: -1}, now, now, discard)
	if c.Primary() != r1 || p.Healthy() {
		t.Fatal("the old primary")
	}
	if n := c.PickReplica(0); n != r2 {
		t.Errorf("picked %v", n)
	}
}

func TestObserve(t *testing.T) {
	c := newTestCluster(1)
	c.BlockSize = 8192
	p, r := c.Nodes[0], c.Nodes[1]
	t0 := time.Now()
	ch := c.Changed()
	// The primary's position, out of a page header, recorded.
	c.Observe(p, Poll{Position: 8192*5 + 24, Timeline: 3, ReadCommitted: true, ReplayAge: -1}, t0, t0, discard)
	if p.Position() != 8192*5 || p.Timeline() != 3 || !p.Writable() || !p.CheckSafe() || !closed(ch) {
		t.Fatalf("primary: %v tli %d", p.Position(), p.Timeline())
	}
	if len(c.history) != 1 || c.history[0] != (sample{t0.UnixNano(), 8192 * 5}) {
		t.Fatalf("history %v", c.history)
	}
	// A replica's lag: the primary reached 8192*5 at t0 at the latest; the
	// replica had 100 at t0+50ms and the primary was already past it at
	// t0... (no sample short of it): since the oldest sample.
	t1 := t0.Add(50 * time.Millisecond)
	ch = c.Changed()
	c.Observe(r, Poll{InRecovery: true, Position: 100, ReplayAge: -1}, t1, t1, discard)
	if r.Lag() != 50*time.Millisecond || r.Position() != 100 || r.Writable() || r.CheckSafe() || !closed(ch) {
		t.Fatalf("replica: lag %v", r.Lag())
	}
	// Caught up, replaying commits 5 ms late.
	c.Observe(r, Poll{InRecovery: true, Position: 8192 * 5, ReplayAge: 5 * time.Millisecond}, t1, t1, discard)
	if r.Lag() != 5*time.Millisecond {
		t.Errorf("lag %v", r.Lag())
	}
	// A position that did not rise changes nothing worth waiting for.
	ch = c.Changed()
	c.Observe(r, Poll{InRecovery: true, Position: 8192 * 5, ReplayAge: -1}, t1, t1, discard)
	if closed(ch) {
		t.Error("notified")
	}
	// A replica that is not in recovery: out; a primary in recovery: out.
	c.Observe(r, Poll{Position: 9 << 20, Timeline: 3, ReplayAge: -1}, t1, t1, discard)
	if r.Healthy() || c.Primary() != p {
		t.Error("writable replica")
	}
	c.Observe(p, Poll{InRecovery: true, Position: 8192 * 5, ReplayAge: -1}, t1, t1, discard)
	if p.Healthy() {
		t.Error("primary in recovery")
	}
}

func TestParsePoll(t *testing.T) {
	b := func(vals ...string) [][]byte {
		row := make([][]byte, len(vals))
		for i, v := range vals {
			if v != "NULL" {
				row[i] = []byte(v)
			}
		}
		return row
	}
	p, err := ParsePoll(b("f", "16/B374D848", "3", "read committed", "0.25", "f"))
	if err != nil || p != (Poll{InRecovery: false, Position: 0x16B374D848, Timeline: 3, Isolation: "read committed", ReadCommitted: true, ReplayAge: 250 * time.Millisecond}) {
		t.Errorf("%+v %v", p, err)
	}
	p, err = ParsePoll(b("t", "NULL", "0", "repeatable read", "NULL", "t"))
	if err != nil || p != (Poll{InRecovery: true, Isolation: "repeatable read", ReplayAge: -1, ReadOnly: true}) {
		t.Errorf("NULLs: %+v %v", p, err)
	}
	for name, row := range map[string][][]byte{
		"four columns":  b("f", "0/1", "1", "t"),
		"seven columns": b("f", "0/1", "1", "read committed", "0", "f", "x"),
		"five columns":  b("f", "0/1", "1", "read committed", "0"),
		"bad LSN":       b("f", "nope", "1", "read committed", "0", "f"),
		"NULL tli":      b("f", "0/1", "NULL", "read committed", "0", "f"),
		"bad tli":       b("f", "0/1", "x", "read committed", "0", "f"),
		"huge tli":      b("f", "0/1", "4294967296", "read committed", "0", "f"),
		"bad age":       b("t", "0/1", "0", "read committed", "soon", "f"),
	} {
		if _, err := ParsePoll(row); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// history records samples at base+i ms with position (i+1)*10.
func history(c *Cluster, base time.Time, from, to int) {
	for i := from; i < to; i++ {
		c.RecordPrimary(lsn.LSN((i+1)*10), base.Add(time.Duration(i)*time.Millisecond))
	}
}

func TestLagAt(t *testing.T) {
	c := newTestCluster(1)
	base := time.Unix(1_000_000, 0)
	if c.LagAt(5, base, -1) != 0 {
		t.Error("empty history")
	}
	history(c, base, 0, 10) // positions 10..100 at base+0..9 ms
	ms := time.Millisecond
	sent := base.Add(20 * ms)
	for _, tc := range []struct {
		pos       lsn.LSN
		replayAge time.Duration
		want      time.Duration
	}{
		{100, -1, 11 * ms},        // at the newest: its age
		{500, -1, 11 * ms},        // past it
		{100, 3 * ms, 3 * ms},     // ...unless the replay age is smaller
		{100, time.Hour, 11 * ms}, // a larger one does not count
		{55, -1, 16 * ms},         // between 50 (4 ms) and 60: since 50
		{60, -1, 16 * ms},         // at 60: the primary reached it after 50
		{61, 0, 15 * ms},          // the replay age counts only past every sample
		{10, -1, 20 * ms},         // the oldest: older than the history
		{1, -1, 20 * ms},          // below it
		{100, -1, 11 * ms},        //
		{lsn.LSN(math.MaxUint64), -1, 11 * ms},
	} {
		if got := c.LagAt(tc.pos, sent, tc.replayAge); got != tc.want {
			t.Errorf("LagAt(%d, +20ms, %v) = %v, want %v", tc.pos, tc.replayAge, got, tc.want)
		}
	}
	// A poll sent before the sample: never negative.
	if got := c.LagAt(100, base, -1); got != 0 {
		t.Errorf("negative: %v", got)
	}
}

func TestLagAtWrappedRing(t *testing.T) {
	c := newTestCluster(1)
	base := time.Unix(1_000_000, 0)
	history(c, base, 0, historySize+100) // the first 100 are overwritten
	if len(c.history) != historySize || c.next != 100 {
		t.Fatalf("ring: %d, next %d", len(c.history), c.next)
	}
	oldest := c.sampleAt(0)
	if oldest.pos != 1010 || oldest.at != base.Add(100*time.Millisecond).UnixNano() {
		t.Fatalf("oldest %+v", oldest)
	}
	sent := base.Add(time.Duration(historySize+200) * time.Millisecond)
	since := func(i int) time.Duration { return sent.Sub(base.Add(time.Duration(i) * time.Millisecond)) }
	for _, tc := range []struct {
		pos  lsn.LSN
		want time.Duration
	}{
		{5, since(100)},                     // below the oldest kept
		{1010, since(100)},                  // at the oldest kept
		{1015, since(100)},                  // just past it
		{lsn.LSN(2000*10 + 5), since(1999)}, // before the wrap point
		{lsn.LSN((historySize + 50) * 10), since(historySize + 48)}, // past it
		{lsn.LSN((historySize + 100) * 10), since(historySize + 99)},
	} {
		if got := c.LagAt(tc.pos, sent, -1); got != tc.want {
			t.Errorf("LagAt(%d) = %v, want %v", tc.pos, got, tc.want)
		}
	}
}

func TestPrimaryPositionSince(t *testing.T) {
	c := newTestCluster(0)
	base := time.Unix(1_000_000, 0)
	if pos, ok := c.PrimaryPositionSince(base); pos != 0 || ok {
		t.Error("empty")
	}
	history(c, base, 0, 10)
	ms := time.Millisecond
	for _, tc := range []struct {
		at   time.Time
		want lsn.LSN
	}{
		{base.Add(-time.Hour), 10}, // before every sample: the oldest
		{base, 10},                 // at one: it
		{base.Add(4 * ms), 50},     //
		{base.Add(4*ms + 1), 60},   // between: the next
		{base.Add(9 * ms), 100},    // the newest
		{base.Add(time.Hour), 0},   // after every sample: nothing bounds it
	} {
		if got, ok := c.PrimaryPositionSince(tc.at); got != tc.want || ok != (tc.want != 0) {
			t.Errorf("PrimaryPositionSince(%v) = %v, %v; want %v", tc.at.Sub(base), got, ok, tc.want)
		}
	}
	// Wrapped.
	history(c, base, 10, historySize+100)
	for _, tc := range []struct {
		at   time.Time
		want lsn.LSN
	}{
		{base, 1010},
		{base.Add(100 * ms), 1010},
		{base.Add(2500 * ms), 25010},
		{base.Add(time.Duration(historySize+50)*ms - 1), lsn.LSN((historySize + 51) * 10)},
	} {
		if got, _ := c.PrimaryPositionSince(tc.at); got != tc.want {
			t.Errorf("wrapped: PrimaryPositionSince(%v) = %v, want %v", tc.at.Sub(base), got, tc.want)
		}
	}
}

func TestPickReplicaWeights(t *testing.T) {
	nodes := []*Node{NewNode("p", 0, 1), NewNode("light", 1, 1), NewNode("heavy", 2, 3)}
	c := NewCluster("w", 0, nodes)
	counts := map[*Node]int{}
	const picks = 40000
	for range picks {
		counts[c.PickReplica(0)]++
	}
	if counts[nodes[0]] != 0 {
		t.Fatal("picked the primary")
	}
	if f := float64(counts[nodes[2]]) / picks; f < 0.72 || f > 0.78 {
		t.Errorf("heavy got %.3f of the picks, want about 0.75", f)
	}
}

func TestPickReplicaPowerOfTwo(t *testing.T) {
	c := newTestCluster(2)
	busy := c.Nodes[1]
	for range 10 {
		busy.Start()
	}
	counts := map[*Node]int{}
	const picks = 40000
	for range picks {
		counts[c.PickReplica(0)]++
	}
	// The two candidates are always different: the busy one never wins.
	if counts[busy] != 0 {
		t.Errorf("busy got %d of the picks, want none", counts[busy])
	}
	// Load per unit of weight: 10 in flight on weight 10 beats 2 on 1.
	nodes := []*Node{NewNode("p", 0, 1), NewNode("big", 1, 10), NewNode("small", 2, 1)}
	c = NewCluster("w", 0, nodes)
	for range 10 {
		nodes[1].Start()
	}
	nodes[2].Start()
	nodes[2].Start()
	counts = map[*Node]int{}
	for range picks {
		counts[c.PickReplica(0)]++
	}
	// small only when both candidates were it: (1/11)^2.
	if f := float64(counts[nodes[2]]) / picks; f > 0.02 {
		t.Errorf("small got %.3f", f)
	}
}

func TestPickReplicaEligible(t *testing.T) {
	c := newTestCluster(4)
	now := time.Now()
	down, writable, behind, good := c.Nodes[1], c.Nodes[2], c.Nodes[3], c.Nodes[4]
	down.MarkDown(now)
	writable.SetWritable(true)
	for _, n := range c.Nodes[1:] {
		n.SetPosition(100, now)
	}
	behind.position.Store(50)
	for range 200 {
		if n := c.PickReplica(60); n != good {
			t.Fatalf("picked %v", n)
		}
	}
	good.MarkDown(now)
	if n := c.PickReplica(60); n != nil {
		t.Fatalf("picked %v", n.Name)
	}
	if n := c.PickReplica(0); n != behind {
		t.Fatalf("min 0: picked %v", n)
	}
	if newTestCluster(0).PickReplica(0) != nil {
		t.Error("no replica at all")
	}
}

func TestPickReplicaWithin(t *testing.T) {
	c := newTestCluster(3)
	fast, slow, fresh := c.Nodes[1], c.Nodes[2], c.Nodes[3]
	fast.SetLag(10 * time.Millisecond)
	slow.SetLag(time.Second)
	fresh.SetLag(0)
	seen := map[*Node]bool{}
	for range 500 {
		seen[c.PickReplicaWithin(100*time.Millisecond)] = true
	}
	if len(seen) != 2 || !seen[fast] || !seen[fresh] {
		t.Errorf("within 100ms: %v", seen)
	}
	for range 100 {
		if n := c.PickReplicaWithin(-time.Second); n != fresh {
			t.Fatalf("negative bound picked %v", n.Name)
		}
	}
	fresh.MarkDown(time.Now())
	if n := c.PickReplicaWithin(0); n != nil {
		t.Errorf("picked %v", n.Name)
	}
	if n := c.PickReplicaWithin(time.Hour); n != fast && n != slow {
		t.Errorf("an hour: %v", n)
	}
}

// TestPickReplicaSlow: a replica whose round trip is 200 times longer gets
// reads only when the near one is that much busier.
func TestPickReplicaSlow(t *testing.T) {
	c := newTestCluster(2)
	near, slow := c.Nodes[1], c.Nodes[2]
	for range rttMinSamples {
		near.ObserveRTT(300 * time.Microsecond)
		slow.ObserveRTT(200 * time.Millisecond)
	}
	counts := map[*Node]int{}
	for range 10000 {
		counts[c.PickReplica(0)]++
	}
	if counts[slow] != 0 {
		t.Errorf("the slow replica got %d of 10000 idle picks", counts[slow])
	}
	for range 250 {
		near.Start()
	}
	if n := c.PickReplica(0); n != slow {
		t.Errorf("with 250 reads in flight on the near replica, the pick was %s", n.Name)
	}
}

// TestPickReplicaWeightsOverNoise: replicas whose round trips differ by
// less than rttSpread (a busy machine's polls), idle, share reads by
// weight.
func TestPickReplicaWeightsOverNoise(t *testing.T) {
	nodes := []*Node{NewNode("p", 0, 1), NewNode("r1", 1, 1), NewNode("r2", 2, 3)}
	c := NewCluster("test", 0, nodes)
	for range rttMinSamples {
		nodes[1].ObserveRTT(1200 * time.Microsecond)
		nodes[2].ObserveRTT(1900 * time.Microsecond)
	}
	counts := map[*Node]int{}
	for range 40000 {
		counts[c.PickReplica(0)]++
	}
	if share := float64(counts[nodes[2]]) / 40000; share < 0.72 || share > 0.78 {
		t.Errorf("weights 1:3 with round trips of 1.2 and 1.9 ms: shares %d and %d", counts[nodes[1]], counts[nodes[2]])
	}
}

// TestPickReplicaWeightsBeforeRTTKnown: until the monitor has made a few
// round trips to each, one slow first poll does not take a replica out of
// rotation: idle replicas share reads by weight.
func TestPickReplicaWeightsBeforeRTTKnown(t *testing.T) {
	nodes := []*Node{NewNode("p", 0, 1), NewNode("r1", 1, 1), NewNode("r2", 2, 3)}
	c := NewCluster("test", 0, nodes)
	for range rttMinSamples - 1 {
		nodes[1].ObserveRTT(300 * time.Microsecond)
		nodes[2].ObserveRTT(20 * time.Millisecond) // a busy machine's first polls
	}
	counts := map[*Node]int{}
	for range 40000 {
		counts[c.PickReplica(0)]++
	}
	if share := float64(counts[nodes[2]]) / 40000; share < 0.72 || share > 0.78 {
		t.Errorf("weights 1:3 before the round trips are known: shares %d and %d", counts[nodes[1]], counts[nodes[2]])
	}
	nodes[1].ObserveRTT(300 * time.Microsecond)
	nodes[2].ObserveRTT(20 * time.Millisecond)
	if n := c.PickReplica(0); n != nodes[1] {
		t.Errorf("once known, idle reads go to the near replica, not %s", n.Name)
	}
}

// TestWaited: a replica's move is worth a poll when it reaches what a
// waiting read needs, and only while that read waits.
func TestWaited(t *testing.T) {
	c := newTestCluster(1)
	at := func(n *Node, pos lsn.LSN) { n.SetPosition(pos, time.Now()) }
	at(c.Nodes[1], 0x100)
	done := make(chan *Node)
	go func() { done <- c.WaitReplica(context.Background(), nil, 10*time.Second, 0x200) }()
	eventually(t, "the read waiting", c.Waiting)
	for _, w := range []struct {
		from, to lsn.LSN
		want     bool
	}{{0x100, 0x1ff, false}, {0x100, 0x200, true}, {0x1ff, 0x300, true}, {0x200, 0x300, false}, {0x300, 0x100, false}} {
		if got := c.Waited(w.from, w.to); got != w.want {
			t.Errorf("Waited(%v, %v) = %v", w.from, w.to, got)
		}
	}
	at(c.Nodes[1], 0x200)
	c.notify()
	if n := <-done; n != c.Nodes[1] {
		t.Fatalf("the wait returned %v", n)
	}
	if c.Waiting() || c.Waited(0x100, 0x200) {
		t.Error("a read that no longer waits still counts")
	}
}

// BenchmarkPickReplica: the balancer's pick among two replicas with known
// round trips, as every replica read makes it.
func BenchmarkPickReplica(b *testing.B) {
	c := newTestCluster(2)
	for _, n := range c.Nodes[1:] {
		for range rttMinSamples {
			n.ObserveRTT(300 * time.Microsecond)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if c.PickReplica(0) == nil {
			b.Fatal("no replica")
		}
	}
}
