package switchyard_test

import (
	"testing"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// shared is one lab (a primary and two replicas) for the tests that only
// route; tests that break servers start their own.
var shared *switchyardtest.Cluster

func TestMain(m *testing.M) {
	switchyardtest.Main(m, switchyardtest.Options{Replicas: 2}, &shared, nil)
}

// sharedLab is the shared lab, for a test that needs it: without a
// PostgreSQL server on the machine, the test is skipped.
func sharedLab(t testing.TB) *switchyardtest.Cluster {
	t.Helper()
	return switchyardtest.Need(t, shared)
}
