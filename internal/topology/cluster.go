package topology

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// Cluster is one primary and its streaming replicas.
type Cluster struct {
	// Name identifies the cluster ("default" for a single one).
	Name string
	// Index numbers an engine's clusters from 0.
	Index int
	// Nodes are all nodes, the configured primary first; the slice never
	// changes, the primary does.
	Nodes []*Node
	// System is the cluster's system identifier (pg_control_system()),
	// which its replicas share and other clusters do not.
	System uint64
	// Identity tells this cluster from others that share its system
	// identifier (clones of one physical backup); empty for the rest.
	Identity string
	// BlockSize is the WAL block size (wal_block_size), to keep a primary's
	// polled insert position out of a page header (see
	// lsn.RoundDownPageHeader). Zero leaves positions as polled.
	BlockSize uint64
	// MaxPrepared is the primary's max_prepared_transactions when the
	// cluster was opened: 0 means no two-phase commit.
	MaxPrepared int
	// OnDown, if set, is called when a node goes out of rotation, from the
	// goroutine that found it down.
	OnDown func(*Node)

	primary atomic.Pointer[Node]

	mu        sync.Mutex
	events    []Event // the latest state changes, a ring, oldest at nextEvent
	nextEvent int
	changed   chan struct{} // closed and replaced on every change worth waiting for
	hurry     chan struct{} // closed and replaced when a read starts waiting for a replica
	needs     []lsn.LSN     // the positions reads waiting for a replica need
	history   []sample      // the primary's insert position over time, a ring, oldest at next
	next      int
}

// Event is a change of a node's state.
type Event struct {
	At   time.Time
	Node *Node
	// What: "down", "up" or "primary".
	What string
	Why  string
}

// maxEvents bounds the events a cluster keeps.
const maxEvents = 64

// record remembers an event.
func (c *Cluster) record(e Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recordLocked(e)
}

func (c *Cluster) recordLocked(e Event) {
	if len(c.events) < maxEvents {
		c.events = append(c.events, e)
		return
	}
	c.events[c.nextEvent] = e
	c.nextEvent = (c.nextEvent + 1) % maxEvents
}

// Events returns the cluster's latest events, oldest first.
func (c *Cluster) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Event, 0, len(c.events))
	out = append(out, c.events[c.nextEvent:]...)
	return append(out, c.events[:c.nextEvent]...)
}

// sample is the primary's insert position at a time (unix nanoseconds).
type sample struct {
	at  int64
	pos lsn.LSN
}

// historySize bounds the primary's position history: at the default 25ms
// interval, about 100 s of it.
const historySize = 4096

// NewCluster makes a cluster of nodes whose primary is nodes[0].
func NewCluster(name string, index int, nodes []*Node) *Cluster {
	c := &Cluster{Name: name, Index: index, Nodes: nodes, changed: make(chan struct{}), hurry: make(chan struct{})}
	for _, n := range nodes {
		n.cluster = c
	}
	c.primary.Store(nodes[0])
	return c
}

// Key is the 32-bit hash of the system identifier (and Identity, if set)
// that session tokens carry: enough to tell one cluster's positions from
// another's. It is never 0, which stands for "no cluster".
func (c *Cluster) Key() uint32 {
	if c.Identity == "" {
		return SystemKey(c.System)
	}
	h := fnv.New64a()
	h.Write([]byte(c.Identity))
	return SystemKey(c.System ^ h.Sum64())
}

// SystemKey folds a 64-bit system identifier into a cluster key.
func SystemKey(id uint64) uint32 {
	h := uint32(id>>32) ^ uint32(id)
	if h == 0 {
		h = 1
	}
	return h
}

// Changed returns a channel that is closed at the next change worth
// waiting for: a position that rose, a node that went down or came back, a
// new primary.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Cluster) notify() {
	c.mu.Lock()
	c.notifyLocked()
	c.mu.Unlock()
}

func (c *Cluster) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// RecordPrimary remembers the primary's insert position at a time.
func (c *Cluster) RecordPrimary(pos lsn.LSN, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := sample{at.UnixNano(), pos}
	if len(c.history) < historySize {
		c.history = append(c.history, s)
		return
	}
	c.history[c.next] = s
	c.next = (c.next + 1) % historySize
}

// sampleAt returns the i-th oldest sample of the history (0 <= i < len).
func (c *Cluster) sampleAt(i int) sample {
	return c.history[(c.next+i)%len(c.history)]
}

// LagAt estimates the lag of a replica that had replayed pos when polled at
// sent. If the primary's history has a position short of pos, the lag is at
// most the time since the newest such sample (the primary reached pos after
// it). If the replica had replayed past every sample, it is at most the age
// of the newest sample, and, if replayAge (the age of the last replayed
// commit, negative if unknown) is smaller, at most that: a replica that
// replays a busy primary's commits 20 ms late shows 20 ms.
func (c *Cluster) LagAt(pos lsn.LSN, sent time.Time, replayAge time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := len(c.history)
	if k == 0 {
		return 0
	}
	since := func(s sample) time.Duration { return max(time.Duration(sent.UnixNano()-s.at), 0) }
	if newest := c.sampleAt(k - 1); newest.pos <= pos {
		lag := since(newest)
		if replayAge >= 0 && replayAge < lag {
			lag = replayAge
		}
		return lag
	}
	// Positions in the ring only rise: the first sample at or past pos is
	// where the primary reached it, and the one before it is the newest
	// short of it.
	i := sort.Search(k, func(i int) bool { return c.sampleAt(i).pos >= pos })
	if i == 0 {
		return since(c.sampleAt(0)) // older than the history
	}
	return since(c.sampleAt(i - 1))
}

// PrimaryPositionSince returns the primary's insert position as first
// polled at or after t: everything committed by t is at or before it (a
// conservative bound for "data at most d old"). ok is false when no poll
// was sent at or after t (the monitor has not reached the primary since):
// then nothing bounds what was committed by t.
func (c *Cluster) PrimaryPositionSince(t time.Time) (pos lsn.LSN, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := len(c.history)
	want := t.UnixNano()
	i := sort.Search(k, func(i int) bool { return c.sampleAt(i).at >= want })
	if i == k {
		return 0, false
	}
	return c.sampleAt(i).pos, true
}

// Primary is the node that currently takes writes.
func (c *Cluster) Primary() *Node { return c.primary.Load() }

// WaitPrimary returns the primary once it is healthy, waiting up to
// timeout; it gives up early when ctx or stop ends. It returns nil when
// none came.
func (c *Cluster) WaitPrimary(ctx context.Context, stop <-chan struct{}, timeout time.Duration) *Node {
	return c.wait(ctx, stop, timeout, func() *Node {
		if p := c.Primary(); p.Healthy() {
			return p
		}
		return nil
	})
}

// WaitReplica waits up to timeout for a healthy replica to have replayed
// need, as the monitor sees it, and returns it (nil if none came). While
// it waits, the monitor polls the replicas sooner than every interval (see
// Waited): a replica replays a write within a millisecond or two, and the
// read should not wait for the next regular poll to learn so.
func (c *Cluster) WaitReplica(ctx context.Context, stop <-chan struct{}, timeout time.Duration, need lsn.LSN) *Node {
	ready := func() *Node {
		if _, healthy := c.Replicas(); healthy == 0 {
			return nil
		}
		return c.PickReplica(need)
	}
	if n := ready(); n != nil || timeout <= 0 {
		return n
	}
	c.mu.Lock()
	c.needs = append(c.needs, need)
	close(c.hurry)
	c.hurry = make(chan struct{})
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		i := slices.Index(c.needs, need)
		c.needs = slices.Delete(c.needs, i, i+1)
		c.mu.Unlock()
	}()
	return c.wait(ctx, stop, timeout, ready)
}

// HurryInterval is the monitor's shortest pause between polls of a replica
// while reads wait for one to catch up (Cluster.WaitReplica).
const HurryInterval = time.Millisecond

// HurryMaxGap is the monitor's longest pause between polls of a replica
// while reads wait for one to catch up (unless the interval is shorter): a
// replica 20 ms behind is seen to have caught up within 5 ms, at the cost
// of at most 200 polls a second that release no read.
const HurryMaxGap = 5 * time.Millisecond

// Hurried returns a channel that is closed when the next read starts
// waiting for a replica to catch up.
func (c *Cluster) Hurried() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hurry
}

// Waiting reports whether reads are waiting for a replica to catch up.
func (c *Cluster) Waiting() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.needs) > 0
}

// Waited reports whether a replica's move from position from to position
// to reached what a waiting read needs: whether the poll that saw it was
// worth making. The monitor polls a replica again after HurryInterval
// when it was, and twice as late as last time (up to HurryMaxGap) when it
// was not, so that waiting reads cost about one poll each, and a replica
// far behind is not polled every millisecond for nothing.
func (c *Cluster) Waited(from, to lsn.LSN) bool {
	if from >= to {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, need := range c.needs {
		if from < need && need <= to {
			return true
		}
	}
	return false
}

// wait is the one way to wait for the cluster to reach a state: it calls
// ready at once and after every change, until it returns a node or time is
// up.
func (c *Cluster) wait(ctx context.Context, stop <-chan struct{}, timeout time.Duration, ready func() *Node) *Node {
	if n := ready(); n != nil || timeout <= 0 {
		return n
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		changed := c.Changed()
		if n := ready(); n != nil {
			return n
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		case <-stop:
			return nil
		}
	}
}

// eligible reports whether node n may serve a read as a replica that needs
// at least position min (0: any position) from a replica at most maxLag
// behind (negative: any lag). A node that accepts writes is no replica,
// even before the monitor has taken it out (an old primary after a
// failover).
func (c *Cluster) eligible(n *Node, primary *Node, min lsn.LSN, maxLag time.Duration) bool {
	return n != primary && n.Healthy() && !n.Writable() && n.Position() >= min && (maxLag < 0 || n.Lag() <= maxLag)
}

// PickReplica chooses a healthy replica whose polled position is at least
// min, or nil when there is none. It picks two different candidates at
// random in proportion to their weights and keeps the one that costs less
// per unit of weight, counting reads in flight and round trip time (the
// power of two choices): nearly as good as always picking the least
// loaded, without herding every caller onto the same replica between
// updates. It allocates nothing.
func (c *Cluster) PickReplica(min lsn.LSN) *Node { return c.pick(min, -1) }

// PickReplicaWithin chooses, as PickReplica does, among healthy replicas
// whose replay lag was at most maxLag at their last poll: those that have
// probably replayed what the primary wrote maxLag ago.
func (c *Cluster) PickReplicaWithin(maxLag time.Duration) *Node { return c.pick(0, max(maxLag, 0)) }

func (c *Cluster) pick(min lsn.LSN, maxLag time.Duration) *Node {
	primary := c.Primary()
	var total int64
	for _, n := range c.Nodes {
		if c.eligible(n, primary, min, maxLag) {
			total += n.weight
		}
	}
	if total == 0 {
		return nil
	}
	a := c.weighted(rand.Int64N(total), primary, min, maxLag, nil)
	if a == nil {
		return nil // eligibility changed under us
	}
	if total == a.weight {
		return a
	}
	b := c.weighted(rand.Int64N(total-a.weight), primary, min, maxLag, a)
	if b == nil {
		return a
	}
	if better(a, b) {
		return a
	}
	return b
}

// rttFloor is the round trip below which replicas count as equally near:
// differences of a fraction of a millisecond are noise.
const rttFloor = time.Millisecond

// rttSpread is how many times longer one replica's round trip must be than
// another's to count: polls on a busy machine vary by as much.
const rttSpread = 2

// better reports whether a read should go to a rather than b. Replicas
// whose round trip is not known yet, or about equally near (round trips within rttSpread of each other, or both
// within rttFloor) compare by reads in flight per unit of weight, a winning
// ties: a was drawn by weight, so idle replicas share reads by weight.
// Otherwise the reads in flight, one more, are weighed by the round trip: a
// replica slowed by the network or its disk gets reads only when the near
// ones are that many times busier.
func better(a, b *Node) bool {
	ra, rb := a.RTT(), b.RTT()
	known := ra != 0 && rb != 0
	ra, rb = max(ra, rttFloor), max(rb, rttFloor)
	if !known || ra <= rttSpread*rb && rb <= rttSpread*ra {
		return a.InFlight()*b.weight <= b.InFlight()*a.weight
	}
	return (a.InFlight()+1)*int64(ra/time.Microsecond) <= (b.InFlight()+1)*int64(rb/time.Microsecond)
}

// weighted returns the eligible replica, other than not, in whose share of
// the total weight r falls. Eligibility can change between the two passes;
// then it may return nil, and pick uses the other candidate.
func (c *Cluster) weighted(r int64, primary *Node, min lsn.LSN, maxLag time.Duration, not *Node) *Node {
	for _, n := range c.Nodes {
		if n == not || !c.eligible(n, primary, min, maxLag) {
			continue
		}
		if r < n.weight {
			return n
		}
		r -= n.weight
	}
	return nil
}

// Replicas counts the nodes that are not the primary now, and those of
// them that are healthy.
func (c *Cluster) Replicas() (all, healthy int) {
	primary := c.Primary()
	for _, n := range c.Nodes {
		if n != primary {
			all++
			if n.Healthy() {
				healthy++
			}
		}
	}
	return all, healthy
}

// Elect makes the healthy writable node with the highest timeline the
// primary, if that is not the current primary already: after a failover,
// the promoted replica; after a split brain, the node on the newer
// timeline (the old primary, on its old timeline, is then treated as a
// replica that is not in recovery, and kept out of rotation). A node
// counts once the monitor has polled it, and only on a timeline newer than
// the current primary's: while the current one is down, an old primary
// still writable on an older timeline is not elected back. Elect reports
// whether the primary changed.
func (c *Cluster) Elect(now time.Time) bool {
	current := c.Primary()
	best := current
	if !current.Healthy() || !current.Writable() {
		best = nil
	}
	for _, n := range c.Nodes {
		if n == current || !n.Writable() || n.PolledAt() == 0 || n.Timeline() <= current.Timeline() {
			continue // only a promotion leaves the current primary's timeline
		}
		if best == nil || n.Timeline() > best.Timeline() {
			best = n
		}
	}
	if best == nil || best == current {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Primary() != current {
		return false // another poll got here first
	}
	c.primary.Store(best)
	if !best.healthy.Swap(true) { // a promoted node starts in rotation
		best.upSince.Store(now.UnixNano())
	}
	c.history, c.next = nil, 0 // positions on the old timeline say nothing about the new one
	c.recordLocked(Event{At: now, Node: best, What: "primary", Why: fmt.Sprintf("timeline %d", best.Timeline())})
	c.notifyLocked()
	return true
}
