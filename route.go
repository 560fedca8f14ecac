package switchyard

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// Route says where switchyard sent a statement and why.
type Route struct {
	// Cluster and Node name the server (Node is host:port).
	Cluster, Node string
	// Role is what the server was: RolePrimary or RoleReplica.
	Role Role
	// Reason is why it went there: replica, checked, waited, stale_ok,
	// after_write, not_fresh, no_replica, forced, write, transaction,
	// pinned or latest (see stats.RouteStats).
	Reason string
}

type routeKey struct{}

// RouteOf returns the route of the statement whose context ctx is, inside
// a pgx tracer's callbacks (pgx.QueryTracer, BatchTracer, CopyFromTracer:
// set one with Config.ConfigurePool): where switchyard sent it, and why,
// for a tracer to record as attributes of its span. Statements of a
// transaction carry the route of its BEGIN. It reports false for a context
// that does not come from switchyard, and for every context when no
// node's pool has a tracer (switchyard then adds nothing to contexts).
func RouteOf(ctx context.Context) (Route, bool) {
	r, ok := ctx.Value(routeKey{}).(*Route)
	if !ok {
		return Route{}, false
	}
	return *r, true
}

// traced returns ctx with p's route, for the node's tracer, if it has one.
func (db *DB) traced(ctx context.Context, p *engine.Plan) context.Context {
	if !db.tracing {
		return ctx
	}
	r := &Route{Cluster: p.Cluster.Name, Node: p.Node.Name, Role: RoleReplica, Reason: p.Reason.String()}
	if p.Node.IsPrimary() {
		r.Role = RolePrimary
	}
	return context.WithValue(ctx, routeKey{}, r)
}

// routedTx is a transaction whose statements carry route (when a pool has
// a tracer), as its BEGIN did; so do those of its savepoint transactions.
type routedTx struct {
	pgx.Tx
	route *Route
}

func (t *routedTx) with(ctx context.Context) context.Context {
	if t.route == nil {
		return ctx
	}
	return context.WithValue(ctx, routeKey{}, t.route)
}

func (t *routedTx) Begin(ctx context.Context) (pgx.Tx, error) {
	inner, err := t.Tx.Begin(t.with(ctx))
	if err != nil || t.route == nil {
		return inner, err
	}
	return &routedTx{Tx: inner, route: t.route}, nil
}

func (t *routedTx) Commit(ctx context.Context) error   { return t.Tx.Commit(t.with(ctx)) }
func (t *routedTx) Rollback(ctx context.Context) error { return t.Tx.Rollback(t.with(ctx)) }

func (t *routedTx) CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error) {
	return t.Tx.CopyFrom(t.with(ctx), tableName, columnNames, rowSrc)
}

func (t *routedTx) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	return t.Tx.SendBatch(t.with(ctx), b)
}

func (t *routedTx) Prepare(ctx context.Context, name, sql string) (*pgconn.StatementDescription, error) {
	return t.Tx.Prepare(t.with(ctx), name, sql)
}

func (t *routedTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return t.Tx.Exec(t.with(ctx), sql, args...)
}

func (t *routedTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return t.Tx.Query(t.with(ctx), sql, args...)
}

func (t *routedTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return t.Tx.QueryRow(t.with(ctx), sql, args...)
}
