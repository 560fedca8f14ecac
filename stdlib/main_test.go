package stdlib_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// shared is one lab for the package's tests and examples: a primary and two
// streaming replicas, the first of which replays 20ms late, so that a read
// that wrongly goes to a stale replica shows.
var shared *switchyardtest.Cluster

func TestMain(m *testing.M) {
	switchyardtest.Main(m, switchyardtest.Options{
		Replicas:   2,
		ApplyDelay: []time.Duration{20 * time.Millisecond},
	}, &shared, setup)
}

// setup makes the tables the tests use and waits until the replicas have
// them.
func setup(ctx context.Context, c *switchyardtest.Cluster) error {
	if err := c.Primary().Exec(ctx, `
		CREATE TABLE items (id serial PRIMARY KEY, v int NOT NULL DEFAULT 0, note text);
		INSERT INTO items (v) SELECT g FROM generate_series(1, 10) g;`); err != nil {
		return err
	}
	return c.WaitReplicas(ctx)
}
