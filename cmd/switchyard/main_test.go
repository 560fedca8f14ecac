package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"github.com/switchyard-db/switchyard/switchyardtest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"bogus"},
		{"lab"},
		{"lab", "down"},
		{"lab", "up", "--bogus"},
		{"lab", "up", "--replicas", "x"},
		{"lab", "up", "--replicas", "-1"},
		{"lab", "up", "--lag", "soon"},
		{"lab", "up", "--lag", "-1s"},
		{"lab", "up", "--replicas", "0", "--lag", "1s"},
		{"lab", "up", "--port", "70000"},
		{"lab", "up", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if last := lines[len(lines)-1]; !strings.HasPrefix(last, "switchyard: ") {
			t.Errorf("%q: last line %q", args, last)
		}
		if len(args) > 0 && len(lines) != 1 {
			t.Errorf("%q: %d lines of error, want 1:\n%s", args, len(lines), stderr.String())
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"lab", "--help"}, {"lab", "up", "-h"}, {"help", "lab"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Errorf("%q: exit %d: %s", args, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "lab up") {
			t.Errorf("%q: help does not mention lab up:\n%s", args, stdout.String())
		}
	}
}

// TestLabUp runs "switchyard lab up --replicas 2 --lag 200ms" as a user
// would, connects to every printed DSN, sees the last replica lag, sends
// SIGINT, and checks that every server is gone.
func TestLabUp(t *testing.T) {
	switchyardtest.NeedServer(t)
	if os.Getenv("SWITCHYARD_CLI_CHILD") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"switchyard"}, os.Args[i+1:]...)
			}
		}
		main()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestLabUp$", "--", "lab", "up", "--replicas", "2", "--lag", "200ms")
	cmd.Env = append(os.Environ(), "SWITCHYARD_CLI_CHILD=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	type node struct{ role, name, dsn string }
	var nodes []node
	sc := bufio.NewScanner(out)
	for len(nodes) < 3 && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 {
			nodes = append(nodes, node{f[0], f[1], f[2]})
		}
	}
	if len(nodes) < 3 {
		t.Fatalf("lab up printed %d nodes; stderr:\n%s", len(nodes), stderr.String())
	}
	var pids []int
	conns := map[string]*pgx.Conn{}
	for _, n := range nodes {
		conn, err := pgx.Connect(ctx, n.dsn)
		if err != nil {
			t.Fatalf("%s: %v", n.name, err)
		}
		defer conn.Close(ctx)
		conns[n.name] = conn
		var inRecovery bool
		var pid int
		if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), (SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer')").Scan(&inRecovery, &pid); err != nil {
			t.Fatal(err)
		}
		if inRecovery != (n.role == "replica") {
			t.Errorf("%s printed as %s, in recovery = %v", n.name, n.role, inRecovery)
		}
		pids = append(pids, pid)
	}
	if _, err := conns["primary"].Exec(ctx, "CREATE TABLE t (id int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	var seen bool
	err = conns["replica2"].QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_class WHERE relname = 't')").Scan(&seen)
	if err != nil || seen {
		t.Fatalf("the lagging replica saw the table right after commit (%v, %v)", seen, err)
	}
	for deadline := time.Now().Add(30 * time.Second); !seen; time.Sleep(10 * time.Millisecond) {
		if err := conns["replica2"].QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_class WHERE relname = 't')").Scan(&seen); err != nil {
			t.Fatal(err)
		}
		if !seen && time.Now().After(deadline) {
			t.Fatal("the lagging replica did not catch up")
		}
	}
	for _, c := range conns {
		c.Close(ctx)
	}

	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("lab up exited with %v; stderr:\n%s", err, stderr.String())
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("server process %d still running after Ctrl-C", pid)
		}
	}
	if !strings.Contains(stderr.String(), "removed") {
		t.Errorf("no word of cleanup:\n%s", stderr.String())
	}
}
