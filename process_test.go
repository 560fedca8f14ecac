package switchyard_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestOnePositionPerProcess: two DBs on the same servers in one process
// (a second handle for a component, an ORM's) share the DB-wide
// position, so a write through one is seen by a read through the other,
// with a replica 20 ms behind; so do two *sql.DB on them. A DB of another
// cluster in the same process is not sent to its primary by those writes.
func TestOnePositionPerProcess(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	db1, db2 := openDB(t, c), openDB(t, c)
	other := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	db3 := openDB(t, other)
	waitCaughtUp(t, other, db3)
	before3 := db3.Stats().Routes

	stale := 0
	for i := 0; i < 1000; i++ {
		var wrote, got int64
		if err := db1.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&wrote); err != nil {
			t.Fatal(err)
		}
		if err := db2.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got < wrote {
			stale++
		}
	}
	if stale != 0 {
		t.Errorf("%d of 1000 reads through a second DB were stale", stale)
	}

	sql1, sql2 := stdlib.OpenDB(db1), stdlib.OpenDB(db2)
	defer sql1.Close()
	defer sql2.Close()
	stale = 0
	for i := 0; i < 1000; i++ {
		var wrote, got int64
		if err := sql1.QueryRowContext(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&wrote); err != nil {
			t.Fatal(err)
		}
		if err := sql2.QueryRowContext(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got < wrote {
			stale++
		}
	}
	if stale != 0 {
		t.Errorf("%d of 1000 reads through a second *sql.DB were stale", stale)
	}

	// The other cluster's reads never waited for these writes.
	var rec bool
	if err := db3.QueryRow(context.Background(), "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || !rec {
		t.Errorf("a read on another cluster after writes on this one: on a replica %v, %v", rec, err)
	}
	if after := db3.Stats().Routes; after.AfterWrite != before3.AfterWrite {
		t.Errorf("the other cluster's reads went to its primary after this cluster's writes: %+v", after)
	}

	// Closing one DB leaves the other's guarantee intact.
	db1.Close()
	var wrote, got int64
	if err := db2.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&wrote); err != nil {
		t.Fatal(err)
	}
	if err := db2.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil || got < wrote {
		t.Errorf("after closing the other DB: read %d after writing %d (%v)", got, wrote, err)
	}
}
