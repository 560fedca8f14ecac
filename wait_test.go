package switchyard_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// waitCaughtUp waits until every replica of c has replayed what the
// primary had written at the call, and db's monitor has seen them healthy
// there: from then on routing treats them as fresh.
func waitCaughtUp(t testing.TB, c *switchyardtest.Cluster, db *switchyard.DB) {
	t.Helper()
	ctx := testCtx(t)
	target, err := c.Primary().InsertLSN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target = lsn.RoundDownPageHeader(target, 8192)
	ports := map[string]bool{}
	for _, r := range c.Replicas() {
		ports[fmt.Sprintf(":%d", r.Port())] = true
	}
	waitFor(t, "the monitor to see every replica caught up", func() bool {
		for _, n := range db.Stats().Nodes {
			if n.Role == switchyard.RolePrimary || !ports[n.Name[strings.LastIndexByte(n.Name, ':'):]] {
				continue // another cluster's
			}
			pos, err := lsn.Parse(n.Position)
			if err != nil || !n.Healthy || pos < target {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds, failing the test after 30 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// queryNode runs a one-row query on lab node n, on a connection of its own.
func queryNode(t testing.TB, n *switchyardtest.Node, sql string, dst ...any) {
	queryNodeArgs(t, n, sql, nil, dst...)
}

// queryNodeArgs is queryNode with arguments.
func queryNodeArgs(t testing.TB, n *switchyardtest.Node, sql string, args []any, dst ...any) {
	t.Helper()
	ctx := testCtx(t)
	conn, err := n.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, sql, args...).Scan(dst...); err != nil {
		t.Fatal(err)
	}
}
