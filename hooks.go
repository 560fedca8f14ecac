package switchyard

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/hooks"
)

func init() {
	hooks.Classify = func(db any, sql string) classify.Kind { return db.(*DB).classifier.Classify(sql) }
	hooks.AcquirePrimary = func(db any, ctx context.Context) (*pgxpool.Conn, error) {
		d := db.(*DB)
		if d.closed.Load() {
			return nil, ErrClosed
		}
		return d.cluster.Primary().Pool.Acquire(ctx)
	}
	hooks.MarkWritten = func(db any, ctx context.Context) { db.(*DB).markWritten(ctx) }
}
