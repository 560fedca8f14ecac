package switchyard

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Begin starts a read-write transaction on the primary.
func (db *DB) Begin(ctx context.Context) (pgx.Tx, error) {
	return db.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx starts a transaction. Every statement of a transaction runs on
// the connection it began on: a transaction is never split across servers.
// A read-write transaction begins on the primary. A read-only one
// (AccessMode pgx.ReadOnly) begins on a replica that has replayed its
// session's position (see WithSession), as REPEATABLE READ unless another
// level is given, so that all its reads see one snapshot; with
// Serializable (which standbys do not offer), a Primary context, or no fresh
// replica, it begins on the primary.
func (db *DB) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	readOnly := opts.AccessMode == pgx.ReadOnly
	if readOnly && opts.IsoLevel == "" {
		opts.IsoLevel = pgx.RepeatableRead
	}
	var t target
	if readOnly && opts.IsoLevel != pgx.Serializable {
		t = db.plain(db.routeRead(ctx))
	} else {
		db.routes.transaction.Add(1)
		t = target{node: db.cluster.Primary()}
	}
	for attempt := 0; ; attempt++ {
		t.node.Start()
		inner, err := t.node.Pool.BeginTx(ctx, opts)
		if err == nil {
			return &tx{Tx: inner, db: db, target: t, readOnly: readOnly, sess: optsFrom(ctx).session}, nil
		}
		t.node.Done(true)
		if !readOnly {
			if again, _ := db.retry(ctx, t.node, false, err, attempt); !again {
				return nil, err
			}
			continue
		}
		if t = db.retryRead(ctx, t, err, attempt, nil); t.node == nil {
			return nil, err
		}
		t = db.plain(t)
	}
}

// tx is a transaction on one node's connection; pgx's own transaction does
// the work, tx keeps the node's counts and the session's position: a
// committed read-write transaction is a write, a read-only one on a replica
// a read.
type tx struct {
	pgx.Tx
	db       *DB
	target   target
	sess     *session
	readOnly bool
	finished bool
}

var _ pgx.Tx = (*tx)(nil)

func (t *tx) Commit(ctx context.Context) error {
	if t.finished {
		return t.Tx.Commit(ctx)
	}
	var sess *session
	if !t.readOnly {
		sess = t.db.writeStartedFor(t.sess)
		defer t.db.writeDone(sess)
	}
	err := t.Tx.Commit(ctx)
	t.finish(err)
	return err
}

func (t *tx) Rollback(ctx context.Context) error {
	err := t.Tx.Rollback(ctx)
	t.finish(nil)
	return err
}

func (t *tx) finish(err error) {
	if t.finished {
		return
	}
	t.finished = true
	t.target.node.Done(err != nil)
	if t.readOnly && err == nil {
		t.db.servedBy(&t.target)
	}
}

// TxOption adjusts a transaction run by Atomic.
type TxOption func(*pgx.TxOptions)

// ReadOnly makes Atomic run fn in a read-only REPEATABLE READ transaction on
// a replica: one consistent snapshot for every read in fn.
func ReadOnly() TxOption {
	return func(o *pgx.TxOptions) { o.AccessMode = pgx.ReadOnly }
}

// Isolation sets the transaction's isolation level.
func Isolation(level pgx.TxIsoLevel) TxOption {
	return func(o *pgx.TxOptions) { o.IsoLevel = level }
}

// rollbackTimeout bounds the rollback Atomic sends after fn failed, which
// must happen even when ctx has ended.
const rollbackTimeout = 5 * time.Second

// Atomic runs fn in a transaction: everything fn does through tx commits
// together, or none of it does. If fn returns an error or panics, the
// transaction is rolled back and the error returned (or the panic
// continued). fn must do its database work through tx only.
func (db *DB) Atomic(ctx context.Context, fn func(tx pgx.Tx) error, opts ...TxOption) (err error) {
	var txOpts pgx.TxOptions
	for _, o := range opts {
		o(&txOpts)
	}
	t, err := db.BeginTx(ctx, txOpts)
	if err != nil {
		return err
	}
	rollback := func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		t.Rollback(rctx)
	}
	defer func() {
		if p := recover(); p != nil {
			rollback()
			panic(p)
		}
	}()
	if err := fn(t); err != nil {
		rollback()
		return err
	}
	return t.Commit(ctx)
}
