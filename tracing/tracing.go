// Package tracing tells a tracer where switchyard sent each statement and
// why: a pgx tracer that wraps the application's own (an OpenTelemetry
// tracer such as otelpgx, a logger, or nil) and, for each statement that
// switchyard routed, hands a hook the node, role, cluster and reason as
// attributes under OpenTelemetry's semantic-convention keys, for the hook
// to set on the span the wrapped tracer started.
//
//	tr := tracing.New(otelpgx.NewTracer(), func(ctx context.Context, attrs []tracing.Attribute) {
//		span := trace.SpanFromContext(ctx) // the span otelpgx just started
//		for _, a := range attrs {
//			switch v := a.Value.(type) {
//			case string:
//				span.SetAttributes(attribute.String(a.Key, v))
//			case int64:
//				span.SetAttributes(attribute.Int64(a.Key, v))
//			}
//		}
//	})
//	db, err := switchyard.Open(ctx, switchyard.Config{
//		...
//		ConfigurePool: func(c *pgxpool.Config) { c.ConnConfig.Tracer = tr },
//	})
//
// The package depends on pgx and switchyard only: OpenTelemetry stays out
// of the module (the adapter above is the application's, five lines in its
// own module, which has OpenTelemetry anyway).
//
// The attributes come from switchyard.RouteOf, which switchyard fills only
// when a node's pool has a tracer: set the same tracer on every node
// (ConfigurePool runs for each). It fills it for statements and batches run
// outside a transaction (a read after a write is a batch: the read and the
// capture of the session's position), for CopyFrom, and for a
// transaction's BEGIN and statements, which carry the transaction's route.
// A read-write transaction's COMMIT goes with the query that makes its
// outcome knowable, on the connection directly, so no tracer sees it.
package tracing

import (
	"context"
	"net"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
)

// The attributes' keys: OpenTelemetry's semantic conventions for database
// clients where they have one, switchyard.* for the rest.
const (
	// KeyDBSystem and KeyDBSystemName are "postgresql": db.system in the
	// semantic conventions before 1.26, db.system.name since.
	KeyDBSystem     = "db.system"
	KeyDBSystemName = "db.system.name"
	// KeyServerAddress and KeyServerPort are the server's host and port
	// (an int64).
	KeyServerAddress = "server.address"
	KeyServerPort    = "server.port"
	// KeyCluster is the server's cluster's name.
	KeyCluster = "switchyard.cluster"
	// KeyNode is the server as switchyard names it, host:port.
	KeyNode = "switchyard.node"
	// KeyRole is what the server was: primary or replica.
	KeyRole = "switchyard.role"
	// KeyReason is why switchyard sent the statement there: replica,
	// checked, waited, stale_ok, after_write, not_fresh, no_replica, forced,
	// write, transaction, pinned or latest (see stats.RouteStats).
	KeyReason = "switchyard.reason"
)

// Attribute is a key and its value: a string, or an int64 for
// KeyServerPort. It converts to OpenTelemetry's attribute.KeyValue with
// attribute.String or attribute.Int64, and to a slog.Attr with slog.Any.
type Attribute struct {
	Key   string
	Value any
}

// Attributes returns a route's attributes, in the order of the Key
// constants.
func Attributes(r switchyard.Route) []Attribute {
	attrs := make([]Attribute, 0, 8)
	attrs = append(attrs, Attribute{KeyDBSystem, "postgresql"}, Attribute{KeyDBSystemName, "postgresql"})
	if host, port, err := net.SplitHostPort(r.Node); err == nil {
		attrs = append(attrs, Attribute{KeyServerAddress, host})
		if p, err := strconv.ParseInt(port, 10, 64); err == nil {
			attrs = append(attrs, Attribute{KeyServerPort, p})
		}
	} else if r.Node != "" {
		attrs = append(attrs, Attribute{KeyServerAddress, r.Node})
	}
	return append(attrs,
		Attribute{KeyCluster, r.Cluster},
		Attribute{KeyNode, r.Node},
		Attribute{KeyRole, string(r.Role)},
		Attribute{KeyReason, r.Reason},
	)
}

// Tracer is a pgx tracer (set it as pgx.ConnConfig.Tracer in
// Config.ConfigurePool) that calls the tracer it wraps and then a hook with
// the route's attributes. It implements every tracer interface of pgx and
// pgxpool (query, batch, CopyFrom, prepare, connect, acquire, release) and
// passes each call on to the wrapped tracer if that implements it, so
// wrapping changes nothing of what the wrapped tracer sees.
type Tracer struct {
	next   pgx.QueryTracer
	record func(ctx context.Context, attrs []Attribute)
}

// New returns a Tracer that wraps next (which may be nil) and calls record
// once for each statement, batch and CopyFrom whose context carries its
// route (see switchyard.RouteOf and the package doc), right
// after next's start callback (TraceQueryStart, TraceBatchStart,
// TraceCopyFromStart), with the context next returned: the one holding the
// span next started, if it starts spans. record runs on the statement's goroutine
// before the statement is sent: it should be quick.
func New(next pgx.QueryTracer, record func(ctx context.Context, attrs []Attribute)) *Tracer {
	return &Tracer{next: next, record: record}
}

func (t *Tracer) recordRoute(ctx context.Context) {
	if t.record == nil {
		return
	}
	if r, ok := switchyard.RouteOf(ctx); ok {
		t.record(ctx, Attributes(r))
	}
}

// TraceQueryStart implements pgx.QueryTracer.
func (t *Tracer) TraceQueryStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if t.next != nil {
		ctx = t.next.TraceQueryStart(ctx, conn, data)
	}
	t.recordRoute(ctx)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t *Tracer) TraceQueryEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceQueryEndData) {
	if t.next != nil {
		t.next.TraceQueryEnd(ctx, conn, data)
	}
}

// TraceBatchStart implements pgx.BatchTracer.
func (t *Tracer) TraceBatchStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	if n, ok := t.next.(pgx.BatchTracer); ok {
		ctx = n.TraceBatchStart(ctx, conn, data)
	}
	t.recordRoute(ctx)
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer.
func (t *Tracer) TraceBatchQuery(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchQueryData) {
	if n, ok := t.next.(pgx.BatchTracer); ok {
		n.TraceBatchQuery(ctx, conn, data)
	}
}

// TraceBatchEnd implements pgx.BatchTracer.
func (t *Tracer) TraceBatchEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceBatchEndData) {
	if n, ok := t.next.(pgx.BatchTracer); ok {
		n.TraceBatchEnd(ctx, conn, data)
	}
}

// TraceCopyFromStart implements pgx.CopyFromTracer.
func (t *Tracer) TraceCopyFromStart(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromStartData) context.Context {
	if n, ok := t.next.(pgx.CopyFromTracer); ok {
		ctx = n.TraceCopyFromStart(ctx, conn, data)
	}
	t.recordRoute(ctx)
	return ctx
}

// TraceCopyFromEnd implements pgx.CopyFromTracer.
func (t *Tracer) TraceCopyFromEnd(ctx context.Context, conn *pgx.Conn, data pgx.TraceCopyFromEndData) {
	if n, ok := t.next.(pgx.CopyFromTracer); ok {
		n.TraceCopyFromEnd(ctx, conn, data)
	}
}

// TracePrepareStart implements pgx.PrepareTracer, for the wrapped tracer.
func (t *Tracer) TracePrepareStart(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareStartData) context.Context {
	if n, ok := t.next.(pgx.PrepareTracer); ok {
		ctx = n.TracePrepareStart(ctx, conn, data)
	}
	return ctx
}

// TracePrepareEnd implements pgx.PrepareTracer, for the wrapped tracer.
func (t *Tracer) TracePrepareEnd(ctx context.Context, conn *pgx.Conn, data pgx.TracePrepareEndData) {
	if n, ok := t.next.(pgx.PrepareTracer); ok {
		n.TracePrepareEnd(ctx, conn, data)
	}
}

// TraceConnectStart implements pgx.ConnectTracer, for the wrapped tracer.
func (t *Tracer) TraceConnectStart(ctx context.Context, data pgx.TraceConnectStartData) context.Context {
	if n, ok := t.next.(pgx.ConnectTracer); ok {
		ctx = n.TraceConnectStart(ctx, data)
	}
	return ctx
}

// TraceConnectEnd implements pgx.ConnectTracer, for the wrapped tracer.
func (t *Tracer) TraceConnectEnd(ctx context.Context, data pgx.TraceConnectEndData) {
	if n, ok := t.next.(pgx.ConnectTracer); ok {
		n.TraceConnectEnd(ctx, data)
	}
}

// TraceAcquireStart implements pgxpool.AcquireTracer, for the wrapped
// tracer.
func (t *Tracer) TraceAcquireStart(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireStartData) context.Context {
	if n, ok := t.next.(pgxpool.AcquireTracer); ok {
		ctx = n.TraceAcquireStart(ctx, pool, data)
	}
	return ctx
}

// TraceAcquireEnd implements pgxpool.AcquireTracer, for the wrapped tracer.
func (t *Tracer) TraceAcquireEnd(ctx context.Context, pool *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if n, ok := t.next.(pgxpool.AcquireTracer); ok {
		n.TraceAcquireEnd(ctx, pool, data)
	}
}

// TraceRelease implements pgxpool.ReleaseTracer, for the wrapped tracer.
func (t *Tracer) TraceRelease(pool *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	if n, ok := t.next.(pgxpool.ReleaseTracer); ok {
		n.TraceRelease(pool, data)
	}
}

var (
	_ pgx.QueryTracer       = (*Tracer)(nil)
	_ pgx.BatchTracer       = (*Tracer)(nil)
	_ pgx.CopyFromTracer    = (*Tracer)(nil)
	_ pgx.PrepareTracer     = (*Tracer)(nil)
	_ pgx.ConnectTracer     = (*Tracer)(nil)
	_ pgxpool.AcquireTracer = (*Tracer)(nil)
	_ pgxpool.ReleaseTracer = (*Tracer)(nil)
)
