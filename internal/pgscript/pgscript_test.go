package pgscript_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/switchyard-db/switchyard/internal/pgscript"
)

func start(t *testing.T, h pgscript.Handler) *pgscript.Server {
	t.Helper()
	s, err := pgscript.Start(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func connect(t *testing.T, s *pgscript.Server) *pgconn.PgConn {
	t.Helper()
	cfg, err := pgconn.ParseConfig(s.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func timeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or 5 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestStartupAndSimpleQuery(t *testing.T) {
	var seen atomic.Pointer[pgscript.Query]
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		seen.Store(&q)
		return pgscript.Rows(
			[]pgscript.Column{{Name: "a", OID: pgscript.Int4OID}, {Name: "b", OID: pgscript.TextOID}, {Name: "c", OID: pgscript.BoolOID}},
			[]any{1, "x", true},
			[]any{int64(-2), nil, false},
		)
	})
	conn := connect(t, s)
	if v := conn.ParameterStatus("server_version"); v != "15.0" {
		t.Errorf("server_version %q", v)
	}
	for k, want := range map[string]string{"client_encoding": "UTF8", "standard_conforming_strings": "on", "integer_datetimes": "on"} {
		if v := conn.ParameterStatus(k); v != want {
			t.Errorf("%s = %q, want %q", k, v, want)
		}
	}
	if conn.PID() == 0 || len(conn.SecretKey()) != 4 {
		t.Errorf("backend key: pid %d, key %x", conn.PID(), conn.SecretKey())
	}
	res, err := conn.Exec(timeout(t), "SELECT a, b, c FROM t").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || len(res[0].Rows) != 2 {
		t.Fatalf("results %+v", res)
	}
	r := res[0]
	if got := r.CommandTag.String(); got != "SELECT 2" {
		t.Errorf("tag %q", got)
	}
	if string(r.Rows[0][0]) != "1" || string(r.Rows[0][1]) != "x" || string(r.Rows[0][2]) != "t" {
		t.Errorf("row 0 %q", r.Rows[0])
	}
	if string(r.Rows[1][0]) != "-2" || r.Rows[1][1] != nil || string(r.Rows[1][2]) != "f" {
		t.Errorf("row 1 %q", r.Rows[1])
	}
	if r.FieldDescriptions[0].DataTypeOID != pgscript.Int4OID || r.FieldDescriptions[1].Name != "b" {
		t.Errorf("fields %+v", r.FieldDescriptions)
	}
	q := seen.Load()
	if q.SQL != "SELECT a, b, c FROM t" || q.Extended || q.Conn != 1 || q.TxStatus != 'I' {
		t.Errorf("query %+v", q)
	}
	if s.Conns() != 1 || s.Queries() != 1 {
		t.Errorf("conns %d queries %d", s.Conns(), s.Queries())
	}
	if h := s.History(); len(h) != 1 || h[0] != "SELECT a, b, c FROM t" {
		t.Errorf("history %q", h)
	}
}

func TestDefaultTagsAndEmptyQuery(t *testing.T) {
	s := start(t, nil)
	conn := connect(t, s)
	for sql, want := range map[string]string{
		"SET x = 1":                  "SET",
		"insert into t values (1)":   "INSERT 0 0",
		"UPDATE t SET a = 1":         "UPDATE 0",
		"  (SELECT 1)":               "SELECT 0",
		"START TRANSACTION":          "START TRANSACTION",
		"COMMIT":                     "COMMIT",
		"DELETE FROM t WHERE a = $1": "DELETE 0",
	} {
		res, err := conn.Exec(timeout(t), sql).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if got := res[0].CommandTag.String(); got != want {
			t.Errorf("%q: tag %q, want %q", sql, got, want)
		}
	}
	res, err := conn.Exec(timeout(t), "  ").ReadAll()
	if err != nil || len(res) != 1 || res[0].CommandTag.String() != "" {
		t.Errorf("empty query: %v %+v", err, res)
	}
	if r := conn.ExecParams(timeout(t), "", nil, nil, nil, nil).Read(); r.Err != nil || r.CommandTag.String() != "" {
		t.Errorf("empty extended query: %v %q", r.Err, r.CommandTag)
	}
}

func TestExecParamsFormats(t *testing.T) {
	var got atomic.Pointer[pgscript.Query]
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		got.Store(&q)
		return pgscript.Rows([]pgscript.Column{
			{Name: "i4", OID: pgscript.Int4OID}, {Name: "i8", OID: pgscript.Int8OID}, {Name: "i2", OID: pgscript.Int2OID},
			{Name: "b", OID: pgscript.BoolOID}, {Name: "t", OID: pgscript.TextOID}, {Name: "f", OID: pgscript.Float8OID},
			{Name: "o", OID: pgscript.OIDOID}, {Name: "f4", OID: pgscript.Float4OID},
		}, []any{-7, int64(1) << 40, 3, "t", "héllo", 1.5, uint32(99), float32(0.25)}, []any{nil, nil, nil, nil, nil, nil, nil, nil})
	})
	conn := connect(t, s)
	i8 := binary.BigEndian.AppendUint64(nil, uint64(42))
	r := conn.ExecParams(timeout(t), "SELECT $1::int8, $2, $3",
		[][]byte{i8, []byte("text"), nil}, []uint32{pgscript.Int8OID, pgscript.TextOID, 0}, []int16{1, 0, 0}, []int16{1}).Read()
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	q := got.Load()
	if !q.Extended || q.Param(0) != "42" || q.Param(1) != "text" || !q.Null(2) || q.Null(1) || q.Param(2) != "" || q.Param(7) != "" {
		t.Errorf("params: %+v", q)
	}
	row := r.Rows[0]
	if v := int32(binary.BigEndian.Uint32(row[0])); v != -7 {
		t.Errorf("int4 %d", v)
	}
	if v := int64(binary.BigEndian.Uint64(row[1])); v != 1<<40 {
		t.Errorf("int8 %d", v)
	}
	if v := int16(binary.BigEndian.Uint16(row[2])); v != 3 {
		t.Errorf("int2 %d", v)
	}
	if len(row[3]) != 1 || row[3][0] != 1 {
		t.Errorf("bool %x", row[3])
	}
	if string(row[4]) != "héllo" {
		t.Errorf("text %q", row[4])
	}
	if v := math.Float64frombits(binary.BigEndian.Uint64(row[5])); v != 1.5 {
		t.Errorf("float8 %v", v)
	}
	if v := binary.BigEndian.Uint32(row[6]); v != 99 {
		t.Errorf("oid %d", v)
	}
	if v := math.Float32frombits(binary.BigEndian.Uint32(row[7])); v != 0.25 {
		t.Errorf("float4 %v", v)
	}
	for i, v := range r.Rows[1] {
		if v != nil {
			t.Errorf("column %d of the NULL row: %x", i, v)
		}
	}
	for _, f := range r.FieldDescriptions {
		if f.Format != 1 {
			t.Errorf("%s: format %d", f.Name, f.Format)
		}
	}

	// Text results, each column's format given.
	r = conn.ExecParams(timeout(t), "SELECT 1", nil, nil, nil, []int16{0, 0, 0, 0, 0, 0, 0, 0}).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "-7" || string(r.Rows[0][5]) != "1.5" {
		t.Errorf("text results: %v %q", r.Err, r.Rows)
	}
}

func TestBinaryParamsDecoded(t *testing.T) {
	var got atomic.Pointer[pgscript.Query]
	s := start(t, func(q pgscript.Query) pgscript.Reply { got.Store(&q); return pgscript.Tag("SELECT 0") })
	conn := connect(t, s)
	params := [][]byte{
		{1},
		binary.BigEndian.AppendUint16(nil, uint16(0xFFFF)), // -1
		binary.BigEndian.AppendUint32(nil, 123456),
		binary.BigEndian.AppendUint32(nil, 7),
		binary.BigEndian.AppendUint32(nil, math.Float32bits(2.5)),
		binary.BigEndian.AppendUint64(nil, math.Float64bits(-0.5)),
		[]byte("raw"),
	}
	oids := []uint32{pgscript.BoolOID, pgscript.Int2OID, pgscript.Int4OID, pgscript.OIDOID, pgscript.Float4OID, pgscript.Float8OID, pgscript.ByteaOID}
	if r := conn.ExecParams(timeout(t), "SELECT $1, $2, $3, $4, $5, $6, $7", params, oids, []int16{1}, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
	q := got.Load()
	want := []string{"t", "-1", "123456", "7", "2.5", "-0.5", "raw"}
	for i, w := range want {
		if v := q.Param(i); v != w {
			t.Errorf("param %d = %q, want %q", i, v, w)
		}
	}
}

func TestBinaryUnsupported(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		return pgscript.Rows([]pgscript.Column{{Name: "x", OID: 1700}}, []any{"1.5"})
	})
	conn := connect(t, s)
	r := conn.ExecParams(timeout(t), "SELECT 1.5::numeric", nil, nil, nil, []int16{1}).Read()
	if pgCode(r.Err) != "0A000" {
		t.Errorf("binary numeric: %v", r.Err)
	}
	// The connection goes on.
	if r := conn.ExecParams(timeout(t), "SELECT 1.5::numeric", nil, nil, nil, nil).Read(); r.Err != nil || string(r.Rows[0][0]) != "1.5" {
		t.Errorf("text numeric: %v %q", r.Err, r.Rows)
	}
}

func TestBadValueFails(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		if q.SQL == "short" {
			return pgscript.Rows(pgscript.TextColumns("a", "b"), []any{"1"})
		}
		return pgscript.Rows([]pgscript.Column{{Name: "x", OID: pgscript.Int4OID}}, []any{"nope"})
	})
	conn := connect(t, s)
	if r := conn.ExecParams(timeout(t), "SELECT", nil, nil, nil, []int16{1}).Read(); pgCode(r.Err) != "22P02" {
		t.Errorf("bad int4: %v", r.Err)
	}
	if _, err := conn.Exec(timeout(t), "short").ReadAll(); pgCode(err) != "XX000" {
		t.Errorf("short row: %v", err)
	}
	if r := conn.ExecParams(timeout(t), "short", nil, nil, nil, nil).Read(); pgCode(r.Err) != "XX000" {
		t.Errorf("short row, extended: %v", r.Err)
	}
}

func TestPrepareDescribesStatement(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		switch {
		case q.SQL == "SELECT typed":
			return pgscript.Reply{ParamOIDs: []uint32{pgscript.Int8OID}, Columns: pgscript.TextColumns("v")}
		case q.SQL == "UPDATE t SET a = $1":
			return pgscript.Tag("UPDATE 3")
		case q.Describe:
			return pgscript.Reply{Columns: []pgscript.Column{{Name: "n", OID: pgscript.Int8OID}}}
		}
		return pgscript.Rows([]pgscript.Column{{Name: "n", OID: pgscript.Int8OID}}, []any{q.Param(0) + q.Param(1)})
	})
	conn := connect(t, s)
	sd, err := conn.Prepare(timeout(t), "s1", "SELECT $1::int, $3 -- and $2", []uint32{pgscript.Int4OID})
	if err != nil {
		t.Fatal(err)
	}
	if len(sd.ParamOIDs) != 3 || sd.ParamOIDs[0] != pgscript.Int4OID || sd.ParamOIDs[1] != pgscript.TextOID || sd.ParamOIDs[2] != pgscript.TextOID {
		t.Errorf("param OIDs %v", sd.ParamOIDs)
	}
	if len(sd.Fields) != 1 || sd.Fields[0].Name != "n" || sd.Fields[0].DataTypeOID != pgscript.Int8OID {
		t.Errorf("fields %+v", sd.Fields)
	}
	if s.Queries() != 0 {
		t.Errorf("a Describe counted as a query")
	}
	r := conn.ExecPrepared(timeout(t), "s1", [][]byte{[]byte("1"), []byte("2"), nil}, nil, nil).Read()
	if r.Err != nil || string(r.Rows[0][0]) != "12" {
		t.Errorf("exec prepared: %v %q", r.Err, r.Rows)
	}
	// Again: a named statement lives on.
	if r := conn.ExecPrepared(timeout(t), "s1", [][]byte{[]byte("3"), nil, nil}, nil, nil).Read(); r.Err != nil || string(r.Rows[0][0]) != "3" {
		t.Errorf("exec prepared again: %v %q", r.Err, r.Rows)
	}
	if sd, err := conn.Prepare(timeout(t), "typed", "SELECT typed", nil); err != nil || len(sd.ParamOIDs) != 1 || sd.ParamOIDs[0] != pgscript.Int8OID {
		t.Errorf("typed: %v %+v", err, sd)
	}
	if sd, err := conn.Prepare(timeout(t), "upd", "UPDATE t SET a = $1", nil); err != nil || len(sd.Fields) != 0 {
		t.Errorf("no data: %v %+v", err, sd)
	}
	if r := conn.ExecPrepared(timeout(t), "upd", [][]byte{[]byte("1")}, nil, nil).Read(); r.Err != nil || r.CommandTag.String() != "UPDATE 3" {
		t.Errorf("update: %v %q", r.Err, r.CommandTag)
	}
	if _, err := conn.Prepare(timeout(t), "s1", "SELECT 2", nil); pgCode(err) != "42P05" {
		t.Errorf("duplicate statement: %v", err)
	}
	if r := conn.ExecPrepared(timeout(t), "nope", nil, nil, nil).Read(); pgCode(r.Err) != "26000" {
		t.Errorf("unknown statement: %v", r.Err)
	}
	if err := conn.Deallocate(timeout(t), "s1"); err != nil {
		t.Fatal(err)
	}
	if r := conn.ExecPrepared(timeout(t), "s1", nil, nil, nil).Read(); pgCode(r.Err) != "26000" {
		t.Errorf("deallocated statement: %v", r.Err)
	}
}

func TestPipelineFlushAndSync(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply { return pgscript.Row(q.SQL) })
	conn := connect(t, s)
	ctx := timeout(t)
	pl := conn.StartPipeline(ctx)
	pl.SendQueryParams("first", nil, nil, nil, nil)
	pl.SendFlushRequest()
	if err := pl.Flush(); err != nil {
		t.Fatal(err)
	}
	// Without a Sync, only the Flush makes the server send this.
	res, err := pl.GetResults()
	if err != nil {
		t.Fatal(err)
	}
	rr := res.(*pgconn.ResultReader).Read()
	if rr.Err != nil || string(rr.Rows[0][0]) != "first" {
		t.Fatalf("first: %v %q", rr.Err, rr.Rows)
	}
	pl.SendQueryParams("second", nil, nil, nil, nil)
	pl.SendPrepare("ps", "third $1", nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	res, err = pl.GetResults()
	if err != nil {
		t.Fatal(err)
	}
	if rr := res.(*pgconn.ResultReader).Read(); rr.Err != nil || string(rr.Rows[0][0]) != "second" {
		t.Fatalf("second: %v %q", rr.Err, rr.Rows)
	}
	res, err = pl.GetResults()
	if sd, ok := res.(*pgconn.StatementDescription); err != nil || !ok || len(sd.ParamOIDs) != 1 {
		t.Fatalf("prepare: %v %#v", err, res)
	}
	res, err = pl.GetResults()
	if _, ok := res.(*pgconn.PipelineSync); err != nil || !ok {
		t.Fatalf("sync: %v %#v", err, res)
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	if conn.TxStatus() != 'I' {
		t.Errorf("tx status %c", conn.TxStatus())
	}
}

func TestErrorSkipsToSync(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		if q.SQL == "bad" {
			return pgscript.Fail("42601", "syntax error")
		}
		return pgscript.Row("ok")
	})
	conn := connect(t, s)
	pl := conn.StartPipeline(timeout(t))
	pl.SendQueryParams("bad", nil, nil, nil, nil)
	pl.SendQueryParams("skipped", nil, nil, nil, nil)
	pl.SendPipelineSync()
	pl.SendQueryParams("after", nil, nil, nil, nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := pl.GetResults(); pgCode(err) != "42601" {
		t.Fatalf("bad: %v", err)
	}
	// The skipped query and the Sync that ends the failed part.
	var results []any
	for range 10 {
		res, err := pl.GetResults()
		if err != nil {
			continue // the skipped query's result is an error in pgconn's bookkeeping
		}
		if res == nil {
			break
		}
		results = append(results, res)
		if rr, ok := res.(*pgconn.ResultReader); ok {
			if r := rr.Read(); r.Err != nil || string(r.Rows[0][0]) != "ok" {
				t.Errorf("after: %v %q", r.Err, r.Rows)
			}
		}
	}
	if err := pl.Close(); err != nil {
		t.Fatal(err)
	}
	if h := s.History(); strings.Join(h, ",") != "bad,after" {
		t.Errorf("history %q", h)
	}
	if len(results) != 3 { // sync, after's reader, sync
		t.Errorf("results %#v", results)
	}
}

// frontend connects a raw protocol client.
func frontend(t *testing.T, s *pgscript.Server) (*pgproto3.Frontend, net.Conn) {
	t.Helper()
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	fe := pgproto3.NewFrontend(nc, nc)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return fe, nc
		}
	}
}

// expect receives messages and checks their types (by a sample value).
func expect(t *testing.T, fe *pgproto3.Frontend, want ...pgproto3.BackendMessage) []pgproto3.BackendMessage {
	t.Helper()
	var got []pgproto3.BackendMessage
	for i, w := range want {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typeName(msg) != typeName(w) {
			t.Fatalf("message %d: %T %+v, want %T", i, msg, msg, w)
		}
		got = append(got, copyMsg(msg))
	}
	return got
}

func typeName(m any) string { return reflect.TypeOf(m).String() }

func copyMsg(m pgproto3.BackendMessage) pgproto3.BackendMessage {
	switch m := m.(type) {
	case *pgproto3.DataRow:
		c := &pgproto3.DataRow{}
		for _, v := range m.Values {
			c.Values = append(c.Values, append([]byte(nil), v...))
		}
		return c
	case *pgproto3.CommandComplete:
		return &pgproto3.CommandComplete{CommandTag: append([]byte(nil), m.CommandTag...)}
	case *pgproto3.ErrorResponse:
		c := *m
		return &c
	case *pgproto3.ReadyForQuery:
		c := *m
		return &c
	}
	return m
}

func TestNamedPortalsAndRowLimits(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		return pgscript.Rows(pgscript.TextColumns("n"), []any{"1"}, []any{"2"}, []any{"3"})
	})
	fe, _ := frontend(t, s)
	fe.Send(&pgproto3.Parse{Name: "s1", Query: "SELECT n FROM three"})
	fe.Send(&pgproto3.Bind{DestinationPortal: "p1", PreparedStatement: "s1"})
	fe.Send(&pgproto3.Describe{ObjectType: 'P', Name: "p1"})
	fe.Send(&pgproto3.Execute{Portal: "p1", MaxRows: 2})
	fe.Send(&pgproto3.Execute{Portal: "p1", MaxRows: 2})
	fe.Send(&pgproto3.Execute{Portal: "p1"})
	fe.Send(&pgproto3.Close{ObjectType: 'P', Name: "p1"})
	fe.Send(&pgproto3.Execute{Portal: "p1"})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	got := expect(t, fe,
		&pgproto3.ParseComplete{}, &pgproto3.BindComplete{}, &pgproto3.RowDescription{},
		&pgproto3.DataRow{}, &pgproto3.DataRow{}, &pgproto3.PortalSuspended{},
		&pgproto3.DataRow{}, &pgproto3.CommandComplete{},
		&pgproto3.CommandComplete{}, // the finished portal again
		&pgproto3.CloseComplete{},
		&pgproto3.ErrorResponse{}, // no such portal any more
		&pgproto3.ReadyForQuery{})
	if v := string(got[6].(*pgproto3.DataRow).Values[0]); v != "3" {
		t.Errorf("third row %q", v)
	}
	if tag := string(got[7].(*pgproto3.CommandComplete).CommandTag); tag != "SELECT 3" {
		t.Errorf("tag %q", tag)
	}
	if code := got[10].(*pgproto3.ErrorResponse).Code; code != "34000" {
		t.Errorf("closed portal: %s", code)
	}
	if s.Queries() != 1 {
		t.Errorf("one portal, %d handler calls", s.Queries())
	}

	// Errors: a portal already there, a Describe of an unknown portal or
	// statement, an unsupported message; each skips to Sync.
	fe.Send(&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "s1"})
	fe.Send(&pgproto3.Bind{DestinationPortal: "p2", PreparedStatement: "s1"})
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.Describe{ObjectType: 'P', Name: "nope"})
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.Describe{ObjectType: 'S', Name: "nope"})
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.FunctionCall{Function: 1})
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.Bind{PreparedStatement: "s1", ParameterFormatCodes: []int16{0, 1}, Parameters: [][]byte{nil}})
	fe.Send(&pgproto3.Sync{})
	fe.Send(&pgproto3.Bind{PreparedStatement: "s1", ResultFormatCodes: []int16{7}})
	fe.Send(&pgproto3.Describe{ObjectType: 'P'})
	fe.Send(&pgproto3.Sync{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	got = expect(t, fe,
		&pgproto3.BindComplete{}, &pgproto3.ErrorResponse{}, &pgproto3.ReadyForQuery{},
		&pgproto3.ErrorResponse{}, &pgproto3.ReadyForQuery{},
		&pgproto3.ErrorResponse{}, &pgproto3.ReadyForQuery{},
		&pgproto3.ErrorResponse{}, &pgproto3.ReadyForQuery{},
		&pgproto3.ErrorResponse{}, &pgproto3.ReadyForQuery{},
		&pgproto3.BindComplete{}, &pgproto3.ErrorResponse{}, &pgproto3.ReadyForQuery{})
	for i, want := range map[int]string{1: "42P03", 3: "34000", 5: "26000", 7: "0A000", 9: "08P01", 12: "08P01"} {
		if code := got[i].(*pgproto3.ErrorResponse).Code; code != want {
			t.Errorf("message %d: %s, want %s", i, code, want)
		}
	}
}

func TestGSSAndSSLRequestsRefused(t *testing.T) {
	s := start(t, nil)
	nc, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	for _, code := range []uint32{80877104, 80877103} { // GSSENCRequest, SSLRequest
		req := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 8), code)
		if _, err := nc.Write(req); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := io.ReadFull(nc, b); err != nil || b[0] != 'N' {
			t.Fatalf("answer %q %v", b, err)
		}
	}
	// pgconn's sslmode=prefer asks for TLS, is refused, and goes on in
	// plain text.
	cfg, err := pgconn.ParseConfig(strings.Replace(s.ConnString(), "sslmode=disable", "sslmode=prefer", 1))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.ConnectConfig(timeout(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(context.Background())
}

func TestProtocol32(t *testing.T) {
	s := start(t, nil)
	cfg, err := pgconn.ParseConfig(s.ConnString() + " max_protocol_version=3.2 min_protocol_version=3.2")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgconn.ConnectConfig(timeout(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(timeout(t), "SELECT 1").ReadAll(); err != nil {
		t.Fatal(err)
	}
}

func TestStartupRefused(t *testing.T) {
	s, err := pgscript.StartConfig(pgscript.Config{
		Startup: func(params map[string]string) *pgscript.Error {
			if params["user"] != "pgscript" {
				return &pgscript.Error{Code: "28000", Message: "who?"}
			}
			if params["application_name"] == "refuse" {
				return &pgscript.Error{Code: "57P03", Message: "the database system is starting up"}
			}
			return nil
		},
		Params: map[string]string{"server_version": "16.1", "in_hot_standby": "on"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cfg, _ := pgconn.ParseConfig(s.ConnString() + " application_name=refuse")
	if _, err := pgconn.ConnectConfig(timeout(t), cfg); pgCode(err) != "57P03" {
		t.Errorf("refused: %v", err)
	}
	cfg, _ = pgconn.ParseConfig(s.ConnString())
	conn, err := pgconn.ConnectConfig(timeout(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if v := conn.ParameterStatus("server_version"); v != "16.1" {
		t.Errorf("server_version %q", v)
	}
	if v := conn.ParameterStatus("in_hot_standby"); v != "on" {
		t.Errorf("in_hot_standby %q", v)
	}
	if s.Conns() != 1 {
		t.Errorf("conns %d", s.Conns())
	}
}

func TestFatalClosesConnection(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		return pgscript.Fatal("57P01", "terminating connection due to administrator command")
	})
	conn := connect(t, s)
	_, err := conn.Exec(timeout(t), "SELECT 1").ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57P01" || pgErr.Severity != "FATAL" {
		t.Fatalf("err %v", err)
	}
	if !conn.IsClosed() {
		t.Error("pgconn kept a connection the server ended")
	}
	eventually(t, "the server to close its end", func() bool { return s.Open() == 0 })

	// Extended protocol too.
	conn = connect(t, s)
	if r := conn.ExecParams(timeout(t), "SELECT 1", nil, nil, nil, nil).Read(); pgCode(r.Err) != "57P01" {
		t.Fatalf("extended: %v", r.Err)
	}
	eventually(t, "the server to close its end", func() bool { return s.Open() == 0 })
}

func TestDrop(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply { return pgscript.Reply{Drop: true} })
	conn := connect(t, s)
	if _, err := conn.Exec(timeout(t), "SELECT 1").ReadAll(); err == nil || pgCode(err) != "" {
		t.Errorf("simple: %v", err)
	}
	conn = connect(t, s)
	if r := conn.ExecParams(timeout(t), "SELECT 1", nil, nil, nil, nil).Read(); r.Err == nil || pgCode(r.Err) != "" {
		t.Errorf("extended: %v", r.Err)
	}
	conn = connect(t, s)
	if _, err := conn.Prepare(timeout(t), "", "SELECT 1", nil); err == nil {
		t.Error("describe: no error")
	}
	eventually(t, "every connection to close", func() bool { return s.Open() == 0 })
	if s.Queries() != 2 {
		t.Errorf("queries %d", s.Queries())
	}
}

func TestDropAfterAnswer(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		return pgscript.Reply{Columns: pgscript.TextColumns("v"), Rows: [][]any{{"x"}}, DropAfter: true}
	})
	conn := connect(t, s)
	// Simple protocol: the result arrives, ReadyForQuery does not.
	mrr := conn.Exec(timeout(t), "SELECT 1")
	if !mrr.NextResult() {
		t.Fatal(mrr.Close())
	}
	tag, err := mrr.ResultReader().Close()
	if err != nil || tag.String() != "SELECT 1" {
		t.Errorf("result: %v %q", err, tag)
	}
	if err := mrr.Close(); err == nil {
		t.Error("no error after the drop")
	}

	// Pipeline: the portal's result arrives, the Sync fails.
	conn = connect(t, s)
	pl := conn.StartPipeline(timeout(t))
	pl.SendQueryParams("SELECT 1", nil, nil, nil, nil)
	if err := pl.Sync(); err != nil {
		t.Fatal(err)
	}
	res, err := pl.GetResults()
	if err != nil {
		t.Fatal(err)
	}
	if tag, err := res.(*pgconn.ResultReader).Close(); err != nil || tag.String() != "SELECT 1" {
		t.Errorf("pipelined result: %v %q", err, tag)
	}
	if _, err := pl.GetResults(); err == nil {
		t.Error("the Sync after the drop succeeded")
	}
	pl.Close()
}

func TestHangUntilClientLeaves(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply { return pgscript.Reply{Hang: true} })
	conn := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := conn.Exec(ctx, "SELECT pg_sleep(1000)").ReadAll(); !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
		t.Errorf("err %v", err)
	}
	eventually(t, "the server to see the client gone", func() bool { return s.Open() == 0 })
}

func TestHangCanceled(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		if strings.HasPrefix(q.SQL, "hang") {
			return pgscript.Reply{Hang: true}
		}
		return pgscript.Row(q.SQL)
	})
	conn := connect(t, s)
	for _, extended := range []bool{false, true} {
		before := s.Queries()
		errc := make(chan error, 1)
		go func() {
			if extended {
				errc <- conn.ExecParams(timeout(t), "hang extended", nil, nil, nil, nil).Read().Err
				return
			}
			_, err := conn.Exec(timeout(t), "hang simple").ReadAll()
			errc <- err
		}()
		eventually(t, "the query to reach the server", func() bool { return s.Queries() > before })
		if err := conn.CancelRequest(timeout(t)); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; pgCode(err) != "57014" {
			t.Fatalf("extended %v: %v", extended, err)
		}
		// The connection goes on.
		if r := conn.ExecParams(timeout(t), "after", nil, nil, nil, nil).Read(); r.Err != nil || string(r.Rows[0][0]) != "after" {
			t.Fatalf("after the cancel: %v", r.Err)
		}
	}
	if s.Cancels() != 2 {
		t.Errorf("cancels %d", s.Cancels())
	}
	// A cancel with the wrong key, or for an idle connection, does nothing.
	other := connect(t, s)
	if err := other.CancelRequest(timeout(t)); err != nil {
		t.Fatal(err)
	}
	if r := other.ExecParams(timeout(t), "still", nil, nil, nil, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
}

func TestTxStatus(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		switch q.SQL {
		case "bad":
			return pgscript.Fail("22012", "division by zero")
		case "force":
			return pgscript.Reply{TxStatus: 'T'}
		}
		return pgscript.Reply{}
	})
	conn := connect(t, s)
	step := func(sql string, extended bool, want byte) {
		t.Helper()
		if extended {
			conn.ExecParams(timeout(t), sql, nil, nil, nil, nil).Read()
		} else {
			conn.Exec(timeout(t), sql).ReadAll()
		}
		if got := conn.TxStatus(); got != want {
			t.Errorf("after %q: %c, want %c", sql, got, want)
		}
	}
	step("BEGIN", false, 'T')
	step("SELECT 1", true, 'T')
	step("bad", true, 'E')
	step("ROLLBACK", false, 'I')
	step("bad", false, 'I') // outside a transaction
	step("START TRANSACTION", true, 'T')
	step("bad", false, 'E')
	step("COMMIT", true, 'I')
	step("force", false, 'T')
	step("END", false, 'I')
}

// An error whose Reply sets TxStatus leaves the connection in that status:
// a failed COMMIT or PREPARE TRANSACTION leaves PostgreSQL idle, not in a
// failed transaction.
func TestTxStatusAfterAnError(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply {
		if q.SQL == "PREPARE TRANSACTION 'x'" {
			r := pgscript.Fail("23505", "duplicate key value violates unique constraint")
			r.TxStatus = 'I'
			return r
		}
		return pgscript.Reply{}
	})
	conn := connect(t, s)
	for _, extended := range []bool{false, true} {
		if _, err := conn.Exec(timeout(t), "BEGIN").ReadAll(); err != nil || conn.TxStatus() != 'T' {
			t.Fatalf("BEGIN: %v, %c", err, conn.TxStatus())
		}
		var err error
		if extended {
			err = conn.ExecParams(timeout(t), "PREPARE TRANSACTION 'x'", nil, nil, nil, nil).Read().Err
		} else {
			_, err = conn.Exec(timeout(t), "PREPARE TRANSACTION 'x'").ReadAll()
		}
		if pgCode(err) != "23505" {
			t.Errorf("extended %v: %v", extended, err)
		}
		if got := conn.TxStatus(); got != 'I' {
			t.Errorf("extended %v: status %c after the error, want I", extended, got)
		}
	}
}

func TestHandlerPanicIsAnError(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply { panic("boom") })
	conn := connect(t, s)
	if _, err := conn.Exec(timeout(t), "x").ReadAll(); pgCode(err) != "XX000" || !strings.Contains(err.Error(), "boom") {
		t.Errorf("err %v", err)
	}
}

func TestSetHandlerAndDropConns(t *testing.T) {
	s := start(t, func(q pgscript.Query) pgscript.Reply { return pgscript.Row("one") })
	conn := connect(t, s)
	if r := conn.ExecParams(timeout(t), "q", nil, nil, nil, nil).Read(); string(r.Rows[0][0]) != "one" {
		t.Fatalf("%v %q", r.Err, r.Rows)
	}
	s.SetHandler(func(q pgscript.Query) pgscript.Reply { return pgscript.Row("two") })
	if r := conn.ExecParams(timeout(t), "q", nil, nil, nil, nil).Read(); string(r.Rows[0][0]) != "two" {
		t.Fatalf("%v %q", r.Err, r.Rows)
	}
	if s.Open() != 1 {
		t.Errorf("open %d", s.Open())
	}
	s.DropConns()
	eventually(t, "the connection to close", func() bool { return s.Open() == 0 })
	if r := conn.ExecParams(timeout(t), "q", nil, nil, nil, nil).Read(); r.Err == nil {
		t.Error("a dropped connection answered")
	}
	conn = connect(t, s) // still accepting
	if r := conn.ExecParams(timeout(t), "q", nil, nil, nil, nil).Read(); r.Err != nil {
		t.Fatal(r.Err)
	}
	if s.Conns() != 2 {
		t.Errorf("conns %d", s.Conns())
	}
}

func TestAddress(t *testing.T) {
	s := start(t, nil)
	if s.Host() != "127.0.0.1" || s.Port() == 0 || s.Addr() != net.JoinHostPort(s.Host(), strconv.Itoa(int(s.Port()))) {
		t.Errorf("host %s port %d addr %s", s.Host(), s.Port(), s.Addr())
	}
	cfg, err := pgconn.ParseConfig(s.ConnString())
	if err != nil || cfg.Host != "127.0.0.1" || cfg.Port != s.Port() || cfg.TLSConfig != nil {
		t.Errorf("config %v %+v", err, cfg)
	}
}

// pgscriptGoroutines counts goroutines running the package's code.
func pgscriptGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "internal/pgscript.(*") && !strings.Contains(g, "_test.go") {
			n++
		}
	}
	return n
}

func TestCloseWaitsForEveryGoroutine(t *testing.T) {
	s, err := pgscript.Start(func(q pgscript.Query) pgscript.Reply {
		if q.SQL == "hang" {
			return pgscript.Reply{Hang: true}
		}
		return pgscript.Reply{}
	})
	if err != nil {
		t.Fatal(err)
	}
	idle := connect(t, s)
	_ = idle
	hung := connect(t, s)
	errc := make(chan error, 1)
	go func() { _, err := hung.Exec(context.Background(), "hang").ReadAll(); errc <- err }()
	eventually(t, "the hanging query", func() bool { return s.Queries() == 1 })
	// A connection still in its startup.
	raw, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	s.Close()
	// Every goroutine has signalled its end when Close returns; give the
	// runtime a moment to take them off its list.
	eventually(t, "no goroutine left after Close", func() bool { return pgscriptGoroutines() == 0 })
	if err := <-errc; err == nil {
		t.Error("the hung query succeeded")
	}
	s.Close() // again: nothing happens
	if _, err := net.Dial("tcp", s.Addr()); err == nil {
		t.Error("still accepting after Close")
	}
}

// Conns counts a connection as soon as the client's connect returns: a
// test may number the connection it just made by it.
func TestConnsCountsAConnectionOnceConnected(t *testing.T) {
	synctest.Test(t, testConnsCounts)
}

func testConnsCounts(t *testing.T) {
	s := pgscript.NewServer(pgscript.Config{})
	defer s.Close()
	cfg, _ := pgconn.ParseConfig(s.ConnString())
	cfg.DialFunc = s.Dial
	for i := int64(1); i <= 500; i++ {
		conn, err := pgconn.ConnectConfig(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if n := s.Conns(); n != i {
			t.Fatalf("connection %d made, Conns %d", i, n)
		}
		defer conn.Close(context.Background())
	}
}
