package stdlib_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
)

func ExampleOpenDB() {
	ctx := context.Background()
	c := shared // the test's lab: a primary and two streaming replicas on this machine

	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:  c.Primary().DSN(),
		Replicas: []string{c.Replicas()[0].DSN(), c.Replicas()[1].DSN()},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	sqlDB := stdlib.OpenDB(db) // a *sql.DB for database/sql, sqlx, GORM, bun, ...
	defer sqlDB.Close()        // closes before db does

	// A pure read goes to a replica. (A new session's read, here: reads
	// through the DB itself see every write made before them in this
	// process, and this test binary has written before.)
	var onReplica bool
	if err := sqlDB.QueryRowContext(switchyard.WithSession(ctx), "SELECT pg_is_in_recovery()").Scan(&onReplica); err != nil {
		log.Fatal(err)
	}
	fmt.Println("read served by a replica:", onReplica)

	// Writes and DDL go to the primary.
	if _, err := sqlDB.ExecContext(ctx, "DROP TABLE IF EXISTS example_notes; CREATE TABLE example_notes (id serial PRIMARY KEY, body text NOT NULL)"); err != nil {
		log.Fatal(err)
	}
	res, err := sqlDB.ExecContext(ctx, "INSERT INTO example_notes (body) VALUES ($1), ($2)", "hello", "world")
	if err != nil {
		log.Fatal(err)
	}
	n, _ := res.RowsAffected()
	fmt.Println("inserted:", n)

	// A read right after a write sees it: it goes to the primary, or to a
	// replica that has replayed the write.
	var count int
	if err := sqlDB.QueryRowContext(ctx, "SELECT count(*) FROM example_notes").Scan(&count); err != nil {
		log.Fatal(err)
	}
	fmt.Println("notes read back:", count)

	// A transaction runs on one connection to the primary.
	tx, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "UPDATE example_notes SET body = upper(body)"); err != nil {
		log.Fatal(err)
	}
	var inTx bool
	if err := tx.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&inTx); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("transaction on a replica:", inTx)

	// A read-only transaction may run on a replica (one that has replayed
	// the writes before it), in one snapshot.
	ro, err := sqlDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer ro.Rollback()
	var readOnly string
	if err := ro.QueryRowContext(ctx, "SELECT current_setting('transaction_read_only')").Scan(&readOnly); err != nil {
		log.Fatal(err)
	}
	fmt.Println("read-only transaction:", readOnly)

	// switchyard.Primary sends everything run with its context to the
	// primary.
	var body string
	if err := sqlDB.QueryRowContext(switchyard.Primary(ctx), "SELECT string_agg(body, ' ' ORDER BY id) FROM example_notes").Scan(&body); err != nil {
		log.Fatal(err)
	}
	fmt.Println(body)
	// Output:
	// read served by a replica: true
	// inserted: 2
	// notes read back: 2
	// transaction on a replica: false
	// read-only transaction: on
	// HELLO WORLD
}
