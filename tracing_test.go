package switchyard_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
)

// routeTracer records the routes pgx's tracer callbacks see.
type routeTracer struct {
	mu     sync.Mutex
	routes map[string]switchyard.Route
}

func (r *routeTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if rt, ok := switchyard.RouteOf(ctx); ok {
		r.mu.Lock()
		r.routes[d.SQL] = rt
		r.mu.Unlock()
	}
	return ctx
}
func (r *routeTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestRouteOf: a tracer set with ConfigurePool sees, for each statement,
// where it went and why.
func TestRouteOf(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	tr := &routeTracer{routes: map[string]switchyard.Route{}}
	db := openDB(t, sharedLab(t), func(c *switchyard.Config) {
		c.ConfigurePool = func(pc *pgxpool.Config) { pc.ConnConfig.Tracer = tr }
	})
	db.Exec(ctx, "SELECT 1") // the process's earlier writes
	waitCaughtUp(t, sharedLab(t), db)
	if _, err := db.Exec(ctx, "SELECT 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "UPDATE items SET v = v WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	read, write := tr.routes["SELECT 2"], tr.routes["UPDATE items SET v = v WHERE id = 1"]
	if read.Role != switchyard.RoleReplica || read.Reason != "replica" || read.Node == "" || read.Cluster != "default" {
		t.Errorf("the read's route: %+v", read)
	}
	if write.Role != switchyard.RolePrimary || write.Reason != "write" {
		t.Errorf("the write's route: %+v", write)
	}
	if _, ok := switchyard.RouteOf(ctx); ok {
		t.Error("a context of the caller's has a route")
	}
}
