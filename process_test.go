package switchyard_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestOnePositionPerProcess: two DBs on the same servers in one process
// (a second handle for a component, an ORM's) share the DB-wide
// position, with a replica 20 ms behind: a write through either, then a
// read through the other, 1,000 times, and no read is stale; the same
// with two *sql.DB from stdlib.OpenDB, and with a DB opened after another
// was closed. A DB of another cluster (another lab: its own system
// identifier) in the same process reads on its replica throughout: the
// writes never send its reads to its primary.
func TestOnePositionPerProcess(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	other := laggingLab(t, 1, 0)
	if c.SystemIdentifier() == other.SystemIdentifier() {
		t.Fatalf("the two labs share system identifier %d: they are not two clusters", c.SystemIdentifier())
	}
	db1, db2 := openDB(t, c), openDB(t, c)
	db3 := openDB(t, other)
	waitCaughtUp(t, other, db3)

	// Each round writes through one handle and reads through the other
	// (alternately), and reads the other cluster through its own DB.
	type handle interface {
		write(ctx context.Context) (int64, error)
		read(ctx context.Context) (v int64, onReplica bool, err error)
	}
	otherReads, otherOnReplica := 0, 0
	rounds := func(t *testing.T, what string, a, b, o handle) {
		t.Helper()
		stale, onReplica, control := 0, 0, 0
		for i := 0; i < 1000; i++ {
			w, r := a, b
			if i%2 == 1 {
				w, r = b, a
			}
			wrote, err := w.write(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, rec, err := o.read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			otherReads++
			if rec {
				otherOnReplica++
			}
			// The control: a new session knows nothing of the write, and
			// reads on the replica, which has not replayed it yet.
			if got, _, err := r.read(switchyard.WithSession(ctx)); err != nil {
				t.Fatal(err)
			} else if got < wrote {
				control++
			}
			got, rec, err := r.read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got < wrote {
				stale++
			}
			if rec {
				onReplica++
			}
		}
		t.Logf("%s: 1000 writes each read through the other handle: %d stale, %d on the replica (a new session's read there: %d stale)", what, stale, onReplica, control)
		if stale != 0 {
			t.Errorf("%s: %d of 1000 reads through the other handle were stale", what, stale)
		}
		if control == 0 {
			t.Errorf("%s: no read of a new session was stale: the replica was not behind, and the test shows nothing", what)
		}
	}
	rounds(t, "two DBs", pgxHandle{db1}, pgxHandle{db2}, pgxHandle{db3})

	sql1, sql2, sql3 := stdlib.OpenDB(db1), stdlib.OpenDB(db2), stdlib.OpenDB(db3)
	defer sql2.Close()
	defer sql3.Close()
	rounds(t, "two *sql.DB", sqlHandle{sql1}, sqlHandle{sql2}, sqlHandle{sql3})

	// Closing one DB leaves the others' guarantee intact, and a DB opened
	// afterwards shares it too.
	sql1.Close()
	db1.Close()
	db4 := openDB(t, c)
	rounds(t, "after closing one, a new DB", pgxHandle{db2}, pgxHandle{db4}, pgxHandle{db3})

	t.Logf("the other cluster: %d of %d reads on its replica; routes %+v", otherOnReplica, otherReads, db3.Stats().Routes)
	if otherOnReplica != otherReads {
		t.Errorf("the other cluster's reads: %d of %d on its replica; writes to one cluster sent another's reads to its primary", otherOnReplica, otherReads)
	}
}

// pgxHandle and sqlHandle write and read counter 0 through a DB and a
// *sql.DB, without a session.
type pgxHandle struct{ db *switchyard.DB }

func (h pgxHandle) write(ctx context.Context) (v int64, err error) {
	err = h.db.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v)
	return v, err
}

func (h pgxHandle) read(ctx context.Context) (v int64, rec bool, err error) {
	err = h.db.QueryRow(ctx, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&v, &rec)
	return v, rec, err
}

type sqlHandle struct{ db *sql.DB }

func (h sqlHandle) write(ctx context.Context) (v int64, err error) {
	err = h.db.QueryRowContext(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v)
	return v, err
}

func (h sqlHandle) read(ctx context.Context) (v int64, rec bool, err error) {
	err = h.db.QueryRowContext(ctx, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&v, &rec)
	return v, rec, err
}

// TestOnePositionPerProcessConcurrently: 8 goroutines, each writing its
// own counter through one of four DBs on the same servers and reading it
// back through another, 1,000 rounds in all, with a replica 20 ms behind:
// no read is stale. The DBs share positions without a lock on the read
// path (atomics, and a lock only when a cluster is first seen), so the
// race detector watches it too.
func TestOnePositionPerProcessConcurrently(t *testing.T) {
	ctx := testCtx(t)
	const goroutines, perGoroutine = 8, 125
	c := laggingLab(t, goroutines, 20*time.Millisecond)
	dbs := []*switchyard.DB{openDB(t, c), openDB(t, c), openDB(t, c), openDB(t, c)}
	var stale, onReplica atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perGoroutine; i++ {
				w, r := dbs[(g+i)%len(dbs)], dbs[(g+i+1+i%3)%len(dbs)]
				var wrote, got int64
				var rec bool
				if err := w.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v", g).Scan(&wrote); err != nil {
					errs <- err
					return
				}
				if err := r.QueryRow(ctx, "SELECT v, pg_is_in_recovery() FROM counters WHERE id = $1", g).Scan(&got, &rec); err != nil {
					errs <- err
					return
				}
				if got < wrote {
					stale.Add(1)
				}
				if rec {
					onReplica.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d writes, each read through another DB by %d goroutines: %d stale, %d on the replica", goroutines*perGoroutine, goroutines, stale.Load(), onReplica.Load())
	if n := stale.Load(); n != 0 {
		t.Errorf("%d of %d reads were stale", n, goroutines*perGoroutine)
	}
}

// TestForkedClustersInOneProcess: two clusters that share a system
// identifier (here a replica promoted while its primary runs on, as a
// clone restored from a physical backup or a storage snapshot, or the
// green side of a blue/green switch, would) are two clusters: a read
// through a DB of one must see what the DB wrote, whatever a DB of the
// other did meanwhile. Positions are kept per system identifier, so Open
// refuses the second until an Identity tells them apart (in one DB's
// Clusters too); with one, neither DB's reads are stale. (Without the
// check, the two shared a position: a read through the fork after a write
// through the original took the fork's insert position as covering the
// write, and the original's next read went to a replica without it: 20 of
// 20 stale.)
func TestForkedClustersInOneProcess(t *testing.T) {
	ctx := testCtx(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	if err := c.Primary().Exec(ctx, "CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL); INSERT INTO counters VALUES (0, 0)"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	replica, fork := c.Replicas()[0], c.Replicas()[1]
	if err := fork.Promote(ctx); err != nil { // the primary runs on
		t.Fatal(err)
	}
	db := switchyardOpen(t, switchyard.Config{Primary: c.Primary().DSN(), Replicas: []string{replica.DSN()}})
	_, err := switchyard.Open(ctx, switchyard.Config{Primary: fork.DSN()})
	if !errors.Is(err, switchyard.ErrConfig) || !strings.Contains(err.Error(), "Identity") {
		t.Fatalf("a clone of an open DB's cluster, without an Identity: %v", err)
	}
	_, err = switchyard.Open(ctx, switchyard.Config{
		Clusters: []switchyard.Cluster{{Name: "blue", Primary: c.Primary().DSN()}, {Name: "green", Primary: fork.DSN()}},
	})
	if !errors.Is(err, switchyard.ErrConfig) || !strings.Contains(err.Error(), "Identity") {
		t.Fatalf("two clones in one DB, without an Identity: %v", err)
	}
	forkDB := switchyardOpen(t, switchyard.Config{Primary: fork.DSN(), Identity: "green"})
	// The original cluster's WAL moves past the fork's; its replica has
	// replayed it, then stops replaying.
	if err := c.Primary().Exec(ctx, "CREATE TABLE filler AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 20000) g"); err != nil {
		t.Fatal(err)
	}
	waitCaughtUp(t, c, db)
	if err := replica.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	defer replica.ResumeReplay(context.Background())
	stale := 0
	for i := 0; i < 20; i++ {
		var wrote, got int64
		if err := db.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&wrote); err != nil {
			t.Fatal(err)
		}
		if _, err := forkDB.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got < wrote {
			stale++
		}
	}
	if stale != 0 {
		t.Errorf("%d of 20 reads after a write were stale: a read through a DB of another cluster with the same system identifier covered the write", stale)
	}
}

// switchyardOpen opens a DB with cfg and closes it when the test ends.
func switchyardOpen(t *testing.T, cfg switchyard.Config) *switchyard.DB {
	t.Helper()
	db, err := switchyard.Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(fmt.Errorf("open: %w", err))
	}
	t.Cleanup(db.Close)
	return db
}

// TestDBTokenHoldsItsOwnClusters: the DB-wide position is the process's,
// which holds every DB's clusters; a DB's token (without a session)
// carries its own clusters' positions only, so that restoring it on that
// DB finds no cluster it does not have.
func TestDBTokenHoldsItsOwnClusters(t *testing.T) {
	ctx := testCtx(t)
	a, b := laggingLab(t, 1, 0), laggingLab(t, 1, 0)
	dba, dbb := openDB(t, a), openDB(t, b)
	for _, db := range []*switchyard.DB{dba, dbb} {
		if _, err := db.Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0"); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := dbb.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tctx, err := switchyard.WithToken(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	var v int64
	if err := dbb.QueryRow(tctx, "SELECT v FROM counters WHERE id = 0").Scan(&v); err != nil || v != 1 {
		t.Fatalf("the token's read: %d, %v", v, err)
	}
	if n := dbb.Stats().Routes.TokensForeign; n != 0 {
		t.Errorf("the DB's own token named %d cluster(s) it does not have (another DB's, in the same process)", n)
	}
}
