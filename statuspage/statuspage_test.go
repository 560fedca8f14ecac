package statuspage_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stats"
	"github.com/switchyard-db/switchyard/statuspage"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

var shared *switchyardtest.Cluster

func TestMain(m *testing.M) {
	switchyardtest.Main(m, switchyardtest.Options{Replicas: 2}, &shared, nil)
}

type fixed stats.Stats

func (f fixed) Stats() stats.Stats { return stats.Stats(f) }

// hostile is a snapshot whose every string tries to get out of its place.
func hostile() stats.Stats {
	down := time.Now().Add(-90 * time.Second)
	return stats.Stats{
		Nodes: []stats.NodeStats{
			{Name: "db1:5432", Cluster: "default", Role: stats.RolePrimary, Healthy: true, Position: "0/3000000", Timeline: 1},
			{Name: `<script>alert("n")</script>:1`, Cluster: `c"><img src=x onerror=alert(1)>`, Role: stats.RoleReplica,
				Healthy: false, DownSince: down, Lag: 2 * time.Second, LagBytes: 4096, Position: "0/2000000"},
		},
		Routes: stats.RouteStats{Replica: 3, AfterWrite: 1, ByReason: map[string]uint64{"replica": 3, "after_write": 1, `</td><script>x()</script>`: 1}},
		Events: []stats.Event{
			{At: down.Add(-time.Minute), Cluster: "default", Node: "db2:5432", What: "up"},
			{At: down, Cluster: "default", Node: "db2:5432", What: "down", Why: `dial: password=hunter2 refused </li><script>alert(2)</script>`},
		},
	}
}

func get(t *testing.T, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	res := rec.Result()
	body, _ := io.ReadAll(res.Body)
	return res, string(body)
}

// TestPage: the page, its live part and its JSON, wherever mounted; every
// string escaped; nothing loaded from elsewhere; secrets scrubbed; only GET
// and HEAD.
func TestPage(t *testing.T) {
	p := statuspage.Handler(fixed(hostile()), statuspage.Title(`ops <b>`))
	defer p.Close()
	mux := http.NewServeMux()
	mux.Handle("/debug/switchyard/", p)
	mux.Handle("/", http.StripPrefix("/root", p))

	res, page := get(t, mux, "GET", "/debug/switchyard/")
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("page: %s %s", res.Status, res.Header.Get("Content-Type"))
	}
	csp := res.Header.Get("Content-Security-Policy")
	nonce := regexp.MustCompile(`script-src 'nonce-([^']+)'`).FindStringSubmatch(csp)
	if nonce == nil || !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("CSP %q", csp)
	}
	// Every script and style element is the page's own, with the nonce;
	// nothing refers to another origin.
	for _, tag := range regexp.MustCompile(`<(script|style)[^>]*>`).FindAllString(page, -1) {
		if tag != `<script nonce="`+nonce[1]+`">` && tag != `<style nonce="`+nonce[1]+`">` {
			t.Errorf("an element %s", tag)
		}
	}
	if n := strings.Count(page, "<script"); n != 1 {
		t.Errorf("%d script elements", n)
	}
	for _, bad := range []string{"<img", "hunter2", "http://", "https://", "//cdn", "ops <b>"} {
		if strings.Contains(page, bad) {
			t.Errorf("the page contains %q", bad)
		}
	}
	for _, want := range []string{
		"ops &lt;b&gt;", "&lt;script&gt;alert(&#34;n&#34;)&lt;/script&gt;:1", "password=xxxxx",
		`data-state="down"`, "down for", "1 min 30 s", "2 s", "4.0 KiB", "0/2000000", `id="lag-chart"`,
		`data-reason="after_write"`, "75%", `href="status.json"`, `data-src="?live=1"`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Index(page, `data-what="down"`) > strings.Index(page, `data-what="up"`) {
		t.Error("events are not newest first")
	}

	_, live := get(t, mux, "GET", "/debug/switchyard/?live=1")
	if strings.Contains(live, "<html") || !strings.Contains(live, `id="lag-chart"`) || !strings.Contains(live, `data-state="down"`) {
		t.Errorf("the live part:\n%s", live)
	}

	for _, target := range []string{"/debug/switchyard/status.json", "/debug/switchyard/?format=json", "/root/status.json", "/root?format=json"} {
		res, body := get(t, mux, "GET", target)
		if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json; charset=utf-8" {
			t.Errorf("%s: %s %s", target, res.Status, res.Header.Get("Content-Type"))
			continue
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, "hunter2") {
			t.Errorf("%s: unescaped or secret: %s", target, body)
		}
		var st statuspage.Status
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		if len(st.Nodes) != 2 || st.Nodes[1].State != "down" || st.Nodes[1].LagBytes != 4096 || st.Nodes[1].DownForSeconds < 89 ||
			len(st.Events) != 2 || st.Events[0].What != "down" || st.Routes.ByReason["replica"] != 3 ||
			len(st.History.Series) != 1 || len(st.History.Series[0].Points) == 0 {
			t.Errorf("%s: %+v", target, st)
		}
	}
	// The page at a path without a slash links to JSON it can reach.
	if _, page := get(t, mux, "GET", "/root"); !strings.Contains(page, `href="?format=json"`) {
		t.Error("the page at /root links elsewhere for its JSON")
	}

	if res, _ := get(t, mux, "GET", "/debug/switchyard/favicon.ico"); res.StatusCode != 404 {
		t.Errorf("favicon.ico: %s", res.Status)
	}
	if res, _ := get(t, mux, "POST", "/debug/switchyard/"); res.StatusCode != 405 || res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %s, Allow %q", res.Status, res.Header.Get("Allow"))
	}
	if res, _ := get(t, mux, "HEAD", "/debug/switchyard/"); res.StatusCode != 200 {
		t.Errorf("HEAD: %s", res.Status)
	}
}

// TestSamplingGoroutines: by default the page starts no goroutine; with
// Always it runs one, which Close stops (and Close can be called again).
func TestSamplingGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	lazy := statuspage.Handler(fixed(hostile()))
	get(t, lazy, "GET", "/")
	get(t, lazy, "GET", "/status.json")
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("a lazy page: %d goroutines, %d before", n, before)
	}
	lazy.Close()

	always := statuspage.Handler(fixed(hostile()), statuspage.Always(), statuspage.Interval(100*time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for len(always.Status().History.Series[0].Points) < 4 {
		if time.Now().After(deadline) {
			t.Fatal("Always did not sample")
		}
		time.Sleep(20 * time.Millisecond)
	}
	always.Close()
	always.Close()
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %d goroutines, %d before", runtime.NumGoroutine(), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, body := get(t, always, "GET", "/status.json"); !strings.Contains(body, `"nodes"`) {
		t.Error("a closed page does not serve")
	}
}

// TestPageOnALab: the page of a DB on a lab shows every server up, then a
// killed replica down with the change in the events, then up again.
func TestPageOnALab(t *testing.T) {
	lab := switchyardtest.Need(t, shared)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := lab.Replicas()[1]
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:         lab.Primary().DSN(),
		Replicas:        []string{lab.Replicas()[0].DSN(), r.DSN()},
		MonitorInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	page := statuspage.Handler(db, statuspage.Interval(100*time.Millisecond))
	defer page.Close()
	srv := httptest.NewServer(page)
	defer srv.Close()

	status := func() statuspage.Status {
		res, err := http.Get(srv.URL + "/status.json")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var st statuspage.Status
		if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	node := func(st statuspage.Status) statuspage.Node {
		for _, n := range st.Nodes {
			if strings.HasSuffix(n.Name, ":"+itoa(r.Port())) {
				return n
			}
		}
		t.Fatalf("no node for port %d in %+v", r.Port(), st.Nodes)
		return statuspage.Node{}
	}
	waitFor := func(what string, cond func(statuspage.Status) bool) statuspage.Status {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := status()
			if cond(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("gave up waiting for %s: %+v", what, st)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	st := waitFor("every server up", func(st statuspage.Status) bool {
		for _, n := range st.Nodes {
			if !n.Healthy || n.Position == "" || n.Position == "0/0" || n.Pool == nil {
				return false
			}
		}
		return len(st.Nodes) == 3
	})
	if st.Nodes[0].Role != "primary" || st.Nodes[0].Timeline != 1 {
		t.Errorf("first node: %+v", st.Nodes[0])
	}
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	st = waitFor("the killed replica down, in the lag history too", func(st statuspage.Status) bool {
		if node(st).State != "down" {
			return false
		}
		for _, s := range st.History.Series {
			if s.Node == node(st).Name && len(s.Points) > 0 && !s.Points[len(s.Points)-1].Up {
				return true
			}
		}
		return false
	})
	if n := node(st); n.DownSince == nil {
		t.Errorf("down, but since when? %+v", n)
	}
	if len(st.Events) == 0 || st.Events[0].What != "down" || !strings.HasSuffix(st.Events[0].Node, ":"+itoa(r.Port())) {
		t.Errorf("events: %+v", st.Events)
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st = waitFor("the replica up again", func(st statuspage.Status) bool { return node(st).State == "up" })
	if st.Events[0].What != "up" {
		t.Errorf("events: %+v", st.Events)
	}
	var downs, pts int
	for _, s := range st.History.Series {
		for _, p := range s.Points {
			pts++
			if !p.Up {
				downs++
			}
		}
	}
	t.Logf("history: %d points, %d of a replica down", pts, downs)
}

func itoa(i int) string { return strconv.Itoa(i) }
