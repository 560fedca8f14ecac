package switchyard_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
)

// TestReadOnlyTransactionSettles: a read-only transaction that begins on
// the primary for a session that wrote, after the session read from a
// replica, waits first for the transactions a replica may already show
// (the settle), as a read there does: its snapshot must not be older than
// what the replica showed the session.
func TestReadOnlyTransactionSettles(t *testing.T) {
	lab := newCacheLab(t)
	ctx := testCtx(t)
	db := openDB(t, lab.Cluster)
	waitCaughtUp(t, lab.Cluster, db)
	sctx := switchyard.WithSession(ctx)
	waitFor(t, "a read of the session on a replica", func() bool {
		var rec bool
		if err := db.QueryRow(sctx, "SELECT pg_is_in_recovery() FROM qc_items WHERE id = 1").Scan(&rec); err != nil {
			t.Fatal(err)
		}
		return rec
	})
	if _, err := db.Exec(sctx, "UPDATE qc_items SET note = note WHERE id = 2"); err != nil {
		t.Fatal(err)
	}
	const settle = "DO $settle$"
	before := lab.calls(settle)
	tx, err := db.BeginTx(sctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	var rec bool
	err = tx.QueryRow(sctx, "SELECT pg_is_in_recovery()").Scan(&rec)
	if cerr := tx.Commit(sctx); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if rec {
		t.Fatal("the read-only transaction of a session that just wrote began on a replica")
	}
	if got := lab.calls(settle) - before; got != 1 {
		t.Errorf("the read-only transaction on the primary ran the settle %d times, want once", got)
	}
}
