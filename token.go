package switchyard

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// ErrBadToken reports a token that switchyard did not make: not base64, a
// version it does not know, or truncated.
var ErrBadToken = errors.New("switchyard: malformed session token")

// tokenVersion is the first byte of every token. A token holds, after it, a
// count of clusters and, for each, its system identifier (hashed to 32
// bits), its timeline, the session's position there and flags
// (tokenSawReplica), as uvarints; the whole is base64url without padding:
// about 16 characters for one cluster.
const tokenVersion = 1

type tokenEntry struct {
	system   uint32
	timeline uint32
	pos      lsn.LSN
	flags    uint64
}

// tokenSawReplica: the session read from a replica since it last read from
// the primary (see target.settle).
const tokenSawReplica = 1

func encodeToken(entries []tokenEntry) string {
	buf := make([]byte, 0, 2+len(entries)*3*binary.MaxVarintLen32)
	buf = append(buf, tokenVersion)
	buf = binary.AppendUvarint(buf, uint64(len(entries)))
	for _, e := range entries {
		buf = binary.AppendUvarint(buf, uint64(e.system))
		buf = binary.AppendUvarint(buf, uint64(e.timeline))
		buf = binary.AppendUvarint(buf, uint64(e.pos))
		buf = binary.AppendUvarint(buf, e.flags)
	}
	return base64.RawURLEncoding.EncodeToString(buf)
}

// maxTokenLen bounds what decodeToken reads; a genuine token is far shorter.
const maxTokenLen = 512

func decodeToken(token string) ([]tokenEntry, error) {
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
	count, ok := next(64)
	if !ok || count == 0 {
		return nil, fmt.Errorf("%w: bad cluster count", ErrBadToken)
	}
	entries := make([]tokenEntry, count)
	for i := range entries {
		sys, ok1 := next(1<<32 - 1)
		tli, ok2 := next(1<<32 - 1)
		pos, ok3 := next(1<<64 - 1)
		flags, ok4 := next(1<<64 - 1)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			return nil, fmt.Errorf("%w: truncated", ErrBadToken)
		}
		entries[i] = tokenEntry{uint32(sys), uint32(tli), lsn.LSN(pos), flags}
	}
	if len(raw) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", ErrBadToken)
	}
	return entries, nil
}

// systemHash folds a cluster's 64-bit system identifier into the 32 bits a
// token carries: enough to tell one cluster's tokens from another's.
func systemHash(id uint64) uint32 {
	h := uint32(id>>32) ^ uint32(id)
	if h == 0 {
		h = 1 // 0 means "no cluster" in a session
	}
	return h
}

// WithToken returns a context carrying a new session that starts at the
// position in token (from DB.Token, on this or another process): its reads
// see everything the token's session had written or read. Use it to carry
// a user's position across requests (a cookie, a header; see package
// httpsession) or into a background job. A malformed token is an error
// (ErrBadToken). A token from another cluster is ignored, and one ahead of
// the primary (forged, or from a timeline that was lost in a failover) is
// clamped to the primary's position at its first read; both are counted in
// Stats. Neither can stall reads.
func WithToken(ctx context.Context, token string) (context.Context, error) {
	entries, err := decodeToken(token)
	if err != nil {
		return ctx, err
	}
	s := &session{explicit: true, system: entries[0].system, timeline: entries[0].timeline}
	s.lsn.Store(uint64(entries[0].pos))
	s.lsnAt.Store(time.Now().UnixNano())
	s.unverified.Store(true)
	s.sawReplica.Store(entries[0].flags&tokenSawReplica != 0)
	s.carriesToken.Store(true)
	return withOpts(ctx, func(o *routeOpts) { o.session = s }), nil
}

// Token returns the position of ctx's session (or, without one, of the DB)
// as a short opaque string for WithToken. It costs one query to the primary
// when the session wrote since its last read, and none otherwise.
func (db *DB) Token(ctx context.Context) (string, error) {
	if db.closed.Load() {
		return "", ErrClosed
	}
	s := db.sessionOf(ctx)
	db.adopt(s)
	s.carriesToken.Store(true)
	now := time.Now().UnixNano()
	primary := db.cluster.Primary()
	query := s.dirty()
	if s.pinned(now) != nil && !s.pinCovered() {
		// The session read from a node whose position after the read is
		// not known yet. The primary was at least that far when polled
		// after the read; failing that, ask it.
		s.mu.Lock()
		pinAt := s.pinAt
		s.mu.Unlock()
		if primary.PolledAt() > pinAt {
			s.raise(primary.Position(), now)
			s.unpinAll()
		} else {
			query = true
		}
	}
	if query {
		seen := s.writes.Load()
		var text string
		if err := primary.Pool.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&text); err != nil {
			return "", err
		}
		l, err := lsn.Parse(text)
		if err != nil {
			return "", err
		}
		db.recordCapture(s, l, seen)
		s.unpinAll()
	}
	var flags uint64
	if s.sawReplica.Load() {
		flags |= tokenSawReplica
	}
	return encodeToken([]tokenEntry{{system: db.system, timeline: primary.Timeline(), pos: lsn.LSN(s.lsn.Load()), flags: flags}}), nil
}
