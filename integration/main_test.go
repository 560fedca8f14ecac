package integration_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// lab is a primary and two streaming replicas on this machine; the first
// replica replays 20ms late, so that a read that wrongly goes to a stale
// replica shows.
var lab *switchyardtest.Cluster

func TestMain(m *testing.M) {
	switchyardtest.Main(m, switchyardtest.Options{
		Replicas:   2,
		ApplyDelay: []time.Duration{20 * time.Millisecond},
	}, &lab, nil)
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// env is a DB on the lab and a *sql.DB on it.
type env struct {
	db    *switchyard.DB
	sqlDB *sql.DB
}

// open opens a DB whose connections are named app, and a *sql.DB on it.
// When the test ends it closes both (the *sql.DB first) and fails the test
// if any connection named app is left on a server.
func open(t *testing.T, app string) *env {
	t.Helper()
	lab := switchyardtest.Need(t, lab)
	ctx := testCtx(t)
	cfg := switchyard.Config{Primary: lab.Primary().DSN() + "&application_name=" + app}
	for _, r := range lab.Replicas() {
		cfg.Replicas = append(cfg.Replicas, r.DSN()+"&application_name="+app)
	}
	db, err := switchyard.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{db: db, sqlDB: stdlib.OpenDB(db)}
	t.Cleanup(func() {
		if err := e.sqlDB.Close(); err != nil {
			t.Error(err)
		}
		db.Close()
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := countApp(t, app)
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d server connections named %s are left after closing", n, app)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return e
}

// countApp counts the connections named app on every server of the lab.
func countApp(t *testing.T, app string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	total := 0
	for _, n := range lab.Nodes() {
		c, err := n.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var k int
		err = c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&k)
		c.Close(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		total += k
	}
	return total
}

// primaryRoutes is how many statements and transactions the DB sent to the
// primary so far.
func (e *env) primaryRoutes() uint64 {
	for _, n := range e.db.Stats().Nodes {
		if n.Role == switchyard.RolePrimary {
			return n.Routed
		}
	}
	return 0
}

// replicaRoutes is how many statements and transactions the DB sent to
// replicas so far (plain and freshness-checked reads alike).
func (e *env) replicaRoutes() uint64 {
	var total uint64
	for _, n := range e.db.Stats().Nodes {
		if n.Role == switchyard.RoleReplica {
			total += n.Routed
		}
	}
	return total
}

// eventually retries check for a few seconds until it holds. Whether a
// read goes to a replica, and what it sees there, depends on how far the
// replicas have replayed the writes before it; an error (a table a replica
// does not have yet) counts as not yet.
func eventually(t *testing.T, what string, check func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := check()
		if ok && err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("never: %s (last error: %v)", what, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rounds is how many times each read-your-writes check runs: with one
// replica 20ms behind, a read that went to it right after the write would
// miss the write about half the time.
const rounds = 20
