package httpsession_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// shared is one lab for the package's tests and examples: a primary and two
// streaming replicas, the second of which replays 200ms late, so that a read
// that wrongly goes to it right after a write shows stale data.
var shared *switchyardtest.Cluster

// lab is the shared lab. In your own code, the DSNs come from your
// configuration.
func lab() *switchyardtest.Cluster { return shared }

const replicaDelay = 200 * time.Millisecond

func TestMain(m *testing.M) {
	switchyardtest.Main(m, switchyardtest.Options{
		Replicas:   2,
		ApplyDelay: []time.Duration{0, replicaDelay},
	}, &shared, setup)
}

// setup makes the table the tests use, one counter per test, and waits
// until the replicas have it.
func setup(ctx context.Context, c *switchyardtest.Cluster) error {
	if err := c.Primary().Exec(ctx, `
		CREATE TABLE kv (id int PRIMARY KEY, v int NOT NULL DEFAULT 0);
		INSERT INTO kv (id) SELECT g FROM generate_series(1, 100) g;
		CREATE TABLE example_users (id int PRIMARY KEY, name text NOT NULL, role text NOT NULL);
		INSERT INTO example_users VALUES (7, 'Ada', 'admin');`); err != nil {
		return err
	}
	return c.WaitReplicas(ctx)
}
