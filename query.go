package switchyard

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/switchyard-db/switchyard/internal/topology"
)

// Exec runs sql on the node routing picks: the primary for anything that is
// not provably a pure read, a replica otherwise. A read that fails because
// its replica died is run again elsewhere without the caller seeing it.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if db.closed.Load() {
		return pgconn.CommandTag{}, ErrClosed
	}
	read := db.isRead(sql)
	n := db.route(ctx, read)
	for attempt := 0; ; attempt++ {
		n.Start()
		tag, err := n.Pool.Exec(ctx, sql, args...)
		n.Done(err != nil)
		if err == nil {
			return tag, nil
		}
		if n = db.retryTarget(ctx, n, read, err, attempt); n == nil {
			return tag, err
		}
	}
}

// Query runs sql as Exec routes it and returns its rows. For a read, Query
// waits for the first row (or the end of the result) before returning, so
// that a replica that died is noticed while nothing has reached the caller
// and the read can be run again elsewhere.
func (db *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if db.closed.Load() {
		return errRows(ErrClosed), ErrClosed
	}
	read := db.isRead(sql)
	n := db.route(ctx, read)
	for attempt := 0; ; attempt++ {
		n.Start()
		inner, err := n.Pool.Query(ctx, sql, args...)
		if err == nil {
			r := &rows{Rows: inner, node: n}
			if !read {
				return r, nil
			}
			if inner.Next() {
				r.peeked = true
				return r, nil
			}
			if err = inner.Err(); err == nil {
				r.finish() // an empty result
				return r, nil
			}
		}
		n.Done(true)
		next := db.retryTarget(ctx, n, read, err, attempt)
		if next == nil {
			return errRows(err), err
		}
		n = next
	}
}

// QueryRow runs sql as Query does and returns its first row.
func (db *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	r, err := db.Query(ctx, sql, args...)
	return &row{rows: r, err: err}
}

// CopyFrom copies rows into a table on the primary (see pgx.Conn.CopyFrom).
func (db *DB) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	if db.closed.Load() {
		return 0, ErrClosed
	}
	n := db.route(ctx, false)
	n.Start()
	count, err := n.Pool.CopyFrom(ctx, tableName, columnNames, rowSrc)
	n.Done(err != nil)
	return count, err
}

// SendBatch sends every statement of b in one round trip: to a replica if
// all of them are pure reads, else to the primary. A read-only batch whose
// replica died before its first result reached the caller is sent again
// elsewhere.
func (db *DB) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if db.closed.Load() {
		return &batchResults{err: ErrClosed}
	}
	read := true
	for _, q := range b.QueuedQueries {
		if !db.isRead(q.SQL) {
			read = false
			break
		}
	}
	n := db.route(ctx, read)
	n.Start()
	return &batchResults{db: db, ctx: ctx, batch: b, read: read, node: n, inner: n.Pool.SendBatch(ctx, b)}
}

// rows wraps a pool's rows to keep the node's in-flight count and, for a
// read, to hand back the first row that Query already read.
type rows struct {
	pgx.Rows
	node     *topology.Node
	peeked   bool // Next has been called once by Query and returned true
	finished bool
}

func (r *rows) Next() bool {
	if r.peeked {
		r.peeked = false
		return true
	}
	if r.Rows.Next() {
		return true
	}
	r.finish()
	return false
}

func (r *rows) Close() {
	r.Rows.Close()
	r.finish()
}

func (r *rows) finish() {
	if !r.finished {
		r.finished = true
		if r.node != nil {
			r.node.Done(r.Rows.Err() != nil)
		}
	}
}

// errRows is the Rows of a query that failed before it had any.
func errRows(err error) pgx.Rows { return &failedRows{err: err} }

type failedRows struct{ err error }

func (r *failedRows) Close()                                       {}
func (r *failedRows) Err() error                                   { return r.err }
func (r *failedRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r *failedRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (r *failedRows) Next() bool                                   { return false }
func (r *failedRows) Scan(...any) error                            { return r.err }
func (r *failedRows) Values() ([]any, error)                       { return nil, r.err }
func (r *failedRows) RawValues() [][]byte                          { return nil }
func (r *failedRows) Conn() *pgx.Conn                              { return nil }
func (r *failedRows) TypeMap() *pgtype.Map                         { return nil }

// row is what QueryRow returns; Scan behaves as pgx's.
type row struct {
	rows pgx.Rows
	err  error
}

func (r *row) Scan(dest ...any) error {
	if r.err != nil {
		return r.err
	}
	rows := r.rows
	defer rows.Close()
	for _, d := range dest {
		if _, ok := d.(*pgtype.DriverBytes); ok {
			return fmt.Errorf("cannot scan into *pgtype.DriverBytes from QueryRow")
		}
	}
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	rows.Close()
	return rows.Err()
}

// batchResults wraps a pool's batch results: it keeps the node's in-flight
// count, and re-sends a read-only batch elsewhere if its node failed before
// the first result reached the caller.
type batchResults struct {
	db      *DB
	ctx     context.Context
	batch   *pgx.Batch
	read    bool
	node    *topology.Node
	inner   pgx.BatchResults
	used    bool // a result reached the caller: no more retries
	attempt int
	failed  bool
	closed  bool
	err     error // set when the batch could not be sent at all
}

// retry moves the batch to another node after err, if it may.
func (b *batchResults) retry(err error) bool {
	if b.used || !b.read {
		return false
	}
	next := b.db.retryTarget(b.ctx, b.node, true, err, b.attempt)
	if next == nil {
		return false
	}
	b.inner.Close()
	b.node.Done(true)
	b.attempt++
	b.node = next
	next.Start()
	b.inner = next.Pool.SendBatch(b.ctx, b.batch)
	return true
}

func (b *batchResults) Exec() (pgconn.CommandTag, error) {
	if b.err != nil {
		return pgconn.CommandTag{}, b.err
	}
	for {
		tag, err := b.inner.Exec()
		if err != nil && b.retry(err) {
			continue
		}
		b.used = true
		b.failed = b.failed || err != nil
		return tag, err
	}
}

func (b *batchResults) Query() (pgx.Rows, error) {
	if b.err != nil {
		return errRows(b.err), b.err
	}
	for {
		r, err := b.inner.Query()
		if err == nil && !b.used && b.read {
			// Peek, as Query does, so that a dead node shows before any
			// row reaches the caller.
			if r.Next() {
				b.used = true
				return &rows{Rows: r, peeked: true}, nil
			}
			err = r.Err()
			if err == nil {
				b.used = true
				return &rows{Rows: r, finished: true}, nil
			}
		}
		if err != nil && b.retry(err) {
			continue
		}
		b.used = true
		b.failed = b.failed || err != nil
		return r, err
	}
}

func (b *batchResults) QueryRow() pgx.Row {
	r, err := b.Query()
	return &row{rows: r, err: err}
}

func (b *batchResults) Close() error {
	if b.err != nil {
		return b.err
	}
	err := b.inner.Close()
	if !b.closed {
		b.closed = true
		b.node.Done(b.failed || err != nil)
	}
	return err
}

// Tx returns the transaction the batch began (pgx.Batch.BeginTx), or nil.
// Such a batch starts with BEGIN and so always runs on the primary.
func (b *batchResults) Tx() pgx.Tx {
	if b.inner == nil {
		return nil
	}
	return b.inner.Tx()
}
