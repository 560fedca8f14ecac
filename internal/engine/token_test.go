package engine

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

func TestTokenRoundTrip(t *testing.T) {
	for _, entries := range [][]TokenEntry{
		{{Key: 1}},
		{{Key: 0xFFFFFFFF, Timeline: 0xFFFFFFFF, Pos: lsn.LSN(1<<64 - 1), Flags: 1<<64 - 1}},
		{{Key: 42, Timeline: 3, Pos: 0x16B374D848, Flags: tokenSawReplica}, {Key: 43, Timeline: 1, Pos: 7}},
	} {
		tok := EncodeToken(entries)
		got, err := DecodeToken(tok)
		if err != nil || !reflect.DeepEqual(got, entries) {
			t.Errorf("%v: %v %v", entries, got, err)
		}
		if strings.ContainsAny(tok, "+/=") {
			t.Errorf("not base64url without padding: %q", tok)
		}
	}
	if n := len(EncodeToken([]TokenEntry{{Key: 0xDEADBEEF, Timeline: 2, Pos: 0x3000060}})); n > 20 {
		t.Errorf("a one-cluster token is %d characters", n)
	}
	// The most a token may hold.
	many := make([]TokenEntry, maxTokenClusters)
	for i := range many {
		many[i] = TokenEntry{Key: uint32(i + 1), Timeline: 1, Pos: lsn.LSN(i)}
	}
	if got, err := DecodeToken(EncodeToken(many)); err != nil || len(got) != maxTokenClusters {
		t.Errorf("%d clusters: %v", len(got), err)
	}
}

func raw(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestTokenMalformed(t *testing.T) {
	good := EncodeToken([]TokenEntry{{Key: 5, Timeline: 1, Pos: 100}})
	tooMany := []byte{tokenVersion}
	tooMany = binary.AppendUvarint(tooMany, maxTokenClusters+1)
	for i := range maxTokenClusters + 1 {
		tooMany = append(tooMany, byte(i+1), 1, 1, 0)
	}
	bigKey := binary.AppendUvarint([]byte{tokenVersion, 1}, 1<<32)
	bigKey = append(bigKey, 1, 1, 0)
	for name, tok := range map[string]string{
		"empty":             "",
		"too long":          strings.Repeat("A", maxTokenLen+1),
		"not base64url":     "ab+/cd",
		"padded":            good + "==",
		"nothing":           raw(),
		"unknown version":   raw(2, 1, 5, 1, 100, 0),
		"no cluster":        raw(tokenVersion, 0),
		"too many clusters": base64.RawURLEncoding.EncodeToString(tooMany),
		"truncated count":   raw(tokenVersion),
		"truncated entry":   raw(tokenVersion, 1, 5, 1),
		"key 0":             raw(tokenVersion, 1, 0, 1, 100, 0),
		"key over 32 bits":  base64.RawURLEncoding.EncodeToString(bigKey),
		"timeline too big":  base64.RawURLEncoding.EncodeToString(append(binary.AppendUvarint([]byte{tokenVersion, 1, 5}, 1<<32), 1, 0)),
		"varint overflow":   raw(tokenVersion, 1, 5, 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0),
		"trailing bytes":    raw(tokenVersion, 1, 5, 1, 100, 0, 9),
		"second truncated":  raw(tokenVersion, 2, 5, 1, 100, 0, 6, 1),
	} {
		if _, err := DecodeToken(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := RestoreSession(tok); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: restore: %v", name, err)
		}
	}
	// The longest acceptable token decodes or fails cleanly.
	if _, err := DecodeToken(strings.Repeat("A", maxTokenLen)); !errors.Is(err, ErrBadToken) {
		t.Errorf("512 A's: %v", err)
	}
	// Random input: decoded, or ErrBadToken; never a panic.
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		if rng.IntN(2) == 0 && len(b) > 0 {
			b[0] = tokenVersion
		}
		entries, err := DecodeToken(base64.RawURLEncoding.EncodeToString(b))
		if err != nil && !errors.Is(err, ErrBadToken) {
			t.Fatalf("%x: %v", b, err)
		}
		if err == nil {
			if again, err := DecodeToken(EncodeToken(entries)); err != nil || !reflect.DeepEqual(again, entries) {
				t.Fatalf("%x: re-encoded: %v %v", b, again, err)
			}
		}
	}
}

func TestRestoreSession(t *testing.T) {
	tok := EncodeToken([]TokenEntry{{Key: 5, Timeline: 2, Pos: 100, Flags: tokenSawReplica}, {Key: 6, Timeline: 1, Pos: 7}})
	s, err := RestoreSession(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Explicit() || !s.adopting.Load() || len(s.all()) != 2 {
		t.Fatalf("%+v", s)
	}
	p := s.find(5)
	if p.LSN() != 100 || p.timeline.Load() != 2 || !p.unverified.Load() || !p.sawReplica.Load() || !p.dirty() || !p.explicit {
		t.Errorf("position: %v tli %d", p.LSN(), p.timeline.Load())
	}
	if q := s.find(6); q.sawReplica.Load() {
		t.Error("flags of the wrong cluster")
	}
	if _, err := RestoreSession(EncodeToken([]TokenEntry{{Key: 5, Pos: 1}, {Key: 5, Pos: 2}})); !errors.Is(err, ErrBadToken) {
		t.Errorf("duplicate cluster: %v", err)
	}
}

func TestAdoptCountsForeignTokensOnce(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	s, err := RestoreSession(EncodeToken([]TokenEntry{{Key: c.Key(), Timeline: 1, Pos: 0}, {Key: c.Key() + 1, Timeline: 4, Pos: 99}}))
	if err != nil {
		t.Fatal(err)
	}
	o := &Options{Session: s}
	for range 3 {
		read(e, o)
	}
	if n := e.Stats().TokensForeign; n != 1 {
		t.Errorf("foreign counted %d times", n)
	}
	// The foreign position is kept, to be carried on.
	tok, err := e.Token(context.Background(), o, newLender(t).lend)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := DecodeToken(tok)
	if len(entries) != 2 || entries[1] != (TokenEntry{Key: c.Key() + 1, Timeline: 4, Pos: 99}) {
		t.Errorf("entries %+v", entries)
	}
}

func TestTokenVerifiedAtOrBehindPrimary(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	at(primary(e), 500, time.Now())
	at(replica(e, 1), 500, time.Now())
	for _, pos := range []lsn.LSN{400, 500} {
		s, _ := RestoreSession(EncodeToken([]TokenEntry{{Key: c.Key(), Timeline: 1, Pos: pos}}))
		// Verified at once: the read goes to a replica that has it.
		want(t, read(e, &Options{Session: s}), replica(e, 1), ReasonReplica, BeforeNone, AfterNone)
		if s.find(c.Key()).unverified.Load() {
			t.Errorf("%v: unverified", pos)
		}
	}
}

func TestTokenAheadClamped(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	at(primary(e), 500, time.Now())
	at(replica(e, 1), 500, time.Now())
	s, _ := RestoreSession(EncodeToken([]TokenEntry{{Key: c.Key(), Timeline: 1, Pos: 1 << 40}}))
	o := &Options{Session: s}
	p := read(e, o)
	want(t, p, primary(e), ReasonAfterWrite, BeforeNone, AfterCapture)
	p.Captured(600)
	pos := s.find(c.Key())
	if pos.LSN() != 600 || pos.unverified.Load() || pos.dirty() {
		t.Errorf("clamped to %v, unverified %v", pos.LSN(), pos.unverified.Load())
	}
	if n := e.Stats().TokensClamped; n != 1 {
		t.Errorf("clamped %d", n)
	}
	// A genuine one a moment ahead of the last poll is raised, not clamped.
	s, _ = RestoreSession(EncodeToken([]TokenEntry{{Key: c.Key(), Timeline: 1, Pos: 550}}))
	p = read(e, &Options{Session: s})
	p.Captured(560)
	if s.find(c.Key()).LSN() != 560 || e.Stats().TokensClamped != 1 {
		t.Errorf("genuine: %v, clamped %d", s.find(c.Key()).LSN(), e.Stats().TokensClamped)
	}
}

// tokenServers gives each node of e a scripted server answering CaptureSQL
// and ReplaySQL with the positions given.
func tokenServers(t *testing.T, e *Engine, insert, replay string) (*lender, map[*topology.Node]*pgscript.Server) {
	l := newLender(t)
	servers := map[*topology.Node]*pgscript.Server{}
	for _, n := range cluster(e).Nodes {
		s := scripted(t, func(q pgscript.Query) pgscript.Reply {
			switch q.SQL {
			case CaptureSQL:
				return pgscript.Row(insert)
			case ReplaySQL:
				if replay == "fail" {
					return pgscript.Fail("XX000", "no")
				}
				return pgscript.Row(replay)
			}
			return pgscript.Fail("42601", "unexpected "+q.SQL)
		})
		l.serve(n, s)
		servers[n] = s
	}
	return l, servers
}

func decodeOne(t *testing.T, tok string) TokenEntry {
	t.Helper()
	entries, err := DecodeToken(tok)
	if err != nil || len(entries) != 1 {
		t.Fatalf("%v %v", entries, err)
	}
	return entries[0]
}

func TestTokenDirtyCapturesOnPrimary(t *testing.T) {
	e := newEngine(t, 1, Config{})
	primary(e).SetTimeline(3)
	l, servers := tokenServers(t, e, "0/5000", "0/1")
	s := NewSession()
	o := &Options{Session: s}
	var w Plan
	e.PlanWrite(&w, o, cluster(e))
	w.Begin()
	w.Finish(nil)
	tok, err := e.Token(ctxT(t), o, l.lend)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeOne(t, tok); got != (TokenEntry{Key: cluster(e).Key(), Timeline: 3, Pos: 0x5000}) {
		t.Errorf("entry %+v", got)
	}
	if servers[primary(e)].Queries() != 1 || servers[replica(e, 1)].Queries() != 0 {
		t.Errorf("queries: primary %d, replica %d", servers[primary(e)].Queries(), servers[replica(e, 1)].Queries())
	}
	if s.find(cluster(e).Key()).dirty() {
		t.Error("still dirty")
	}
	// Clean now: a second token costs nothing.
	if _, err := e.Token(ctxT(t), o, l.lend); err != nil || l.lent.Load() != 1 {
		t.Errorf("%v, lent %d", err, l.lent.Load())
	}
	if primary(e).InFlight() != 0 {
		t.Errorf("in flight %d", primary(e).InFlight())
	}
}

func TestTokenPinnedReplica(t *testing.T) {
	setup := func(t *testing.T, replay string) (*Engine, *Session, *lender, map[*topology.Node]*pgscript.Server, int64) {
		e := newEngine(t, 1, Config{})
		l, servers := tokenServers(t, e, "0/9000", replay)
		s := NewSession()
		p := read(e, &Options{Session: s})
		if p.Node != replica(e, 1) {
			t.Fatal("not on the replica")
		}
		p.Served()
		_, pinAt := s.find(cluster(e).Key()).pinState()
		return e, s, l, servers, pinAt
	}
	t.Run("not polled since: asks the replica", func(t *testing.T) {
		e, s, l, servers, _ := setup(t, "0/7000")
		tok, err := e.Token(ctxT(t), &Options{Session: s}, l.lend)
		if err != nil {
			t.Fatal(err)
		}
		if got := decodeOne(t, tok); got.Pos != 0x7000 {
			t.Errorf("entry %+v", got)
		}
		if servers[replica(e, 1)].Queries() != 1 || servers[primary(e)].Queries() != 0 {
			t.Errorf("queries: replica %d, primary %d", servers[replica(e, 1)].Queries(), servers[primary(e)].Queries())
		}
		if pin, _ := s.find(cluster(e).Key()).pinState(); pin != nil {
			t.Error("still pinned")
		}
		if e.Stats().Routed[ReasonReplica] != 1 {
			t.Errorf("routed %v", e.Stats().Routed)
		}
	})
	t.Run("replica polled since: nothing asked", func(t *testing.T) {
		e, s, l, _, pinAt := setup(t, "0/7000")
		at(replica(e, 1), 0x6000, time.Unix(0, pinAt+1))
		tok, err := e.Token(ctxT(t), &Options{Session: s}, l.lend)
		if err != nil || decodeOne(t, tok).Pos != 0x6000 || l.calls.Load() != 0 {
			t.Errorf("%v %+v, %d calls", err, decodeOne(t, tok), l.calls.Load())
		}
	})
	t.Run("primary polled since: nothing asked", func(t *testing.T) {
		e, s, l, _, pinAt := setup(t, "0/7000")
		at(primary(e), 0x8000, time.Unix(0, pinAt+1))
		tok, err := e.Token(ctxT(t), &Options{Session: s}, l.lend)
		if err != nil || decodeOne(t, tok).Pos != 0x8000 || l.calls.Load() != 0 {
			t.Errorf("%v %+v, %d calls", err, decodeOne(t, tok), l.calls.Load())
		}
	})
	t.Run("replica fails: the primary", func(t *testing.T) {
		e, s, l, servers, _ := setup(t, "fail")
		tok, err := e.Token(ctxT(t), &Options{Session: s}, l.lend)
		if err != nil || decodeOne(t, tok).Pos != 0x9000 {
			t.Fatalf("%v %+v", err, decodeOne(t, tok))
		}
		if servers[replica(e, 1)].Queries() != 1 || servers[primary(e)].Queries() != 1 {
			t.Errorf("queries: replica %d, primary %d", servers[replica(e, 1)].Queries(), servers[primary(e)].Queries())
		}
		if !replica(e, 1).Healthy() || replica(e, 1).InFlight() != 0 {
			t.Error("the replica's state")
		}
	})
	t.Run("replica unreachable: the primary", func(t *testing.T) {
		e, s, l, _, _ := setup(t, "0/7000")
		l.fail = func(n *topology.Node, _ int64) error {
			if n == replica(e, 1) {
				return errors.New("refused")
			}
			return nil
		}
		tok, err := e.Token(ctxT(t), &Options{Session: s}, l.lend)
		if err != nil || decodeOne(t, tok).Pos != 0x9000 {
			t.Fatalf("%v %+v", err, decodeOne(t, tok))
		}
	})
	t.Run("pinned to the primary: a capture", func(t *testing.T) {
		e := newEngine(t, 1, Config{})
		l, servers := tokenServers(t, e, "0/9000", "0/1")
		s := NewSession()
		var p Plan
		p.Plain()
		e.PlanRead(context.Background(), &p, &Options{Session: s, Primary: true}, cluster(e))
		p.Served()
		tok, err := e.Token(ctxT(t), &Options{Session: s}, l.lend)
		if err != nil || decodeOne(t, tok).Pos != 0x9000 || servers[primary(e)].Queries() != 1 {
			t.Fatalf("%v %+v", err, decodeOne(t, tok))
		}
	})
}

func TestTokenFailures(t *testing.T) {
	e := newEngine(t, 0, Config{PrimaryWait: 10 * time.Millisecond})
	s := NewSession()
	s.position(cluster(e).Key()).mark()
	bad := func(answer pgscript.Reply) error {
		srv := scripted(t, func(q pgscript.Query) pgscript.Reply { return answer })
		l := newLender(t)
		l.serve(primary(e), srv)
		_, err := e.Token(ctxT(t), &Options{Session: s}, l.lend)
		return err
	}
	if err := bad(pgscript.Row(nil)); err == nil || !strings.Contains(err.Error(), "no WAL position") {
		t.Errorf("NULL: %v", err)
	}
	if err := bad(pgscript.Row("nonsense")); !errors.Is(err, lsn.ErrSyntax) {
		t.Errorf("bad LSN: %v", err)
	}
	if err := bad(pgscript.Fail("42501", "permission denied")); pgErrCode(err) != "42501" {
		t.Errorf("error: %v", err)
	}
	primary(e).MarkDown(time.Now())
	if _, err := e.Token(ctxT(t), &Options{Session: s}, newLender(t).lend); !errors.Is(err, ErrNoPrimary) {
		t.Errorf("no primary: %v", err)
	}
	e.Close()
	if _, err := e.Token(ctxT(t), nil, newLender(t).lend); !errors.Is(err, ErrClosed) {
		t.Errorf("closed: %v", err)
	}
}

func TestTokenOfANewSession(t *testing.T) {
	e := newEngine(t, 0, Config{})
	primary(e).SetTimeline(7)
	tok, err := e.Token(ctxT(t), &Options{Session: NewSession()}, newLender(t).lend)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeOne(t, tok); got != (TokenEntry{Key: cluster(e).Key(), Timeline: 7}) {
		t.Errorf("entry %+v", got)
	}
	// The DB-wide session's token, restored, starts where it was.
	setPos(e.global, cluster(e), 0x1234, time.Now())
	tok, err = e.Token(ctxT(t), nil, newLender(t).lend)
	if err != nil || decodeOne(t, tok).Pos != 0x1234 {
		t.Fatalf("%v %+v", err, decodeOne(t, tok))
	}
	s, err := RestoreSession(tok)
	if err != nil || s.find(cluster(e).Key()).LSN() != 0x1234 {
		t.Fatal(err)
	}
}
