package integration_test

import (
	"context"

	"github.com/switchyard-db/switchyard"
)

// session returns a context carrying a new causal session: reads with it
// see the writes made with it.
func session(ctx context.Context) context.Context { return switchyard.WithSession(ctx) }
