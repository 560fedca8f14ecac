package switchyard

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgerr"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// captureSQL reads the primary's insert position in the round trip of a
// read that follows a write (see session).
const captureSQL = "SELECT pg_current_wal_insert_lsn()::text"

// replaySQL reads a replica's position in the round trip of a read, after
// it (see target.replay).
const replaySQL = "SELECT pg_last_wal_replay_lsn()::text"

// checkSQL proves a replica has replayed a position, in the round trip of
// the read that needs it.
const checkSQL = "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn"

// settleSQL waits until every transaction that was running on the primary
// when it started has ended, for at most about 20 ms: a standby may already
// show a commit whose backend on the primary has written its commit record
// but not yet left the process array (or set the commit log), so is still
// running there (see target.settle). Short transactions end within
// microseconds; a long one costs the bound. It runs before the read in the
// same implicit transaction; under READ COMMITTED the read then takes a
// newer snapshot.
const settleSQL = `DO $settle$
DECLARE
	running xid8[] := ARRAY(SELECT pg_snapshot_xip(pg_current_snapshot()));
BEGIN
	FOR i IN 1..200 LOOP
		EXIT WHEN cardinality(running) = 0 OR NOT EXISTS (
			SELECT FROM pg_snapshot_xip(pg_current_snapshot()) x WHERE x = ANY (running));
		PERFORM pg_sleep(0.0001);
	END LOOP;
END
$settle$`

// hasOptions reports whether args start with one of pgx's per-query
// options (an exec mode, result formats, a rewriter), which a batch cannot
// carry; such a read goes without capture or check.
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

// Exec runs sql on the node routing picks: the primary for anything that is
// not provably a pure read, else a replica fresh enough for the context's
// session (see WithSession). A read that fails because its replica died is
// run again elsewhere without the caller seeing it.
func (db *DB) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if db.closed.Load() {
		return pgconn.CommandTag{}, ErrClosed
	}
	if !db.isRead(sql) {
		n, err := db.routeWrite(ctx)
		if err != nil {
			return pgconn.CommandTag{}, err
		}
		sess := db.writeStarted(ctx)
		defer db.writeDone(sess)
		for attempt := 0; ; attempt++ {
			n.Start()
			tag, err := n.Pool.Exec(ctx, sql, args...)
			n.Done(err != nil)
			if err == nil {
				return tag, nil
			}
			if again, _ := db.retry(ctx, n, false, err, attempt); !again {
				return tag, err
			}
			if n, err = db.primary(ctx); err != nil {
				return tag, err
			}
		}
	}
	t := db.routeRead(ctx)
	if hasOptions(args) {
		t = db.plain(t)
	}
	for attempt := 0; ; attempt++ {
		tag, err := db.execRead(ctx, &t, sql, args)
		if err == nil {
			return tag, nil
		}
		if t = db.retryRead(ctx, t, err, attempt, args); t.node == nil {
			return tag, err
		}
	}
}

// retryRead returns where to run a failed read again, or a target with no
// node to give up.
func (db *DB) retryRead(ctx context.Context, t target, err error, attempt int, args []any) target {
	again, toPrimary := db.retry(ctx, t.node, true, err, attempt)
	switch {
	case !again:
		return target{}
	case toPrimary && pgerr.Code(err) == pgerr.ReadOnlySQLTransaction:
		// It writes after all (a function the classifier cannot see into).
		t = target{node: db.cluster.Primary(), sess: t.sess, write: true}
	case toPrimary:
		// Like any read on the primary, it carries the session's position
		// along: it sees the newest data.
		t = db.primaryTarget(t.sess)
	default:
		t = db.routeRead(ctx)
	}
	if hasOptions(args) {
		t = db.plain(t)
	}
	return t
}

func (db *DB) execRead(ctx context.Context, t *target, sql string, args []any) (pgconn.CommandTag, error) {
	if err := db.ready(ctx, t); err != nil {
		return pgconn.CommandTag{}, err
	}
	n := t.node
	if t.write {
		defer db.writeDone(db.writeStartedFor(t.explicitSession()))
	}
	n.Start()
	if !t.capture && t.check == 0 && !t.replay {
		tag, err := n.Pool.Exec(ctx, sql, args...)
		n.Done(err != nil)
		if err == nil {
			db.servedBy(t)
		}
		return tag, err
	}
	br, fresh, err := db.sendRead(ctx, t, sql, args)
	if err == nil && !fresh {
		n.Done(false)
		*t = db.primaryTarget(t.sess)
		return db.execRead(ctx, t, sql, args)
	}
	var tag pgconn.CommandTag
	if err == nil {
		if tag, err = br.Exec(); err == nil {
			db.servedBy(t)
			db.finishCapture(t, br)
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}
	n.Done(err != nil)
	return tag, err
}

// sendRead sends sql in one batch with t's check before it and t's capture
// after it, and reads the check. fresh is false (and the batch closed) when
// the check failed.
func (db *DB) sendRead(ctx context.Context, t *target, sql string, args []any) (br pgx.BatchResults, fresh bool, err error) {
	b := &pgx.Batch{}
	switch {
	case t.check != 0:
		b.Queue(checkSQL, t.check.String())
	case t.settle:
		b.Queue(settleSQL)
	}
	b.Queue(sql, args...)
	switch {
	case t.capture:
		b.Queue(captureSQL)
	case t.replay:
		b.Queue(replaySQL)
	}
	br = t.node.Pool.SendBatch(ctx, b)
	if t.settle {
		if _, err = br.Exec(); err != nil {
			br.Close()
			return nil, false, err
		}
	}
	if t.check == 0 {
		return br, true, nil
	}
	if err = br.QueryRow().Scan(&fresh); err != nil || !fresh {
		br.Close()
		if err == nil {
			db.routes.checkFailed.Add(1)
		}
		return nil, false, err
	}
	db.routes.replica.Add(1)
	return br, true, nil
}

// finishCapture reads the position that follows the read in br, if t
// carries one (a capture on the primary, a replay position on a replica),
// and makes it the session's. If it cannot be read, the session stays as it
// was (dirty, or pinned to the node).
func (db *DB) finishCapture(t *target, br pgx.BatchResults) {
	if !t.capture && !t.replay {
		return
	}
	var text *string
	if err := br.QueryRow().Scan(&text); err != nil || text == nil {
		return
	}
	l, err := lsn.Parse(*text)
	if err != nil {
		return
	}
	if t.capture {
		db.captured(t, l)
	} else {
		db.replayed(t, l)
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
	if !db.isRead(sql) {
		n, err := db.routeWrite(ctx)
		if err != nil {
			return errRows(err), err
		}
		sess := db.writeStarted(ctx)
		for attempt := 0; ; attempt++ {
			n.Start()
			inner, err := n.Pool.Query(ctx, sql, args...)
			if err == nil {
				// The write is done when its rows are.
				return &rows{Rows: inner, node: n, db: db, wrote: true, sess: sess}, nil
			}
			n.Done(true)
			again, _ := db.retry(ctx, n, false, err, attempt)
			if again {
				n, err = db.primary(ctx)
			}
			if !again || err != nil {
				db.writeDone(sess)
				return errRows(err), err
			}
		}
	}
	t := db.routeRead(ctx)
	if hasOptions(args) {
		t = db.plain(t)
	}
	for attempt := 0; ; attempt++ {
		r, err := db.queryRead(ctx, &t, sql, args)
		if err == nil {
			return r, nil
		}
		if t = db.retryRead(ctx, t, err, attempt, args); t.node == nil {
			return errRows(err), err
		}
	}
}

func (db *DB) queryRead(ctx context.Context, t *target, sql string, args []any) (pgx.Rows, error) {
	if err := db.ready(ctx, t); err != nil {
		return nil, err
	}
	n := t.node
	var wrote *session // for a write: the session it dirties, ended with its rows
	if t.write {
		wrote = db.writeStartedFor(t.explicitSession())
	}
	n.Start()
	var (
		br    pgx.BatchResults
		inner pgx.Rows
		err   error
	)
	if t.capture || t.check != 0 || t.replay {
		var fresh bool
		if br, fresh, err = db.sendRead(ctx, t, sql, args); err == nil {
			if !fresh {
				n.Done(false)
				*t = db.primaryTarget(t.sess)
				return db.queryRead(ctx, t, sql, args)
			}
			inner, err = br.Query()
		}
	} else {
		inner, err = n.Pool.Query(ctx, sql, args...)
	}
	if err == nil {
		r := &rows{Rows: inner, node: n, batch: br, db: db, target: *t, wrote: t.write, sess: wrote}
		if inner.Next() {
			r.peeked = true
			db.servedBy(t)
			return r, nil
		}
		if err = inner.Err(); err == nil {
			db.servedBy(t)
			r.finish() // an empty result
			return r, nil
		}
	}
	if br != nil {
		br.Close()
	}
	n.Done(true)
	if t.write {
		db.writeDone(wrote)
	}
	return nil, err
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
	n, err := db.routeWrite(ctx)
	if err != nil {
		return 0, err
	}
	sess := db.writeStarted(ctx)
	defer db.writeDone(sess)
	n.Start()
	count, err := n.Pool.CopyFrom(ctx, tableName, columnNames, rowSrc)
	n.Done(err != nil)
	return count, err
}

// SendBatch sends every statement of b in one round trip: to a replica
// fresh enough for the session if all of them are pure reads, else to the
// primary. A read-only batch whose replica died before its first result
// reached the caller is sent again elsewhere.
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
	res := &batchResults{db: db, ctx: ctx, batch: b, read: read}
	if read {
		res.target = db.plain(db.routeRead(ctx))
		if err := db.ready(ctx, &res.target); err != nil {
			return &batchResults{err: err}
		}
	} else {
		n, err := db.routeWrite(ctx)
		if err != nil {
			return &batchResults{err: err}
		}
		res.target = target{node: n}
		res.sess, res.wrote = db.writeStarted(ctx), true
	}
	res.target.node.Start()
	res.inner = res.target.node.Pool.SendBatch(ctx, b)
	return res
}

// rows wraps a pool's rows: it keeps the node's in-flight count, hands back
// the first row that Query already read, reads the capture that follows a
// read in its batch and closes the batch, and ends the write it belongs to.
type rows struct {
	pgx.Rows
	node     *topology.Node
	batch    pgx.BatchResults // the batch the rows came in, if any
	db       *DB
	target   target   // for a read: where it went and what it carries
	sess     *session // for a write: the session it dirtied
	wrote    bool
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
	if r.finished {
		return
	}
	r.finished = true
	failed := r.Rows.Err() != nil
	if r.batch != nil {
		if !failed {
			r.db.finishCapture(&r.target, r.batch)
		}
		if err := r.batch.Close(); err != nil {
			failed = true
		}
	}
	if r.node != nil {
		r.node.Done(failed)
	}
	if r.wrote {
		r.db.writeDone(r.sess)
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
// count, ends the write the batch belongs to, and re-sends a read-only batch
// elsewhere if its node failed before the first result reached the caller.
type batchResults struct {
	db      *DB
	ctx     context.Context
	batch   *pgx.Batch
	read    bool
	target  target
	inner   pgx.BatchResults
	sess    *session // for a batch that writes: the session it dirtied
	wrote   bool
	served  bool // a result reached the caller: no more retries
	attempt int
	failed  bool
	closed  bool
	err     error // set when the batch could not be sent at all
}

// retry moves the batch to another node after err, if it may.
func (b *batchResults) retry(err error) bool {
	if b.served || !b.read {
		return false
	}
	t := b.db.retryRead(b.ctx, b.target, err, b.attempt, nil)
	if t.node == nil {
		return false
	}
	b.inner.Close()
	b.target.node.Done(true)
	b.attempt++
	b.target = b.db.plain(t)
	b.target.node.Start()
	b.inner = b.target.node.Pool.SendBatch(b.ctx, b.batch)
	return true
}

// serve records that a result reached the caller.
func (b *batchResults) serve(err error) {
	if !b.served && err == nil && b.read {
		b.db.servedBy(&b.target)
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
		if err == nil && !b.served && b.read {
			// Peek, as Query does, so that a dead node shows before any
			// row reaches the caller.
			if r.Next() {
				b.serve(nil)
				return &rows{Rows: r, peeked: true}, nil
			}
			if err = r.Err(); err == nil {
				b.serve(nil)
				return &rows{Rows: r, finished: true}, nil
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
	return &row{rows: r, err: err}
}

func (b *batchResults) Close() error {
	if b.err != nil {
		return b.err
	}
	err := b.inner.Close()
	if !b.closed {
		b.closed = true
		b.target.node.Done(b.failed || err != nil)
		if b.wrote {
			b.db.writeDone(b.sess)
		}
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
