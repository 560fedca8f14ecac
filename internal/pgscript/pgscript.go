// Package pgscript is a scripted PostgreSQL server for tests: it speaks
// enough of the wire protocol (version 3.0, and 3.2's startup) for pgconn
// and pgx to connect and run queries, and answers every query with a
// Handler the test gives, in the manner of pgx's internal pgmock but driven
// by the SQL rather than by a fixed list of messages.
//
// A test makes failures happen exactly where it wants them: a Reply can be
// an error (a FATAL one closes the connection after sending it), can drop
// the connection instead of answering (Drop) or right after the answer,
// before ReadyForQuery (DropAfter), or can never answer (Hang) until the
// client goes away, cancels it, or the server closes.
//
// Per connection the server answers SSLRequest and GSSENCRequest with 'N'
// (no encryption), a StartupMessage with AuthenticationOk (no password is
// asked for), a few ParameterStatus messages (server_version 15.0,
// client_encoding UTF8, standard_conforming_strings on, integer_datetimes
// on, DateStyle ISO, MDY, TimeZone UTC), BackendKeyData and ReadyForQuery.
// It then serves:
//
//   - the simple protocol (Query): the whole string goes to the handler
//     once, and its Reply is the one result;
//   - the extended protocol: Parse, Bind, Describe (of a statement or of a
//     portal), Execute (with a row limit: PortalSuspended), Sync, Flush and
//     Close, with named and unnamed statements and portals. After an
//     ErrorResponse every message up to the next Sync is skipped. The
//     handler is called once per execution of a portal, at its Describe or
//     its Execute, whichever comes first; a Describe of a statement asks the
//     handler with Query.Describe set, for the columns only;
//   - CancelRequest, on a new connection, with the key BackendKeyData gave:
//     a query that Hangs on that connection ends with SQLSTATE 57014;
//   - Terminate.
//
// ReadyForQuery carries a transaction status: 'T' after a command tagged
// BEGIN or START TRANSACTION, 'I' after COMMIT, ROLLBACK, END or ABORT, 'E'
// after an error inside a transaction; a Reply's TxStatus overrides it,
// an error's too (PostgreSQL is idle after a failed COMMIT or PREPARE
// TRANSACTION: give such an error TxStatus 'I').
// The server does not enforce the status (an aborted transaction's
// statements reach the handler, which sees Query.TxStatus).
//
// Start listens on 127.0.0.1; NewServer listens nowhere. Either serves
// in-memory connections made by Dial (set as pgconn.Config.DialFunc): a
// NewServer made inside a testing/synctest bubble runs entirely inside it,
// on the bubble's fake clock, with the pgconn client.
//
// Result values are given as Go values and sent in text format, or, when
// the client asks for binary results, in binary for the types bool, int2,
// int4, int8, oid, float4, float8, and the text-like types (text, varchar,
// bpchar, name, unknown, json); any other type in binary is an error reply
// (SQLSTATE 0A000). Parameters arrive as sent; Query.Param decodes them.
package pgscript

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
)

// Type OIDs of the types the server can describe and encode.
const (
	BoolOID    uint32 = 16
	ByteaOID   uint32 = 17
	NameOID    uint32 = 19
	Int8OID    uint32 = 20
	Int2OID    uint32 = 21
	Int4OID    uint32 = 23
	TextOID    uint32 = 25
	OIDOID     uint32 = 26
	JSONOID    uint32 = 114
	Float4OID  uint32 = 700
	Float8OID  uint32 = 701
	UnknownOID uint32 = 705
	BPCharOID  uint32 = 1042
	VarcharOID uint32 = 1043
	PgLSNOID   uint32 = 3220
)

// Query is one statement to answer.
type Query struct {
	// SQL is the statement's text: a Query message's whole string, or the
	// text of the prepared statement a portal was bound to.
	SQL string
	// Params are the bound parameter values (nil for NULL), as sent.
	Params [][]byte
	// ParamFormats holds each parameter's format (0 text, 1 binary), one per
	// parameter.
	ParamFormats []int16
	// ParamOIDs are the parameter types the client gave in Parse (0 for
	// unspecified), one per parameter of the statement as far as known.
	ParamOIDs []uint32
	// Extended: the query came by the extended protocol.
	Extended bool
	// Describe: a Describe of a prepared statement asks for the columns
	// (and, optionally, the parameter types) only; nothing is executed, and
	// such a call is not counted in Server.Queries.
	Describe bool
	// Statement and Portal name the prepared statement and the portal (""
	// for the unnamed ones).
	Statement, Portal string
	// Conn numbers the connection the query came on, from 1, in the order
	// the server accepted them.
	Conn int
	// TxStatus is the connection's transaction status before the query:
	// 'I', 'T' or 'E'.
	TxStatus byte
}

// Param returns parameter i as text: as sent if in text format, else
// decoded by its type (bool, integers, floats; anything else as its raw
// bytes). A NULL or missing parameter is "".
func (q Query) Param(i int) string {
	if i < 0 || i >= len(q.Params) || q.Params[i] == nil {
		return ""
	}
	v := q.Params[i]
	if i >= len(q.ParamFormats) || q.ParamFormats[i] == 0 {
		return string(v)
	}
	var oid uint32
	if i < len(q.ParamOIDs) {
		oid = q.ParamOIDs[i]
	}
	if s, ok := decodeBinary(oid, v); ok {
		return s
	}
	return string(v)
}

// Null reports whether parameter i is NULL (or missing).
func (q Query) Null(i int) bool { return i < 0 || i >= len(q.Params) || q.Params[i] == nil }

// Column describes a result column.
type Column struct {
	Name string
	OID  uint32
}

// Error is an ErrorResponse.
type Error struct {
	// Severity is "ERROR" (the default), "FATAL" (the server closes the
	// connection after sending it) or "PANIC" (likewise).
	Severity string
	// Code is the SQLSTATE (default XX000).
	Code    string
	Message string
	Detail  string
}

func (e *Error) fatal() bool { return e.Severity == "FATAL" || e.Severity == "PANIC" }

// Reply is a handler's answer to a Query. The zero Reply answers with no
// columns and a command tag made from the statement's first word (for
// example "SET", "BEGIN", "INSERT 0 0"); an empty statement gets
// EmptyQueryResponse.
type Reply struct {
	// Columns describe the result's columns; none means a command without
	// a result (NoData in the extended protocol).
	Columns []Column
	// Rows are the result's rows, one value per column: nil for NULL, a
	// string or []byte taken as the value's text form, or a bool, integer,
	// float or fmt.Stringer, formatted as PostgreSQL would.
	Rows [][]any
	// Tag is the command tag; "" means "SELECT n" with Columns, else one
	// made from the statement's first word.
	Tag string
	// Error, if set, is sent instead of a result.
	Error *Error
	// Drop closes the connection instead of answering.
	Drop bool
	// DropAfter answers, then closes the connection before ReadyForQuery
	// (in the extended protocol, right after the portal's CommandComplete).
	DropAfter bool
	// Hang never answers: the connection waits until the client closes it,
	// sends a CancelRequest for it (an error 57014 follows) or the server
	// closes.
	Hang bool
	// TxStatus, if not 0, is the transaction status that ReadyForQuery
	// reports from now on ('I', 'T' or 'E'), after an Error too.
	TxStatus byte
	// ParamOIDs, for a Describe of a statement, are its parameter types;
	// nil means those given in Parse, and text (25) for the rest of the
	// parameters $1..$n that the SQL mentions.
	ParamOIDs []uint32
}

// Handler answers queries. It is called from each connection's goroutine,
// so concurrently when several connections are open.
type Handler func(q Query) Reply

// Rows is a reply with columns and rows.
func Rows(cols []Column, rows ...[]any) Reply { return Reply{Columns: cols, Rows: rows} }

// TextColumns are text columns with the given names.
func TextColumns(names ...string) []Column {
	cols := make([]Column, len(names))
	for i, n := range names {
		cols[i] = Column{Name: n, OID: TextOID}
	}
	return cols
}

// Row is a reply of one row of text columns (named "?column?") holding
// values.
func Row(values ...any) Reply {
	names := make([]string, len(values))
	for i := range names {
		names[i] = "?column?"
	}
	return Reply{Columns: TextColumns(names...), Rows: [][]any{values}}
}

// Tag is a reply of a command tag.
func Tag(tag string) Reply { return Reply{Tag: tag} }

// Fail is an ERROR reply.
func Fail(code, message string) Reply {
	return Reply{Error: &Error{Severity: "ERROR", Code: code, Message: message}}
}

// Fatal is a FATAL reply: the server closes the connection after it.
func Fatal(code, message string) Reply {
	return Reply{Error: &Error{Severity: "FATAL", Code: code, Message: message}}
}

// Config is what StartConfig needs.
type Config struct {
	// Handler answers queries; nil answers every one with the zero Reply.
	Handler Handler
	// Startup, if set, sees each StartupMessage's parameters (user,
	// database, application_name...) and may refuse the connection with an
	// error (sent as an ErrorResponse, FATAL unless set otherwise).
	Startup func(params map[string]string) *Error
	// Params are ParameterStatus values to send at startup in addition to
	// (or in place of) the defaults.
	Params map[string]string
}

// Server is a scripted PostgreSQL server on 127.0.0.1.
type Server struct {
	ln      net.Listener
	cfg     Config
	handler atomic.Pointer[Handler]
	done    chan struct{}
	wg      sync.WaitGroup

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closed  bool
	nextID  int
	history []string

	accepted, queries, cancels atomic.Int64
}

// Start starts a server on 127.0.0.1 on a free port that answers queries
// with h.
func Start(h Handler) (*Server, error) { return StartConfig(Config{Handler: h}) }

// StartConfig starts a server as cfg says.
func StartConfig(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("pgscript: %w", err)
	}
	s := &Server{ln: ln, cfg: cfg, done: make(chan struct{}), conns: map[*conn]struct{}{}}
	s.SetHandler(cfg.Handler)
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// NewServer makes a server that listens nowhere: it serves the in-memory
// connections Dial makes, and nothing else. Such a server, made inside a
// testing/synctest bubble, runs entirely inside it (a pgconn connected
// through Dial included), so that its tests run on the bubble's fake clock.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg, done: make(chan struct{}), conns: map[*conn]struct{}{}}
	s.SetHandler(cfg.Handler)
	return s
}

// Dial connects to the server in memory (a pipe whose writes are buffered,
// as a socket's are), whatever network and addr say: set it as a
// pgconn.Config's DialFunc. It works for servers made by Start too.
func (s *Server) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	client, server := pipe()
	if !s.serveConn(server) {
		client.Close()
		return nil, fmt.Errorf("pgscript: dial %s: %w", addr, net.ErrClosed)
	}
	return client, nil
}

// SetHandler replaces the handler for the queries that follow (nil: the
// zero Reply for each).
func (s *Server) SetHandler(h Handler) {
	if h == nil {
		h = func(Query) Reply { return Reply{} }
	}
	s.handler.Store(&h)
}

// Addr is the server's address, host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host(), strconv.Itoa(int(s.Port()))) }

// Host is the server's host, 127.0.0.1.
func (s *Server) Host() string { return "127.0.0.1" }

// Port is the server's port (5432 for a server made by NewServer, which
// has none).
func (s *Server) Port() uint16 {
	if s.ln == nil {
		return 5432
	}
	return uint16(s.ln.Addr().(*net.TCPAddr).Port)
}

// ConnString is a connection string for pgconn.ParseConfig (or pgx) that
// reaches the server without TLS (for a server made by NewServer, only
// with Dial as the DialFunc).
func (s *Server) ConnString() string {
	return "host=" + s.Host() + " port=" + strconv.Itoa(int(s.Port())) +
		" user=pgscript database=pgscript sslmode=disable connect_timeout=5"
}

// Conns counts the connections that completed their startup, a client's
// included as soon as its connect returns.
func (s *Server) Conns() int64 { return s.accepted.Load() }

// Queries counts the queries handed to the handler (Describe-only calls
// excluded).
func (s *Server) Queries() int64 { return s.queries.Load() }

// Cancels counts the CancelRequests received.
func (s *Server) Cancels() int64 { return s.cancels.Load() }

// History returns the SQL of every query handed to the handler, in order
// (Describe-only calls excluded).
func (s *Server) History() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.history...)
}

// Open counts the client connections open now.
func (s *Server) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// DropConns closes every client connection open now, as a server crash
// would; the server goes on accepting new ones.
func (s *Server) DropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.nc.Close()
	}
}

// Close stops accepting, closes every connection and waits for all of the
// server's goroutines to end. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
		if s.ln != nil {
			s.ln.Close()
		}
		for c := range s.conns {
			c.nc.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil || !s.serveConn(nc) {
			return
		}
	}
}

// serveConn serves nc on a goroutine of its own; it reports false (and
// closes nc) if the server is closed.
func (s *Server) serveConn(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return false
	}
	s.nextID++
	c := newConn(s, nc, s.nextID)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	go c.serve()
	return true
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// cancel delivers a CancelRequest to the connection with that key, if it
// is running a query (an idle one ignores it, as PostgreSQL does).
func (s *Server) cancel(pid uint32, secret []byte) {
	s.cancels.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.pid == pid && string(c.secret) == string(secret) && c.busy.Load() {
			select {
			case c.cancel <- struct{}{}:
			default:
			}
		}
	}
}

// handle calls the handler with q, counting it unless it is a Describe.
func (s *Server) handle(q Query) (r Reply) {
	if !q.Describe {
		s.queries.Add(1)
		s.mu.Lock()
		s.history = append(s.history, q.SQL)
		s.mu.Unlock()
	}
	defer func() {
		if p := recover(); p != nil {
			r = Fail("XX000", fmt.Sprintf("pgscript: handler panicked: %v", p))
		}
	}()
	return (*s.handler.Load())(q)
}
