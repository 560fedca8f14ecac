package switchyard

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// session is the unit of causal consistency: what it wrote and read sets
// the position a replica must have replayed before it may serve the
// session's next read.
//
// Writes are tracked without a round trip: a write marks the session dirty
// (pending while under way, then counted in writes), and the session's next
// read goes to the primary anyway (no replica can have the write yet),
// carrying SELECT pg_current_wal_insert_lsn() in the same round trip; that
// position, read after the write finished, becomes the session's.
type session struct {
	lsn     atomic.Uint64 // the position the session has reached
	lsnAt   atomic.Int64  // unix nanoseconds when lsn last rose
	pending atomic.Int64  // writes under way
	writes  atomic.Uint64 // writes finished
	covered atomic.Uint64 // writes that finished before the last capture was sent

	// unverified: lsn came from a token and has not been checked against
	// the primary; the next read goes there and clamps it if it is ahead.
	unverified atomic.Bool
	system     uint32 // the token's cluster (0: no token)
	timeline   uint32 // the token's timeline

	// An explicit session remembers the replica of its last read until the
	// monitor has polled that replica since: until then only that replica
	// (which replays forward only) or the primary is sure to show the
	// session nothing older than it saw. The DB-wide session promises
	// read-your-writes only: shared by concurrent goroutines, monotonic
	// reads would pin them all to whichever replica is ahead.
	explicit bool
	// sawReplica: a replica served the session since the primary last did
	// (see target.settle).
	sawReplica atomic.Bool
	// carriesToken: the session came from a token or gave one out, so it
	// will likely be asked for one again (httpsession asks at the end of
	// every request). Its replica reads read the replica's position in the
	// same round trip, so that the token then costs no query.
	carriesToken atomic.Bool
	mu           sync.Mutex
	pin          *topology.Node
	pinAt        int64 // unix nanoseconds the pinned read finished
	pinExact     bool  // the pinned read's replay position is in lsn (target.replay)
}

// dirty reports whether the session may have written something that its
// position does not cover yet.
func (s *session) dirty() bool {
	return s.pending.Load() > 0 || s.writes.Load() > s.covered.Load() || s.unverified.Load()
}

// raise moves the session's position forward to at least l.
func (s *session) raise(l lsn.LSN, now int64) {
	for {
		old := s.lsn.Load()
		if uint64(l) <= old {
			return
		}
		if s.lsn.CompareAndSwap(old, uint64(l)) {
			s.lsnAt.Store(now)
			return
		}
	}
}

// captured records the primary's insert position l, read in a round trip
// sent when s had finished seen writes. It reports whether the session's
// position was ahead of the primary (a forged or foreign token) and was
// clamped.
func (s *session) captured(l lsn.LSN, seen uint64, now int64) (clamped bool) {
	if s.unverified.Load() {
		if lsn.LSN(s.lsn.Load()) > l {
			s.lsn.Store(uint64(l))
			s.lsnAt.Store(now)
			clamped = true
		}
		s.unverified.Store(false)
	}
	s.raise(l, now)
	for {
		old := s.covered.Load()
		if seen <= old || s.covered.CompareAndSwap(old, seen) {
			break
		}
	}
	return clamped
}

// startWrite and endWrite bracket anything that may write.
func (s *session) startWrite() { s.pending.Add(1) }
func (s *session) endWrite() {
	s.writes.Add(1)
	s.pending.Add(-1)
}

// readFrom records that a read served by node n (a replica, or the primary
// without a capture yet) had its first row at now.
func (s *session) readFrom(n *topology.Node, now int64) {
	if !s.explicit {
		return // see the type's comment
	}
	if n.Role() == topology.RoleReplica {
		s.sawReplica.Store(true)
	}
	s.mu.Lock()
	s.pin, s.pinAt, s.pinExact = n, now, false
	s.mu.Unlock()
}

// pinCovered reports whether the session's position covers its pinned
// read, if any (no pin, or its exact replay position was recorded).
func (s *session) pinCovered() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pin == nil || s.pinExact
}

// replayedAt records that n's replay position after the pinned read is in
// the session's position.
func (s *session) replayedAt(n *topology.Node) {
	s.mu.Lock()
	if s.pin == n {
		s.pinExact = true
	}
	s.mu.Unlock()
}

// unpinAll drops the session's pin: a capture on the primary, taken after
// the pinned read, covers what that read saw.
func (s *session) unpinAll() {
	if !s.explicit {
		return
	}
	s.sawReplica.Store(false)
	s.mu.Lock()
	s.pin = nil
	s.mu.Unlock()
}

// pinned returns the node the session must read from to be sure of
// monotonic reads (it has seen data up to where that node was, and no more
// is known of other nodes), or nil. The pinned node is always at or past the
// session's position. The pin is dropped once the monitor has polled the
// node since the read and found it at or past the session's position: from
// then on, any node that far along will do.
func (s *session) pinned(now int64) *topology.Node {
	if !s.explicit {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pin == nil {
		return nil
	}
	if s.pin.PolledAt() > s.pinAt {
		s.raise(s.pin.Position(), now)
		if s.pin.Position() >= lsn.LSN(s.lsn.Load()) {
			s.pin = nil
			return nil
		}
	}
	return s.pin
}

// sessions are what a statement's context holds: its own session, if any,
// and the DB's.
func (db *DB) sessionOf(ctx context.Context) *session {
	if s := optsFrom(ctx).session; s != nil {
		return s
	}
	return db.global
}

// writeStarted marks the context's session and the DB-wide one dirty, for a
// statement that may write. Call writeDone after it.
func (db *DB) writeStarted(ctx context.Context) *session {
	return db.writeStartedFor(optsFrom(ctx).session)
}

// writeStartedFor is writeStarted for explicit session s (nil: none).
func (db *DB) writeStartedFor(s *session) *session {
	if s != nil {
		s.startWrite()
	}
	db.global.startWrite()
	return s
}

func (db *DB) writeDone(s *session) {
	if s != nil {
		s.endWrite()
	}
	db.global.endWrite()
}

// markWritten records a write made outside the DB's methods (stdlib's pinned
// connections).
func (db *DB) markWritten(ctx context.Context) { db.writeDone(db.writeStarted(ctx)) }

// WithSession returns a context that carries a new causal session: every
// read run with it (or with contexts derived from it) sees every write made
// with it, and never data older than an earlier read with it saw. Use one per
// request, user, or job. A session is safe for concurrent use.
func WithSession(ctx context.Context) context.Context {
	s := &session{explicit: true}
	return withOpts(ctx, func(o *routeOpts) { o.session = s })
}

// MaxStaleness returns a context whose reads accept data up to d old: any
// replica that had replayed everything the primary had written d ago will
// do. Such reads neither need nor advance the session's position. d <= 0
// removes the relaxation.
func MaxStaleness(ctx context.Context, d time.Duration) context.Context {
	return withOpts(ctx, func(o *routeOpts) { o.maxStaleness = max(d, 0) })
}
