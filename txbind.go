package switchyard

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// A transaction's statements, with several clusters: the first binds it
// (its BEGIN rides with it), the others must belong to its cluster.

// placeTx is where BeginTx begins a transaction at once: the only
// cluster, or OnCluster's; nil when its first statement is to say.
func (db *DB) placeTx(ctx context.Context) (*topology.Cluster, error) {
	r := &db.router
	if len(r.clusters) == 1 {
		return r.fallback, nil
	}
	if o := fromCtx(ctx); o != nil && o.cluster != "" {
		return r.named(o.cluster, "OnCluster")
	}
	return nil, nil
}

// unbound reports a transaction its first statement has yet to bind.
func (t *tx) unbound() bool { return t.Tx == nil && !t.finished }

// check refuses a statement of a bound transaction that belongs to another
// cluster. It costs nothing with one cluster.
func (t *tx) check(ctx context.Context, sql string) error {
	if len(t.db.router.clusters) == 1 || t.cluster == nil {
		return nil
	}
	at, err := t.db.place(ctx, sql)
	if err != nil {
		return err
	}
	return t.same(at)
}

func (t *tx) same(at placement) error {
	if at.explicit && at.cluster != t.cluster {
		return fmt.Errorf("%w: the statement goes to cluster %s, its transaction is on cluster %s (nothing was sent; use Atomic with AcrossClusters to write to both)", ErrCrossCluster, at.cluster.Name, t.cluster.Name)
	}
	return nil
}

// bind begins the transaction on cluster c, with queue's statements in
// the same round trip after BEGIN (and after the capture of a dirty
// session's position, for a read-only transaction on the primary). The
// batch's results that follow are the caller's to read and close.
func (t *tx) bind(ctx context.Context, c *topology.Cluster, queue func(*pgx.Batch)) (pgx.BatchResults, error) {
	db := t.db
	if err := db.planTx(t.optsCtx, &t.plan, c, t.opts); err != nil {
		return nil, err
	}
	var br pgx.BatchResults
	err := db.engine.Do(ctx, &t.plan, func(p *engine.Plan) error {
		conn, err := db.pool(p.Node).Acquire(ctx)
		if err != nil {
			return err
		}
		tctx := db.traced(ctx, p)
		if err := settleFirst(tctx, p, conn.Conn()); err != nil {
			conn.Release()
			return err
		}
		b := &pgx.Batch{}
		b.BeginTx(t.opts)
		capture := p.After == engine.AfterCapture
		if capture {
			b.Queue(engine.CaptureSQL)
		}
		if queue != nil {
			queue(b)
		}
		res := conn.Conn().SendBatch(tctx, b)
		if _, err := res.Exec(); err != nil { // BEGIN
			res.Close()
			conn.Release()
			return err
		}
		if capture {
			var l lsn.LSN
			if err := res.QueryRow().Scan(&l); err != nil {
				tx := res.Tx()
				res.Close()
				tx.Rollback(ctx)
				conn.Release()
				return err
			}
			p.Captured(l)
		}
		br = res
		t.Tx, t.conn, t.cluster = res.Tx(), conn, c
		t.route, _ = tctx.Value(routeKey{}).(*Route)
		return nil
	})
	if err != nil {
		t.plan = engine.Plan{}
		return nil, err
	}
	return br, nil
}

// bindAlone binds the transaction with BEGIN alone, for a first use that
// cannot ride with it.
func (t *tx) bindAlone(ctx context.Context, c *topology.Cluster) error {
	br, err := t.bind(ctx, c, nil)
	if err != nil {
		return err
	}
	return br.Close()
}

// first places the first statement of an unbound transaction.
func (t *tx) first(ctx context.Context, sql string) (*topology.Cluster, error) {
	if t.home != nil {
		return t.home, nil
	}
	at, err := t.db.place(ctx, sql)
	return at.cluster, err
}

func (t *tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if t.unbound() {
		c, err := t.first(ctx, sql)
		if err != nil {
			return pgconn.CommandTag{}, err
		}
		br, err := t.bind(ctx, c, func(b *pgx.Batch) { b.Queue(sql, args...) })
		if err != nil {
			return pgconn.CommandTag{}, err
		}
		tag, err := br.Exec()
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return tag, err
	}
	if err := t.check(ctx, sql); err != nil {
		return pgconn.CommandTag{}, err
	}
	return t.routedTx.Exec(ctx, sql, args...)
}

func (t *tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.unbound() {
		c, err := t.first(ctx, sql)
		if err != nil {
			return errRows(err), err
		}
		br, err := t.bind(ctx, c, func(b *pgx.Batch) { b.Queue(sql, args...) })
		if err != nil {
			return errRows(err), err
		}
		rows, err := br.Query()
		if err != nil {
			br.Close()
			return rows, err
		}
		return &batchRows{Rows: rows, batch: br}, nil
	}
	if err := t.check(ctx, sql); err != nil {
		return errRows(err), err
	}
	return t.routedTx.Query(ctx, sql, args...)
}

func (t *tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if t.unbound() {
		rows, err := t.Query(ctx, sql, args...)
		if err != nil {
			return errRow{err}
		}
		return pgxRow{rows}
	}
	if err := t.check(ctx, sql); err != nil {
		return errRow{err}
	}
	return t.routedTx.QueryRow(ctx, sql, args...)
}

func (t *tx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.unbound() || len(t.db.router.clusters) > 1 {
		at, err := t.db.placeBatch(ctx, b)
		if err != nil {
			return pgx.FailedBatchResults(b, err)
		}
		if !t.unbound() {
			if err := t.same(at); err != nil {
				return pgx.FailedBatchResults(b, err)
			}
		} else {
			br, err := t.bind(ctx, at.cluster, func(nb *pgx.Batch) { nb.QueuedQueries = append(nb.QueuedQueries, b.QueuedQueries...) })
			if err != nil {
				return pgx.FailedBatchResults(b, err)
			}
			return callerBatch{br}
		}
	}
	return t.routedTx.SendBatch(ctx, b)
}

func (t *tx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	if len(t.db.router.clusters) > 1 && len(tableName) > 0 {
		at, err := t.db.placeTable(ctx, tableSchema(tableName), tableName[len(tableName)-1])
		if err != nil {
			return 0, err
		}
		if t.unbound() {
			if err := t.bindAlone(ctx, at.cluster); err != nil {
				return 0, err
			}
		} else if err := t.same(at); err != nil {
			return 0, err
		}
	}
	return t.routedTx.CopyFrom(ctx, tableName, columnNames, rowSrc)
}

func (t *tx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	if t.unbound() {
		c, err := t.first(ctx, sql)
		if err != nil {
			return nil, err
		}
		if err := t.bindAlone(ctx, c); err != nil {
			return nil, err
		}
	} else if err := t.check(ctx, sql); err != nil {
		return nil, err
	}
	return t.routedTx.Prepare(ctx, name, sql)
}

// Begin starts a pseudo nested transaction (a savepoint). As a first use,
// it binds the transaction to OnCluster's cluster or the default one.
func (t *tx) Begin(ctx context.Context) (pgx.Tx, error) {
	if t.unbound() {
		c, err := t.db.placeConn(ctx)
		if err != nil {
			return nil, err
		}
		if err := t.bindAlone(ctx, c); err != nil {
			return nil, err
		}
	}
	return t.routedTx.Begin(ctx)
}

// LargeObjects returns the transaction's large objects. As a first use, it
// binds the transaction to the default cluster (waiting at most
// Config.PrimaryWait); if that fails, every method of what it returns
// fails.
func (t *tx) LargeObjects() pgx.LargeObjects {
	if t.unbound() {
		ctx, cancel := context.WithTimeout(context.Background(), max(t.db.engine.PrimaryWait(), time.Second))
		defer cancel()
		if err := t.bindAlone(ctx, t.db.router.fallback); err != nil {
			return pgx.FailedBatchResults(&pgx.Batch{}, err).Tx().LargeObjects()
		}
	}
	return t.routedTx.LargeObjects()
}

// Conn is the transaction's connection; nil until its first statement
// binds it, with several clusters.
func (t *tx) Conn() *pgx.Conn {
	if t.Tx == nil {
		return nil
	}
	return t.routedTx.Conn()
}

// batchRows are the rows of a transaction's first statement, read from
// the batch that began it: closing them closes the batch.
type batchRows struct {
	pgx.Rows
	batch pgx.BatchResults
}

func (r *batchRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.batch.Close()
	return false
}

func (r *batchRows) Close() {
	r.Rows.Close()
	r.batch.Close()
}

// callerBatch is a batch that began the transaction, as the caller sees
// it: it began none of its own.
type callerBatch struct{ pgx.BatchResults }

func (callerBatch) Tx() pgx.Tx { return nil }
