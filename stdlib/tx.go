package stdlib

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/internal/classify"
)

// BeginTx begins a transaction with the DB's BeginTx (a read-only one may
// run on a replica), or on the pinned connection if the conn is pinned, so
// that the session state set there is visible inside it.
func (c *conn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	if c.tx != nil {
		return nil, fmt.Errorf("switchyard/stdlib: a transaction is already under way on this connection")
	}
	var o pgx.TxOptions
	switch level := sql.IsolationLevel(opts.Isolation); level {
	case sql.LevelDefault:
	case sql.LevelReadUncommitted:
		o.IsoLevel = pgx.ReadUncommitted
	case sql.LevelReadCommitted:
		o.IsoLevel = pgx.ReadCommitted
	case sql.LevelRepeatableRead, sql.LevelSnapshot:
		o.IsoLevel = pgx.RepeatableRead
	case sql.LevelSerializable:
		o.IsoLevel = pgx.Serializable
	default:
		return nil, fmt.Errorf("switchyard/stdlib: isolation level %v is not supported by PostgreSQL (use read uncommitted, read committed, repeatable read, snapshot or serializable)", level)
	}
	if opts.ReadOnly {
		o.AccessMode = pgx.ReadOnly
	}
	t := &tx{c: c, ctx: ctx, readOnly: opts.ReadOnly}
	var err error
	if c.pinned != nil {
		t.pinned = true
		t.tx, err = c.pinned.BeginTx(ctx, o)
	} else {
		t.tx, err = c.db.BeginTx(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	c.tx = t
	return t, nil
}

// tx is a database/sql transaction: a pgx transaction from the DB, or one
// on the conn's pinned connection.
type tx struct {
	c        *conn
	ctx      context.Context // BeginTx's: Commit and Rollback run with it
	tx       pgx.Tx
	pinned   bool // begun on the pinned connection
	readOnly bool

	// Session state that may outlast the transaction was set in it (on a
	// connection from the pool, which must get it back clean).
	session  bool
	prepared bool // and it may have prepared statements
	done     bool
}

var _ driver.Tx = (*tx)(nil)

// saw notes what a statement run in the transaction may leave behind:
// state that outlives the transaction (SET without LOCAL, temporary
// objects, LISTEN, PREPARE, WITH HOLD cursors, session advisory locks,
// ...), as the classifier finds it in any statement of the text.
func (t *tx) saw(st *classify.Statement) {
	if t.pinned || st.Effects&classify.EffectSessionState == 0 {
		return
	}
	t.session = true
	if st.Effects&classify.EffectPrepare != 0 {
		t.prepared = true
	}
}

// Commit commits the transaction. One that set session state on a pooled
// connection first clears that state, inside the transaction, so that it
// ends with it.
func (t *tx) Commit() error {
	if t.done {
		return pgx.ErrTxClosed
	}
	defer t.end()
	if t.session {
		pc := t.tx.Conn()
		switch {
		case pc.PgConn().TxStatus() == 'T':
			if err := resetInTx(t.ctx, pc, t.prepared); err != nil {
				t.scrub()
				return fmt.Errorf("switchyard/stdlib: clearing the session state set in the transaction failed; the transaction was rolled back: %w", err)
			}
		case pc.PgConn().TxStatus() == 'E':
			// COMMIT would roll back: do so, clean up, and say so.
			t.scrub()
			return pgx.ErrTxCommitRollback
		default:
			// The transaction was ended by SQL (COMMIT or ROLLBACK run as
			// a statement): what it wrote, if anything, is in. Clean the
			// connection, then let the DB's transaction end with a COMMIT
			// (a no-op now), which counts as the session's write.
			ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), cleanupTimeout)
			defer cancel()
			if err := discardAll(ctx, pc); err != nil {
				pc.Close(ctx)
			}
			t.tx.Commit(ctx)
			return nil
		}
	}
	return t.tx.Commit(t.ctx)
}

// Rollback rolls the transaction back. One that set session state on a
// pooled connection is rolled back by hand and the connection cleaned
// before it goes back to the pool.
func (t *tx) Rollback() error {
	if t.done {
		return pgx.ErrTxClosed
	}
	defer t.end()
	if t.session {
		t.scrub()
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), cleanupTimeout)
	defer cancel()
	return t.tx.Rollback(ctx)
}

func (t *tx) end() {
	t.done = true
	if t.c.tx == t {
		t.c.tx = nil
	}
}

// scrub rolls back by hand, cleans the connection with discardAll, and then
// lets the DB's transaction end (its ROLLBACK finds no transaction, which
// is harmless). If the connection cannot be cleaned it is closed, so that
// the pool drops it.
func (t *tx) scrub() {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), cleanupTimeout)
	defer cancel()
	pc := t.tx.Conn()
	if err := discardAll(ctx, pc); err != nil {
		pc.Close(ctx)
	}
	t.tx.Rollback(ctx)
}

// resetInTx clears, inside the transaction under way, the session state
// that would outlast it. Each of these statements may run in a transaction,
// on a primary or a standby, in read-write or read-only mode.
func resetInTx(ctx context.Context, pc *pgx.Conn, prepared bool) error {
	const reset = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *; " +
		"SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
	if _, err := pc.Exec(ctx, reset); err != nil {
		return err
	}
	if prepared {
		return pc.DeallocateAll(ctx)
	}
	return nil
}
