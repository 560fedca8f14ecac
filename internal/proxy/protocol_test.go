package proxy_test

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/proxy"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// rawConn is a client that speaks the protocol message by message
// (pgx's pgproto3), for what drivers do not expose: Flush, row limits,
// a Parse alone.
type rawConn struct {
	t        testing.TB
	nc       net.Conn
	fe       *pgproto3.Frontend
	errorsOK bool // until takes an ErrorResponse as any other message
}

// dialRaw logs in to the proxy at addr as postgres.
func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &rawConn{t: t, nc: nc, fe: pgproto3.NewFrontend(nc, nc)}
	c.send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "postgres", "database": "postgres"}})
	c.until("ReadyForQuery")
	return c
}

func (c *rawConn) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	if err := c.fe.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

// until reads messages up to and including one of a type in last (by
// name, as "ReadyForQuery"), failing on an ErrorResponse unless last
// names it or errorsOK is set; it returns their type names and the
// DataRows' first values.
func (c *rawConn) until(last ...string) (types []string, values []string) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		m, err := c.fe.Receive()
		if err != nil {
			c.t.Fatalf("after %v: %v", types, err)
		}
		name := strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3.")
		types = append(types, name)
		switch m := m.(type) {
		case *pgproto3.ErrorResponse:
			if !slices.Contains(last, "ErrorResponse") && !c.errorsOK {
				c.t.Fatalf("after %v: %s %s", types, m.Code, m.Message)
			}
		case *pgproto3.DataRow:
			values = append(values, string(m.Values[0]))
		}
		if slices.Contains(last, name) {
			return types, values
		}
	}
}

// TestPortalSuspended: a portal run a few rows at a time (Execute with a
// row limit, Flush) stays on its server until the client's Sync, as
// node-postgres's cursors and JDBC's fetch size use it.
func TestPortalSuspended(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.PoolSize = 1 })
	conn := dialRaw(t, p.addr)
	conn.send(&pgproto3.Parse{Query: "SELECT pg_backend_pid()::text || ':' || g FROM generate_series(1, 5) g"},
		&pgproto3.Bind{}, &pgproto3.Execute{MaxRows: 2}, &pgproto3.Flush{})
	types, vals := conn.until("PortalSuspended")
	if strings.Join(types, " ") != "ParseComplete BindComplete DataRow DataRow PortalSuspended" {
		t.Fatalf("first Execute: %v", types)
	}
	for range 2 {
		conn.send(&pgproto3.Execute{MaxRows: 2}, &pgproto3.Flush{})
		_, v := conn.until("PortalSuspended", "CommandComplete")
		vals = append(vals, v...)
		if len(vals) == 5 {
			break
		}
	}
	conn.send(&pgproto3.Sync{})
	conn.until("ReadyForQuery")
	if len(vals) != 5 {
		t.Fatalf("rows %v", vals)
	}
	pid := strings.Split(vals[0], ":")[0]
	for i, v := range vals {
		if v != fmt.Sprintf("%s:%d", pid, i+1) {
			t.Errorf("row %d: %q (the portal's rows from more than one server session?)", i, v)
		}
	}
	// The server connection went back to the pool (of one) at the Sync.
	other := p.connect(t)
	var one int
	if err := other.QueryRow(testCtx(t), "SELECT 1").Scan(&one); err != nil {
		t.Fatal(err)
	}
}

// TestKnownParseNeedsNoServer: a Parse alone in its round trip (libpq's
// PQprepare, pgbench -M prepared) of a statement the servers accepted
// before is answered by the proxy, while every server connection is taken
// by a transaction; pgbench, whose one thread would wait in that Parse for
// its own clients' transactions, deadlocked before.
func TestKnownParseNeedsNoServer(t *testing.T) {
	c := laggingLab(t) // a primary alone
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.PoolSize = 1 })
	ctx := testCtx(t)
	const update = "UPDATE counters SET v = v + 1 WHERE id = $1"
	first := dialRaw(t, p.addr)
	first.send(&pgproto3.Parse{Name: "u", Query: update}, &pgproto3.Sync{})
	first.until("ReadyForQuery")

	holder := p.connect(t)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = 9"); err != nil {
		t.Fatal(err)
	}
	// The only server connection is the holder's now.
	second := dialRaw(t, p.addr)
	second.send(&pgproto3.Parse{Name: "mine", Query: update}, &pgproto3.Sync{})
	if types, _ := second.until("ReadyForQuery"); strings.Join(types, " ") != "ParseComplete ReadyForQuery" {
		t.Fatalf("Parse: %v", types)
	}
	// Its execution waits for a server connection, and gets one when the
	// transaction ends.
	second.send(&pgproto3.Bind{PreparedStatement: "mine", Parameters: [][]byte{[]byte("10")}},
		&pgproto3.Execute{}, &pgproto3.Sync{})
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if types, _ := second.until("ReadyForQuery"); strings.Join(types, " ") != "BindComplete CommandComplete ReadyForQuery" {
		t.Fatalf("Bind and Execute: %v", types)
	}
}

// TestPreparedErrorsReachClient: a statement the server refuses is never
// taken as prepared: a second client's Parse of the same text hears the
// error too, and a statement whose table went away since it was prepared
// elsewhere fails with the server's error when it runs.
func TestPreparedErrorsReachClient(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.Consistency = proxy.Connection })
	ctx := testCtx(t)
	a, b := p.connect(t), p.connect(t)
	for _, conn := range []*pgx.Conn{a, b} {
		if _, err := conn.Prepare(ctx, "bad", "SELEC 1"); pgCode(err) != "42601" {
			t.Errorf("Parse of bad SQL: %v, want 42601", err)
		}
	}
	if _, err := a.Exec(ctx, "CREATE TABLE doomed (id int)"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to have the table", func() bool {
		var n int
		queryNode(t, c.Replicas()[0], "SELECT count(*) FROM pg_class WHERE relname = 'doomed'", &n)
		return n == 1
	})
	// A Parse alone goes where a read would: the replica. Its execution,
	// a write, goes to the primary, which prepares it first.
	raw := dialRaw(t, p.addr)
	raw.send(&pgproto3.Parse{Name: "ins", Query: "INSERT INTO doomed VALUES (1)"}, &pgproto3.Sync{})
	raw.until("ReadyForQuery")
	if _, err := a.Exec(ctx, "DROP TABLE doomed"); err != nil {
		t.Fatal(err)
	}
	raw.send(&pgproto3.Bind{PreparedStatement: "ins"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	raw.errorsOK = true
	types, _ := raw.until("ReadyForQuery")
	if strings.Join(types, " ") != "ErrorResponse ReadyForQuery" {
		t.Errorf("a statement whose table is gone: %v, want its error", types)
	}
}

// scriptedPrimary is a scripted primary (internal/pgscript) that answers
// what the engine and the proxy send, with commit deciding COMMIT's fate
// and resolve the in-doubt question's answer (pg_xact_status).
type scriptedPrimary struct {
	commit, xid pgscript.Reply
	resolve     string // pg_xact_status's answer; "" for NULL (too old)
	resolved    atomic.Int32
}

const scriptStarted = "1700000000.5"

func (sp *scriptedPrimary) handle(q pgscript.Query) pgscript.Reply {
	switch sql := q.SQL; {
	case strings.Contains(sql, "pg_control_system()"): // the engine's probe
		return pgscript.Row(false, uint64(7_000_000_000_000_000_042), "8192", "0", "1700000000500000")
	case sql == topology.PollQuery:
		return pgscript.Row(false, "0/3000000", 1, "read committed", nil, false)
	case strings.Contains(sql, "pg_current_xact_id_if_assigned"): // sent with COMMIT
		if sp.xid.Drop || sp.xid.Error != nil {
			return sp.xid
		}
		return pgscript.Row("1234", scriptStarted)
	case strings.Contains(sql, "pg_xact_status"):
		sp.resolved.Add(1)
		var status any
		if sp.resolve != "" {
			status = sp.resolve
		}
		return pgscript.Rows(pgscript.TextColumns("status", "started", "eor", "next", "before"),
			[]any{status, scriptStarted, "f", "0:2000", nil})
	case strings.Contains(sql, "pg_current_wal_insert_lsn"):
		return pgscript.Row("0/3000100")
	case sql == "COMMIT":
		return sp.commit
	}
	return pgscript.Reply{} // BEGIN, UPDATE ...: a tag from the first word
}

// TestCommitInDoubt: a client's COMMIT whose server connection breaks is
// answered with the real outcome when the primary can tell it
// (pg_xact_status on the transaction id the proxy took in COMMIT's round
// trip), and with SQLSTATE 08007 when it cannot. A real server cannot be
// made to break exactly there on demand; a scripted one can.
func TestCommitInDoubt(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sp       *scriptedPrimary
		code     string // "" for a successful COMMIT
		resolved bool
	}{
		{"committed", &scriptedPrimary{commit: pgscript.Reply{Drop: true}, resolve: "committed"}, "", true},
		{"aborted", &scriptedPrimary{commit: pgscript.Reply{Drop: true}, resolve: "aborted"}, "40000", true},
		{"too old to know", &scriptedPrimary{commit: pgscript.Reply{Drop: true}}, "08007", true},
		{"broke before the id", &scriptedPrimary{xid: pgscript.Reply{Drop: true}}, "08007", false},
		{"the server's own error", &scriptedPrimary{commit: pgscript.Fail("40001", "could not serialize access")}, "40001", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := pgscript.Start(tc.sp.handle)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			p := startProxyOn(t, []string{srv.ConnString()})
			ctx := testCtx(t)
			conn, err := pgconn.Connect(ctx, p.dsn())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			for _, sql := range []string{"BEGIN", "UPDATE t SET v = 1"} {
				if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			res, err := conn.Exec(ctx, "COMMIT").ReadAll()
			switch {
			case tc.code == "" && (err != nil || res[0].CommandTag.String() != "COMMIT"):
				t.Errorf("COMMIT: %v, want success", err)
			case tc.code != "" && pgCode(err) != tc.code:
				t.Errorf("COMMIT: %v, want SQLSTATE %s", err, tc.code)
			}
			if got := tc.sp.resolved.Load() > 0; got != tc.resolved {
				t.Errorf("asked the primary about the outcome: %v, want %v", got, tc.resolved)
			}
			// The client's connection goes on, outside a transaction.
			if conn.TxStatus() != 'I' {
				t.Errorf("transaction status %c after COMMIT", conn.TxStatus())
			}
			if _, err := conn.Exec(ctx, "UPDATE t SET v = 2").ReadAll(); err != nil {
				t.Errorf("after COMMIT: %v", err)
			}
			var pe *pgconn.PgError
			if errors.As(err, &pe) && strings.Contains(pe.Message, "password") {
				t.Error(pe.Message)
			}
		})
	}
}

// TestDeallocateAll: a pinned client's DEALLOCATE ALL (or DISCARD ALL)
// drops the server's prepared statements, the proxy's among them; the
// client's statements go on working, prepared again where they run.
func TestDeallocateAll(t *testing.T) {
	c := laggingLab(t, 0)
	p := startProxy(t, c, func(cfg *proxy.Config) { cfg.PoolSize = 1 })
	ctx := testCtx(t)
	conn := p.connect(t)
	if _, err := conn.Exec(ctx, "SET application_name = 'pinned'"); err != nil {
		t.Fatal(err)
	}
	for _, reset := range []string{"DEALLOCATE ALL", "deallocate prepare all", "DISCARD ALL"} {
		for i := range 2 {
			var v int64
			if err := conn.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v", 11).Scan(&v); err != nil {
				t.Fatalf("before %s, run %d: %v", reset, i, err)
			}
		}
		if _, err := conn.Exec(ctx, reset); err != nil {
			t.Fatal(err)
		}
		var v int64
		if err := conn.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = $1 RETURNING v", 11).Scan(&v); err != nil {
			t.Errorf("after %s: %v", reset, err)
		}
		if _, err := conn.Exec(ctx, "SET application_name = 'pinned'"); err != nil {
			t.Fatal(err)
		}
	}
}
