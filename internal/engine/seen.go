package engine

import (
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Seen is what the engine knows of the snapshot a served read saw: enough
// to tell later whether handing its result out again (a query cache)
// could show its session data older than the session has seen since.
type Seen struct {
	// Cluster and Node served the read.
	Cluster *topology.Cluster
	Node    *topology.Node
	// Floor is a position the snapshot is known to include: the
	// session's position the read had to meet, a freshness check it
	// passed, or the replica's polled position when it was sent.
	Floor lsn.LSN
	// At is when its first row arrived (unix nanoseconds): an explicit
	// session's pin on Node from that read carries this time.
	At int64
}

// knownFloor returns a position p's read is sure to see, taken before it
// is sent. A replica has replayed at least its polled position (replay
// only moves forward) and, unless the read was allowed to be stale, the
// session's position (routing picked it so, or a check proves it); a
// read on the primary sees every commit the session's position covers
// (the primary's polled position is no floor: it may include commits not
// yet visible).
func (p *Plan) knownFloor() lsn.LSN {
	f := p.need
	if p.Reason == ReasonStaleOK {
		f = 0
	}
	if p.Node != nil && !p.Node.IsPrimary() {
		f = max(f, p.Node.Position())
	}
	if p.Before == BeforeCheck {
		f = max(f, p.Check)
	}
	return f
}

// Seen returns what p's read saw; call it once the read is served.
func (p *Plan) Seen() Seen {
	return Seen{Cluster: p.Cluster, Node: p.Node, Floor: p.floor, At: p.servedAt}
}

// SeenIsCurrent reports whether a read's result may be handed again to a
// statement with options o, as if run now: the session has no write in
// flight or uncaptured, its position has not moved past what the read
// saw, and an explicit session (which promises monotonic reads) has read
// nothing since, from any node, that may have seen more. Positions move
// on with the session's writes, with tokens, and when a pin resolves into
// the pinned replica's polled position, so on a cluster that takes writes
// a result stays current for about a monitor interval after the
// session's last other read. A read with MaxStaleness also needs the
// result to hold everything the primary had MaxStaleness ago, as a replica
// picked for it now would.
func (e *Engine) SeenIsCurrent(o *Options, s Seen) bool {
	if o == nil {
		o = &noOptions
	}
	if o.Primary || o.Latest {
		return false
	}
	if o.MaxStaleness > 0 {
		// Everything committed more than MaxStaleness ago must be in it,
		// as in a replica PlanRead would pick now.
		min, ok := s.Cluster.PrimaryPositionSince(time.Now().Add(-o.MaxStaleness))
		if !ok || s.Floor < min {
			return false
		}
	}
	sess := e.session(o)
	key := s.Cluster.Key()
	pos := sess.find(key)
	if pos == nil {
		return true // the session has read and written nothing there
	}
	if pos.dirty() || pos.LSN() > s.Floor {
		return false
	}
	if o.Global && sess != e.global {
		if g := e.global.find(key); g != nil && (g.dirty() || g.LSN() > s.Floor) {
			return false
		}
	}
	if !pos.explicit {
		return true
	}
	pin, at := pos.pinState()
	return pin == nil || pin == s.Node && at == s.At
}
