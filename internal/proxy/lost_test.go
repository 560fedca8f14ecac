package proxy_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// lostLab is a proxy whose connections to the primary pass through a
// relay that the test can reset, and a table to write.
func lostLab(t *testing.T) (*running, func()) {
	t.Helper()
	c := laggingLab(t, 0)
	if err := c.Primary().Exec(testCtx(t), "CREATE TABLE lost (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	relay := c.Primary().NewRelay(t)
	p := startProxyOn(t, []string{relay.DSN(), c.Replicas()[0].DSN()})
	p.lab = c
	return p, relay.ResetAll
}

// lostRows are the ids in table lost, on the primary, in order.
func lostRows(t *testing.T, p *running) string {
	t.Helper()
	var ids string
	queryNode(t, p.lab.Primary(), "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM lost", &ids)
	return ids
}

// TestLostTransactionIsNotSplit: when the server connection of a client's
// open transaction is lost (a network reset here; a primary that dies does
// the same), the client is told, and the rest of its transaction is not
// run outside it on another connection: its statements are refused as in
// a failed transaction (25P02), a Parse too (pgbench -M prepared ignores a
// failed prepare and runs the statement anyway: found so, under a
// failover, with half a pgbench transaction committed), until it ends the
// transaction, which is rolled back; then the connection serves again.
func TestLostTransactionIsNotSplit(t *testing.T) {
	p, reset := lostLab(t)
	ctx := testCtx(t)
	client := p.connect(t)
	tx, err := client.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO lost VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	reset()
	_, err = tx.Exec(ctx, "INSERT INTO lost VALUES (2)")
	if code := pgCode(err); code != "08007" && code != "08006" {
		t.Fatalf("the statement whose connection was lost: %v, want 08007 or 08006", err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO lost VALUES (3)"); pgCode(err) != "25P02" {
		t.Errorf("the next statement of the transaction: %v, want 25P02", err)
	}
	pc := client.PgConn()
	if _, err := pc.Prepare(ctx, "ins", "INSERT INTO lost VALUES ($1)", nil); pgCode(err) != "25P02" {
		t.Errorf("a Parse in the failed transaction: %v, want 25P02", err)
	}
	if _, err := pc.Exec(ctx, "SELECT 1").ReadAll(); pgCode(err) != "25P02" {
		t.Errorf("a simple query in the failed transaction: %v, want 25P02", err)
	}
	if s := pc.TxStatus(); s != 'E' {
		t.Errorf("transaction status %q, want E", s)
	}
	if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
		t.Errorf("COMMIT of the failed transaction: %v, want it rolled back", err)
	}
	if s := pc.TxStatus(); s != 'I' {
		t.Errorf("after COMMIT: transaction status %q, want I", s)
	}
	if _, err := client.Exec(ctx, "INSERT INTO lost VALUES (4)"); err != nil {
		t.Fatalf("after the failed transaction ended: %v", err)
	}
	if ids := lostRows(t, p); ids != "4" {
		t.Errorf("rows %s, want 4: none of the lost transaction's", ids)
	}

	// The same with the extended protocol's ROLLBACK, and with the
	// transaction's BEGIN still held back by the proxy when its first
	// statement fails.
	tx, err = client.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO lost VALUES (5)"); err != nil {
		t.Fatal(err)
	}
	reset()
	tx.Exec(ctx, "INSERT INTO lost VALUES (6)")
	if _, err := tx.Exec(ctx, "INSERT INTO lost VALUES (7)", pgx.QueryExecModeExec); pgCode(err) != "25P02" {
		t.Errorf("extended protocol in the failed transaction: %v, want 25P02", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Errorf("ROLLBACK of the failed transaction: %v", err)
	}
	if ids := lostRows(t, p); ids != "4" {
		t.Errorf("rows %s, want 4", ids)
	}

	// ROLLBACK AND CHAIN ends the failed transaction and begins another,
	// which runs and commits as any.
	exec := func(sql string) error { _, err := pc.Exec(ctx, sql).ReadAll(); return err }
	if err := exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := exec("INSERT INTO lost VALUES (8)"); err != nil {
		t.Fatal(err)
	}
	reset()
	exec("INSERT INTO lost VALUES (9)")
	if err := exec("ROLLBACK AND CHAIN"); err != nil || pc.TxStatus() != 'T' {
		t.Fatalf("ROLLBACK AND CHAIN of the failed transaction: %v, status %q, want T", err, pc.TxStatus())
	}
	if err := exec("INSERT INTO lost VALUES (10)"); err != nil {
		t.Fatal(err)
	}
	if err := exec("COMMIT"); err != nil || pc.TxStatus() != 'I' {
		t.Fatalf("COMMIT of the chained transaction: %v, status %q", err, pc.TxStatus())
	}
	if ids := lostRows(t, p); ids != "4,10" {
		t.Errorf("rows %s, want 4,10", ids)
	}
}

// TestLostSessionStateEndsTheClient: a client pinned to a server
// connection by session state (here SET) whose connection is lost has its
// own connection closed, as it would be connected directly: its next
// statements must not run on another connection without that state.
func TestLostSessionStateEndsTheClient(t *testing.T) {
	p, reset := lostLab(t)
	ctx := testCtx(t)
	// lose runs setup on a new client pinned by SET, resets its server
	// connection, and checks that last fails and that the client's next
	// statement (inserting id) neither succeeds nor runs.
	lose := func(when string, setup []string, last string, id int) {
		t.Helper()
		client := p.connect(t)
		for _, sql := range append([]string{"SET application_name = 'pinned'"}, setup...) {
			if _, err := client.Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
		}
		reset()
		if _, err := client.Exec(ctx, last); err == nil {
			t.Errorf("%s: %s on the lost connection succeeded", when, last)
		}
		if !client.IsClosed() {
			if _, err := client.Exec(ctx, fmt.Sprintf("INSERT INTO lost VALUES (%d)", id)); err == nil {
				t.Errorf("%s: after its session state was lost, the client's statements still run", when)
			}
		}
		if ids := lostRows(t, p); strings.Contains(ids, strconv.Itoa(id)) {
			t.Errorf("%s: rows %s: a statement ran without the session's state", when, ids)
		}
	}
	lose("outside a transaction", []string{"INSERT INTO lost VALUES (1)"}, "INSERT INTO lost VALUES (2)", 3)
	// Lost during the COMMIT of its transaction: the COMMIT is answered
	// (its outcome, or 08007), then the client's connection is closed
	// likewise.
	lose("during COMMIT", []string{"BEGIN", "INSERT INTO lost VALUES (5)"}, "COMMIT", 6)

	again := p.connect(t)
	var name string
	if err := again.QueryRow(ctx, "SELECT current_setting('application_name')").Scan(&name); err != nil || name == "pinned" {
		t.Errorf("a new connection: %q, %v", name, err)
	}
}
