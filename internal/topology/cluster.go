package topology

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// Cluster is one primary and its replicas. switchyard keeps clusters
// first-class, though the public API shows one, so that routing by table to
// several clusters needs no rework.
type Cluster struct {
	// Name identifies the cluster ("default" for the one Open makes).
	Name string
	// Nodes are all nodes, primary first as configured; the slice never
	// changes, roles do.
	Nodes []*Node
	// BlockSize is the WAL block size (wal_block_size), to keep a primary's
	// polled insert position out of a page header (see
	// lsn.RoundDownPageHeader). Zero leaves positions as polled.
	BlockSize uint64

	primary atomic.Pointer[Node]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a position rises
	history []sample      // the primary's insert position over time, a ring
	next    int
}

// sample is the primary's insert position at a time (unix nanoseconds).
type sample struct {
	at  int64
	pos lsn.LSN
}

// historySize bounds the primary's position history: at the default 25ms
// interval, about 100 s of it.
const historySize = 4096

// NewCluster makes a cluster whose primary is nodes[0].
func NewCluster(name string, nodes []*Node) *Cluster {
	c := &Cluster{Name: name, Nodes: nodes, changed: make(chan struct{})}
	c.primary.Store(nodes[0])
	return c
}

// Changed returns a channel that is closed the next time the monitor sees a
// node's position rise.
func (c *Cluster) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Cluster) notify() {
	c.mu.Lock()
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
}

// recordPrimary remembers the primary's insert position at a time.
func (c *Cluster) recordPrimary(pos lsn.LSN, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.history) < historySize {
		c.history = append(c.history, sample{at.UnixNano(), pos})
		return
	}
	c.history[c.next] = sample{at.UnixNano(), pos}
	c.next = (c.next + 1) % historySize
}

// lagAt estimates the lag of a replica that had replayed pos when polled at
// sent. If the primary's history has a position short of pos, the lag is at
// most the time since the newest such sample (the primary reached pos after
// it). If the replica had replayed past every sample, it is at most the age
// of the newest sample, and, if replayAge (the age of the last replayed
// commit, negative if unknown) is smaller, at most that: a replica that
// replays a busy primary's commits 20 ms late shows 20 ms.
func (c *Cluster) lagAt(pos lsn.LSN, sent time.Time, replayAge time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := len(c.history)
	if k == 0 {
		return 0
	}
	newest := c.history[(c.next-1+k)%k]
	if newest.pos < pos || newest.pos == pos {
		lag := max(time.Duration(sent.UnixNano()-newest.at), 0)
		if replayAge >= 0 && replayAge < lag {
			lag = replayAge
		}
		return lag
	}
	for i := 1; i < k; i++ {
		s := c.history[(c.next-1-i+2*k)%k]
		if s.pos < pos {
			return max(time.Duration(sent.UnixNano()-s.at), 0)
		}
	}
	return max(time.Duration(sent.UnixNano()-c.history[c.next%k].at), 0) // older than the history
}

// PrimaryPositionSince returns the primary's insert position as first
// polled at or after t: everything committed by t is at or before it (a
// conservative bound for "data at most d old"). With no such sample it
// returns the newest one; with none at all, 0.
func (c *Cluster) PrimaryPositionSince(t time.Time) lsn.LSN {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.history) == 0 {
		return 0
	}
	want := t.UnixNano()
	newest := (c.next - 1 + len(c.history)) % len(c.history)
	best := c.history[newest]
	for i := range c.history {
		s := c.history[i]
		if s.at >= want && s.at < best.at {
			best = s
		}
	}
	return best.pos
}

// Primary is the node that currently takes writes.
func (c *Cluster) Primary() *Node { return c.primary.Load() }

// SetPrimary records a new primary, after a failover.
func (c *Cluster) SetPrimary(n *Node) { c.primary.Store(n) }

// eligible reports whether replica n may serve a read that needs at least
// position min (0: any position) from a replica at most maxLag behind
// (negative: any lag).
func (c *Cluster) eligible(n *Node, min lsn.LSN, maxLag time.Duration) bool {
	return n.Role() == RoleReplica && n != c.Primary() && n.Healthy() && n.Position() >= min &&
		(maxLag < 0 || n.Lag() <= maxLag)
}

// PickReplica chooses a healthy replica whose polled position is at least
// min, or nil when there is none. It picks two candidates at random in
// proportion to their weights and keeps the one with fewer statements in
// flight per unit of weight ("the power of two choices"): nearly as good as
// always picking the least loaded, without herding every caller onto the
// same replica between updates. It allocates nothing.
func (c *Cluster) PickReplica(min lsn.LSN) *Node { return c.pick(min, -1) }

// PickReplicaWithin chooses, as PickReplica does, among healthy replicas
// whose replay lag was at most maxLag at their last poll: those that have
// probably replayed what the primary wrote maxLag ago.
func (c *Cluster) PickReplicaWithin(maxLag time.Duration) *Node { return c.pick(0, max(maxLag, 0)) }

func (c *Cluster) pick(min lsn.LSN, maxLag time.Duration) *Node {
	var total int64
	for _, n := range c.Nodes {
		if c.eligible(n, min, maxLag) {
			total += n.weight
		}
	}
	if total == 0 {
		return nil
	}
	a := c.weighted(rand.Int64N(total), min, maxLag)
	b := c.weighted(rand.Int64N(total), min, maxLag)
	switch {
	case a == nil:
		return b
	case b == nil || a == b:
		return a
	}
	// a.inflight/a.weight <= b.inflight/b.weight, without division.
	if a.InFlight()*b.weight <= b.InFlight()*a.weight {
		return a
	}
	return b
}

// weighted returns the eligible replica in whose share of the total weight
// r falls. Eligibility can change between the two passes; then it may
// return nil, and PickReplica uses the other candidate.
func (c *Cluster) weighted(r int64, min lsn.LSN, maxLag time.Duration) *Node {
	for _, n := range c.Nodes {
		if !c.eligible(n, min, maxLag) {
			continue
		}
		if r < n.weight {
			return n
		}
		r -= n.weight
	}
	return nil
}

// Replicas counts the nodes that are replicas now, and those of them that
// are healthy.
func (c *Cluster) Replicas() (all, healthy int) {
	for _, n := range c.Nodes {
		if n.Role() == RoleReplica && n != c.Primary() {
			all++
			if n.Healthy() {
				healthy++
			}
		}
	}
	return all, healthy
}

// elect makes the healthy writable node with the highest timeline the
// primary, if that is not the current primary already: after a failover,
// the promoted replica; after a split brain, the node on the newer
// timeline (the old primary, on its old timeline, is then treated as a
// replica that is not in recovery, and kept out of rotation). It reports
// whether the primary changed.
func (c *Cluster) elect(now time.Time) bool {
	current := c.Primary()
	best := current
	if !current.Healthy() || !current.Writable() {
		best = nil
	}
	for _, n := range c.Nodes {
		if n == current || !n.Writable() || n.polled.Load() == 0 {
			continue
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
	best.SetRole(RolePrimary)
	current.SetRole(RoleReplica)
	best.MarkUp(now, true) // a promoted node starts in rotation
	c.primary.Store(best)
	c.history, c.next = nil, 0 // positions on the old timeline say nothing about the new one
	close(c.changed)
	c.changed = make(chan struct{})
	return true
}
