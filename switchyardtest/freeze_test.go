package switchyardtest_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// blocks checks that a query on conn waits for its context's deadline.
func blocks(t *testing.T, ctx context.Context, conn *pgx.Conn) {
	t.Helper()
	start := time.Now() // before the deadline is set: a busy machine may pause between the two
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err := roundTrip(short, conn)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("query ended after %v with %v, want it to wait for its deadline", time.Since(start), err)
	}
}

func TestFrozenPrimaryHangsUntilThawed(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	p := c.Primary()
	conn := connectVia(t, ctx, p.DSN())
	if err := p.Freeze(); err != nil {
		t.Fatal(err)
	}
	if !p.Frozen() || !p.Running() {
		t.Fatalf("Frozen %v, Running %v after Freeze", p.Frozen(), p.Running())
	}
	if err := p.Freeze(); err != nil {
		t.Fatalf("second Freeze: %v", err)
	}
	blocks(t, ctx, conn)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	if conn, err := pgx.Connect(short, p.DSN()); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a frozen server")
	}
	cancel()
	if err := p.Thaw(); err != nil {
		t.Fatal(err)
	}
	if p.Frozen() {
		t.Fatal("Frozen after Thaw")
	}
	if err := p.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("query after Thaw: %v", err)
	}
	if err := p.Thaw(); err != nil {
		t.Fatalf("Thaw of a server not frozen: %v", err)
	}
}

func TestFrozenReplicaCatchesUp(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	r := c.Replicas()[0]
	withTable(t, ctx, c)
	conn := connectVia(t, ctx, r.DSN())
	if err := r.Freeze(); err != nil {
		t.Fatal(err)
	}
	var target switchyardtest.LSN
	for i := 1; i <= 3; i++ {
		target = insert(t, ctx, c, i)
	}
	blocks(t, ctx, conn)
	if err := r.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitReplay(ctx, target); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if !hasRow(t, ctx, r, i) {
			t.Errorf("row %d missing on the thawed replica", i)
		}
	}
}

// TestFrozenNodesStopAndClose checks that Stop, Kill and Close work on
// frozen servers and leave no process.
func TestFrozenNodesStopAndClose(t *testing.T) {
	switchyardtest.NeedServer(t)
	t.Parallel()
	ctx := ctxFor(t)
	c, err := switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rs := c.Replicas()

	// Stop thaws first, and the node starts again.
	if err := rs[0].Freeze(); err != nil {
		t.Fatal(err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = rs[0].Stop(stopCtx)
	cancel()
	if err != nil {
		t.Fatalf("Stop of a frozen node: %v", err)
	}
	if err := rs[0].Start(ctx); err != nil {
		t.Fatal(err)
	}
	if rs[0].Frozen() {
		t.Error("a restarted node is still marked frozen")
	}
	if _, err := rs[0].InRecovery(ctx); err != nil {
		t.Fatal(err)
	}

	// Kill works as it is.
	if err := rs[1].Freeze(); err != nil {
		t.Fatal(err)
	}
	pid := rs[1].PID()
	if err := rs[1].Kill(); err != nil {
		t.Fatal(err)
	}
	if rs[1].Running() || syscall.Kill(-pid, 0) == nil {
		t.Error("a frozen node's processes survived Kill")
	}

	// Close with frozen nodes.
	var pids []int
	for _, n := range []*switchyardtest.Node{c.Primary(), rs[2]} {
		pids = append(pids, n.PID())
		if err := n.Freeze(); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hangs on frozen nodes")
	}
	for _, pid := range pids {
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d of a frozen node still exists after Close (%v)", pid, err)
		}
	}
	if err := c.Primary().Freeze(); err == nil {
		t.Error("Freeze of a stopped node: no error")
	}
}
