package engine

import (
	"context"
	"testing"

	"github.com/switchyard-db/switchyard/internal/pgscript"
)

// The caller's context ends while COMMIT runs: its outcome is asked for
// (TestCommitInDoubtAfterContextEnded), but the primary did nothing wrong
// and should stay in rotation. Commit (commit.go, e.NodeDown(primary, err)
// before resolve) takes it out with the reason "context canceled": the
// front's OnDown drops every connection to it, and writes wait for the
// monitor to bring it back. (Fixed: only an error that says the server or
// the connection is gone takes the primary out.)
func TestCommitContextEndedKeepsThePrimary(t *testing.T) {
	cs := doubtful(nil)
	arrived := make(chan struct{})
	cs.commit = pgscript.Reply{Hang: true}
	c := newCommit(t, Config{}, cs)
	c.srv.SetHandler(func(q pgscript.Query) pgscript.Reply {
		if q.SQL == "COMMIT" {
			close(arrived)
		}
		return cs.handle(q)
	})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := c.e.Commit(ctx, c.plan, c.conn, c.lend.lend)
		errc <- err
	}()
	<-arrived
	stackedIn(t, "engine.readTag", "[IO wait")
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !primary(c.e).Healthy() {
		t.Errorf("the primary is out of rotation: %v", cluster(c.e).Events())
	}
}
