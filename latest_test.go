package switchyard_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
)

// latestChild makes the test binary the reading process of TestLatest.
const latestChild = "SWITCHYARD_LATEST_CHILD"

// TestLatest: one OS process writes and tells another (over a pipe), which
// reads with Latest: no read is stale, with a replica 20 ms behind. The
// child also reads each value without Latest, to show what that costs.
func TestLatest(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 20*time.Millisecond)
	db := openDB(t, c)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestLatestChild$", "-test.v")
	cmd.Env = append(os.Environ(), latestChild+"=1", "SWITCHYARD_LATEST_PRIMARY="+c.Primary().DSN(), "SWITCHYARD_LATEST_REPLICA="+c.Replicas()[0].DSN())
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	out := bufio.NewScanner(outPipe)
	const rounds = 1000
	var stale, plainStale, onReplica int
	var latency time.Duration
	for i := 0; i < rounds; i++ {
		var v int64
		if err := db.QueryRow(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v").Scan(&v); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(in, v)
		var line string
		for out.Scan() {
			if line = out.Text(); strings.HasPrefix(line, "read ") {
				break
			}
		}
		var got, plain int64
		var rec bool
		var d time.Duration
		if _, err := fmt.Sscanf(line, "read %d %t %d %d", &got, &rec, &d, &plain); err != nil {
			t.Fatalf("child said %q: %v", line, err)
		}
		if got < v {
			stale++
		}
		if plain < v {
			plainStale++
		}
		if rec {
			onReplica++
		}
		latency += d
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d writes in one process, each read by another: with Latest %d stale, %d%% on the replica, %v per read; without Latest %d stale",
		rounds, stale, 100*onReplica/rounds, latency/rounds, plainStale)
	if stale != 0 {
		t.Errorf("%d of %d Latest reads were stale", stale, rounds)
	}
}

// TestLatestChild is TestLatest's reading process.
func TestLatestChild(t *testing.T) {
	if os.Getenv(latestChild) != "1" {
		t.Skip("runs in TestLatest's child process")
	}
	ctx := context.Background()
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: os.Getenv("SWITCHYARD_LATEST_PRIMARY"), Replicas: []string{os.Getenv("SWITCHYARD_LATEST_REPLICA")}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if _, err := strconv.ParseInt(in.Text(), 10, 64); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		var got, plain int64
		var rec bool
		if err := db.QueryRow(switchyard.Latest(ctx), "SELECT v, pg_is_in_recovery() FROM counters WHERE id = 0").Scan(&got, &rec); err != nil {
			t.Fatal(err)
		}
		d := time.Since(start)
		if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&plain); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("read %d %t %d %d\n", got, rec, d, plain)
	}
}
