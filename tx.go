package switchyard

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgerr"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Begin starts a read-write transaction on the primary.
func (db *DB) Begin(ctx context.Context) (pgx.Tx, error) {
	return db.BeginTx(ctx, pgx.TxOptions{})
}

// BeginTx starts a transaction. Every statement of a transaction runs on
// the connection it began on: a transaction is never split across servers.
//
// A read-write transaction begins on the primary (waiting for one as
// writes do). Its Commit learns the transaction's id in the same round trip
// as COMMIT, so that if the connection dies during COMMIT the outcome is
// asked of the primary (pg_xact_status) rather than guessed: Commit then
// returns nil if it committed, an error if it did not, and an error wrapping
// ErrCommitUnknown if the primary cannot say.
//
// A read-only transaction (AccessMode pgx.ReadOnly) begins on a replica that
// has replayed its session's position (see WithSession), as REPEATABLE READ
// unless another level is given, so that all its reads see one snapshot;
// with Serializable (which standbys do not offer), a Primary context, or no
// fresh replica, it begins on the primary.
//
// With several clusters (Config.Clusters), a transaction begins on the
// cluster OnCluster(ctx) names; without one, on the cluster of its first
// statement, whose BEGIN goes in the same round trip as that statement
// (nothing is sent before it: BeginTx then returns at once, and a failure
// to begin shows at the first statement). A later statement that belongs
// to another cluster fails with ErrCrossCluster before anything is sent,
// and the transaction stays usable; statements that touch no table of
// Tables go with the transaction. Conn returns nil until the first
// statement. Begin (a savepoint), CopyFrom and LargeObjects as the first
// use bind it with a BEGIN of its own, on the default cluster for the
// first and last.
func (db *DB) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	readOnly := opts.AccessMode == pgx.ReadOnly
	if readOnly && opts.IsoLevel == "" {
		opts.IsoLevel = pgx.RepeatableRead
	}
	t := &tx{db: db, owned: true, opts: opts, optsCtx: ctx}
	if !readOnly && cacheFrom(ctx) != nil {
		db.wrote(ctx)
		t.wrote = ctx
	}
	at, err := db.placeTx(ctx)
	if err != nil {
		return nil, err
	}
	if at == nil {
		return t, nil // bound by its first statement
	}
	t.cluster = at
	if err := db.planTx(ctx, &t.plan, at, opts); err != nil {
		return nil, err
	}
	err = db.engine.Do(ctx, &t.plan, func(p *engine.Plan) error {
		conn, err := db.pool(p.Node).Acquire(ctx)
		if err != nil {
			return err
		}
		if err := t.begin(db.traced(ctx, p), conn, opts); err != nil {
			conn.Release()
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// tx is a transaction on one node's connection; pgx's own transaction does
// the work but for a read-write transaction's COMMIT (see BeginTx). Its
// plan keeps the node's counts and the session's position: a committed
// read-write transaction is a write, a read-only one a read.
type tx struct {
	routedTx
	db       *DB
	plan     engine.Plan
	conn     *pgxpool.Conn
	owned    bool // conn goes back to the pool at the end (else it is a Conn's)
	finished bool
	wrote    context.Context // a read-write transaction's, with a query cache: emptied at its end

	// With several clusters: the transaction's cluster, nil until its
	// first statement binds it; and what its BEGIN needs.
	cluster  *topology.Cluster
	opts     pgx.TxOptions
	optsCtx  context.Context   // BeginTx's: the session and options it runs with
	home     *topology.Cluster // a part of a block across clusters: its cluster
	wroteSQL bool              // a part ran a statement that is not a pure read

	resetStatements bool // the server threw the connection's statements away (statementsReset)
}

var _ pgx.Tx = (*tx)(nil)

// begin begins the transaction on conn. A read-only transaction of a dirty
// session on the primary takes the session's position as its first
// statement: its snapshot, taken by that statement, covers the session's
// writes, and so does the position. Without it the session would stay
// dirty for as long as it only used read-only transactions.
func (t *tx) begin(ctx context.Context, conn *pgxpool.Conn, opts pgx.TxOptions) error {
	if err := settleFirst(ctx, &t.plan, conn.Conn()); err != nil {
		return err
	}
	inner, err := conn.Conn().BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	if t.plan.After == engine.AfterCapture {
		var l lsn.LSN
		if err := inner.QueryRow(ctx, engine.CaptureSQL).Scan(&l); err != nil {
			inner.Rollback(ctx)
			return err
		}
		t.plan.Captured(l)
	}
	t.Tx, t.conn = inner, conn
	t.route, _ = ctx.Value(routeKey{}).(*Route)
	return nil
}

// settleFirst runs the settle a read-only transaction's plan may carry
// (engine.BeforeSettle: it begins on the primary after its session read
// from a replica) ahead of BEGIN, in a round trip of its own: inside the
// transaction the settle's own statement would take the snapshot, before
// it has waited.
func settleFirst(ctx context.Context, p *engine.Plan, conn *pgx.Conn) error {
	if p.Before != engine.BeforeSettle {
		return nil
	}
	return conn.PgConn().Exec(ctx, engine.SettleSQL).Close()
}

func (t *tx) Commit(ctx context.Context) error {
	if t.finished {
		return pgx.ErrTxClosed
	}
	if t.Tx == nil { // never bound: nothing began
		t.finish(nil)
		return nil
	}
	var err error
	if t.plan.ReadOnlyTx {
		err = t.Tx.Commit(t.with(ctx))
	} else {
		err = t.commit(ctx)
	}
	t.finish(err)
	return err
}

func (t *tx) commit(ctx context.Context) error {
	pg := t.conn.Conn().PgConn()
	if pg.TxStatus() == 'E' {
		// A statement failed: PostgreSQL would turn COMMIT into ROLLBACK.
		t.Tx.Rollback(t.with(ctx))
		return pgx.ErrTxCommitRollback
	}
	tag, err := t.db.engine.Commit(t.with(ctx), &t.plan, pg, t.db.lend)
	if err == nil && tag.String() == "ROLLBACK" {
		return pgx.ErrTxCommitRollback
	}
	return err
}

func (t *tx) Rollback(ctx context.Context) error {
	if t.finished {
		return pgx.ErrTxClosed
	}
	if t.Tx == nil {
		t.finish(nil)
		return nil
	}
	err := t.Tx.Rollback(t.with(ctx))
	t.finish(nil)
	return err
}

func (t *tx) finish(err error) {
	if t.finished {
		return
	}
	t.finished = true
	if t.owned && t.conn != nil {
		if t.resetStatements && t.conn.Conn().PgConn().TxStatus() == 'I' {
			ctx, cancel := context.WithTimeout(context.Background(), rollbackTimeout)
			t.conn.Conn().DeallocateAll(ctx)
			cancel()
		}
		// A connection left in a transaction, or broken, is closed by the
		// pool rather than reused.
		t.conn.Release()
	}
	if t.plan.ReadOnlyTx && err == nil && t.Tx != nil {
		t.plan.Served()
	}
	t.plan.Finish(err)
	if t.wrote != nil {
		t.db.wrote(t.wrote)
	}
}

// TxOption adjusts a transaction run by Atomic.
type TxOption func(*atomicConfig)

type atomicConfig struct {
	tx          pgx.TxOptions
	maxAttempts int
	across      bool
}

// ReadOnly makes Atomic run fn in a read-only REPEATABLE READ transaction on
// a replica fresh enough for the session: one consistent snapshot for every
// read in fn.
func ReadOnly() TxOption {
	return func(c *atomicConfig) { c.tx.AccessMode = pgx.ReadOnly }
}

// Isolation sets the transaction's isolation level.
func Isolation(level pgx.TxIsoLevel) TxOption {
	return func(c *atomicConfig) { c.tx.IsoLevel = level }
}

// MaxAttempts bounds how many times Atomic runs fn (default 10); the
// context's deadline bounds it too.
func MaxAttempts(n int) TxOption {
	return func(c *atomicConfig) { c.maxAttempts = max(n, 1) }
}

// DefaultMaxAttempts is how many times Atomic runs fn unless MaxAttempts
// says otherwise.
const DefaultMaxAttempts = 10

// rollbackTimeout bounds the rollback Atomic sends after fn failed, which
// must happen even when ctx has ended.
const rollbackTimeout = 5 * time.Second

// Atomic runs fn in a transaction: everything fn does through tx commits
// together, or none of it does. If fn returns an error or panics, the
// transaction is rolled back and the error returned (or the panic
// continued).
//
// Atomic runs fn again, in a new transaction, after a failure that proves
// nothing was committed and that another try may cure: a serialization
// failure (40001), a deadlock (40P01), a primary that turned read-only in a
// failover (25006), a server shutting down or starting (57P01, 57P02,
// 57P03), a lost connection before COMMIT was sent, or one during COMMIT
// that the primary confirms did not commit. It waits between tries with
// exponential backoff and jitter, up to MaxAttempts tries or until ctx ends.
// It never runs fn again after any other error (a constraint violation, an
// error of fn's own), nor after ErrCommitUnknown. So fn may run more than
// once and must do its database work through tx only; its other effects
// should be idempotent.
func (db *DB) Atomic(ctx context.Context, fn func(tx pgx.Tx) error, opts ...TxOption) error {
	cfg := atomicConfig{maxAttempts: DefaultMaxAttempts}
	for _, o := range opts {
		o(&cfg)
	}
	begin := db.BeginTx
	if cfg.across {
		begin = db.beginAcross
	}
	return db.engine.Atomic(ctx, cfg.maxAttempts, func() error { return atomicOnce(ctx, begin, fn, cfg.tx) })
}

// atomicOnce runs fn once in a transaction begun with begin.
func atomicOnce(ctx context.Context, begin func(context.Context, pgx.TxOptions) (pgx.Tx, error), fn func(tx pgx.Tx) error, opts pgx.TxOptions) error {
	t, err := begin(ctx, opts)
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
		if r, ok := t.(statementResetter); ok && pgerr.Code(err) == pgerr.InvalidStatementName {
			r.statementsReset()
		}
		rollback()
		return err
	}
	return t.Commit(ctx)
}

// statementResetter is a transaction told that the server threw away its
// connection's prepared statements (26000): it forgets them all when it
// gives the connection back, so that the next attempt does not fail on
// each of them in turn.
type statementResetter interface{ statementsReset() }

func (t *tx) statementsReset() { t.resetStatements = true }
