package switchyard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

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
func (db *DB) BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	if opts.AccessMode == pgx.ReadOnly {
		return db.beginReadOnly(ctx, opts)
	}
	db.routes.transaction.Add(1)
	for attempt := 0; ; attempt++ {
		n, err := db.primary(ctx)
		if err != nil {
			return nil, err
		}
		n.Start()
		conn, err := n.Pool.Acquire(ctx)
		var inner pgx.Tx
		if err == nil {
			if inner, err = conn.Conn().BeginTx(ctx, opts); err != nil {
				conn.Release()
			}
		}
		if err == nil {
			return &tx{Tx: inner, db: db, target: target{node: n}, conn: conn, sess: optsFrom(ctx).session}, nil
		}
		n.Done(true)
		if again, _ := db.retry(ctx, n, false, err, attempt); !again {
			return nil, err
		}
	}
}

func (db *DB) beginReadOnly(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	if opts.IsoLevel == "" {
		opts.IsoLevel = pgx.RepeatableRead
	}
	var t, routed target
	if opts.IsoLevel == pgx.Serializable {
		db.routes.transaction.Add(1)
		t = db.plain(db.primaryTarget(optsFrom(ctx).session))
	} else {
		routed = db.routeRead(ctx)
		t = db.plain(routed)
	}
	for attempt := 0; ; attempt++ {
		if err := db.ready(ctx, &t); err != nil {
			return nil, err
		}
		t.node.Start()
		inner, err := t.node.Pool.BeginTx(ctx, opts)
		if err == nil {
			if routed.capture && routed.sess.dirty() && t.node == db.cluster.Primary() {
				// A session that wrote reads in this transaction on the
				// primary: its snapshot, taken by this first statement,
				// covers the writes, and so does the position read with it.
				// Without it the session would stay dirty for as long as
				// it only used read-only transactions.
				var text string
				if err := inner.QueryRow(ctx, captureSQL).Scan(&text); err == nil {
					if l, err := lsn.Parse(text); err == nil {
						db.captured(&routed, l)
					}
				}
			}
			return &tx{Tx: inner, db: db, target: t, readOnly: true, sess: optsFrom(ctx).session}, nil
		}
		t.node.Done(true)
		if t = db.retryRead(ctx, t, err, attempt, nil); t.node == nil {
			return nil, err
		}
		t = db.plain(t)
	}
}

// tx is a transaction on one node's connection; pgx's own transaction does
// the work but for a read-write transaction's COMMIT (see BeginTx). tx keeps
// the node's counts and the session's position: a committed read-write
// transaction is a write, a read-only one on a replica a read.
type tx struct {
	pgx.Tx
	db       *DB
	target   target
	conn     *pgxpool.Conn // a read-write transaction's connection, released at the end
	sess     *session
	readOnly bool
	finished bool
}

var _ pgx.Tx = (*tx)(nil)

// xidSQL reads the transaction's id (NULL if it wrote nothing, so has
// nothing to lose) and when the server started, sent just ahead of COMMIT.
const xidSQL = "SELECT pg_current_xact_id_if_assigned()::text, extract(epoch FROM pg_postmaster_start_time())::float8::text"

func (t *tx) Commit(ctx context.Context) error {
	if t.finished {
		return pgx.ErrTxClosed
	}
	if t.conn == nil {
		err := t.Tx.Commit(ctx)
		t.finish(err)
		return err
	}
	sess := t.db.writeStartedFor(t.sess)
	defer t.db.writeDone(sess)
	err := t.commit(ctx)
	t.finish(err)
	return err
}

func (t *tx) commit(ctx context.Context) error {
	pg := t.conn.Conn().PgConn()
	if pg.TxStatus() == 'E' {
		// A statement failed: PostgreSQL would turn COMMIT into ROLLBACK.
		t.Tx.Rollback(ctx)
		return pgx.ErrTxCommitRollback
	}
	primary, timeline := t.target.node, t.target.node.Timeline()

	// One round trip: the id, a Flush (so the server sends the id before it
	// runs COMMIT), COMMIT, Sync. Whatever then breaks, an id in hand means
	// the outcome can be asked for; an error from the server without the id
	// means COMMIT never ran (replies arrive in order); a connection that
	// simply broke before the id leaves the outcome unknown.
	p := pg.StartPipeline(ctx)
	p.SendQueryParams(xidSQL, nil, nil, nil, nil)
	p.SendFlushRequest()
	p.SendQueryParams("COMMIT", nil, nil, nil, nil)
	err := p.Sync()
	var xid, started []byte
	gotXid := false
	var tag pgconn.CommandTag
	if err == nil {
		xid, started, gotXid, err = readXid(p)
	}
	if err == nil {
		tag, err = readTag(p)
	}
	if err == nil {
		_, err = p.GetResults() // the Sync
	}
	if cerr := p.Close(); err == nil {
		err = cerr
	}
	if err != nil && tag.String() == "COMMIT" {
		// COMMIT's reply arrived: it committed, whatever broke after.
		return nil
	}
	if err == nil {
		if tag.String() == "ROLLBACK" {
			return pgx.ErrTxCommitRollback
		}
		return nil
	}

	var pgErr *pgconn.PgError
	isPgErr := errors.As(err, &pgErr)
	switch {
	case pgconn.SafeToRetry(err):
		return err // nothing was sent; the connection and the transaction are gone
	case isPgErr && !gotXid:
		// The server reported an error (or ended the session) before the
		// id, which it sends before it runs COMMIT: the SELECT failed or
		// was cut short, so COMMIT never ran.
		return &errNotCommitted{err}
	case isPgErr && !fatal(pgErr):
		return err // COMMIT failed (a deferred constraint, a serialization failure)
	case !gotXid:
		t.db.routes.inDoubtUnknown.Add(1)
		return fmt.Errorf("%w: the connection failed before the transaction id arrived: %w", ErrCommitUnknown, err)
	case xid == nil:
		return &errNotCommitted{err} // it wrote nothing, so nothing can have committed
	}
	// The connection died, or the server ended the session, during COMMIT
	// (a FATAL can even follow a commit: a canceled synchronous
	// replication wait). Ask.
	return t.db.resolve(ctx, primary, timeline, inDoubt{xid: string(xid), started: string(started)}, err)
}

// readXid reads the result of xidSQL from a pipeline.
func readXid(p *pgconn.Pipeline) (xid, started []byte, ok bool, err error) {
	res, err := p.GetResults()
	if err != nil {
		return nil, nil, false, err
	}
	rr, isReader := res.(*pgconn.ResultReader)
	if !isReader {
		return nil, nil, false, fmt.Errorf("switchyard: unexpected %T reading the transaction id", res)
	}
	r := rr.Read()
	if r.Err != nil {
		return nil, nil, false, r.Err
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 2 {
		return nil, nil, false, errors.New("switchyard: no transaction id in the reply")
	}
	if v := r.Rows[0][0]; v != nil {
		xid = append([]byte(nil), v...)
	}
	return xid, append([]byte(nil), r.Rows[0][1]...), true, nil
}

// readTag reads a command's tag from a pipeline.
func readTag(p *pgconn.Pipeline) (pgconn.CommandTag, error) {
	res, err := p.GetResults()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	rr, isReader := res.(*pgconn.ResultReader)
	if !isReader {
		return pgconn.CommandTag{}, fmt.Errorf("switchyard: unexpected %T reading COMMIT's reply", res)
	}
	return rr.Close()
}

// fatal reports whether the server ended the session with err.
func fatal(err *pgconn.PgError) bool {
	sev := cmp.Or(err.SeverityUnlocalized, err.Severity)
	return sev == "FATAL" || sev == "PANIC"
}

// resolveWindow bounds how long an in-doubt commit is asked about.
func (db *DB) resolveWindow() time.Duration { return db.primaryWait + 5*time.Second }

// errNotCommitted wraps the cause of a COMMIT that did not happen, as the
// protocol or pg_xact_status showed; Atomic may run the transaction again.
type errNotCommitted struct{ cause error }

func (e *errNotCommitted) Error() string {
	return "switchyard: the transaction did not commit: " + e.cause.Error()
}
func (e *errNotCommitted) Unwrap() error { return e.cause }

// inDoubt is a transaction whose COMMIT was sent when the connection failed:
// its id, and when its server had started (seconds since the epoch, as text).
type inDoubt struct {
	xid, started string
}

// resolveSQL asks about an in-doubt transaction: its status; when the
// server started; and, should it have restarted since, what crash recovery
// accounted for. A transaction whose WAL had not reached disk at the crash
// leaves no trace, and its id is handed out again after recovery: then
// pg_xact_status reports the new owner's fate. Recovery accounts for every
// id below the next id of its end-of-recovery checkpoint (a shutdown
// checkpoint, so redo_lsn = checkpoint_lsn, taken after the start), and
// commit timestamps, when tracked, tell the old owner's commit from the new
// one's.
const resolveSQL = `SELECT pg_xact_status($1::xid8),
	extract(epoch FROM pg_postmaster_start_time())::float8::text,
	c.checkpoint_lsn = c.redo_lsn AND c.checkpoint_time >= pg_postmaster_start_time(),
	c.next_xid,
	CASE WHEN current_setting('track_commit_timestamp')::bool
		THEN pg_xact_commit_timestamp((($1::xid8)::text::numeric % 4294967296)::text::xid) < pg_postmaster_start_time() END
FROM pg_control_checkpoint() c`

// resolve learns the outcome of transaction d, whose COMMIT was sent to
// primary (on timeline) when the connection failed with cause: it asks the
// same primary, once it answers again.
func (db *DB) resolve(ctx context.Context, primary *topology.Node, timeline uint32, d inDoubt, cause error) error {
	if primary.MarkDown(time.Now()) {
		db.log.Warn("switchyard: node down", "node", primary.Name, "role", "primary", "err", cause)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), db.resolveWindow())
	defer cancel()
	unknown := func(why string) error {
		db.routes.inDoubtUnknown.Add(1)
		return fmt.Errorf("%w: transaction %s: %s: %w", ErrCommitUnknown, d.xid, why, cause)
	}
	for {
		if p := db.cluster.Primary(); p != primary || (timeline != 0 && p.Timeline() != 0 && p.Timeline() != timeline) {
			return unknown("the primary changed before the outcome could be learned")
		}
		var (
			status, started, nextXid *string
			endOfRecovery            *bool
			committedBeforeStart     *bool
		)
		err := primary.Pool.QueryRow(ctx, resolveSQL, d.xid).Scan(&status, &started, &endOfRecovery, &nextXid, &committedBeforeStart)
		switch {
		case err == nil && status == nil:
			return unknown("too old to look up")
		case err == nil && *status == "in progress":
			// The old backend is still committing: ask again.
		case err == nil:
			committed := *status == "committed"
			if started == nil || *started != d.started {
				// The server restarted: is the status ours?
				switch {
				case committedBeforeStart != nil:
					committed = committed && *committedBeforeStart
				case endOfRecovery == nil || !*endOfRecovery || nextXid == nil:
					if committed {
						return unknown("the server restarted, and its first checkpoint since is gone")
					}
				case !xidBelow(d.xid, *nextXid):
					committed = false // unknown to recovery: its WAL was lost, and the id may be reused
				}
			}
			if committed {
				db.routes.inDoubtCommitted.Add(1)
				db.log.Info("switchyard: in-doubt commit resolved: committed", "xid", d.xid)
				return nil
			}
			db.routes.inDoubtAborted.Add(1)
			db.log.Info("switchyard: in-doubt commit resolved: not committed", "xid", d.xid)
			return &errNotCommitted{cause}
		case !pgerr.NodeDown(err):
			return unknown(fmt.Sprintf("asking failed (%v)", err))
		}
		select {
		case <-ctx.Done():
			return unknown(fmt.Sprintf("the primary did not answer in %v", db.resolveWindow()))
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// xidBelow reports whether full transaction id xid (decimal) is below a
// checkpoint's next_xid ("epoch:xid").
func xidBelow(xid, next string) bool {
	x, err1 := strconv.ParseUint(xid, 10, 64)
	epoch, low, ok := strings.Cut(next, ":")
	e, err2 := strconv.ParseUint(epoch, 10, 32)
	l, err3 := strconv.ParseUint(low, 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || !ok {
		return false
	}
	return x < e<<32|l
}

func (t *tx) Rollback(ctx context.Context) error {
	if t.finished {
		return pgx.ErrTxClosed
	}
	err := t.Tx.Rollback(ctx)
	t.finish(nil)
	return err
}

func (t *tx) finish(err error) {
	if t.finished {
		return
	}
	t.finished = true
	if t.conn != nil {
		// A connection left in a transaction, or broken, is closed by the
		// pool rather than reused.
		t.conn.Release()
	}
	t.target.node.Done(err != nil)
	if t.readOnly && err == nil {
		t.db.servedBy(&t.target)
	}
}

// TxOption adjusts a transaction run by Atomic.
type TxOption func(*atomicConfig)

type atomicConfig struct {
	tx          pgx.TxOptions
	maxAttempts int
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
	for attempt := 1; ; attempt++ {
		err := db.atomicOnce(ctx, fn, cfg.tx)
		if err == nil || attempt >= cfg.maxAttempts || ctx.Err() != nil || !retryableTx(err) {
			return err
		}
		db.routes.atomicRetries.Add(1)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(backoff(attempt)):
		}
	}
}

func (db *DB) atomicOnce(ctx context.Context, fn func(tx pgx.Tx) error, opts pgx.TxOptions) error {
	t, err := db.BeginTx(ctx, opts)
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

// retryableTx reports whether a transaction that failed with err certainly
// did not commit and may succeed if run again.
func retryableTx(err error) bool {
	if errors.Is(err, ErrCommitUnknown) || errors.Is(err, ErrNoPrimary) || errors.Is(err, ErrClosed) {
		return false
	}
	if nc := (*errNotCommitted)(nil); errors.As(err, &nc) {
		return true
	}
	switch pgerr.Code(err) {
	case pgerr.SerializationFailure, pgerr.DeadlockDetected, pgerr.ReadOnlySQLTransaction,
		pgerr.AdminShutdown, pgerr.CrashShutdown, pgerr.CannotConnectNow:
		return true
	case "":
		// No SQLSTATE: a lost connection (before COMMIT; a loss during
		// COMMIT comes back resolved, as errNotCommitted or
		// ErrCommitUnknown).
		return pgerr.NodeDown(err)
	}
	return false
}

// backoff is the wait before try attempt+1: exponential from 10 ms, capped
// at 1 s, with full jitter (uniform in [d/2, d]) so that clients that failed
// together do not retry together.
func backoff(attempt int) time.Duration {
	d := min(10*time.Millisecond<<min(attempt-1, 10), time.Second)
	return d/2 + rand.N(d/2+1)
}
