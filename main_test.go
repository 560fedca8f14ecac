package switchyard_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// shared is one lab (a primary and two replicas) for the tests that only
// route; tests that break servers start their own.
var shared *switchyardtest.Cluster

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 2})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared = c
	code := m.Run()
	c.Close()
	os.Exit(code)
}
