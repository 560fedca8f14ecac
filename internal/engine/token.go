package engine

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// tokenVersion is the first byte of every token. A token holds, after it, a
// count of clusters and, for each, its key (topology.Cluster.Key: the
// system identifier hashed to 32 bits), its timeline, the session's
// position there and flags (tokenSawReplica), as uvarints; the whole is
// base64url without padding: about 16 characters for one cluster.
const tokenVersion = 1

// TokenEntry is one cluster's part of a token.
type TokenEntry struct {
	Key      uint32
	Timeline uint32
	Pos      lsn.LSN
	Flags    uint64
}

// tokenSawReplica: the session read from a replica since it last read from
// the primary (see BeforeSettle).
const tokenSawReplica = 1

// EncodeToken encodes entries.
func EncodeToken(entries []TokenEntry) string {
	buf := make([]byte, 0, 2+len(entries)*4*binary.MaxVarintLen32)
	buf = append(buf, tokenVersion)
	buf = binary.AppendUvarint(buf, uint64(len(entries)))
	for _, e := range entries {
		buf = binary.AppendUvarint(buf, uint64(e.Key))
		buf = binary.AppendUvarint(buf, uint64(e.Timeline))
		buf = binary.AppendUvarint(buf, uint64(e.Pos))
		buf = binary.AppendUvarint(buf, e.Flags)
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

// maxTokenLen bounds what DecodeToken reads; a genuine token is far shorter.
const maxTokenLen = 512

// maxTokenClusters bounds a token's entries.
const maxTokenClusters = 64

// DecodeToken decodes a token made by EncodeToken; anything else is an
// error wrapping ErrBadToken.
func DecodeToken(token string) ([]TokenEntry, error) {
	if token == "" || len(token) > maxTokenLen {
		return nil, fmt.Errorf("%w (length %d)", ErrBadToken, len(token))
	}
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url", ErrBadToken)
	}
	if len(raw) == 0 || raw[0] != tokenVersion {
		return nil, fmt.Errorf("%w: unknown version", ErrBadToken)
	}
	raw = raw[1:]
	next := func(limit uint64) (uint64, bool) {
		v, n := binary.Uvarint(raw)
		if n <= 0 || v > limit {
			return 0, false
		}
		raw = raw[n:]
		return v, true
	}
	count, ok := next(maxTokenClusters)
	if !ok || count == 0 {
		return nil, fmt.Errorf("%w: bad cluster count", ErrBadToken)
	}
	entries := make([]TokenEntry, count)
	for i := range entries {
		key, ok1 := next(1<<32 - 1)
		tli, ok2 := next(1<<32 - 1)
		pos, ok3 := next(1<<64 - 1)
		flags, ok4 := next(1<<64 - 1)
		if !ok1 || !ok2 || !ok3 || !ok4 || key == 0 {
			return nil, fmt.Errorf("%w: truncated", ErrBadToken)
		}
		entries[i] = TokenEntry{uint32(key), uint32(tli), lsn.LSN(pos), flags}
	}
	if len(raw) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrBadToken)
	}
	return entries, nil
}

// RestoreSession returns an explicit session that starts at the positions
// in token: its reads see everything the token's session had written or
// read. A malformed token is an error wrapping ErrBadToken. Positions are
// unverified until checked against each cluster's primary (see adopt), so
// a forged one cannot stall reads.
func RestoreSession(token string) (*Session, error) {
	entries, err := DecodeToken(token)
	if err != nil {
		return nil, err
	}
	s := NewSession()
	now := time.Now().UnixNano()
	for _, e := range entries {
		if s.find(e.Key) != nil {
			return nil, fmt.Errorf("%w: a cluster listed twice", ErrBadToken)
		}
		p := &Position{key: e.Key, explicit: true}
		p.lsn.Store(uint64(e.Pos))
		p.lsnAt.Store(now)
		p.timeline.Store(e.Timeline)
		p.unverified.Store(true)
		p.sawReplica.Store(e.Flags&tokenSawReplica != 0)
		s.appendLocked(p)
	}
	s.adopting.Store(true)
	return s, nil
}

// adopt looks at a session restored from a token on its first use with
// this engine: a position of a cluster the engine does not have is
// ignored (and kept, so that a later token carries it on), and counted.
func (e *Engine) adopt(s *Session) {
	if !s.adopting.Load() || !s.adopting.CompareAndSwap(true, false) {
		return
	}
	for _, p := range s.all() {
		if e.clusterByKey(p.key) == nil {
			e.stats.add(statTokensForeign)
			e.log.Warn("switchyard: session token names a cluster this DB does not have; ignored")
		}
	}
}

// verify marks a token's position in cluster c genuine once the primary
// has been seen at or past it. One ahead of the primary's last polled
// position stays unverified, so that its first read goes to the primary
// and takes the primary's position in the same round trip (clamping a
// forged token, and covering a genuine one written a moment ago through
// another process).
func verify(p *Position, c *topology.Cluster) {
	if p.unverified.Load() && p.LSN() <= c.Primary().Position() {
		p.unverified.Store(false)
	}
}

func (e *Engine) clusterByKey(key uint32) *topology.Cluster {
	for _, c := range e.clusters {
		if c.Key() == key {
			return c
		}
	}
	return nil
}

// CheckSQL proves a replica has replayed a position ($1, as text), in the
// round trip of the read that needs it (BeforeCheck).
const CheckSQL = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"

// SettleSQL waits until every transaction that was running on the primary
// when it started has ended (BeforeSettle): a standby may already show a
// commit whose backend on the primary has written its commit record but
// not yet left the process array, so is still running there. Running
// transactions are found by the locks they hold on their own transaction
// IDs, which are released only after they leave the process array (a
// snapshot's list would miss the newest: a snapshot lists only IDs below
// the oldest one still unassigned when the newest completed one ended). It
// waits for all of them for at most 20 ms (short transactions end within
// microseconds; a long one costs the bound), then, for up to a second, for
// those the commit log has as committed but a new snapshot does not see (a
// backend held up between the two, as on a machine short of CPU): those
// may be visible on a standby already, and are about to be on the
// primary. Both bounds are at most half of the session's
// statement_timeout, so that a small one does not cancel it. It runs
// before the read; under READ COMMITTED the read then takes a newer
// snapshot.
const SettleSQL = `DO $settle$
DECLARE
	running xid[] := ARRAY(SELECT transactionid FROM pg_locks
		WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted);
	next bigint := pg_snapshot_xmax(pg_current_snapshot())::text::bigint;
	half interval := coalesce(nullif(current_setting('statement_timeout'), '0')::interval / 2, interval '1 s');
	start timestamptz := clock_timestamp();
	ids xid8[];
BEGIN
	WHILE cardinality(running) > 0 AND clock_timestamp() < start + least(interval '20 ms', half) AND EXISTS (
			SELECT FROM pg_locks WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted
			AND transactionid = ANY (running)) LOOP
		PERFORM pg_sleep(0.0001);
	END LOOP;
	-- The 64-bit IDs, from the 32-bit ones: within 2^31 of the next.
	ids := ARRAY(SELECT (next + (x::text::bigint - next % 4294967296 + 6442450944) % 4294967296 - 2147483648)::text::xid8
		FROM unnest(running) x);
	WHILE cardinality(ids) > 0 AND clock_timestamp() < start + least(interval '1 s', half) AND EXISTS (
			SELECT FROM unnest(ids) x
			WHERE pg_xact_status(x) = 'committed' AND NOT pg_visible_in_snapshot(x, pg_current_snapshot())) LOOP
		PERFORM pg_sleep(0.0001);
	END LOOP;
END
$settle$`

// CaptureSQL reads the primary's insert position.
const CaptureSQL = "SELECT pg_current_wal_insert_lsn()::text"

// ReplaySQL reads a replica's replay position.
const ReplaySQL = "SELECT pg_last_wal_replay_lsn()::text"

// Token returns the position of o's session (without one, the DB-wide
// session's) in every cluster as a short opaque string for
// RestoreSession. It costs a query to a cluster's primary where the
// session wrote since its last read there, and one to the replica that
// served its last read where the monitor has not polled that replica (or
// the primary) since; nothing otherwise.
func (e *Engine) Token(ctx context.Context, o *Options, lend Lender) (string, error) {
	if e.closed.Load() {
		return "", ErrClosed
	}
	s := e.session(o)
	e.adopt(s)
	for _, c := range e.clusters {
		if p := s.find(c.Key()); p != nil {
			if err := e.settlePosition(ctx, o, c, p, lend); err != nil {
				return "", err
			}
		}
	}
	var entries []TokenEntry
	for _, p := range s.all() {
		tli := p.timeline.Load()
		c := e.clusterByKey(p.key)
		if c == nil && s == e.global {
			// The DB-wide session is the process's: it holds the positions
			// of other DBs' clusters too, which this DB has not settled.
			// Its token carries this DB's.
			continue
		}
		if c != nil {
			tli = c.Primary().Timeline()
		}
		var flags uint64
		if p.sawReplica.Load() {
			flags |= tokenSawReplica
		}
		entries = append(entries, TokenEntry{Key: p.key, Timeline: tli, Pos: p.LSN(), Flags: flags})
	}
	if len(entries) == 0 {
		// A session that has done nothing yet: the first cluster at 0.
		entries = append(entries, TokenEntry{Key: e.clusters[0].Key(), Timeline: e.clusters[0].Primary().Timeline()})
	}
	return EncodeToken(entries), nil
}

// settlePosition makes p cover everything the session wrote and read in
// cluster c.
func (e *Engine) settlePosition(ctx context.Context, o *Options, c *topology.Cluster, p *Position, lend Lender) error {
	verify(p, c)
	if !p.dirty() {
		pin, pinAt := p.pinState()
		switch {
		case pin == nil:
			return nil
		case pin.Cluster() == c && pin.PolledAt() > pinAt:
			p.raise(pin.Position(), time.Now().UnixNano())
			p.dropPin()
			return nil
		case c.Primary().PolledAt() > pinAt:
			// The primary was at least as far as the read when polled
			// after it.
			p.raise(c.Primary().Position(), time.Now().UnixNano())
			p.dropPin()
			return nil
		case pin.Cluster() == c && !pin.IsPrimary():
			// Ask the replica how far it has replayed: at least what the
			// read saw. If it does not answer, the primary's position will
			// do.
			if l, err := e.askNode(ctx, o, pin, lend); err == nil {
				p.raise(l, time.Now().UnixNano())
				p.dropPin()
				return nil
			}
		}
	}
	var plan Plan
	e.bind(&plan, o, c)
	plan.Policy = PolicyRead
	e.toPrimary(&plan, ReasonAfterWrite)
	plan.Before, plan.After, plan.seen = BeforeNone, AfterCapture, p.marks.Load()
	err := e.Do(ctx, &plan, func(plan *Plan) error {
		l, err := e.queryLSN(ctx, plan.Node, CaptureSQL, lend)
		if err != nil {
			return err
		}
		saw := p.sawReplica.Load()
		plan.Captured(l)
		if saw {
			p.sawReplica.Store(true) // this capture settled nothing
		}
		return nil
	})
	plan.Finish(err)
	return err
}

// askNode reads replica n's replay position, counted as a read there.
func (e *Engine) askNode(ctx context.Context, o *Options, n *topology.Node, lend Lender) (lsn.LSN, error) {
	var plan Plan
	e.PlanPinned(&plan, o, n, false)
	plan.Reason = ReasonReplica
	var l lsn.LSN
	err := e.Do(ctx, &plan, func(plan *Plan) (err error) {
		l, err = e.queryLSN(ctx, plan.Node, ReplaySQL, lend)
		return err
	})
	plan.Finish(err)
	return l, err
}

// queryLSN runs a query that returns one LSN as text on node n.
func (e *Engine) queryLSN(ctx context.Context, n *topology.Node, sql string, lend Lender) (lsn.LSN, error) {
	conn, release, err := lend(ctx, n)
	if err != nil {
		return 0, err
	}
	defer release()
	r := conn.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if r.Err != nil {
		return 0, r.Err
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 1 || r.Rows[0][0] == nil {
		return 0, errors.New("switchyard: no WAL position in the reply")
	}
	return lsn.Parse(string(r.Rows[0][0]))
}
