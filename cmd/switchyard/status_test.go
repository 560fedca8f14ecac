package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/statuspage"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

func TestStatusUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"status"},
		{"status", "--bogus"},
		{"status", "--replica", "postgres://h2/db"},
		{"status", "--primary", "postgres://h1/db", "--admin", "127.0.0.1:9187"},
		{"status", "--connect", "postgres://h1,h2/db", "--admin", "127.0.0.1:9187"},
		{"status", "--primary", "postgres://h1/db", "--connect", "postgres://h1,h2/db"},
		{"status", "--admin", "127.0.0.1:9187", "--events", "-1"},
		{"status", "--admin", "127.0.0.1:9187", "--watch=soon"},
		{"status", "--admin", "127.0.0.1:9187", "--watch=1ms"},
		{"status", "--admin", "127.0.0.1:9187", "--timeout", "0s"},
		{"status", "--admin", "no-port"},
		{"status", "--admin", "ftp://host:21/"},
		{"status", "--admin", "127.0.0.1:9187", "extra"},
		{"lab", "up", "--status", "nowhere"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], "switchyard: ") {
			t.Errorf("%q: exit %d, stderr:\n%s", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"help", "status"}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "--watch") {
		t.Errorf("help status: exit %d:\n%s%s", code, stdout.String(), stderr.String())
	}
}

func TestJoinWatchInterval(t *testing.T) {
	for in, want := range map[string]string{
		"--watch --admin a:1":      "--watch --admin a:1",
		"--watch 5s --admin a:1":   "--watch=5s --admin a:1",
		"--admin a:1 -watch 0.5":   "--admin a:1 -watch=0.5",
		"--admin a:1 --watch":      "--admin a:1 --watch",
		"--watch=1s --events 2":    "--watch=1s --events 2",
		"--admin a:1 -- --watch 1": "--admin a:1 -- --watch 1",
	} {
		if got := strings.Join(joinWatchInterval(strings.Fields(in)), " "); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a command writing while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitOutput polls until re matches what buf holds, and returns the match.
func waitOutput(t *testing.T, buf *syncBuffer, re *regexp.Regexp, what string) []string {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if m := re.FindStringSubmatch(buf.String()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s; output:\n%s", what, buf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statusRow is a row of the status table.
type statusRow struct{ node, cluster, role, state, lag, lagBytes, position, routed, inFlight, errors string }

// statusTable reads the table after its header, one row per server.
func statusTable(t *testing.T, out string) []statusRow {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "NODE ") {
			continue
		}
		if want := regexp.MustCompile(`^NODE +CLUSTER +ROLE +STATE +LAG +LAG BYTES +POSITION +ROUTED +IN-FLIGHT +ERRORS$`); !want.MatchString(l) {
			t.Errorf("header %q", l)
		}
		var rows []statusRow
		for _, l := range lines[i+1:] {
			f := strings.Fields(l)
			if len(f) == 0 {
				break
			}
			if len(f) != 10 {
				t.Fatalf("row %q has %d columns", l, len(f))
			}
			rows = append(rows, statusRow{f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]})
		}
		return rows
	}
	t.Fatalf("no table in:\n%s", out)
	return nil
}

// checkLabTable checks a table of a lab of a primary and two replicas, the
// second replaying late.
func checkLabTable(t *testing.T, how, out string, ports []string) {
	t.Helper()
	rows := statusTable(t, out)
	if len(rows) != 3 {
		t.Fatalf("%s: %d rows:\n%s", how, len(rows), out)
	}
	roles := map[string]string{}
	for _, r := range rows {
		roles[r.node] = r.role
		if r.cluster != "default" || r.state != "up" || !regexp.MustCompile(`^[0-9A-F]+/[0-9A-F]+$`).MatchString(r.position) {
			t.Errorf("%s: row %+v", how, r)
		}
		if r.role == "primary" && (r.lag != "-" || r.lagBytes != "-") {
			t.Errorf("%s: the primary has a lag: %+v", how, r)
		}
		if r.role == "replica" && !regexp.MustCompile(`^[0-9.]+(µs|ms|s)?$`).MatchString(r.lag) {
			t.Errorf("%s: lag %q", how, r.lag)
		}
	}
	for i, p := range ports {
		want := "replica"
		if i == 0 {
			want = "primary"
		}
		if got := roles["127.0.0.1:"+p]; got != want {
			t.Errorf("%s: 127.0.0.1:%s is a %q, want a %s:\n%s", how, p, got, want, out)
		}
	}
	if !strings.Contains(out, "Reads served by replicas:") || !strings.Contains(out, "switchyard status at ") {
		t.Errorf("%s: no summary:\n%s", how, out)
	}
}

// TestStatus runs "switchyard lab up --status 127.0.0.1:0" as a developer
// would, then "switchyard status" on it from its connection URLs (given
// one by one, and as one multi-host URL) and from the lab's status
// address, once and with --watch (two frames read from its output), and
// scrapes the lab's /metrics.
func TestStatus(t *testing.T) {
	switchyardtest.NeedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	labCtx, stopLab := context.WithCancel(ctx)
	var labOut, labErr syncBuffer
	labDone := make(chan int)
	go func() {
		labDone <- run(labCtx, []string{"lab", "up", "--replicas", "2", "--lag", "300ms", "--status", "127.0.0.1:0"}, &labOut, &labErr)
	}()
	defer func() {
		stopLab()
		if code := <-labDone; code != 0 {
			t.Errorf("lab up: exit %d:\n%s", code, labErr.String())
		}
	}()
	addr := waitOutput(t, &labErr, regexp.MustCompile(`status page on http://([0-9.:]+)/`), "the status address")[1]
	waitOutput(t, &labOut, regexp.MustCompile(`(?m)(^(primary|replica) .*\n){3}`), "the lab's nodes")
	var nodes, ports []string
	for _, l := range strings.Split(labOut.String(), "\n")[:3] {
		dsn := strings.Fields(l)[2] // role, name, DSN
		nodes = append(nodes, dsn)
		ports = append(ports, regexp.MustCompile(`127\.0\.0\.1:(\d+)`).FindStringSubmatch(dsn)[1])
	}
	status := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		if code := run(ctx, append([]string{"status"}, args...), &stdout, &stderr); code != 0 {
			t.Fatalf("status %q: exit %d:\n%s", args, code, stderr.String())
		}
		t.Logf("switchyard status %s:\n%s", strings.Join(args, " "), stdout.String())
		return stdout.String()
	}

	checkLabTable(t, "--primary/--replica", status("--primary", nodes[0], "--replica", nodes[1], "--replica", nodes[2]), ports)
	multi := fmt.Sprintf("postgres://postgres@127.0.0.1:%s,127.0.0.1:%s,127.0.0.1:%s/postgres?sslmode=disable", ports[0], ports[1], ports[2])
	checkLabTable(t, "--connect", status("--connect", multi), ports)
	checkLabTable(t, "--admin", status("--admin", addr, "--events", "3"), ports)
	checkLabTable(t, "--admin URL", status("--admin", "http://"+addr+"/"), ports)

	// --watch: clear, draw, again.
	wctx, stopWatch := context.WithCancel(ctx)
	var wout syncBuffer
	watchDone := make(chan int)
	go func() {
		watchDone <- run(wctx, []string{"status", "--admin", addr, "--watch", "200ms"}, &wout, io.Discard)
	}()
	const clear = "\x1b[H\x1b[2J"
	// Each frame is one write: once the second has begun, it is whole.
	frames := waitOutput(t, &wout, regexp.MustCompile(`(?s)`+regexp.QuoteMeta(clear)+`(.*?)`+regexp.QuoteMeta(clear)+`(.+?)(?:`+regexp.QuoteMeta(clear)+`|$)`), "two frames of --watch")
	stopWatch()
	if code := <-watchDone; code != 0 {
		t.Errorf("--watch: exit %d after Ctrl-C", code)
	}
	for i, f := range frames[1:] {
		if !strings.HasPrefix(f, "Every 200ms: switchyard status") {
			t.Errorf("frame %d: %q", i+1, f)
		}
		checkLabTable(t, fmt.Sprintf("--watch frame %d", i+1), f, ports)
	}
	first := regexp.MustCompile(`status at (\S+ \S+)`).FindStringSubmatch(frames[1])
	second := regexp.MustCompile(`status at (\S+ \S+)`).FindStringSubmatch(frames[2])
	t.Logf("two frames, of %s and %s", first[1], second[1])

	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if n := strings.Count(string(body), "\nswitchyard_node_up{"); n != 3 {
		t.Errorf("/metrics has %d switchyard_node_up samples", n)
	}
	res, err = http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(res.Body)
	res.Body.Close()
	if !strings.Contains(string(body), `id="lag-chart"`) {
		t.Errorf("the lab's status page:\n%s", body)
	}
}

// TestStatusDown: a killed replica shows as down, for how long, and its
// going down in the latest state changes.
func TestStatusDown(t *testing.T) {
	lab := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary: lab.Primary().DSN(), Replicas: []string{lab.Replicas()[0].DSN()}, MonitorInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv := httptest.NewServer(statuspage.Handler(db))
	defer srv.Close()
	if err := lab.Replicas()[0].Kill(); err != nil {
		t.Fatal(err)
	}
	port := fmt.Sprint(lab.Replicas()[0].Port())
	deadline := time.Now().Add(30 * time.Second)
	for {
		var stdout, stderr bytes.Buffer
		if code := run(ctx, []string{"status", "--admin", srv.URL}, &stdout, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		out := stdout.String()
		var replica statusRow
		for _, r := range statusTable(t, out) {
			if r.node == "127.0.0.1:"+port {
				replica = r
			}
		}
		if strings.HasPrefix(replica.state, "down(") {
			if !regexp.MustCompile(`Latest state changes:\n +\d\d:\d\d:\d\d +127\.0\.0\.1:` + port + ` +down +\S+ ago`).MatchString(out) {
				t.Errorf("no event of the replica going down:\n%s", out)
			}
			t.Logf("\n%s", out)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica is not shown down:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// An address with nothing behind it: one line, exit 1.
	srv.Close()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, []string{"status", "--admin", srv.URL, "--timeout", "2s"}, &stdout, &stderr); code != 1 || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("a closed address: exit %d, stderr %q", code, stderr.String())
	}
}
