// Package topology holds switchyard's view of the servers: clusters of one
// primary and its replicas, each node's health, load and WAL position, the
// balancer that picks a replica, and the monitor that keeps roles, health
// and positions current.
//
// It knows nothing of connection pools: a front (the pgx API, the wire
// proxy) keeps its own connections to each node, found by Node.Index, and
// learns from Cluster's OnDown hook when to drop them.
package topology

import (
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// Ban durations: a node that fails is out for at least MinBan, doubling on
// each failure that follows soon after it came back, up to MaxBan, and back
// as soon as the ban has expired and the monitor reaches it.
const (
	MinBan = 250 * time.Millisecond
	MaxBan = 10 * time.Second
)

// Node is one server: what is known of it. Every field the router reads on
// the hot path is atomic.
type Node struct {
	// Name identifies the node in errors, logs and stats: host:port, never
	// a password.
	Name string
	// Index numbers the nodes of every cluster of an engine from 0, so that
	// a front can keep its connections to each in a slice.
	Index int

	cluster *Cluster
	weight  int64

	healthy     atomic.Bool
	downSince   atomic.Int64 // unix nanoseconds of the last MarkDown
	bannedUntil atomic.Int64 // unix nanoseconds
	failures    atomic.Int32 // recent downs, for the ban's length
	upSince     atomic.Int64 // unix nanoseconds of the last MarkUp

	inflight atomic.Int64
	routed   atomic.Uint64
	errors   atomic.Uint64

	position  atomic.Uint64 // replay LSN of a replica, insert LSN of a primary, as last polled
	polled    atomic.Int64  // unix nanoseconds at which the last successful poll was sent
	checkSafe atomic.Bool   // default isolation is READ COMMITTED: a freshness check may share a round trip with the read
	timeline  atomic.Uint32 // a primary's timeline, as last polled
	writable  atomic.Bool   // not in recovery, as last polled
	lag       atomic.Int64  // a replica's replay lag in nanoseconds, as last estimated

	rtts            [rttWindow]atomic.Int64 // the monitor's latest round trips to it, nanoseconds
	rttNext         atomic.Uint32
	rttMin          atomic.Int64 // the shortest of rtts, kept by ObserveRTT for RTT (read on every replica pick)
	readOnlyDefault atomic.Bool  // default_transaction_read_only, as last polled

	latency    [len(LatencyBounds) + 1]atomic.Uint64 // statements by duration bucket
	latencySum atomic.Int64                          // nanoseconds
}

// rttWindow is how many of the monitor's latest round trips RTT looks at:
// at the default interval, the last 0.4 s.
const rttWindow = 16

// rttMinSamples is how many round trips RTT needs to know one.
const rttMinSamples = 4

// ObserveRTT records a monitor round trip to the node. Only the node's
// monitor calls it, one poll after another; it keeps the window's shortest
// round trip, so that RTT, read on every replica pick, is one load.
func (n *Node) ObserveRTT(d time.Duration) {
	i := n.rttNext.Load() % rttWindow
	n.rtts[i].Store(max(int64(d), 1))
	var m int64
	for j := range n.rtts {
		if v := n.rtts[j].Load(); v != 0 && (m == 0 || v < m) {
			m = v
		}
	}
	n.rttMin.Store(m)
	n.rttNext.Add(1)
}

// LastRTT is the monitor's latest round trip to the node (0 before the
// first).
func (n *Node) LastRTT() time.Duration {
	i := (n.rttNext.Load() + rttWindow - 1) % rttWindow
	return time.Duration(n.rtts[i].Load())
}

// RTT is the shortest of the monitor's latest round trips to the node: the
// path's own latency. It is 0, unknown, until the monitor has made
// rttMinSamples round trips: the first one or two on a busy machine can be
// anything, and the balancer would let them outweigh the replicas' weights. A mean would count the
// scheduling delays of a busy machine, which come and go, and make a
// replica look farther than another that is as near, so that it got no
// reads; the shortest round trip moves only when the path does (a
// replica 200 ms away stays 200 ms away in every sample).
func (n *Node) RTT() time.Duration {
	if n.rttNext.Load() < rttMinSamples {
		return 0
	}
	return time.Duration(n.rttMin.Load())
}

// LatencyBounds are the upper bounds of the buckets statements' durations
// are counted in.
var LatencyBounds = [...]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// ObserveLatency counts a statement that took d.
func (n *Node) ObserveLatency(d time.Duration) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	n.latency[i].Add(1)
	n.latencySum.Add(int64(d))
}

// Latency returns the statements' counts per duration bucket (the last
// past every bound) and their total duration.
func (n *Node) Latency() (counts []uint64, sum time.Duration) {
	counts = make([]uint64, len(n.latency))
	for i := range n.latency {
		counts[i] = n.latency[i].Load()
	}
	return counts, time.Duration(n.latencySum.Load())
}

// NewNode makes a node with a weight (1 or more) for the balancer. It
// starts healthy: Open has just reached it, or the monitor will find out
// otherwise within one interval. NewCluster puts it in a cluster.
func NewNode(name string, index, weight int) *Node {
	n := &Node{Name: name, Index: index, weight: int64(max(weight, 1))}
	n.healthy.Store(true)
	return n
}

// Cluster is the cluster the node belongs to.
func (n *Node) Cluster() *Cluster { return n.cluster }

// IsPrimary reports whether the node is its cluster's primary now.
func (n *Node) IsPrimary() bool { return n.cluster.Primary() == n }

// Role is "primary" or "replica": what the node is now.
func (n *Node) Role() string {
	if n.IsPrimary() {
		return "primary"
	}
	return "replica"
}

// Healthy reports whether the node takes traffic.
func (n *Node) Healthy() bool { return n.healthy.Load() }

// DownSince is when the node last went out of rotation (zero if never).
func (n *Node) DownSince() time.Time {
	if ns := n.downSince.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// Weight is the node's share of replica reads relative to the others.
func (n *Node) Weight() int { return int(n.weight) }

// Start counts a statement sent to the node; call Done when it finishes.
func (n *Node) Start() {
	n.inflight.Add(1)
	n.routed.Add(1)
}

// Done ends what Start began; failed says whether it ended in an error.
func (n *Node) Done(failed bool) {
	n.inflight.Add(-1)
	if failed {
		n.errors.Add(1)
	}
}

// InFlight is the number of statements under way on the node.
func (n *Node) InFlight() int64 { return n.inflight.Load() }

// Routed is the number of statements sent to the node.
func (n *Node) Routed() uint64 { return n.routed.Load() }

// Errors is the number of statements that ended in an error on the node.
func (n *Node) Errors() uint64 { return n.errors.Load() }

// MarkDown takes the node out of rotation at once (its circuit opens) and
// tells the cluster's OnDown hook, so that the front drops its connections,
// which are most likely dead too. The ban starts when the node goes down
// and is not extended while it stays down; it doubles for a node that fails
// again soon after it came back (a flapping node), up to MaxBan. MarkDown
// reports whether the node was healthy until now.
func (n *Node) MarkDown(now time.Time) bool { return n.MarkDownBecause(now, "") }

// MarkDownBecause is MarkDown, recording why (for the cluster's events;
// it must hold no secret).
func (n *Node) MarkDownBecause(now time.Time, why string) bool {
	if !n.healthy.Load() || !n.healthy.Swap(false) {
		return false // down already, or another goroutine took it down first
	}
	if now.UnixNano()-n.upSince.Load() > int64(MaxBan) {
		n.failures.Store(0)
	}
	f := n.failures.Add(1)
	n.bannedUntil.Store(now.Add(Ban(int(f))).UnixNano())
	n.downSince.Store(now.UnixNano())
	if c := n.cluster; c != nil {
		if c.OnDown != nil {
			c.OnDown(n)
		}
		c.record(Event{At: now, Node: n, What: "down", Why: why})
		c.notify()
	}
	return true
}

// Ban is how long a node stays out after its failure-th failure in a row:
// MinBan, doubling, at most MaxBan.
func Ban(failure int) time.Duration {
	return min(MinBan<<min(max(failure, 1)-1, 6), MaxBan)
}

// MarkUp puts the node back once its ban has expired, after the monitor
// reached it; a primary, which nothing can stand in for, comes back at once.
// It reports whether the node came back.
func (n *Node) MarkUp(now time.Time) bool {
	if n.healthy.Load() || !n.IsPrimary() && now.UnixNano() < n.bannedUntil.Load() {
		return false
	}
	n.upSince.Store(now.UnixNano())
	if n.healthy.Swap(true) {
		return false
	}
	n.cluster.record(Event{At: now, Node: n, What: "up"})
	n.cluster.notify()
	return true
}

// Position is the node's last polled WAL position: the replay LSN of a
// replica, the insert LSN of a primary.
func (n *Node) Position() lsn.LSN { return lsn.LSN(n.position.Load()) }

// SetPosition records a position polled by a query sent at sent; positions
// never move back. It reports whether the position rose.
func (n *Node) SetPosition(l lsn.LSN, sent time.Time) bool {
	rose := false
	for {
		old := n.position.Load()
		if uint64(l) <= old {
			break
		}
		if n.position.CompareAndSwap(old, uint64(l)) {
			rose = true
			break
		}
	}
	n.polled.Store(sent.UnixNano())
	return rose
}

// PolledAt is when the query behind Position was sent (unix nanoseconds).
// The position is at least what the node had replayed at that moment: a
// read that finished before then saw no more than Position.
func (n *Node) PolledAt() int64 { return n.polled.Load() }

// CheckSafe reports whether the node's default isolation is READ
// COMMITTED, so that a freshness check sent ahead of a read in the same
// round trip runs in an earlier snapshot than the read.
func (n *Node) CheckSafe() bool { return n.checkSafe.Load() }

// SetCheckSafe records whether the node's default isolation is READ
// COMMITTED.
func (n *Node) SetCheckSafe(ok bool) { n.checkSafe.Store(ok) }

// Lag is how far behind the primary a replica's replay was, in time, at its
// last poll: the time since the primary first reached the position the
// replica had replayed (0 when it had replayed all the primary had written).
func (n *Node) Lag() time.Duration { return time.Duration(n.lag.Load()) }

// SetLag records a replica's estimated replay lag.
func (n *Node) SetLag(d time.Duration) { n.lag.Store(int64(d)) }

// Writable reports whether the node was out of recovery (accepting
// writes) when last polled.
func (n *Node) Writable() bool { return n.writable.Load() }

// SetWritable records whether the node was out of recovery when polled.
func (n *Node) SetWritable(w bool) { n.writable.Store(w) }

// Timeline is the primary's timeline as last polled (0 if unknown).
func (n *Node) Timeline() uint32 { return n.timeline.Load() }

// SetTimeline records a primary's polled timeline.
func (n *Node) SetTimeline(t uint32) { n.timeline.Store(t) }
