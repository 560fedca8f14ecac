package switchyard

import (
	"context"

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
