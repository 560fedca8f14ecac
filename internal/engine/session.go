package engine

import (
	"sync"
	"sync/atomic"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Session is the unit of causal consistency: what it wrote and read sets,
// per cluster, the position a replica must have replayed before it may
// serve the session's next read there.
//
// Writes are tracked without a round trip. A write marks the session when
// it starts and again when it ends; the session is dirty while it has
// marks its position does not cover. The next read of a dirty session goes
// to the primary anyway (no replica can have the write yet) and carries
// SELECT pg_current_wal_insert_lsn() after it in the same round trip; that
// position, read after every write it covers had ended, becomes the
// session's, and covers the marks counted when the read was planned. A
// write that never ends (rows nobody closes) leaves one mark, which the
// next capture covers: it cannot keep a session dirty for ever.
type Session struct {
	// explicit: a session the application made (WithSession, a token, a
	// proxy connection), which promises monotonic reads as well as
	// read-your-writes. The DB-wide session, shared by concurrent
	// goroutines, promises read-your-writes only: monotonic reads across
	// all of them would pin them all to whichever replica is furthest
	// ahead.
	explicit bool
	// adopting: positions came from a token and have not been looked at by
	// an engine yet (see Engine.adopt).
	adopting atomic.Bool

	mu        sync.Mutex                  // serializes additions to positions
	positions atomic.Pointer[[]*Position] // copy on write: read without a lock
}

// NewSession returns an explicit session with no position yet: one per
// request, user, job or client connection.
func NewSession() *Session { return &Session{explicit: true} }

// newGlobalSession returns a DB-wide session.
func newGlobalSession() *Session { return &Session{} }

// Explicit reports whether the application made the session.
func (s *Session) Explicit() bool { return s.explicit }

// position returns the session's position in the cluster with key, making
// it if it has none. Lookups take no lock and allocate nothing.
func (s *Session) position(key uint32) *Position {
	if p := s.find(key); p != nil {
		return p
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.find(key); p != nil {
		return p
	}
	p := &Position{key: key, explicit: s.explicit}
	s.appendLocked(p)
	return p
}

func (s *Session) find(key uint32) *Position {
	if ps := s.positions.Load(); ps != nil {
		for _, p := range *ps {
			if p.key == key {
				return p
			}
		}
	}
	return nil
}

func (s *Session) appendLocked(p *Position) {
	var ps []*Position
	if old := s.positions.Load(); old != nil {
		ps = append(ps, *old...)
	}
	ps = append(ps, p)
	s.positions.Store(&ps)
}

// all returns the session's positions.
func (s *Session) all() []*Position {
	if ps := s.positions.Load(); ps != nil {
		return *ps
	}
	return nil
}

// Position is a session's place in one cluster.
type Position struct {
	key      uint32 // the cluster's (topology.Cluster.Key)
	explicit bool   // the session's

	lsn     atomic.Uint64 // the position reached
	lsnAt   atomic.Int64  // unix nanoseconds when lsn last rose
	marks   atomic.Uint64 // write marks: one when a write starts, one when it ends
	covered atomic.Uint64 // marks that a capture covers

	// unverified: lsn came from a token and has not been checked against
	// the primary; the next read goes there and clamps it if it is ahead.
	unverified atomic.Bool
	// sawReplica: a replica served the session since the primary last did
	// (see BeforeSettle).
	sawReplica atomic.Bool
	// timeline: the token's, for a cluster this engine does not have.
	timeline atomic.Uint32

	// An explicit session remembers the node of its last read until the
	// monitor has polled that node since: until then only that node (which
	// replays forward only) or the primary is sure to show the session
	// nothing older than it saw.
	mu    sync.Mutex
	pin   *topology.Node
	pinAt int64 // unix nanoseconds the pinned read's first row arrived
}

// LSN is the position reached.
func (p *Position) LSN() lsn.LSN { return lsn.LSN(p.lsn.Load()) }

// dirty reports whether the session may have written something that its
// position does not cover yet.
func (p *Position) dirty() bool {
	return p.marks.Load() > p.covered.Load() || p.unverified.Load()
}

// mark records the start or the end of a write.
func (p *Position) mark() { p.marks.Add(1) }

// raise moves the position forward to at least l.
func (p *Position) raise(l lsn.LSN, now int64) {
	for {
		old := p.lsn.Load()
		if uint64(l) <= old {
			return
		}
		if p.lsn.CompareAndSwap(old, uint64(l)) {
			p.lsnAt.Store(now)
			return
		}
	}
}

// captured records the primary's insert position l, read in a round trip
// sent when the session had seen marks. It reports whether the position
// was ahead of the primary (a forged token, or one from a lost timeline)
// and was clamped.
func (p *Position) captured(l lsn.LSN, seen uint64, now int64) (clamped bool) {
	if p.unverified.Load() {
		if lsn.LSN(p.lsn.Load()) > l {
			p.lsn.Store(uint64(l))
			p.lsnAt.Store(now)
			clamped = true
		}
		p.unverified.Store(false)
	}
	p.raise(l, now)
	for {
		old := p.covered.Load()
		if seen <= old || p.covered.CompareAndSwap(old, seen) {
			break
		}
	}
	p.unpin()
	return clamped
}

// readFrom records that a read served by node n had its first row at now:
// an explicit session pins n.
func (p *Position) readFrom(n *topology.Node, now int64) {
	if !p.explicit {
		return
	}
	if !n.IsPrimary() {
		p.sawReplica.Store(true)
	}
	p.mu.Lock()
	p.pin, p.pinAt = n, now
	p.mu.Unlock()
}

// unpin drops the pin: a capture on the primary, taken after the pinned
// read, covers what that read saw.
func (p *Position) unpin() {
	if !p.explicit {
		return
	}
	p.sawReplica.Store(false)
	p.mu.Lock()
	p.pin = nil
	p.mu.Unlock()
}

// dropPin drops the pin but not sawReplica: the position now covers what
// the pinned read saw, but nothing settled the primary since.
func (p *Position) dropPin() {
	p.mu.Lock()
	p.pin = nil
	p.mu.Unlock()
}

// pinned returns the node the session must read from to be sure of
// monotonic reads in cluster c (it has seen data up to where that node was,
// and no more is known of other nodes), or nil. The pinned node is always
// at or past the session's position. The pin is dropped once the monitor
// has polled the node since the read: its polled position, at least what
// the read saw, becomes the session's, and from then on any node that far
// along will do. A pin on a node of another engine's cluster (the session
// is used with two DBs) is resolved by this cluster's primary, if it was
// polled since; else the read goes to the primary.
func (p *Position) pinned(c *topology.Cluster, now int64) (pin *topology.Node, foreign bool) {
	if !p.explicit {
		return nil, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pin == nil {
		return nil, false
	}
	n := p.pin
	if n.Cluster() != c {
		if primary := c.Primary(); primary.PolledAt() > p.pinAt {
			p.raise(primary.Position(), now)
			p.pin = nil
			return nil, false
		}
		return nil, true
	}
	if n.PolledAt() > p.pinAt {
		p.raise(n.Position(), now)
		p.pin = nil
		return nil, false
	}
	return n, false
}

// pinState returns the pin and when it was taken.
func (p *Position) pinState() (*topology.Node, int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pin, p.pinAt
}
