package switchyard

import (
	"context"
	"time"
)

// ctxKey carries switchyard's per-context routing options.
type ctxKey struct{}

// routeOpts is what a context asks of routing. Contexts hold a pointer to an
// immutable value, so reading it costs one ctx.Value and no allocation.
type routeOpts struct {
	primary      bool          // everything to the primary
	session      *session      // nil: the DB-wide session
	maxStaleness time.Duration // > 0: reads accept data this old
}

var noOpts routeOpts

func optsFrom(ctx context.Context) *routeOpts {
	if o, ok := ctx.Value(ctxKey{}).(*routeOpts); ok {
		return o
	}
	return &noOpts
}

func withOpts(ctx context.Context, f func(*routeOpts)) context.Context {
	o := *optsFrom(ctx)
	f(&o)
	return context.WithValue(ctx, ctxKey{}, &o)
}

// Primary returns a context that sends everything run with it to the
// primary, reads included: for a read that must see the latest data of
// every session (say, right before an irreversible decision), or for code
// that keeps session state such as temporary tables across calls.
func Primary(ctx context.Context) context.Context {
	return withOpts(ctx, func(o *routeOpts) { o.primary = true })
}
