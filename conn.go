package switchyard

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// Conn is a connection to the primary taken from its pool by Acquire, for
// work that needs one server session across statements: temporary tables,
// LISTEN, session advisory locks, SET, prepared statements. Nothing on it
// is routed: every statement runs on this connection. Statements that are
// not pure reads count as writes of the session of the context they run
// with, and the whole Conn counts as one write of the session of
// Acquire's context, from Acquire until Release: reads elsewhere see what
// it wrote. A Conn is not safe for concurrent use; Release it when done.
type Conn struct {
	db       *DB
	conn     *pgxpool.Conn
	plan     engine.Plan // Acquire's
	released bool
	wrote    context.Context // Acquire's, with a query cache: emptied at Release
}

// Acquire takes a connection to the primary out of its pool, waiting for a
// primary as writes do (Config.PrimaryWait).
func (db *DB) Acquire(ctx context.Context) (*Conn, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	c := &Conn{db: db}
	if cacheFrom(ctx) != nil {
		db.wrote(ctx)
		c.wrote = ctx
	}
	at, err := db.placeConn(ctx)
	if err != nil {
		return nil, err
	}
	db.engine.PlanWrite(&c.plan, optsFrom(ctx), at)
	c.plan.Reason = engine.ReasonPinned
	err = db.engine.Do(ctx, &c.plan, func(p *engine.Plan) (err error) {
		c.conn, err = db.pool(p.Node).Acquire(ctx)
		return err
	})
	if err != nil {
		c.plan.Finish(err)
		return nil, err
	}
	return c, nil
}

// AcquireFunc acquires a Conn, calls f with it, and releases it.
func (db *DB) AcquireFunc(ctx context.Context, f func(*Conn) error) error {
	c, err := db.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	return f(c)
}

// Release gives the connection back to its pool (or closes it, if it is
// broken or left in a transaction). It is safe to call more than once.
func (c *Conn) Release() {
	if c.released {
		return
	}
	c.released = true
	c.conn.Release()
	c.plan.Finish(nil)
	if c.wrote != nil {
		c.db.wrote(c.wrote)
	}
}

// Hijack takes the underlying connection for good: the pool forgets it,
// and the caller must close it. It counts as released.
func (c *Conn) Hijack() *pgx.Conn {
	c.released = true
	pc := c.conn.Hijack()
	c.plan.Finish(nil)
	if c.wrote != nil {
		c.db.wrote(c.wrote)
	}
	return pc
}

// Conn is the underlying pgx connection.
func (c *Conn) Conn() *pgx.Conn { return c.conn.Conn() }

// Ping checks the connection.
func (c *Conn) Ping(ctx context.Context) error { return c.conn.Ping(ctx) }

// pinned plans a statement on the held connection. Outside a
// transaction, a statement the server refuses because its prepared form is
// stale (a migration, a reset) is run once more there, as the DB does for
// the statements it routes; inside one, the error is the caller's.
func (c *Conn) pinned(ctx context.Context, p *engine.Plan, write bool) {
	if write {
		c.db.wrote(ctx)
	}
	c.db.engine.PlanPinned(p, optsFrom(ctx), c.plan.Node, write)
	if c.conn.Conn().PgConn().TxStatus() == 'I' {
		p.RetryStale()
	}
}

// Exec runs sql on the connection.
func (c *Conn) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	var p engine.Plan
	c.pinned(ctx, &p, !c.db.isRead(sql))
	var tag pgconn.CommandTag
	err := c.db.engine.Do(ctx, &p, func(p *engine.Plan) (err error) {
		resetStatements(ctx, p, c.conn)
		tag, err = c.db.exec(ctx, p, c.conn, sql, args)
		return err
	})
	p.Finish(err)
	return tag, err
}

// Query runs sql on the connection and returns its rows.
func (c *Conn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	r, err := c.query(ctx, sql, args)
	if err != nil {
		return errRows(err), err
	}
	return r, nil
}

func (c *Conn) query(ctx context.Context, sql string, args []any) (*rows, error) {
	r := &rows{}
	c.pinned(ctx, &r.plan, !c.db.isRead(sql))
	err := c.db.engine.Do(ctx, &r.plan, func(p *engine.Plan) error {
		resetStatements(ctx, p, c.conn)
		return r.start(ctx, c.conn, sql, args)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// QueryRow runs sql on the connection and returns its first row.
func (c *Conn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	r, err := c.query(ctx, sql, args)
	if err != nil {
		return errRow{err}
	}
	return (*row)(r)
}

// SendBatch sends b on the connection.
func (c *Conn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	res := &batchResults{db: c.db, held: c.conn, ctx: ctx, batch: b}
	write := false
	for _, q := range b.QueuedQueries {
		if !c.db.isRead(q.SQL) {
			write = true
			break
		}
	}
	c.pinned(ctx, &res.plan, write)
	if err := c.db.engine.Do(ctx, &res.plan, res.send); err != nil {
		return &batchResults{err: err}
	}
	return res
}

// CopyFrom copies rows into a table on the connection.
func (c *Conn) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	var p engine.Plan
	c.pinned(ctx, &p, true)
	var count int64
	err := c.db.engine.Do(ctx, &p, func(*engine.Plan) (err error) {
		count, err = c.conn.CopyFrom(ctx, tableName, columnNames, rowSrc)
		return err
	})
	p.Finish(err)
	return count, err
}

// Begin starts a read-write transaction on the connection.
func (c *Conn) Begin(ctx context.Context) (pgx.Tx, error) {
	return c.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx starts a transaction on the connection. Its COMMIT learns the
// outcome of a connection lost during COMMIT as DB.BeginTx's does.
func (c *Conn) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	t := &tx{db: c.db, conn: c.conn}
	c.pinned(ctx, &t.plan, false)
	t.plan.ReadOnlyTx = opts.AccessMode == pgx.ReadOnly
	err := c.db.engine.Do(ctx, &t.plan, func(*engine.Plan) error { return t.begin(ctx, c.conn, opts) })
	if err != nil {
		t.plan.Finish(err)
		return nil, err
	}
	return t, nil
}
