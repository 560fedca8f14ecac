package switchyardtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// hasRow reports whether node n has row id in table t.
func hasRow(t *testing.T, ctx context.Context, n *switchyardtest.Node, id int) bool {
	t.Helper()
	conn, err := n.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM t WHERE id = $1)", id).Scan(&ok); err != nil {
		t.Fatalf("%s: %v", n.Name(), err)
	}
	return ok
}

// insert commits row id on the primary and returns the insert LSN after
// the commit.
func insert(t *testing.T, ctx context.Context, c *switchyardtest.Cluster, id int) switchyardtest.LSN {
	t.Helper()
	if err := c.Primary().Exec(ctx, "INSERT INTO t VALUES ($1)", id); err != nil {
		t.Fatal(err)
	}
	l, err := c.Primary().InsertLSN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func withTable(t *testing.T, ctx context.Context, c *switchyardtest.Cluster) {
	t.Helper()
	if err := c.Primary().Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestReplicationReachesEveryReplica(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	if got := len(c.Replicas()); got != 2 {
		t.Fatalf("%d replicas, want 2", got)
	}
	withTable(t, ctx, c)
	target := insert(t, ctx, c, 1)
	for _, r := range c.Replicas() {
		if err := r.WaitReplay(ctx, target); err != nil {
			t.Fatal(err)
		}
		if !hasRow(t, ctx, r, 1) {
			t.Errorf("%s: row missing after replaying %s", r.Name(), target)
		}
		if r.Role() != switchyardtest.RoleReplica {
			t.Errorf("%s: role %s", r.Name(), r.Role())
		}
		rec, err := r.InRecovery(ctx)
		if err != nil || !rec {
			t.Errorf("%s: in recovery = %v, %v", r.Name(), rec, err)
		}
		if !strings.HasPrefix(r.DSN(), "postgres://postgres@127.0.0.1:") {
			t.Errorf("DSN %q", r.DSN())
		}
	}
	if rec, err := c.Primary().InRecovery(ctx); err != nil || rec {
		t.Errorf("primary: in recovery = %v, %v", rec, err)
	}
	if _, err := c.Primary().ReplayLSN(ctx); err == nil {
		t.Error("ReplayLSN on the primary: no error")
	}
}

func TestApplyDelay(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	const delay = 300 * time.Millisecond
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1, ApplyDelay: []time.Duration{delay}})
	r := c.Replicas()[0]
	withTable(t, ctx, c)

	check := func(id int, want time.Duration) {
		t.Helper()
		// The clock starts before the INSERT: its commit, which replay
		// waits a delay past, is later, however busy the machine.
		started := time.Now()
		target := insert(t, ctx, c, id)
		if want > 0 && hasRow(t, ctx, r, id) {
			t.Fatalf("row %d visible on the replica right after commit despite a %v delay", id, want)
		}
		if err := r.WaitReplay(ctx, target); err != nil {
			t.Fatal(err)
		}
		took := time.Since(started)
		if !hasRow(t, ctx, r, id) {
			t.Fatalf("row %d missing after replay", id)
		}
		// Replay waits until commit time + delay (the servers share this
		// clock; a few ms for its granularity).
		if took < want-5*time.Millisecond {
			t.Errorf("row %d visible after %v, want at least %v", id, took, want)
		}
		t.Logf("row %d: delay %v, visible after %v", id, want, took)
	}
	check(1, delay)

	if err := r.SetApplyDelay(ctx, 0); err != nil {
		t.Fatal(err)
	}
	check(2, 0)
	if err := r.SetApplyDelay(ctx, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	check(3, 500*time.Millisecond)
}

func TestPauseResumeReplay(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	r := c.Replicas()[0]
	withTable(t, ctx, c)
	if err := r.PauseReplay(ctx); err != nil {
		t.Fatal(err)
	}
	target := insert(t, ctx, c, 1)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := r.WaitReplay(short, target)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReplay while paused: %v, want a deadline error", err)
	}
	if hasRow(t, ctx, r, 1) {
		t.Fatal("row visible while replay is paused")
	}
	if err := r.ResumeReplay(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitReplay(ctx, target); err != nil {
		t.Fatal(err)
	}
	if !hasRow(t, ctx, r, 1) {
		t.Fatal("row missing after resume")
	}
}

func TestKilledReplicaCatchesUp(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	r := c.Replicas()[0]
	withTable(t, ctx, c)
	pid := r.PID()
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	if r.Running() || syscall.Kill(-pid, 0) == nil {
		t.Fatal("replica processes still alive after Kill")
	}
	// Write enough WAL while it is down to switch segments, so only the
	// slot keeps what it needs.
	for i := 1; i <= 3; i++ {
		insert(t, ctx, c, i)
		if err := c.Primary().Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Primary().Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	target := insert(t, ctx, c, 4)
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitReplay(ctx, target); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 4; i++ {
		if !hasRow(t, ctx, r, i) {
			t.Errorf("row %d missing on the restarted replica", i)
		}
	}
}

func TestCrashedPrimaryKeepsReplicasStreaming(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	withTable(t, ctx, c)
	insert(t, ctx, c, 1)
	if err := c.Primary().StopImmediate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Primary().Start(ctx); err != nil {
		t.Fatal(err)
	}
	target := insert(t, ctx, c, 2)
	for _, r := range c.Replicas() {
		if err := r.WaitReplay(ctx, target); err != nil {
			t.Fatal(err)
		}
		if !hasRow(t, ctx, r, 2) {
			t.Errorf("%s: row written after the crash is missing", r.Name())
		}
	}
	// A fast stop and start keeps them streaming too.
	if err := c.Primary().Restart(ctx); err != nil {
		t.Fatal(err)
	}
	target = insert(t, ctx, c, 3)
	for _, r := range c.Replicas() {
		if err := r.WaitReplay(ctx, target); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPromotedReplicaAcceptsWrites(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	withTable(t, ctx, c)
	insert(t, ctx, c, 1)
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	old := c.Primary()
	if err := old.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	next := c.Replicas()[0]
	if err := c.Promote(ctx, next); err != nil {
		t.Fatal(err)
	}
	if c.Primary() != next || next.Role() != switchyardtest.RolePrimary {
		t.Fatalf("primary is %s after promoting %s", c.Primary().Name(), next.Name())
	}
	if rec, err := next.InRecovery(ctx); err != nil || rec {
		t.Fatalf("promoted node in recovery = %v, %v", rec, err)
	}
	target := insert(t, ctx, c, 2)
	// The other replica follows the new primary's timeline.
	other := c.Replicas()
	var follower *switchyardtest.Node
	for _, o := range other {
		if o != old {
			follower = o
		}
	}
	if err := follower.WaitReplay(ctx, target); err != nil {
		t.Fatal(err)
	}
	if !hasRow(t, ctx, follower, 2) {
		t.Error("the remaining replica does not have the new primary's write")
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	switchyardtest.NeedServer(t)
	t.Parallel()
	ctx := ctxFor(t)
	c, err := switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 2})
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	var serverPIDs []int32 // every process of every server, not only postmasters
	for _, n := range c.Nodes() {
		pids = append(pids, n.PID())
		conn, err := n.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := conn.Query(ctx, "SELECT pid FROM pg_stat_activity")
		ps, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		conn.Close(ctx)
		if err != nil || len(ps) < 3 {
			t.Fatalf("%s: server processes %v, %v", n.Name(), ps, err)
		}
		serverPIDs = append(serverPIDs, ps...)
	}
	dir := c.Dir()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, pid := range pids {
		if pid == 0 {
			t.Fatal("a node had no pid")
		}
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process group %d still exists after Close (%v)", pid, err)
		}
	}
	for _, pid := range serverPIDs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil && !strings.Contains(string(b), ") Z ") {
			t.Errorf("server process %d still running after Close: %s", pid, b)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Close", dir)
	}
}

func TestKeptDir(t *testing.T) {
	switchyardtest.NeedServer(t)
	t.Parallel()
	ctx := ctxFor(t)
	parent, err := os.MkdirTemp("", "switchyard-keep-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	if os.Geteuid() == 0 {
		// As root the servers run as "postgres", who must reach the
		// directory; Start says so when it cannot.
		_, err := switchyardtest.Start(ctx, switchyardtest.Options{Dir: filepath.Join(parent, "lab")})
		if err == nil || !strings.Contains(err.Error(), "cannot reach") {
			t.Fatalf("Start in a directory postgres cannot reach: %v", err)
		}
		os.RemoveAll(filepath.Join(parent, "lab"))
		os.Chmod(parent, 0o755)
	}
	dir := filepath.Join(parent, "lab")
	c, err := switchyardtest.Start(ctx, switchyardtest.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "primary", "PG_VERSION")); err != nil {
		t.Errorf("given Dir not kept: %v", err)
	}
	if _, err := switchyardtest.Start(ctx, switchyardtest.Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Start in a non-empty Dir: %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	for name, opts := range map[string]switchyardtest.Options{
		"negative replicas": {Replicas: -1},
		"too many delays":   {Replicas: 1, ApplyDelay: []time.Duration{1, 2}},
		"negative delay":    {Replicas: 1, ApplyDelay: []time.Duration{-time.Second}},
		"bad port":          {Port: 70000},
		"no binaries":       {Bin: t.TempDir()},
	} {
		if c, err := switchyardtest.Start(ctx, opts); err == nil {
			c.Close()
			t.Errorf("%s: no error", name)
		}
	}
}

func TestFindBinariesExplainsWhatToInstall(t *testing.T) {
	t.Setenv("SWITCHYARD_PG_BIN", t.TempDir())
	if _, err := switchyardtest.FindBinaries(); !errors.Is(err, switchyardtest.ErrNoServer) || !strings.Contains(err.Error(), "apt-get install postgresql") {
		t.Errorf("FindBinaries with a wrong SWITCHYARD_PG_BIN: %v", err)
	}
}

func TestManyClustersAtOnce(t *testing.T) {
	t.Parallel()
	for i := 0; i < 3; i++ {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t)
			c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
			withTable(t, ctx, c)
			insert(t, ctx, c, i)
		})
	}
}

// TestKilledOwnerLeavesNothing runs a lab in a child process, kills the
// child with SIGKILL, and checks that its servers die with it and that the
// next lab removes its directory.
func TestKilledOwnerLeavesNothing(t *testing.T) {
	switchyardtest.NeedServer(t)
	if os.Getenv("SWITCHYARD_LAB_CHILD") == "1" {
		c, err := switchyardtest.Start(context.Background(), switchyardtest.Options{Replicas: 1})
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(1)
		}
		var pids []string
		for _, n := range c.Nodes() {
			pids = append(pids, strconv.Itoa(n.PID()))
		}
		os.Stdout.WriteString(c.Dir() + " " + strings.Join(pids, " ") + "\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	t.Parallel()
	ctx := ctxFor(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestKilledOwnerLeavesNothing$")
	cmd.Env = append(os.Environ(), "SWITCHYARD_LAB_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	var line string
	for !strings.Contains(line, "\n") {
		k, err := out.Read(buf)
		if err != nil {
			t.Fatalf("child: %v (%q)", err, line)
		}
		line += string(buf[:k])
	}
	fields := strings.Fields(line)
	if fields[0] == "error" {
		t.Fatal(line)
	}
	cmd.Process.Kill()
	cmd.Wait()
	dir := fields[0]
	for _, p := range fields[1:] {
		pid, _ := strconv.Atoi(p)
		deadline := time.Now().Add(10 * time.Second)
		for syscall.Kill(-pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if err := syscall.Kill(-pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("server %d outlived the process that started it", pid)
		}
	}
	// The next lab (here, or in another test binary running meanwhile)
	// sweeps the directory.
	switchyardtest.New(t, switchyardtest.Options{})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the next lab did not sweep %s", dir)
	}
}

// BenchmarkStart measures a primary and two streaming replicas from nothing
// to ready (initdb's template is built once per machine and reused).
func BenchmarkStart(b *testing.B) {
	ctx := context.Background()
	for b.Loop() {
		c, err := switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 2})
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
