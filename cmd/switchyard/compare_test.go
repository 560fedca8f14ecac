package main

import (
	"bytes"
	"context"
	"github.com/switchyard-db/switchyard/switchyardtest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestCompare runs "switchyard compare" with a small budget and checks the
// shape of its table: the naive router reads stale data, the sticky one and
// switchyard never do, and switchyard still serves reads from replicas.
func TestCompare(t *testing.T) {
	switchyardtest.NeedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"compare", "--sessions", "8", "--duration", "1500ms"}
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("compare: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("switchyard %s\n%s", strings.Join(args, " "), stdout.String())
	checkCompareTable(t, stdout.String())
	if !strings.Contains(stderr.String(), "stopped 3 servers") {
		t.Errorf("no word of stopping the lab:\n%s", stderr.String())
	}
}

// checkCompareTable checks the rows of a comparison table in out.
func checkCompareTable(t *testing.T, out string) {
	t.Helper()
	rows := compareTable(t, out)
	naive, sticky, sy := rows["naive"], rows["sticky"], rows["switchyard"]
	if len(rows) != 3 || naive == nil || sticky == nil || sy == nil {
		t.Fatalf("want rows naive, sticky and switchyard; got %v", rows)
	}
	for name, r := range rows {
		if r.reads < 100 {
			t.Errorf("%s: only %d reads", name, r.reads)
		}
		if r.p50 <= 0 || r.p99 < r.p50 {
			t.Errorf("%s: p50 %v, p99 %v", name, r.p50, r.p99)
		}
	}
	if sy.stale != 0 {
		t.Errorf("switchyard: %d stale reads, want 0", sy.stale)
	}
	if sy.replicaShare <= 0 {
		t.Errorf("switchyard: no read went to a replica")
	}
	if sticky.stale != 0 {
		t.Errorf("sticky: %d stale reads with a 2s window over replicas 50ms behind", sticky.stale)
	}
	if naive.stale == 0 {
		t.Errorf("naive: no stale read: the workload does not show what the comparison is about")
	}
	if naive.replicaShare != 100 {
		t.Errorf("naive: replica share %v%%, want 100%%", naive.replicaShare)
	}
}

type compareRow struct {
	reads, stale int
	replicaShare float64 // percent
	p50, p99     time.Duration
}

// compareTable reads the rows of the table that compare.WriteTable prints
// ("router  reads  stale reads  replica share  p50 read  p99 read"), by the
// first word of the router's name.
func compareTable(t *testing.T, out string) map[string]*compareRow {
	t.Helper()
	lines := strings.Split(out, "\n")
	head := -1
	for i, l := range lines {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "router" && strings.Contains(l, "stale reads") {
			head = i
			break
		}
	}
	if head < 0 {
		t.Fatalf("no comparison table in the output:\n%s", out)
	}
	rows := map[string]*compareRow{}
	for _, l := range lines[head+1:] {
		f := strings.Fields(l)
		if len(f) == 0 {
			break
		}
		// name... reads stale (x%) share% p50 ms p99 ms
		n := len(f)
		if n < 9 || f[n-1] != "ms" || f[n-3] != "ms" {
			t.Fatalf("bad table row %q", l)
		}
		var r compareRow
		var err1, err2, err3, err4, err5 error
		r.reads, err1 = strconv.Atoi(f[n-8])
		r.stale, err2 = strconv.Atoi(f[n-7])
		r.replicaShare, err3 = strconv.ParseFloat(strings.TrimSuffix(f[n-5], "%"), 64)
		r.p50, err4 = time.ParseDuration(f[n-4] + "ms")
		r.p99, err5 = time.ParseDuration(f[n-2] + "ms")
		for _, err := range []error{err1, err2, err3, err4, err5} {
			if err != nil {
				t.Fatalf("bad table row %q: %v", l, err)
			}
		}
		rows[f[0]] = &r
	}
	return rows
}

func TestCompareUsage(t *testing.T) {
	for _, args := range [][]string{
		{"compare", "--bogus"},
		{"compare", "extra"},
		{"compare", "--sessions", "0"},
		{"compare", "--sessions", "1000"},
		{"compare", "--sessions", "many"},
		{"compare", "--duration", "1ms"},
		{"compare", "--duration", "soon"},
		{"compare", "--lag1", "-1s"},
		{"compare", "--lag2", "-1ms"},
		{"compare", "--think", "-1ms"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2; stderr:\n%s", args, code, stderr.String())
		}
		if lines := strings.Split(strings.TrimSpace(stderr.String()), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "switchyard: compare") {
			t.Errorf("%q: want one line of error naming compare, got:\n%s", args, stderr.String())
		}
	}
	for _, args := range [][]string{{"compare", "--help"}, {"help", "compare"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Errorf("%q: exit %d: %s", args, code, stderr.String())
		}
		if !strings.Contains(stdout.String(), "switchyard compare") || !strings.Contains(stdout.String(), "-lag2") {
			t.Errorf("%q: help does not show compare's usage:\n%s", args, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"help"}, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "switchyard compare") {
		t.Errorf("the usage does not list compare:\n%s", stdout.String())
	}
}
