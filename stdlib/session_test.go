package stdlib_test

import (
	"context"
	"fmt"
	"log"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestReadYourWritesWithSession checks that a session reads its own
// writes through the *sql.DB, with one replica 20ms behind, and that plain
// reads still go to replicas.
func TestReadYourWritesWithSession(t *testing.T) {
	ctx := testCtx(t)
	db := openDB(t)
	sqlDB := openSQL(t, db)
	if err := switchyardtest.Need(t, shared).Primary().Exec(ctx, "DELETE FROM items WHERE v BETWEEN 880000 AND 889999"); err != nil {
		t.Fatal(err) // rows of an earlier run (go test -count)
	}
	for i := 0; i < 30; i++ {
		sctx := switchyard.WithSession(ctx)
		marker := 880000 + i
		if _, err := sqlDB.ExecContext(sctx, "INSERT INTO items (v) VALUES ($1)", marker); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := sqlDB.QueryRowContext(sctx, "SELECT count(*) FROM items WHERE v = $1", marker).Scan(&n); err != nil || n != 1 {
			t.Fatalf("round %d: the session's read after its write found %d rows (%v)", i, n, err)
		}
		// The same through a prepared statement and in a read-only
		// transaction, which may begin on a replica.
		stmt, err := sqlDB.PrepareContext(sctx, "SELECT count(*) FROM items WHERE v = $1")
		if err != nil {
			t.Fatal(err)
		}
		err = stmt.QueryRowContext(sctx, marker).Scan(&n)
		stmt.Close()
		if err != nil || n != 1 {
			t.Fatalf("round %d: a prepared read after the write found %d rows (%v)", i, n, err)
		}
		tx, err := sqlDB.BeginTx(sctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(sctx, "UPDATE items SET note = 'seen' WHERE v = $1", marker); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		var note string
		if err := sqlDB.QueryRowContext(sctx, "SELECT coalesce(note, '') FROM items WHERE v = $1", marker).Scan(&note); err != nil || note != "seen" {
			t.Fatalf("round %d: the read after the session's transaction saw note %q (%v)", i, note, err)
		}
		// Session state on a pinned connection counts as the session's
		// write too.
		conn, err := sqlDB.Conn(sctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(sctx, "SET work_mem = '8MB'"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(sctx, "UPDATE items SET note = 'pinned' WHERE v = $1", marker); err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if err := sqlDB.QueryRowContext(sctx, "SELECT coalesce(note, '') FROM items WHERE v = $1", marker).Scan(&note); err != nil || note != "pinned" {
			t.Fatalf("round %d: the read after the session's write on a pinned connection saw note %q (%v)", i, note, err)
		}
	}
	// A session's reads go back to replicas once one has replayed its
	// writes, and still see them.
	sctx := switchyard.WithSession(ctx)
	if _, err := sqlDB.ExecContext(sctx, "INSERT INTO items (v) VALUES (889999)"); err != nil {
		t.Fatal(err)
	}
	for deadline, onReplica := time.Now().Add(5*time.Second), false; !onReplica; {
		var n int
		if err := sqlDB.QueryRowContext(sctx, "SELECT pg_is_in_recovery(), count(*) FROM items WHERE v = 889999").Scan(&onReplica, &n); err != nil || n != 1 {
			t.Fatalf("the session's read found %d rows (%v)", n, err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the session's reads never went back to a replica after its write")
		}
	}

	// Plain reads still go to replicas once they have replayed the writes.
	deadline := time.Now().Add(5 * time.Second)
	for onReplica := false; !onReplica; {
		if err := sqlDB.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&onReplica); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("plain reads never went back to a replica after the writes")
		}
	}
}

func ExampleOpenDB_session() {
	ctx := context.Background()
	c := shared
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:  c.Primary().DSN(),
		Replicas: []string{c.Replicas()[0].DSN(), c.Replicas()[1].DSN()},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	sqlDB := stdlib.OpenDB(db)
	defer sqlDB.Close()
	if _, err := sqlDB.ExecContext(ctx, "DROP TABLE IF EXISTS example_orders; CREATE TABLE example_orders (id serial PRIMARY KEY, item text NOT NULL)"); err != nil {
		log.Fatal(err)
	}

	// One session per request or user: its reads see its own writes, even
	// while a replica lags, and most reads still go to replicas.
	sctx := switchyard.WithSession(ctx)
	var id int
	if err := sqlDB.QueryRowContext(sctx, "INSERT INTO example_orders (item) VALUES ($1) RETURNING id", "tea").Scan(&id); err != nil {
		log.Fatal(err)
	}
	var item string
	if err := sqlDB.QueryRowContext(sctx, "SELECT item FROM example_orders WHERE id = $1", id).Scan(&item); err != nil {
		log.Fatal(err)
	}
	fmt.Println("read back:", item)
	// Output:
	// read back: tea
}
