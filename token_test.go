package switchyard

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

func TestTokenEncoding(t *testing.T) {
	for _, e := range []tokenEntry{
		{system: 1, timeline: 1, pos: 0},
		{system: 0xDEADBEEF, timeline: 7, pos: 0x16_B374D848},
		{system: 1<<32 - 1, timeline: 1<<32 - 1, pos: 1<<64 - 1, flags: tokenSawReplica},
	} {
		tok := encodeToken([]tokenEntry{e})
		got, err := decodeToken(tok)
		if err != nil || len(got) != 1 || got[0] != e {
			t.Errorf("%+v -> %q -> %+v, %v", e, tok, got, err)
		}
		if len(tok) > 32 || strings.ContainsAny(tok, "+/=;, ") {
			t.Errorf("token %q is not compact and cookie-safe", tok)
		}
	}
	good := encodeToken([]tokenEntry{{system: 5, timeline: 1, pos: 100}})
	for _, bad := range []string{
		"", "!!!", "AQ", // version only
		"Ag" + good[2:], // another version
		good[:len(good)-2],
		good + "AA",
		strings.Repeat("A", 600),
	} {
		if _, err := decodeToken(bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("decodeToken(%q): %v, want ErrBadToken", bad, err)
		}
		if _, err := WithToken(context.Background(), bad); !errors.Is(err, ErrBadToken) {
			t.Errorf("WithToken(%q): %v, want ErrBadToken", bad, err)
		}
	}
}

func openLab(t *testing.T, c *switchyardtest.Cluster) *DB {
	t.Helper()
	cfg := Config{Primary: c.Primary().DSN()}
	for _, r := range c.Replicas() {
		cfg.Replicas = append(cfg.Replicas, r.DSN())
	}
	db, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// TestForgedAndForeignTokens: a token far ahead of the primary neither
// hangs nor pins reads to the primary; one from another cluster is
// ignored. Both are counted.
func TestForgedAndForeignTokens(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	db := openLab(t, c)
	time.Sleep(100 * time.Millisecond) // a few polls

	real, err := db.Token(WithSession(ctx))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := decodeToken(real)
	forged := encodeToken([]tokenEntry{{system: entries[0].system, timeline: entries[0].timeline, pos: entries[0].pos + 1<<40}})
	fctx, err := WithToken(ctx, forged)
	if err != nil {
		t.Fatal(err)
	}
	onReplica := func(ctx context.Context) bool {
		var rec bool
		if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	// The first read checks the token against the primary and clamps it;
	// later ones are served by the replica once it has the (real) position.
	onReplica(fctx)
	if n := db.Stats().Routes.TokensClamped; n != 1 {
		t.Errorf("TokensClamped = %d, want 1", n)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if !onReplica(fctx) {
		t.Error("after clamping, the forged token's session still reads from the primary")
	}
	s := optsFrom(fctx).session
	primaryAt, err := c.Primary().InsertLSN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := lsn.LSN(s.lsn.Load()); got > primaryAt {
		t.Errorf("session position %v is still ahead of the primary", got)
	}

	// Lab clusters are copies of one initdb, so they share a system
	// identifier; a token from a cluster made by another initdb carries
	// another one.
	foreign := encodeToken([]tokenEntry{{system: entries[0].system ^ 0x5a5a, timeline: 1, pos: entries[0].pos + 1<<40}})
	fctx2, err := WithToken(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	onReplica(fctx2)
	if n := db.Stats().Routes.TokensForeign; n != 1 {
		t.Errorf("TokensForeign = %d, want 1", n)
	}
}
