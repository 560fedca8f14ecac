package main

import (
	"bytes"
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/switchyardtest"
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
		{"compare", "--rounds", "2"}, // without --proxies
		{"compare", "--clients", "4"},
		{"compare", "--proxies", "--rounds", "0"},
		{"compare", "--proxies", "--bench-time", "1500ms"},
		{"compare", "--proxies", "--bench-time", "0s"},
		{"compare", "--proxies", "--bench-transactions", "-1"},
		{"compare", "--proxies", "--clients", "0"},
		{"compare", "--proxies", "--threads", "20"},
		{"compare", "--proxies", "--sessions", "50"},
		{"compare", "--proxies", "--profile", "/nonexistent/dir"},
		{"compare", "--proxies", "--profile", ".", "--bench-transactions", "5"},
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
		if !strings.Contains(stdout.String(), "switchyard compare") || !strings.Contains(stdout.String(), "-lag2") ||
			!strings.Contains(stdout.String(), "--proxies") || !strings.Contains(stdout.String(), "-bench-time") {
			t.Errorf("%q: help does not show compare's usage:\n%s", args, stdout.String())
		}
	}
	var stdout, stderr bytes.Buffer
	run(context.Background(), []string{"help"}, &stdout, &stderr)
	if !strings.Contains(stdout.String(), "switchyard compare") {
		t.Errorf("the usage does not list compare:\n%s", stdout.String())
	}
}

// helperEnv makes this test binary "switchyard proxy" (see
// TestHelperSwitchyardProxy).
const helperEnv = "SWITCHYARD_COMPARE_TEST_HELPER"

// TestHelperSwitchyardProxy is not a test: run by TestCompareProxies as
// its switchyard proxy (this binary with helperEnv set, "--" and the
// proxy's flags), it is "switchyard proxy" until a signal stops it.
func TestHelperSwitchyardProxy(t *testing.T) {
	if os.Getenv(helperEnv) != "proxy" {
		t.Skip("runs only as TestCompareProxies' switchyard proxy")
	}
	i := slices.Index(os.Args, "--")
	if i < 0 {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, append([]string{"proxy"}, os.Args[i+1:]...), os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// TestCompareProxies runs "switchyard compare --proxies" with a tiny
// budget and checks the tables' shape: every arm produced numbers (but
// pgbouncer may refuse -M prepared, as 1.18 does in transaction mode),
// switchyard proxy and the arms on the primary read nothing stale, and
// nothing it started is left running. An arm whose program is not
// installed is skipped, unless SWITCHYARD_REQUIRE_SERVER is set (CI), in
// which case the command fails.
func TestCompareProxies(t *testing.T) {
	switchyardtest.NeedServer(t)
	switchyardProxyArgv = func() ([]string, error) {
		return []string{os.Args[0], "-test.run=^TestHelperSwitchyardProxy$", "--"}, nil
	}
	t.Cleanup(func() { switchyardProxyArgv = defaultSwitchyardProxyArgv })
	t.Setenv(helperEnv, "proxy")
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "switchyard-compare-*"))
	goroutines := runtime.NumGoroutine()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	args := []string{"compare", "--proxies", "--rounds", "1", "--bench-transactions", "20", "--clients", "4",
		"--sessions", "4", "--duration", "100ms"}
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("compare --proxies: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("switchyard %s\n%s", strings.Join(args, " "), stdout.String())
	out := stdout.String()

	arms := []string{"direct to the primary", "switchyard proxy"}
	for _, a := range []string{"pgbouncer", "pgpool-II"} {
		if strings.Contains(out, "not run: "+a+": not installed") {
			t.Logf("%s is not installed: its arm was skipped", a)
			continue
		}
		arms = append(arms, a)
	}
	bench := benchTable(t, out)
	for _, wl := range []string{"-S -M extended", "-S -M prepared", "-N -M extended", "-N -M prepared"} {
		for _, a := range arms {
			r, ok := bench[wl+"|"+a]
			switch {
			case !ok:
				t.Errorf("%s, %s: no row", wl, a)
			case r.failed != "":
				if a != "pgbouncer" || !strings.Contains(wl, "prepared") || !strings.Contains(r.failed, "prepared statement") {
					t.Errorf("%s, %s: %s", wl, a, r.failed)
				}
			case r.tps <= 0 || r.avg <= 0 || r.p50 <= 0:
				t.Errorf("%s, %s: tps %v, avg %v, p50 %v", wl, a, r.tps, r.avg, r.p50)
			}
		}
	}
	if len(bench) != 4*len(arms) {
		t.Errorf("%d rows in the throughput table, want %d", len(bench), 4*len(arms))
	}

	targets := []string{"direct to the primary", "switchyard proxy", "switchyard proxy, connection", "switchyard proxy, replica-wait 25ms"}
	if slices.Contains(arms, "pgbouncer") {
		targets = append(targets, "pgbouncer")
	}
	if slices.Contains(arms, "pgpool-II") {
		targets = append(targets, "pgpool-II transaction", "pgpool-II trans_transaction", "pgpool-II dml_adaptive", "pgpool-II always")
	}
	for _, layout := range []string{"on one connection:", "its reads on another:"} {
		i := strings.Index(out, layout)
		if i < 0 {
			t.Fatalf("no staleness table %q", layout)
		}
		rows := staleTable(t, out[i:])
		if len(rows) != len(targets) {
			t.Errorf("%s %d rows, want %d", layout, len(rows), len(targets))
		}
		for _, name := range targets {
			r := rows[name]
			switch {
			case r == nil:
				t.Errorf("%s %s: no row", layout, name)
				continue
			case r.reads == 0:
				t.Errorf("%s %s: no reads", layout, name)
			}
			// Each client connection a session of its own: reads on
			// another connection than the writes may be stale.
			mayBeStale := strings.HasPrefix(name, "pgpool-II") || name == "switchyard proxy, connection" && layout != "on one connection:"
			if !mayBeStale && r.stale != 0 {
				t.Errorf("%s %s: %d stale reads", layout, name, r.stale)
			}
			if (name == "direct to the primary" || name == "pgbouncer") && r.replicaShare != 0 {
				t.Errorf("%s %s: replica share %v%%", layout, name, r.replicaShare)
			}
		}
	}
	for _, a := range arms[1:] {
		if !strings.Contains(stderr.String(), "stopped "+a) {
			t.Errorf("no word of stopping %s:\n%s", a, stderr.String())
		}
	}
	if !strings.Contains(stderr.String(), "stopped 3 servers") {
		t.Errorf("no word of stopping the lab:\n%s", stderr.String())
	}
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "switchyard-compare-*"))
	for _, d := range after {
		if !slices.Contains(before, d) {
			t.Errorf("%s left behind", d)
		}
	}
	if left := processesInDirs(before); len(left) > 0 {
		t.Errorf("processes left running in a comparison's work directory: %v", left)
	}
	// The goroutines that start processes (compare's and the lab's) live
	// as long as the process, locked to their threads.
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > goroutines+2; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Errorf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), goroutines, buf[:runtime.Stack(buf, true)])
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processesInDirs lists the processes whose working directory is in a
// comparison's work directory other than those in old (every program the
// comparison starts runs in one), from /proc.
func processesInDirs(old []string) []string {
	entries, _ := os.ReadDir("/proc")
	var left []string
	prefix := filepath.Join(os.TempDir(), "switchyard-compare-")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err != nil || !strings.HasPrefix(cwd, prefix) {
			continue
		}
		dir := prefix + strings.SplitN(strings.TrimPrefix(cwd, prefix), "/", 2)[0]
		if !slices.Contains(old, strings.TrimSuffix(dir, " (deleted)")) {
			left = append(left, e.Name()+" in "+cwd)
		}
	}
	return left
}

type benchRow struct {
	tps      float64
	avg, p50 time.Duration
	failed   string
}

// benchTable reads the throughput table of compare --proxies, by
// "workload|target".
func benchTable(t *testing.T, out string) map[string]benchRow {
	t.Helper()
	lines := strings.Split(out, "\n")
	head := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(strings.TrimSpace(l), "workload") })
	if head < 0 {
		t.Fatalf("no throughput table in the output:\n%s", out)
	}
	targetCol := strings.Index(lines[head], "target")
	rows := map[string]benchRow{}
	workload := ""
	for _, l := range lines[head+1:] {
		if strings.TrimSpace(l) == "" {
			break
		}
		if w := strings.TrimSpace(l[:targetCol]); w != "" {
			workload = w
		}
		rest := l[targetCol:]
		var r benchRow
		var target string
		if i := strings.Index(rest, "fails: "); i >= 0 {
			target, r.failed = strings.TrimSpace(rest[:i]), rest[i+len("fails: "):]
		} else {
			// target... tps range avg ms p50 ms [added µs cpu µs]
			f := strings.Fields(rest)
			i := slices.IndexFunc(f, func(s string) bool { return s != "" && s[0] >= '0' && s[0] <= '9' })
			if i < 1 || len(f) < i+6 {
				t.Fatalf("bad throughput row %q", l)
			}
			target = strings.Join(f[:i], " ")
			var err1, err2, err3 error
			r.tps, err1 = strconv.ParseFloat(strings.ReplaceAll(f[i], ",", ""), 64)
			r.avg, err2 = time.ParseDuration(f[i+2] + "ms")
			r.p50, err3 = time.ParseDuration(f[i+4] + "ms")
			if err1 != nil || err2 != nil || err3 != nil || f[i+3] != "ms" || f[i+5] != "ms" {
				t.Fatalf("bad throughput row %q", l)
			}
		}
		rows[workload+"|"+target] = r
	}
	return rows
}

// staleTable reads the staleness table that starts after the first line
// of out, by target.
func staleTable(t *testing.T, out string) map[string]*compareRow {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) < 2 || !strings.HasPrefix(strings.TrimSpace(lines[1]), "target") {
		t.Fatalf("no staleness table at:\n%s", out)
	}
	rows := map[string]*compareRow{}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) == 0 {
			break
		}
		n := len(f)
		if n < 9 || f[n-1] != "ms" || f[n-3] != "ms" {
			t.Fatalf("bad staleness row %q", l)
		}
		var r compareRow
		var err1, err2, err3 error
		r.reads, err1 = strconv.Atoi(f[n-8])
		r.stale, err2 = strconv.Atoi(f[n-7])
		r.replicaShare, err3 = strconv.ParseFloat(strings.TrimSuffix(f[n-5], "%"), 64)
		if err1 != nil || err2 != nil || err3 != nil {
			t.Fatalf("bad staleness row %q", l)
		}
		rows[strings.Join(f[:n-8], " ")] = &r
	}
	return rows
}
