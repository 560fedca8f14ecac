package switchyard_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// lab is the test binary's shared lab (started by TestMain): a primary and
// two streaming replicas on this machine. In your own code, the DSNs come
// from your configuration.
func lab() *switchyardtest.Cluster { return shared }

// replicaDSNs are the connection strings of the lab's replicas.
func replicaDSNs(c *switchyardtest.Cluster) []string {
	var dsns []string
	for _, r := range c.Replicas() {
		dsns = append(dsns, r.DSN())
	}
	return dsns
}

func ExampleOpen() {
	ctx := context.Background()
	c := lab() // a primary and two streaming replicas on this machine

	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:  c.Primary().DSN(), // postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
		Replicas: []string{c.Replicas()[0].DSN(), c.Replicas()[1].DSN()},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// Writes (and DDL) go to the primary.
	_, err = db.Exec(ctx, "DROP TABLE IF EXISTS open_notes; CREATE TABLE open_notes (body text NOT NULL)")
	if err != nil {
		log.Fatal(err)
	}
	tag, err := db.Exec(ctx, "INSERT INTO open_notes (body) VALUES ($1)", "hello")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tag)

	// A read sees every write made before it through db: right after a
	// write no replica can have it yet, so this read goes to the primary
	// (and learns the write's WAL position on the way).
	var body string
	if err := db.QueryRow(ctx, "SELECT body FROM open_notes").Scan(&body); err != nil {
		log.Fatal(err)
	}
	fmt.Println("read your write:", body)

	// A session (one per request, user or job) needs only its own writes:
	// a session that wrote nothing reads from a replica.
	var onReplica bool
	if err := db.QueryRow(switchyard.WithSession(ctx), "SELECT pg_is_in_recovery()").Scan(&onReplica); err != nil {
		log.Fatal(err)
	}
	fmt.Println("new session's read served by a replica:", onReplica)
	// Output:
	// INSERT 0 1
	// read your write: hello
	// new session's read served by a replica: true
}

func ExampleDB_Atomic() {
	ctx := context.Background()
	c := lab()
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: c.Primary().DSN(), Replicas: replicaDSNs(c)})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec(ctx, `
		DROP TABLE IF EXISTS atomic_accounts;
		CREATE TABLE atomic_accounts (name text PRIMARY KEY, balance int NOT NULL CHECK (balance >= 0));
		INSERT INTO atomic_accounts VALUES ('alice', 100), ('bob', 0)`)
	if err != nil {
		log.Fatal(err)
	}

	transfer := func(from, to string, amount int) error {
		// Every statement in fn runs in one transaction on the primary,
		// on one connection: both updates commit, or neither does.
		return db.Atomic(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "UPDATE atomic_accounts SET balance = balance - $1 WHERE name = $2", amount, from); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "UPDATE atomic_accounts SET balance = balance + $1 WHERE name = $2", amount, to)
			return err
		})
	}
	fmt.Println("transfer 30:", transfer("alice", "bob", 30))
	err = transfer("alice", "bob", 500) // alice would go below zero: rolled back
	fmt.Println("transfer 500 failed:", err != nil)

	// The read sees the committed transfer: no replica is read from until
	// it has replayed it.
	rows, err := db.Query(ctx, "SELECT name, balance FROM atomic_accounts ORDER BY name")
	if err != nil {
		log.Fatal(err)
	}
	balances, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var name string
		var balance int
		err := r.Scan(&name, &balance)
		return fmt.Sprintf("%s %d", name, balance), err
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.Join(balances, ", "))
	// Output:
	// transfer 30: <nil>
	// transfer 500 failed: true
	// alice 70, bob 30
}

func ExamplePrimary() {
	ctx := context.Background()
	c := lab()
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: c.Primary().DSN(), Replicas: replicaDSNs(c)})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec(ctx, `
		DROP TABLE IF EXISTS primary_orders;
		CREATE TABLE primary_orders (id int PRIMARY KEY, status text NOT NULL);
		INSERT INTO primary_orders VALUES (1, 'paid')`)
	if err != nil {
		log.Fatal(err)
	}

	// Before shipping, read the order where the latest write surely is:
	// with a Primary context, reads go to the primary too.
	var status string
	var onReplica bool
	err = db.QueryRow(switchyard.Primary(ctx), "SELECT status, pg_is_in_recovery() FROM primary_orders WHERE id = $1", 1).Scan(&status, &onReplica)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(status, "- read served by a replica:", onReplica)

	// Without it, a read in a session that has not written goes to a
	// replica.
	err = db.QueryRow(switchyard.WithSession(ctx), "SELECT pg_is_in_recovery()").Scan(&onReplica)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("without Primary, new session's read served by a replica:", onReplica)
	// Output:
	// paid - read served by a replica: false
	// without Primary, new session's read served by a replica: true
}

func ExampleConnect() {
	ctx := context.Background()
	c := lab()
	// One URL lists every server, in any order; Connect asks each whether
	// it is in recovery to tell the primary from the replicas.
	var hosts []string
	for _, n := range []*switchyardtest.Node{c.Replicas()[0], c.Primary(), c.Replicas()[1]} {
		hosts = append(hosts, fmt.Sprintf("127.0.0.1:%d", n.Port()))
	}
	url := "postgres://postgres@" + strings.Join(hosts, ",") + "/postgres?sslmode=disable"

	db, err := switchyard.Connect(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	labName := map[string]string{} // host:port -> the lab's name for it
	for _, n := range c.Nodes() {
		labName[fmt.Sprintf("127.0.0.1:%d", n.Port())] = n.Name()
	}
	for _, n := range db.Stats().Nodes { // the primary first
		fmt.Println(n.Role, labName[n.Name])
	}
	// A new session has seen nothing yet: any replica will do. (Without
	// one, the read would see every write made earlier in this process
	// through any DB on these servers, which the replicas may not have
	// yet.)
	var onReplica bool
	if err := db.QueryRow(switchyard.WithSession(ctx), "SELECT pg_is_in_recovery()").Scan(&onReplica); err != nil {
		log.Fatal(err)
	}
	fmt.Println("read served by a replica:", onReplica)
	// Output:
	// primary primary
	// replica replica1
	// replica replica2
	// read served by a replica: true
}

func ExampleDB_BeginTx() {
	ctx := context.Background()
	c := lab()
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: c.Primary().DSN(), Replicas: replicaDSNs(c)})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	// A read-only transaction begins on a replica, as REPEATABLE READ: all
	// its reads see one snapshot, on one connection.
	tx, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)

	var isolation string
	var onReplica bool
	err = tx.QueryRow(ctx, "SELECT current_setting('transaction_isolation'), pg_is_in_recovery()").Scan(&isolation, &onReplica)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(isolation, "- on a replica:", onReplica)

	// Writing in it fails, as in any read-only transaction.
	_, err = tx.Exec(ctx, "CREATE TABLE begintx_nope (id int)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		fmt.Println("write refused:", pgErr.Code) // read_only_sql_transaction
	}
	// Output:
	// repeatable read - on a replica: true
	// write refused: 25006
}
