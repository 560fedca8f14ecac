package switchyard

import (
	"context"
	"time"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// ctxKey carries switchyard's per-context options.
type ctxKey struct{}

// ctxOptions is what a context asks of switchyard: routing options for the
// engine and, with WithQueryCache, a query cache. Contexts hold a pointer
// to an immutable value, so reading both costs one ctx.Value and no
// allocation.
type ctxOptions struct {
	routing engine.Options
	cache   *queryCache
	cluster string // OnCluster's
}

func fromCtx(ctx context.Context) *ctxOptions {
	o, _ := ctx.Value(ctxKey{}).(*ctxOptions)
	return o
}

// optsFrom returns what ctx asks of routing, or nil for nothing.
func optsFrom(ctx context.Context) *engine.Options {
	if o := fromCtx(ctx); o != nil {
		return &o.routing
	}
	return nil
}

// cacheFrom returns ctx's query cache, or nil.
func cacheFrom(ctx context.Context) *queryCache {
	if o := fromCtx(ctx); o != nil {
		return o.cache
	}
	return nil
}

func withOpts(ctx context.Context, f func(*ctxOptions)) context.Context {
	var o ctxOptions
	if old := fromCtx(ctx); old != nil {
		o = *old
	}
	f(&o)
	return context.WithValue(ctx, ctxKey{}, &o)
}

// Primary returns a context that sends everything run with it to the
// primary, reads included: for a read that must see the latest data of
// every session (say, right before an irreversible decision), or for code
// that keeps session state such as temporary tables across calls.
func Primary(ctx context.Context) context.Context {
	return withOpts(ctx, func(o *ctxOptions) { o.routing.Primary = true })
}

// WithSession returns a context that carries a new causal session: every
// read run with it (or with contexts derived from it) sees every write made
// with it, and never data older than an earlier read with it saw. Use one per
// request, user, or job. A session is safe for concurrent use.
func WithSession(ctx context.Context) context.Context {
	s := engine.NewSession()
	return withOpts(ctx, func(o *ctxOptions) { o.routing.Session = s })
}

// MaxStaleness returns a context whose reads accept data up to d old: any
// replica that had replayed everything the primary had written d ago will
// do. Such reads neither need nor advance the session's position. d <= 0
// removes the relaxation.
func MaxStaleness(ctx context.Context, d time.Duration) context.Context {
	return withOpts(ctx, func(o *ctxOptions) { o.routing.MaxStaleness = max(d, 0) })
}

// Latest returns a context whose reads see every transaction committed
// anywhere (any process, any client) before they began, not only their
// session's and this process's: for a read after a write made elsewhere
// (another service, a worker) when no token carries its position. Each
// such read first asks the primary for its WAL insert position (one small
// query on a pooled connection, shared by the Latest reads that began
// before it was sent), then runs on a replica that has replayed it (or
// proves so in the read's round trip), waiting up to Config.ReplicaWait,
// else on the primary, as MaxScale's causal_reads=universal does for
// MySQL. It costs a primary round trip more than a replica read, and pays
// where a read is large: the primary answers a small query instead. See
// docs/consistency.md.
func Latest(ctx context.Context) context.Context {
	return withOpts(ctx, func(o *ctxOptions) { o.routing.Latest = true })
}

// WithToken returns a context carrying a new session that starts at the
// position in token (from DB.Token, on this or another process): its reads
// see everything the token's session had written or read. Use it to carry
// a user's position across requests (a cookie, a header; see package
// httpsession) or into a background job. A malformed token is an error
// (ErrBadToken). A token from another cluster is ignored, and one ahead of
// the primary (forged, or from a timeline that was lost in a failover) is
// clamped to the primary's position at its first read; both are counted in
// Stats. Neither can stall reads.
func WithToken(ctx context.Context, token string) (context.Context, error) {
	s, err := engine.RestoreSession(token)
	if err != nil {
		return ctx, err
	}
	return withOpts(ctx, func(o *ctxOptions) { o.routing.Session = s }), nil
}

// Token returns the position of ctx's session (or, without one, of the DB)
// as a short opaque string for WithToken. It costs one query to the
// primary when the session wrote since its last read, one to the replica
// that served its last read when the monitor has not polled since (within
// MonitorInterval of that read), and none otherwise.
func (db *DB) Token(ctx context.Context) (string, error) {
	if db.closed.Load() {
		return "", ErrClosed
	}
	return db.engine.Token(ctx, optsFrom(ctx), db.lend)
}
