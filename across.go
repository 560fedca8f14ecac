package switchyard

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// AcrossClusters lets an Atomic block touch several clusters (see
// Config.Clusters) and makes it atomic across all of them: each statement
// goes to its cluster as outside a transaction (one that touches two
// clusters is still ErrCrossCluster), each cluster's part runs in a
// transaction of its own on that cluster's primary, and at the end, if
// more than one part wrote, they commit with two-phase commit: the other
// parts are prepared (PREPARE TRANSACTION) while the decision is recorded
// in the first writing part's cluster (in switchyard.decisions, made on
// first use), that part's commit is the decision, and then the prepared
// parts are committed (COMMIT PREPARED). A failure before the decision
// rolls every part back (and Atomic may run fn again, as usual); after it
// every part is committed, if need be by recovery, which finishes what a
// crash or an unreachable primary left, when a DB opens and every few
// seconds after. Atomic returns nil once the decision is durable, and an
// error wrapping ErrCommitUnknown only when the decision's own commit was
// lost and could not be resolved.
//
// It needs max_prepared_transactions > 0 on every cluster's primary (and
// replicas): without it Atomic fails at once, naming the setting. A block
// that writes to one cluster costs what any transaction does; across
// clusters, two round trips more, each in parallel over the clusters.
// Savepoints (tx.Begin) are not supported in such a block, and Conn
// returns nil. With asynchronous replication, a failover that loses a
// cluster's last commits loses them from the block too: two-phase commit
// cannot restore what a cluster itself lost.
func AcrossClusters() TxOption {
	return func(c *atomicConfig) { c.across = true }
}

// beginAcross begins a block across clusters: nothing is sent until its
// statements say where.
func (db *DB) beginAcross(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error) {
	if db.closed.Load() {
		return nil, ErrClosed
	}
	if len(db.router.clusters) > 1 {
		if err := db.engine.CheckTwoPhase(); err != nil {
			return nil, err
		}
	}
	if cacheFrom(ctx) != nil && opts.AccessMode != pgx.ReadOnly {
		db.wrote(ctx)
	}
	return &acrossTx{db: db, ctx: ctx, opts: opts}, nil
}

// acrossTx is a block across clusters: one transaction per cluster,
// begun by its first statement.
type acrossTx struct {
	db       *DB
	ctx      context.Context // Atomic's
	opts     pgx.TxOptions
	parts    []*tx // in the order they began; the first writer coordinates
	finished bool
}

var _ pgx.Tx = (*acrossTx)(nil)

// part is the block's transaction on cluster c, made if need be.
func (a *acrossTx) part(c *topology.Cluster) *tx {
	for _, p := range a.parts {
		if p.home == c {
			return p
		}
	}
	p := &tx{db: a.db, owned: true, opts: a.opts, optsCtx: a.ctx, home: c}
	a.parts = append(a.parts, p)
	return p
}

// partFor places sql and returns its part.
func (a *acrossTx) partFor(ctx context.Context, sql string) (*tx, error) {
	if a.finished {
		return nil, pgx.ErrTxClosed
	}
	at, err := a.db.place(ctx, sql)
	if err != nil {
		return nil, err
	}
	p := a.part(at.cluster)
	if !a.db.isRead(sql) {
		p.wroteSQL = true
	}
	return p, nil
}

func (a *acrossTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	p, err := a.partFor(ctx, sql)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	return p.Exec(ctx, sql, args...)
}

func (a *acrossTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	p, err := a.partFor(ctx, sql)
	if err != nil {
		return errRows(err), err
	}
	return p.Query(ctx, sql, args...)
}

func (a *acrossTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	p, err := a.partFor(ctx, sql)
	if err != nil {
		return errRow{err}
	}
	return p.QueryRow(ctx, sql, args...)
}

func (a *acrossTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if a.finished {
		return pgx.FailedBatchResults(b, pgx.ErrTxClosed)
	}
	at, err := a.db.placeBatch(ctx, b)
	if err != nil {
		return pgx.FailedBatchResults(b, err)
	}
	p := a.part(at.cluster)
	for _, q := range b.QueuedQueries {
		if !a.db.isRead(q.SQL) {
			p.wroteSQL = true
		}
	}
	return p.SendBatch(ctx, b)
}

func (a *acrossTx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	if a.finished {
		return 0, pgx.ErrTxClosed
	}
	if len(tableName) == 0 {
		return 0, errors.New("switchyard: CopyFrom with an empty table name")
	}
	at, err := a.db.placeTable(ctx, tableSchema(tableName), tableName[len(tableName)-1])
	if err != nil {
		return 0, err
	}
	p := a.part(at.cluster)
	p.wroteSQL = true
	return p.CopyFrom(ctx, tableName, columnNames, rowSrc)
}

func (a *acrossTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	p, err := a.partFor(ctx, sql)
	if err != nil {
		return nil, err
	}
	return p.Prepare(ctx, name, sql)
}

// Begin is not supported in a block across clusters.
func (a *acrossTx) Begin(context.Context) (pgx.Tx, error) {
	return nil, errors.New("switchyard: savepoints (tx.Begin) are not supported in a block across clusters")
}

// LargeObjects are those of the default cluster's part.
func (a *acrossTx) LargeObjects() pgx.LargeObjects {
	p := a.part(a.db.router.fallback)
	p.wroteSQL = true
	return p.LargeObjects()
}

// Conn is nil: the block has a connection per cluster.
func (a *acrossTx) Conn() *pgx.Conn { return nil }

func (a *acrossTx) Rollback(ctx context.Context) error {
	if a.finished {
		return pgx.ErrTxClosed
	}
	a.finished = true
	defer a.ended()
	return a.rollback(ctx)
}

// rollback rolls every part back.
func (a *acrossTx) rollback(ctx context.Context) error {
	var errs []error
	for _, p := range a.parts {
		if err := p.Rollback(ctx); err != nil && !errors.Is(err, pgx.ErrTxClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (a *acrossTx) Commit(ctx context.Context) error {
	if a.finished {
		return pgx.ErrTxClosed
	}
	a.finished = true
	defer a.ended()
	var begun []*tx
	for _, p := range a.parts {
		if p.Tx != nil {
			begun = append(begun, p)
		}
	}
	switch len(begun) {
	case 0:
		return nil
	case 1:
		return begun[0].Commit(ctx)
	}
	parts := make([]*engine.Part, len(begun))
	for i, p := range begun {
		pg := p.conn.Conn().PgConn()
		if pg.TxStatus() == 'E' {
			// A statement failed: the whole block would be rolled back.
			a.rollback(ctx)
			return pgx.ErrTxCommitRollback
		}
		parts[i] = &engine.Part{Plan: &p.plan, Conn: pg, Wrote: p.wroteSQL && p.opts.AccessMode != pgx.ReadOnly}
	}
	// The first part that wrote coordinates: order the writers first.
	for i := 1; i < len(parts); i++ {
		for j := i; j > 0 && parts[j].Wrote && !parts[j-1].Wrote; j-- {
			parts[j], parts[j-1] = parts[j-1], parts[j]
			begun[j], begun[j-1] = begun[j-1], begun[j]
		}
	}
	err := a.db.engine.CommitAcross(ctx, parts, a.db.dial)
	for _, p := range begun {
		p.finish(err)
	}
	if err != nil && len(begun) > 1 {
		err = fmt.Errorf("switchyard: commit across clusters %s: %w", clusterNames(begun), err)
	}
	return err
}

func (a *acrossTx) statementsReset() {
	for _, p := range a.parts {
		p.statementsReset()
	}
}

// ended empties the block's query cache, if any, as any write's end does
// (Commit and Rollback, whatever the number of parts).
func (a *acrossTx) ended() {
	if a.opts.AccessMode != pgx.ReadOnly {
		a.db.wrote(a.ctx)
	}
}

func clusterNames(parts []*tx) string {
	s := ""
	for i, p := range parts {
		if i > 0 {
			s += ", "
		}
		s += p.home.Name
	}
	return s
}
