// Package topology holds switchyard's view of the servers: clusters of one
// primary and its replicas, each node's pool, role, health, load and replay
// position, the balancer that picks a replica, and the monitor that keeps
// roles, health and positions current.
package topology

import (
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// Role is what a node is in its cluster.
type Role uint32

// The roles. A node whose role the monitor has not confirmed keeps the one it
// was configured with.
const (
	RolePrimary Role = iota + 1
	RoleReplica
)

func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	}
	return "unknown"
}

// Ban durations: a node that fails is out for at least minBan, doubling on
// each consecutive failure up to maxBan, and back as soon as the ban has
// expired and the monitor reaches it.
const (
	minBan = 250 * time.Millisecond
	maxBan = 10 * time.Second
)

// Node is one server: its pool and what is known of it. Every field the
// router reads on the hot path is atomic.
type Node struct {
	// Name identifies the node in errors, logs and stats: host:port, never
	// a password.
	Name string
	// Pool is the node's connection pool.
	Pool *pgxpool.Pool

	weight int64

	role        atomic.Uint32
	healthy     atomic.Bool
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
}

// NewNode makes a node with the configured role and a weight (1 or more)
// for the balancer. It starts healthy: Open has just reached it, or the
// monitor will find out otherwise within one interval.
func NewNode(name string, pool *pgxpool.Pool, role Role, weight int) *Node {
	if weight < 1 {
		weight = 1
	}
	n := &Node{Name: name, Pool: pool, weight: int64(weight)}
	n.role.Store(uint32(role))
	n.writable.Store(role == RolePrimary)
	n.healthy.Store(true)
	return n
}

// Role is the node's current role.
func (n *Node) Role() Role { return Role(n.role.Load()) }

// SetRole records the role the monitor found.
func (n *Node) SetRole(r Role) { n.role.Store(uint32(r)) }

// Healthy reports whether the node takes traffic.
func (n *Node) Healthy() bool { return n.healthy.Load() }

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
// drops its idle connections, which are most likely dead too. The ban
// starts when the node goes down and is not extended while it stays down;
// it doubles for a node that fails again soon after it came back (a flapping
// node), up to maxBan. MarkDown reports whether the node was healthy until
// now.
func (n *Node) MarkDown(now time.Time) bool {
	if !n.healthy.Load() {
		return false
	}
	if !n.healthy.Swap(false) {
		return false // another goroutine took it down first
	}
	if now.UnixNano()-n.upSince.Load() > int64(maxBan) {
		n.failures.Store(0)
	}
	f := n.failures.Add(1)
	ban := min(minBan<<min(f-1, 6), maxBan)
	n.bannedUntil.Store(now.Add(ban).UnixNano())
	n.Pool.Reset()
	return true
}

// MarkUp puts the node back once its ban has expired, after the monitor
// reached it; a primary, which nothing can stand in for, comes back at once.
// It reports whether the node came back.
func (n *Node) MarkUp(now time.Time, primary bool) bool {
	if n.healthy.Load() || !primary && now.UnixNano() < n.bannedUntil.Load() {
		return false
	}
	n.upSince.Store(now.UnixNano())
	return !n.healthy.Swap(true)
}

// Position is the node's last polled WAL position: the replay LSN of a
// replica, the insert LSN of a primary.
func (n *Node) Position() lsn.LSN { return lsn.LSN(n.position.Load()) }

// SetPosition records a position polled by a query sent at sent; positions
// never move back.
func (n *Node) SetPosition(l lsn.LSN, sent time.Time) {
	for {
		old := n.position.Load()
		if uint64(l) <= old || n.position.CompareAndSwap(old, uint64(l)) {
			break
		}
	}
	n.polled.Store(sent.UnixNano())
}

// PolledAt is when the query behind Position was sent. The position is at
// least what the node had replayed at that moment: a read that finished
// before then saw no more than Position.
func (n *Node) PolledAt() int64 { return n.polled.Load() }

// CheckSafe reports whether the node's default isolation is READ
// COMMITTED, so that a freshness check sent ahead of a read in the same
// round trip runs in an earlier snapshot than the read.
func (n *Node) CheckSafe() bool { return n.checkSafe.Load() }

// Lag is how far behind the primary a replica's replay was, in time, at its
// last poll: the time since the primary first reached the position the
// replica had replayed (0 when it had replayed all the primary had written).
func (n *Node) Lag() time.Duration { return time.Duration(n.lag.Load()) }

// Writable reports whether the node was out of recovery (accepting
// writes) when last polled.
func (n *Node) Writable() bool { return n.writable.Load() }

// Timeline is the primary's timeline as last polled (0 if unknown).
func (n *Node) Timeline() uint32 { return n.timeline.Load() }

// ResetPosition forgets the position, for a node that changed timeline.
func (n *Node) ResetPosition() { n.position.Store(0) }
