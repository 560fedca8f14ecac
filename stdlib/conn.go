package stdlib

import (
	"context"
	"database/sql/driver"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/internal/classify"
)

// classifier tells statements that change session state apart (the
// write functions a DB knows of make no difference to that).
var classifier = classify.New(nil, 0)

// cleanupTimeout bounds the clean-up of a server connection (DISCARD ALL and
// the like), which must happen even when the caller's context has ended.
const cleanupTimeout = 5 * time.Second

// resultFormats asks for binary results only for the types whose driver
// values pgx's stdlib makes from binary (the same list as pgx's stdlib), so
// that every other type arrives as the text PostgreSQL prints.
var resultFormats = pgx.QueryResultFormatsByOID{
	pgtype.BoolOID:        1,
	pgtype.ByteaOID:       1,
	pgtype.CIDOID:         1,
	pgtype.DateOID:        1,
	pgtype.Float4OID:      1,
	pgtype.Float8OID:      1,
	pgtype.Int2OID:        1,
	pgtype.Int4OID:        1,
	pgtype.Int8OID:        1,
	pgtype.OIDOID:         1,
	pgtype.TimestampOID:   1,
	pgtype.TimestamptzOID: 1,
	pgtype.XIDOID:         1,
}

// conn is a database/sql connection. It holds no server connection until it
// needs one: statements are routed by the DB one by one. A transaction holds
// the DB's transaction; a statement that changes session state pins the
// conn to a primary connection (pinned) until database/sql resets or closes
// it. database/sql uses a conn from one goroutine at a time.
type conn struct {
	db     *switchyard.DB
	shapes *shapes          // the connector's
	pinned *switchyard.Conn // set from the first session-state statement until reset
	tx     *tx              // the transaction under way, if any
}

var (
	_ driver.Conn               = (*conn)(nil)
	_ driver.ConnBeginTx        = (*conn)(nil)
	_ driver.ConnPrepareContext = (*conn)(nil)
	_ driver.ExecerContext      = (*conn)(nil)
	_ driver.QueryerContext     = (*conn)(nil)
	_ driver.Pinger             = (*conn)(nil)
	_ driver.SessionResetter    = (*conn)(nil)
	_ driver.Validator          = (*conn)(nil)
	_ driver.NamedValueChecker  = (*conn)(nil)
)

// querier is what runs a statement: the DB, a transaction, a pinned
// connection.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// target picks where query runs: the transaction under way, the pinned
// connection (pinning the conn first if query changes session state), or
// the DB. kind is query's classification; pinned reports a pinned
// connection.
func (c *conn) target(ctx context.Context, query string) (q querier, kind classify.Kind, pinned bool, err error) {
	st := classifier.Analyze(query)
	kind = st.Kind
	if c.tx != nil {
		c.tx.saw(st)
		return c.tx.tx, kind, c.tx.pinned, nil
	}
	if c.pinned == nil && kind == classify.Session {
		if err := c.pin(ctx); err != nil {
			return nil, kind, false, err
		}
	}
	if c.pinned != nil {
		return c.pinned, kind, true, nil
	}
	return c.db, kind, false, nil
}

// ExecContext runs query where target says.
func (c *conn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	q, _, _, err := c.target(ctx, query)
	if err != nil {
		return nil, err
	}
	tag, err := q.Exec(ctx, query, namedArgs(args, 0)...)
	if err != nil {
		return nil, err
	}
	return driver.RowsAffected(tag.RowsAffected()), nil
}

// QueryContext runs query where target says and reads its first row (or its
// end), as pgx's stdlib does, so that its columns are known. The result
// formats pgx's stdlib asks for go along where they change a result (see
// shapes).
func (c *conn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, _, pinned, err := c.target(ctx, query)
	if err != nil {
		return nil, err
	}
	a := namedArgs(args, 1)
	a[0] = resultFormats
	routed := c.tx == nil && !pinned
	learn := false
	if routed {
		needs, known := c.shapes.get(query)
		learn = !known
		if known && !needs {
			a = a[1:]
		}
	}
	r, err := q.Query(ctx, query, a...)
	if err != nil {
		if r != nil {
			r.Close()
		}
		return nil, err
	}
	more := r.Next()
	if err := r.Err(); err != nil {
		r.Close()
		return nil, err
	}
	if learn {
		c.shapes.put(query, needsFormats(r.FieldDescriptions(), r.TypeMap()))
	}
	return &rows{rows: r, skipNext: true, skipNextMore: more}, nil
}

// namedArgs converts database/sql's arguments to pgx's, unchanged, after
// skip empty places.
func namedArgs(args []driver.NamedValue, skip int) []any {
	a := make([]any, skip+len(args))
	for i, v := range args {
		a[skip+i] = v.Value
	}
	return a
}

// CheckNamedValue accepts every argument unchanged: pgx encodes pgtype
// values, slices, sql.Scanner and driver.Valuer types itself.
func (c *conn) CheckNamedValue(*driver.NamedValue) error { return nil }

// pin acquires a primary connection for the session state about to be set.
// The Conn counts every statement on it that is not a pure read as a write
// of that statement's session, and itself as a write of this one's, until
// it is released.
func (c *conn) pin(ctx context.Context) error {
	p, err := c.db.Acquire(context.WithoutCancel(ctx))
	if err != nil {
		return err
	}
	c.pinned = p
	return nil
}

// unpin cleans the pinned connection and gives it back to the pool, or
// closes it if it cannot be cleaned.
func (c *conn) unpin(ctx context.Context) {
	p := c.pinned
	if p == nil {
		return
	}
	c.pinned = nil
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := discardAll(cctx, p.Conn()); err != nil {
		p.Hijack().Close(cctx)
		return
	}
	p.Release()
}

// discardAll returns a server connection to the state of a new one: it
// rolls back a transaction left open, runs DISCARD ALL (settings, temporary
// tables, advisory locks, listeners, prepared statements, cursors, cached
// plans and sequence values), and clears pgx's statement caches, whose
// statements DISCARD ALL dropped.
func discardAll(ctx context.Context, pc *pgx.Conn) error {
	if pc.IsClosed() {
		return errors.New("connection closed")
	}
	if pc.PgConn().TxStatus() != 'I' {
		if _, err := pc.Exec(ctx, "ROLLBACK"); err != nil {
			return err
		}
	}
	if _, err := pc.Exec(ctx, "DISCARD ALL"); err != nil {
		return err
	}
	return pc.DeallocateAll(ctx)
}

// ResetSession lets go of the pinned connection, if any, cleaned (see
// unpin). The conn itself stays good: it holds nothing else.
func (c *conn) ResetSession(ctx context.Context) error {
	if c.tx != nil {
		// database/sql ends every transaction before it reuses a
		// connection; this is only a safety net.
		c.tx.Rollback()
	}
	c.unpin(ctx)
	return nil
}

// IsValid reports whether the conn may be reused: not if its pinned server
// connection was lost, since the session state it held went with it.
func (c *conn) IsValid() bool {
	return c.pinned == nil || !c.pinned.Conn().IsClosed()
}

// Ping checks the pinned connection, or the primary.
func (c *conn) Ping(ctx context.Context) error {
	if c.pinned != nil {
		if err := c.pinned.Ping(ctx); err != nil {
			return driver.ErrBadConn
		}
		return nil
	}
	return c.db.Ping(ctx)
}

// Close lets go of the pinned connection, if any.
func (c *conn) Close() error {
	if c.tx != nil {
		c.tx.Rollback()
	}
	c.unpin(context.Background())
	return nil
}

// Prepare returns a statement that is routed at each execution.
func (c *conn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

// PrepareContext returns a statement that remembers query and routes each
// execution like query run directly. It makes no round trip.
func (c *conn) PrepareContext(_ context.Context, query string) (driver.Stmt, error) {
	return &stmt{c: c, query: query}, nil
}

// Begin begins a read-write transaction.
//
// Deprecated: database/sql calls BeginTx.
func (c *conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

// stmt is a prepared statement: the SQL, run through its conn.
type stmt struct {
	c     *conn
	query string
}

var (
	_ driver.Stmt             = (*stmt)(nil)
	_ driver.StmtExecContext  = (*stmt)(nil)
	_ driver.StmtQueryContext = (*stmt)(nil)
)

func (s *stmt) Close() error  { return nil }
func (s *stmt) NumInput() int { return -1 }

func (s *stmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.c.ExecContext(context.Background(), s.query, toNamed(args))
}

func (s *stmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.c.QueryContext(context.Background(), s.query, toNamed(args))
}

func (s *stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.c.ExecContext(ctx, s.query, args)
}

func (s *stmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.c.QueryContext(ctx, s.query, args)
}

func toNamed(args []driver.Value) []driver.NamedValue {
	n := make([]driver.NamedValue, len(args))
	for i, v := range args {
		n[i] = driver.NamedValue{Ordinal: i + 1, Value: v}
	}
	return n
}
