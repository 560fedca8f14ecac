package switchyard_test

import (
	"context"
	"testing"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestForgedAndForeignTokens: a token far ahead of the primary neither
// hangs nor pins reads to the primary; one from another cluster is
// ignored. Both are counted.
func TestForgedAndForeignTokens(t *testing.T) {
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	db := openDB(t, c)
	waitCaughtUp(t, c, db)

	real, err := db.Token(switchyard.WithSession(ctx))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := engine.DecodeToken(real)
	if err != nil {
		t.Fatal(err)
	}
	e := entries[0]
	forged := engine.EncodeToken([]engine.TokenEntry{{Key: e.Key, Timeline: e.Timeline, Pos: e.Pos + 1<<40}})
	fctx, err := switchyard.WithToken(ctx, forged)
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
	waitCaughtUp(t, c, db)
	if !onReplica(fctx) {
		t.Error("after clamping, the forged token's session still reads from the primary")
	}
	tok, err := db.Token(fctx)
	if err != nil {
		t.Fatal(err)
	}
	clamped, _ := engine.DecodeToken(tok)
	primaryAt, err := c.Primary().InsertLSN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := clamped[0].Pos; got > primaryAt {
		t.Errorf("session position %v is still ahead of the primary (%v)", got, primaryAt)
	}

	// A token of a cluster this DB does not have.
	foreign := engine.EncodeToken([]engine.TokenEntry{{Key: e.Key ^ 0x5a5a, Timeline: 1, Pos: e.Pos + 1<<40}})
	fctx2, err := switchyard.WithToken(ctx, foreign)
	if err != nil {
		t.Fatal(err)
	}
	onReplica(fctx2)
	if n := db.Stats().Routes.TokensForeign; n != 1 {
		t.Errorf("TokensForeign = %d, want 1", n)
	}
}
