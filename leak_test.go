package switchyard_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// closeAndCheckLeaks closes db and checks that it left no goroutine (beyond
// the goroutines count taken before it was opened) and no connection on any
// running server of c.
func closeAndCheckLeaks(t *testing.T, c *switchyardtest.Cluster, db *switchyard.DB, goroutines int) {
	t.Helper()
	db.Close()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before Open, %d after Close:\n%s", goroutines, g, buf[:runtime.Stack(buf, true)])
	}
	ctx := testCtx(t)
	for _, n := range c.Nodes() {
		if !n.Running() {
			continue
		}
		conn, err := n.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var left int
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`).Scan(&left)
			if err != nil {
				t.Fatal(err)
			}
			if left == 0 || time.Now().After(deadline) {
				break
			}
		}
		conn.Close(ctx)
		if left != 0 {
			t.Errorf("%s: %d connections left after Close", n.Name(), left)
		}
	}
}
