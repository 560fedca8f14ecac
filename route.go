package switchyard

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgerr"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// target is where a statement goes and what it carries in its round trip.
type target struct {
	node *topology.Node
	sess *session // the session the read belongs to (nil: none to advance)

	// check: on a replica whose polled position predates the session's,
	// verify pg_last_wal_replay_lsn() >= check ahead of the read, in the
	// same round trip, and run the read on the primary if it is not.
	check lsn.LSN

	// capture: on the primary, read pg_current_wal_insert_lsn() after the
	// read, in the same round trip (never in a write's own implicit
	// transaction: the session's writes finished before the batch was sent),
	// and make it the session's position: it covers the session's writes
	// and everything the read saw. seen and seenGlobal are the session's and
	// the DB's finished writes when the batch was planned.
	capture          bool
	seen, seenGlobal uint64

	// replay: on a replica, read pg_last_wal_replay_lsn() after the read,
	// in the same round trip: at least what the read saw, it becomes the
	// session's position, so that a Token after the read costs no query.
	// Only for sessions that carry tokens: the batch costs allocations, and
	// a session pinned to the replica has monotonic reads without it.
	replay bool

	// write: the statement turned out to write (a replica refused it with
	// 25006): it runs on the primary as a write, dirtying the session, and
	// carries no capture (which would run before its own commit).
	write bool

	// settle: on the primary, wait (briefly, server-side, in the same round
	// trip, ahead of the read) until no transaction whose commit is already
	// durable is still invisible there. A standby can replay and show a
	// commit before the committing backend on the primary has left the
	// process array; a session that saw such a commit on a replica would
	// otherwise not find it on the primary a moment later.
	settle bool
}

// explicitSession is the session a write through t dirties besides the
// DB's: t's own, unless that is the DB-wide one.
func (t *target) explicitSession() *session {
	if t.sess != nil && t.sess.explicit {
		return t.sess
	}
	return nil
}

// plain drops the extras of a target, for paths that cannot carry them (a
// batch, a transaction, pgx's per-query options): a checked replica read goes
// to the primary, and a read on the primary goes without a capture (the
// session stays dirty, or is pinned to the primary until the next poll).
func (db *DB) plain(t target) target {
	if t.check != 0 {
		t.node, t.check = db.cluster.Primary(), 0
	}
	t.capture, t.settle, t.replay = false, false, false
	return t
}

// primaryTarget is a read on the primary for session s. The read sees the
// newest data, so an explicit session (which promises monotonic reads) and
// a dirty one take the primary's position along.
func (db *DB) primaryTarget(s *session) target {
	t := target{node: db.cluster.Primary(), sess: s}
	if s != nil && (s.explicit || s.dirty()) {
		t.capture, t.seen, t.seenGlobal = true, s.writes.Load(), db.global.writes.Load()
		t.settle = s.explicit && s.sawReplica.Load()
	}
	return t
}

// routeWrite picks the node for a statement outside a transaction that is
// not a pure read: the primary, once there is one (see DB.primary).
func (db *DB) routeWrite(ctx context.Context) (*topology.Node, error) {
	if optsFrom(ctx).primary {
		db.routes.forced.Add(1)
	} else {
		db.routes.write.Add(1)
	}
	return db.primary(ctx)
}

// ready makes sure a read bound for the primary has one that answers,
// waiting as writes do.
func (db *DB) ready(ctx context.Context, t *target) error {
	if p := db.cluster.Primary(); t.node != p || p.Healthy() {
		return nil
	}
	p, err := db.primary(ctx)
	if err != nil {
		return err
	}
	t.node = p
	return nil
}

// routeRead picks where a pure read goes (DESIGN.md section 1): the primary
// if the context forces it; with MaxStaleness, a replica no more than that
// far behind; if the session wrote since its position was last taken, the
// primary with a capture of that position; else a healthy replica that has
// replayed the session's position, or (if its cached position is merely
// older than the session's) one that will prove it has, in the same round
// trip; else, after an optional bounded wait, the primary.
func (db *DB) routeRead(ctx context.Context) target {
	o := optsFrom(ctx)
	s := o.session
	if s == nil {
		s = db.global
	}
	if o.primary {
		db.routes.forced.Add(1)
		return db.primaryTarget(s)
	}
	if o.maxStaleness > 0 {
		min := db.cluster.PrimaryPositionSince(time.Now().Add(-o.maxStaleness))
		if n := db.cluster.PickReplica(min); n != nil {
			db.routes.replica.Add(1)
			return target{node: n}
		}
		return db.toPrimary(nil)
	}

	db.adopt(s)
	if s.dirty() {
		db.routes.afterWrite.Add(1)
		return db.primaryTarget(s)
	}
	primary := db.cluster.Primary()
	if pin := s.pinned(time.Now().UnixNano()); pin != nil {
		if pin != primary && pin.Healthy() {
			db.routes.replica.Add(1)
			return target{node: pin, sess: s, replay: s.carriesToken.Load()}
		}
		db.routes.notFresh.Add(1)
		return db.primaryTarget(s)
	}
	need := lsn.LSN(s.lsn.Load())
	if n := db.cluster.PickReplica(need); n != nil {
		db.routes.replica.Add(1)
		return target{node: n, sess: s, replay: s.carriesToken.Load()}
	}
	if db.wait > 0 {
		// Waiting sees the monitor's next polls, which a freshness check
		// would only anticipate.
		if n := db.waitForReplica(ctx, need); n != nil {
			db.routes.replica.Add(1)
			db.routes.waited.Add(1)
			return target{node: n, sess: s, replay: s.carriesToken.Load()}
		}
		return db.toPrimary(s)
	}
	// A replica whose last poll predates the session's position, and which
	// lags less than that position's age, has probably replayed it: prove
	// it in the read's own round trip.
	now := time.Now().UnixNano()
	since := s.lsnAt.Load()
	if n := db.cluster.PickReplicaWithin(time.Duration(now - since)); n != nil && n.CheckSafe() && n.PolledAt() < since {
		db.routes.checked.Add(1)
		return target{node: n, sess: s, check: need, replay: s.carriesToken.Load()}
	}
	return db.toPrimary(s)
}

// toPrimary counts why a read that could have gone to a replica did not,
// and sends it to the primary.
func (db *DB) toPrimary(s *session) target {
	if _, healthy := db.cluster.Replicas(); healthy == 0 {
		db.routes.noHealthyReplica.Add(1)
	} else {
		db.routes.notFresh.Add(1)
	}
	return db.primaryTarget(s)
}

// waitForReplica waits up to Config.ReplicaWait for a healthy replica to
// replay need, as the monitor sees it.
func (db *DB) waitForReplica(ctx context.Context, need lsn.LSN) *topology.Node {
	if _, healthy := db.cluster.Replicas(); healthy == 0 {
		return nil
	}
	timer := time.NewTimer(db.wait)
	defer timer.Stop()
	for {
		changed := db.cluster.Changed()
		if n := db.cluster.PickReplica(need); n != nil {
			return n
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return nil
		}
	}
}

// recordCapture makes l, the primary's insert position read in a round trip
// sent after s had finished seen writes, the session's position.
func (db *DB) recordCapture(s *session, l lsn.LSN, seen uint64) {
	l = lsn.RoundDownPageHeader(l, db.walBlockSize)
	if s.captured(l, seen, time.Now().UnixNano()) {
		db.routes.tokensClamped.Add(1)
		db.log.Warn("switchyard: session token was ahead of the primary; clamped", "token_lsn_was_ahead_of", l.String())
	}
}

// captured records the capture a target carried.
func (db *DB) captured(t *target, l lsn.LSN) {
	db.recordCapture(t.sess, l, t.seen)
	if t.sess != db.global {
		db.recordCapture(db.global, l, t.seenGlobal)
	}
	t.sess.unpinAll()
}

// replayed records the replay position read after a replica read. The
// session stays pinned to the replica (which is at or past that position)
// until the monitor knows as much, so its next reads can go there.
func (db *DB) replayed(t *target, l lsn.LSN) {
	t.sess.raise(l, time.Now().UnixNano())
	t.sess.replayedAt(t.node)
}

// servedBy records that a read with target t has been served by t.node: its
// first row arrived, so its snapshot is taken. An explicit session pins
// that node (replica or primary) until the monitor has polled it since, or
// until the read's capture is recorded.
func (db *DB) servedBy(t *target) {
	if t.sess != nil && t.sess.explicit {
		t.sess.readFrom(t.node, time.Now().UnixNano())
	}
}

// adopt checks a session restored from a token, on its first use with this
// DB: a token from another cluster is ignored; one at or behind the
// primary's last polled position is plainly genuine; one ahead of it stays
// unverified, so that its first read goes to the primary and takes the
// primary's position in the same round trip (clamping a forged token, and
// covering a genuine one written a moment ago through another DB).
func (db *DB) adopt(s *session) {
	if s.system == 0 || !s.unverified.Load() {
		return
	}
	if s.system != db.system {
		if s.unverified.CompareAndSwap(true, false) {
			s.lsn.Store(0)
			db.routes.tokensForeign.Add(1)
			db.log.Warn("switchyard: session token is from another cluster; ignored")
		}
		return
	}
	if lsn.LSN(s.lsn.Load()) <= db.cluster.Primary().Position() {
		s.unverified.Store(false)
	}
}

// maxAttempts bounds how often one statement is tried: the first node and
// then each other node once, plus one for a stale pooled connection.
func (db *DB) maxAttempts() int { return len(db.cluster.Nodes) + 1 }

// retry decides, after a statement failed on n with err before anything
// reached the caller, whether to run it again and whether it must then go to
// the primary. A read is retried elsewhere (n, if down, is out of rotation
// by then, so routing it again picks another node). A write is sent again
// only if it provably never left this process.
func (db *DB) retry(ctx context.Context, n *topology.Node, read bool, err error, attempt int) (again, toPrimary bool) {
	if ctx.Err() != nil || attempt+1 >= db.maxAttempts() {
		return false, false
	}
	down := pgerr.NodeDown(err)
	if down && n.MarkDown(time.Now()) {
		db.log.Warn("switchyard: node down", "node", n.Name, "role", n.Role().String(), "err", err)
	}
	if !read {
		// A write goes again only if it never left this process (a pooled
		// connection that died while idle, a primary that refused the
		// connection); the next attempt waits for the primary.
		return pgconn.SafeToRetry(err), true
	}
	if n == db.cluster.Primary() {
		return down, true
	}
	if !pgerr.RetryReadElsewhere(err) {
		return false, false
	}
	db.routes.retried.Add(1)
	// A statement that wrote (25006) or a recovery conflict: the primary
	// has neither problem.
	return true, !down
}

// isRead tells whether sql is a pure read.
func (db *DB) isRead(sql string) bool { return db.classifier.Classify(sql).ReplicaSafe() }
