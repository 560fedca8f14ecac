package switchyard

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// hasOptions reports whether args start with one of pgx's per-query
// options (an exec mode, result formats, a rewriter), which a batch cannot
// carry; such a read goes without capture or check (engine.Plan.Plain).
func hasOptions(args []any) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0].(type) {
	case pgx.QueryExecMode, pgx.QueryResultFormats, pgx.QueryResultFormatsByOID, pgx.QueryRewriter:
		return true
	}
	return false
}

// plan plans a statement outside a transaction: a pure read as a read, the
// rest as a write.
func (db *DB) plan(ctx context.Context, p *engine.Plan, sql string, args []any) error {
	at, err := db.place(ctx, sql)
	if err != nil {
		return err
	}
	return db.planKnown(ctx, p, at.cluster, db.isRead(sql), args)
}

// planKnown is plan for a statement already classified and placed.
func (db *DB) planKnown(ctx context.Context, p *engine.Plan, c *topology.Cluster, read bool, args []any) error {
	o := optsFrom(ctx)
	if !read {
		db.wrote(ctx)
		db.engine.PlanWrite(p, o, c)
		return nil
	}
	if hasOptions(args) {
		p.Plain()
	}
	if db.wantsLatest(o) {
		return db.engine.PlanLatest(ctx, p, o, c, db.lend)
	}
	db.engine.PlanRead(ctx, p, o, c)
	return nil
}

// wantsLatest reports whether reads with options o see every transaction
// committed anywhere before they began: Latest(ctx), or Config.Latest
// unless the context asks for Primary or MaxStaleness.
func (db *DB) wantsLatest(o *engine.Options) bool {
	return db.latest && (o == nil || !o.Primary && o.MaxStaleness == 0) || o != nil && o.Latest
}

// planTx plans the BEGIN of a transaction with opts on cluster c; a
// read-only one honours Latest as a read does.
func (db *DB) planTx(ctx context.Context, p *engine.Plan, c *topology.Cluster, opts pgx.TxOptions) error {
	o := optsFrom(ctx)
	readOnly, serializable := opts.AccessMode == pgx.ReadOnly, opts.IsoLevel == pgx.Serializable
	if readOnly && !serializable && db.wantsLatest(o) {
		return db.engine.PlanTxLatest(ctx, p, o, c, db.lend)
	}
	db.engine.PlanTx(ctx, p, o, c, readOnly, serializable)
	return nil
}

// Exec runs sql on the node routing picks: the primary for anything that is
// not provably a pure read, else a replica fresh enough for the context's
// session (see WithSession). A read that fails because its replica died is
// run again elsewhere without the caller seeing it.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if db.closed.Load() {
		return pgconn.CommandTag{}, ErrClosed
	}
	var p engine.Plan
	if err := db.plan(ctx, &p, sql, args); err != nil {
		return pgconn.CommandTag{}, err
	}
	var tag pgconn.CommandTag
	var h held
	err := db.engine.Do(ctx, &p, func(p *engine.Plan) error {
		c, err := h.acquire(ctx, db, p)
		if err != nil {
			return err
		}
		tag, err = db.exec(db.traced(ctx, p), p, c, sql, args)
		return err
	})
	h.release()
	p.Finish(err)
	if p.Write {
		db.wrote(ctx)
	}
	return tag, err
}

// held is the pooled connection of a statement's attempt. It is kept for
// the next attempt only when the engine runs the statement again on the
// same connection (a stale prepared statement that pgx has just dropped
// there); otherwise each attempt takes one from its node's pool.
type held struct{ c *pgxpool.Conn }

func (h *held) acquire(ctx context.Context, db *DB, p *engine.Plan) (*pgxpool.Conn, error) {
	if h.c != nil {
		if p.SameConnection() {
			resetStatements(ctx, p, h.c)
			return h.c, nil
		}
		h.release()
	}
	c, err := db.pool(p.Node).Acquire(ctx)
	h.c = c
	return c, err
}

// resetStatements forgets every prepared statement of conn when the
// attempt before found the server had thrown them all away (see
// engine.Plan.StatementsReset): one retry for the connection, not one for
// each of its statements.
func resetStatements(ctx context.Context, p *engine.Plan, conn *pgxpool.Conn) {
	if p.StatementsReset() {
		conn.Conn().DeallocateAll(ctx)
	}
}

func (h *held) release() {
	if h.c != nil {
		h.c.Release()
		h.c = nil
	}
}

// queryer is what runs a statement: a node's pool, or a connection held
// from one.
type queryer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
}

// exec runs sql on q as p says.
func (db *DB) exec(ctx context.Context, p *engine.Plan, q queryer, sql string, args []any) (pgconn.CommandTag, error) {
	if p.Before == engine.BeforeNone && p.After == engine.AfterNone {
		tag, err := q.Exec(ctx, sql, args...)
		if err == nil {
			p.Served()
		}
		return tag, err
	}
	br, err := sendRead(ctx, p, q, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	if err == nil {
		p.Served()
		captured(p, br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return tag, err
}

// sendRead sends sql to q in one batch with p's Before ahead of it and p's
// After behind it, and reads what runs ahead. A failed check is
// engine.ErrNotFresh.
func sendRead(ctx context.Context, p *engine.Plan, q queryer, sql string, args []any) (pgx.BatchResults, error) {
	b := &pgx.Batch{}
	switch p.Before {
	case engine.BeforeCheck:
		b.Queue(engine.CheckSQL, p.Check.String())
	case engine.BeforeSettle:
		b.Queue(engine.SettleSQL)
	}
	b.Queue(sql, args...)
	if p.After == engine.AfterCapture {
		b.Queue(engine.CaptureSQL)
	}
	br := q.SendBatch(ctx, b)
	switch p.Before {
	case engine.BeforeSettle:
		if _, err := br.Exec(); err != nil {
			br.Close()
			return nil, err
		}
	case engine.BeforeCheck:
		var fresh bool
		if err := br.QueryRow().Scan(&fresh); err != nil || !fresh {
			br.Close()
			if err == nil {
				err = engine.ErrNotFresh
			}
			return nil, err
		}
		p.CheckPassed()
	}
	return br, nil
}

// captured reads the position that follows the statement in br, if p
// carries one, and gives it to the plan. If it cannot be read, the session
// stays as it was (dirty, or pinned to the node).
func captured(p *engine.Plan, br pgx.BatchResults) {
	if p.After != engine.AfterCapture {
		return
	}
	var l lsn.LSN
	if err := br.QueryRow().Scan(&l); err == nil && l != lsn.Invalid {
		p.Captured(l)
	}
}

// Query runs sql as Exec routes it and returns its rows. For a read, Query
// waits for the first row (or the end of the result) before returning, so
// that a replica that died is noticed while nothing has reached the caller
// and the read can be run again elsewhere.
//
// With a query cache in ctx (WithQueryCache), a read may be answered from
// it, without a round trip.
func (db *DB) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if qc := cacheFrom(ctx); qc != nil {
		hit, r, err := db.cachedQuery(ctx, qc, sql, args)
		switch {
		case err != nil:
			return errRows(err), err
		case hit != nil:
			return hit, nil
		}
		return r, nil
	}
	r, err := db.query(ctx, sql, args, nil, nil)
	if err != nil {
		return errRows(err), err
	}
	return r, nil
}

// query runs sql on cluster at (nil: where it belongs); c, if not nil,
// copies a read's rows for a query cache.
func (db *DB) query(ctx context.Context, sql string, args []any, c *capture, at *topology.Cluster) (*rows, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	if at == nil {
		p, err := db.place(ctx, sql)
		if err != nil {
			return nil, err
		}
		at = p.cluster
	}
	r := &rows{}
	if err := db.planKnown(ctx, &r.plan, at, c != nil || db.isRead(sql), args); err != nil {
		return nil, err
	}
	if r.plan.Write {
		if cacheFrom(ctx) != nil {
			r.wrote, r.db = ctx, db
		}
	} else {
		r.capture = c
	}
	err := db.engine.Do(ctx, &r.plan, func(p *engine.Plan) error {
		c, err := r.conn.acquire(ctx, db, p)
		if err != nil {
			return err
		}
		return r.start(db.traced(ctx, p), c, sql, args)
	})
	if err != nil {
		r.conn.release()
		return nil, err
	}
	if r.plan.Write && r.wrote == nil && cacheFrom(ctx) != nil {
		// It turned out to write (a function the classifier cannot see
		// into, refused by a standby and run on the primary): its query
		// cache goes, as for any write, and nothing of it is kept.
		db.wrote(ctx)
		r.wrote, r.db, r.capture = ctx, db, nil
	}
	return r, nil
}

// QueryRow runs sql as Query does and returns its first row.
func (db *DB) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if qc := cacheFrom(ctx); qc != nil {
		hit, r, err := db.cachedQuery(ctx, qc, sql, args)
		switch {
		case err != nil:
			return errRow{err}
		case hit != nil:
			return cachedRow{hit}
		}
		return (*row)(r)
	}
	r, err := db.query(ctx, sql, args, nil, nil)
	if err != nil {
		return errRow{err}
	}
	return (*row)(r)
}

// CopyFrom copies rows into a table on the primary (see pgx.Conn.CopyFrom).
func (db *DB) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	if db.closed.Load() {
		return 0, ErrClosed
	}
	if len(tableName) == 0 {
		return 0, errors.New("switchyard: CopyFrom with an empty table name")
	}
	at, err := db.placeTable(ctx, tableSchema(tableName), tableName[len(tableName)-1])
	if err != nil {
		return 0, err
	}
	var p engine.Plan
	db.wrote(ctx)
	defer db.wrote(ctx)
	db.engine.PlanWrite(&p, optsFrom(ctx), at.cluster)
	var count int64
	err = db.engine.Do(ctx, &p, func(p *engine.Plan) (err error) {
		count, err = db.pool(p.Node).CopyFrom(db.traced(ctx, p), tableName, columnNames, rowSrc)
		return err
	})
	p.Finish(err)
	return count, err
}

// rows wraps a pool's rows: it carries the statement's plan, hands back the
// first row that Query already read, reads the capture that follows a read
// in its batch and closes the batch, and finishes the plan.
type rows struct {
	pgx.Rows
	conn     held // the connection, for rows of the DB's (a Conn's stays with it)
	plan     engine.Plan
	batch    pgx.BatchResults // the batch the rows came in, if any
	peeked   bool             // Next has been called once by Query and returned true
	finished bool
	capture  *capture        // a read's rows are copied for a query cache
	wrote    context.Context // a write's context, with a query cache: emptied when it ends
	db       *DB             // with wrote
	// ended: the result was empty, and ended before Query returned; fields
	// are its columns, copied before its connection went back to the pool
	// (pgx keeps them in the connection, for its next query to reuse).
	ended  bool
	fields []pgconn.FieldDescription
}

// FieldDescriptions are the result's columns.
func (r *rows) FieldDescriptions() []pgconn.FieldDescription {
	if r.ended {
		return r.fields
	}
	return r.Rows.FieldDescriptions()
}

// start runs the statement on q as r.plan says. Its first row is read
// before it returns (peek), so that a dead node, or a statement the server
// refused before running it (a stale prepared statement, which a write may
// be too), shows while nothing has reached the caller.
func (r *rows) start(ctx context.Context, q queryer, sql string, args []any) error {
	p := &r.plan
	r.Rows, r.batch, r.peeked, r.finished = nil, nil, false, false
	if r.capture != nil {
		r.capture.reset()
	}
	if p.Before == engine.BeforeNone && p.After == engine.AfterNone {
		inner, err := q.Query(ctx, sql, args...)
		if err != nil {
			return err
		}
		r.Rows = inner
		return r.peek() // a write is done when its rows are
	}
	br, err := sendRead(ctx, p, q, sql, args)
	if err != nil {
		return err
	}
	inner, err := br.Query()
	if err != nil {
		br.Close()
		return err
	}
	r.Rows, r.batch = inner, br
	return r.peek()
}

func (r *rows) peek() error {
	if r.Rows.Next() {
		r.peeked = true
		r.plan.Served()
		if r.capture != nil {
			r.capture.row(r.Rows)
		}
		return nil
	}
	if err := r.Rows.Err(); err != nil {
		r.Rows.Close()
		if r.batch != nil {
			r.batch.Close()
			r.batch = nil
		}
		return err
	}
	r.plan.Served()
	if r.capture != nil {
		r.capture.done = true
	}
	// An empty result, over before the caller has seen it: its columns
	// must outlive the connection's return to the pool.
	r.fields, r.ended = slices.Clone(r.Rows.FieldDescriptions()), true
	r.finish()
	return nil
}

func (r *rows) Next() bool {
	if r.peeked {
		r.peeked = false
		return true
	}
	if r.Rows.Next() {
		if r.capture != nil {
			r.capture.row(r.Rows)
		}
		return true
	}
	if r.capture != nil {
		r.capture.done = r.Rows.Err() == nil
	}
	r.finish()
	return false
}

func (r *rows) Close() {
	if c := r.capture; c != nil && !r.finished && !c.failed {
		// Closing reads the rest of the result anyway: copy it, so that a
		// QueryRow's single row (or a result closed early) is kept too.
		for !c.failed && r.Rows.Next() {
			c.row(r.Rows)
		}
		c.done = !c.failed && r.Rows.Err() == nil
	}
	r.Rows.Close()
	r.finish()
}

func (r *rows) finish() {
	if r.finished {
		return
	}
	r.finished = true
	err := r.Rows.Err()
	if r.capture != nil && err == nil {
		r.capture.describe(r) // while the connection is still ours
	}
	if r.batch != nil {
		if err == nil {
			captured(&r.plan, r.batch)
		}
		if cerr := r.batch.Close(); err == nil {
			err = cerr
		}
	}
	r.conn.release()
	r.plan.Finish(err)
	if c := r.capture; c != nil {
		if err == nil {
			c.keep(r.Rows, r.plan.Seen())
		}
		r.capture = nil
		c.release()
	}
	if r.wrote != nil {
		r.db.wrote(r.wrote)
	}
}

// row is what QueryRow returns: the rows of the query, whose Scan reads the
// first row as pgx's does.
type row rows

func (r *row) Scan(dest ...any) error {
	rs := (*rows)(r)
	defer rs.Close()
	for _, d := range dest {
		if _, ok := d.(*pgtype.DriverBytes); ok {
			return fmt.Errorf("cannot scan into *pgtype.DriverBytes from QueryRow")
		}
	}
	if !rs.Next() {
		if err := rs.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := rs.Scan(dest...); err != nil {
		return err
	}
	rs.Close()
	return rs.Err()
}

// errRow is the Row of a query that failed before it had rows.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

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

// SendBatch sends every statement of b in one round trip: to a replica
// fresh enough for the session if all of them are pure reads, else to the
// primary. A read-only batch whose replica died before its first result
// reached the caller is sent again elsewhere.
func (db *DB) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if db.closed.Load() {
		return &batchResults{err: ErrClosed}
	}
	res := &batchResults{db: db, ctx: ctx, batch: b}
	read := true
	for _, q := range b.QueuedQueries {
		if !db.isRead(q.SQL) {
			read = false
			break
		}
	}
	at, err := db.placeBatch(ctx, b)
	if err != nil {
		return &batchResults{err: err}
	}
	o := optsFrom(ctx)
	if !read {
		db.wrote(ctx)
	}
	if read {
		// As a read (Latest too), without a check or capture riding along.
		res.plan.Plain()
		if err := db.planKnown(ctx, &res.plan, at.cluster, true, nil); err != nil {
			return &batchResults{err: err}
		}
	} else {
		db.engine.PlanWrite(&res.plan, o, at.cluster)
	}
	if err := db.engine.Do(ctx, &res.plan, res.send); err != nil {
		return &batchResults{err: err}
	}
	return res
}

// batchResults wraps a pool's batch results: it carries the batch's plan,
// and sends a read-only batch again elsewhere if its node failed before the
// first result reached the caller.
type batchResults struct {
	db     *DB
	held   queryer // the connection the batch runs on, if held (Conn's); else the node's pool
	ctx    context.Context
	batch  *pgx.Batch
	plan   engine.Plan
	inner  pgx.BatchResults
	served bool // a result reached the caller: no more retries
	failed bool
	err    error // set when the batch could not be sent at all
}

func (b *batchResults) send(p *engine.Plan) error {
	q := b.held
	if q == nil {
		q = b.db.pool(p.Node)
	}
	b.inner = q.SendBatch(b.db.traced(b.ctx, p), b.batch)
	return nil
}

// retry sends the batch again, elsewhere, after err, if the executor says
// it may.
func (b *batchResults) retry(err error) bool {
	if b.served || b.plan.Policy != engine.PolicyRead {
		return false
	}
	b.inner.Close()
	if !b.db.engine.Again(b.ctx, &b.plan, err) {
		return false
	}
	if rerr := b.db.engine.Ready(b.ctx, &b.plan); rerr != nil {
		return false
	}
	b.plan.Begin()
	b.send(&b.plan)
	return true
}

// serve records that a result reached the caller.
func (b *batchResults) serve(err error) {
	if !b.served && err == nil && !b.plan.Write {
		b.plan.Served()
	}
	b.served = true
	b.failed = b.failed || err != nil
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
		b.serve(err)
		return tag, err
	}
}

func (b *batchResults) Query() (pgx.Rows, error) {
	if b.err != nil {
		return errRows(b.err), b.err
	}
	for {
		r, err := b.inner.Query()
		if err == nil && !b.served && !b.plan.Write {
			// Peek, as Query does, so that a dead node shows before any
			// row reaches the caller.
			if r.Next() {
				b.serve(nil)
				return &peekedRows{Rows: r, peeked: true}, nil
			}
			if err = r.Err(); err == nil {
				b.serve(nil)
				return &peekedRows{Rows: r}, nil
			}
		}
		if err != nil && b.retry(err) {
			continue
		}
		b.serve(err)
		return r, err
	}
}

func (b *batchResults) QueryRow() pgx.Row {
	r, err := b.Query()
	if err != nil {
		return errRow{err}
	}
	return pgxRow{r}
}

func (b *batchResults) Close() error {
	if b.err != nil {
		return b.err
	}
	err := b.inner.Close()
	if b.failed && err == nil {
		b.plan.Finish(errBatchFailed)
	} else {
		b.plan.Finish(err)
	}
	if b.plan.Write {
		b.db.wrote(b.ctx)
	}
	return err
}

// errBatchFailed counts a batch one of whose statements failed as failed.
var errBatchFailed = errors.New("switchyard: a statement of the batch failed")

// Tx returns the transaction the batch began (pgx.Batch.BeginTx), or nil.
// Such a batch starts with BEGIN and so always runs on the primary.
func (b *batchResults) Tx() pgx.Tx {
	if b.inner == nil {
		return nil
	}
	return b.inner.Tx()
}

// peekedRows hands back the first row a batch's Query already read.
type peekedRows struct {
	pgx.Rows
	peeked bool
}

func (r *peekedRows) Next() bool {
	if r.peeked {
		r.peeked = false
		return true
	}
	return r.Rows.Next()
}

// pgxRow reads the first row of rows as pgx's QueryRow does.
type pgxRow struct{ rows pgx.Rows }

func (r pgxRow) Scan(dest ...any) error {
	defer r.rows.Close()
	if !r.rows.Next() {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return pgx.ErrNoRows
	}
	if err := r.rows.Scan(dest...); err != nil {
		return err
	}
	r.rows.Close()
	return r.rows.Err()
}
