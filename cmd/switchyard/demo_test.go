package main

import (
	"bytes"
	"context"
	"github.com/switchyard-db/switchyard/switchyardtest"
	"strings"
	"testing"
	"time"
)

// TestDemo runs "switchyard demo" as the README tells a newcomer to, and
// checks where its table says each kind of statement ran, and the shape of
// the comparison at its end.
func TestDemo(t *testing.T) {
	switchyardtest.NeedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"demo"}, &stdout, &stderr); code != 0 {
		t.Fatalf("demo: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("demo output:\n%s", out)

	table := demoTable(t, out)
	want := map[string]string{
		"plain SELECT":           "replica",
		"FOR UPDATE in text":     "replica",
		"batch of reads":         "replica",
		"read-only transaction":  "replica",
		"read with Primary(ctx)": "primary",
		"SELECT ... FOR UPDATE":  "primary",
		"INSERT ... RETURNING":   "primary",
		"UPDATE via Exec":        "primary",
		"SELECT nextval()":       "primary",
		"data-modifying CTE":     "primary",
		"db.Atomic (read-write)": "primary",
		"CopyFrom":               "primary",
		"SELECT after writing":   "primary",
	}
	for kind, role := range want {
		got, ok := table[kind]
		if !ok {
			t.Errorf("no row for %q", kind)
			continue
		}
		if got.role != role {
			t.Errorf("%s ran on %s (%s), want a %s", kind, got.node, got.role, role)
		}
		switch {
		case role == "primary" && got.node != "primary",
			role == "replica" && got.node != "replica1" && got.node != "replica2":
			t.Errorf("%s: node %s does not match role %s", kind, got.node, got.role)
		}
	}
	if len(table) != len(want) {
		t.Errorf("table has %d rows, want %d", len(table), len(want))
	}
	for _, s := range []string{"Routes: Replica ", "NoHealthyReplica 0", "Retried 0", "read-your-writes"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q", s)
		}
	}
	if !strings.Contains(stderr.String(), "stopped 3 servers") {
		t.Errorf("no word of stopping the lab:\n%s", stderr.String())
	}
	checkCompareTable(t, out[strings.Index(out, "three routers"):])
}

type demoPlace struct{ node, role string }

// demoTable reads the demo's "where each statement ran" table: the NODE and
// ROLE columns of each row, by its STATEMENT.
func demoTable(t *testing.T, out string) map[string]demoPlace {
	t.Helper()
	lines := strings.Split(out, "\n")
	head := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "STATEMENT") {
			head = i
			break
		}
	}
	if head < 0 {
		t.Fatalf("no table in the output:\n%s", out)
	}
	sqlCol, nodeCol := strings.Index(lines[head], "SQL"), strings.Index(lines[head], "NODE")
	if sqlCol < 0 || nodeCol < 0 {
		t.Fatalf("table header %q", lines[head])
	}
	table := map[string]demoPlace{}
	for _, l := range lines[head+1:] {
		if strings.TrimSpace(l) == "" {
			break
		}
		if len(l) <= nodeCol {
			t.Fatalf("short table row %q", l)
		}
		f := strings.Fields(l[nodeCol:])
		if len(f) < 2 {
			t.Fatalf("table row %q has no node and role", l)
		}
		table[strings.TrimSpace(l[:sqlCol])] = demoPlace{f[0], f[1]}
	}
	return table
}

func TestDemoUsage(t *testing.T) {
	for _, args := range [][]string{{"demo", "--bogus"}, {"demo", "extra"}, {"demo", "--lag", "-1s"}, {"demo", "--lag", "soon"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr:\n%s", args, code, stderr.String())
		}
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "switchyard: demo") {
			t.Errorf("%q: want one line of error naming demo, got:\n%s", args, stderr.String())
		}
	}
	for _, args := range [][]string{{"demo", "--help"}, {"help", "demo"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Errorf("%q: exit %d: %s", args, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "switchyard demo") {
			t.Errorf("%q: help does not show the demo's usage:\n%s", args, stdout.String())
		}
	}
}
