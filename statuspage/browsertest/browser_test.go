package browsertest

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/statuspage"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

var screenshot = flag.String("screenshot", "", "save the page's screenshot to this `file` (such as ../../docs/status-page.png)")

// chromium finds Chromium, or skips the test (fails it when
// SWITCHYARD_REQUIRE_SERVER is set).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(switchyardtest.RequireServerEnv) != "" {
		t.Fatalf("no Chromium (apt-get install chromium) and %s is set", switchyardtest.RequireServerEnv)
	}
	t.Skip("no Chromium (apt-get install chromium); skipping the browser test")
	return ""
}

// TestStatusPageInChromium opens the status page of a DB on a lab in
// headless Chromium while a write load runs and one replica replays two
// seconds late, then stops the other replica, and checks what the page
// shows as it updates itself: the lagging replica's lag, the stopped
// replica down, the chart drawn with both replicas' lines; that nothing
// but the page's own server was asked for anything and the page logged
// no error; and that it fits a phone's width. It saves a screenshot.
func TestStatusPageInChromium(t *testing.T) {
	browser := chromium(t)
	lab := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary, r1, r2 := lab.Primary(), lab.Replicas()[0], lab.Replicas()[1]
	if err := primary.Exec(ctx, "CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:         primary.DSN(),
		Replicas:        []string{r1.DSN(), r2.DSN()},
		MonitorInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	page := statuspage.Handler(db, statuspage.Always(), statuspage.Interval(250*time.Millisecond),
		statuspage.Window(time.Minute), statuspage.Title("switchyard lab"))
	defer page.Close()
	mux := http.NewServeMux()
	mux.Handle("/status/", page)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	stopLoad := workload(t, ctx, db)
	defer stopLoad()
	if err := r2.SetApplyDelay(ctx, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	lagging, down := fmt.Sprintf("127.0.0.1:%d", r2.Port()), fmt.Sprintf("127.0.0.1:%d", r1.Port())

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(browser),
		chromedp.NoSandbox,
		chromedp.Headless,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	defer cancelAlloc()
	tab, cancelTab := chromedp.NewContext(alloc)
	defer cancelTab()

	// Everything the page asks for, and everything it logs.
	var mu sync.Mutex
	var requests, problems, warnings []string
	if err := chromedp.Listen(tab, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			requests = append(requests, e.Request.URL)
		case *runtime.EventExceptionThrown:
			problems = append(problems, "exception: "+e.ExceptionDetails.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				problems = append(problems, fmt.Sprintf("console.%s", e.Type))
			}
		case *log.EventEntryAdded:
			// Errors are the page's (a CSP violation, a failed request);
			// warnings can be the browser's (a slow machine), and are logged.
			msg := fmt.Sprintf("log %s: %s %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL)
			switch e.Entry.Level {
			case log.EntryLevelError:
				problems = append(problems, msg)
			case log.EntryLevelWarning:
				warnings = append(warnings, msg)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/status/"), chromedp.WaitVisible(`#lag-chart`)); err != nil {
		t.Fatal(err)
	}
	if title, err := chromedp.Run(tab, chromedp.Title()); err != nil || title != "switchyard lab · status" {
		t.Errorf("title %q (%v)", title, err)
	}

	// The lagging replica's lag, as the page shows it, once it passes 1 s.
	lagJS := fmt.Sprintf(`(() => {
		const dd = document.querySelector('article[data-node=%q] dd.lag');
		return dd && parseFloat(dd.dataset.lagSeconds) >= 1 ? dd.textContent.trim() : "";
	})()`, lagging)
	lagText, err := chromedp.Run(tab, chromedp.Poll[string](lagJS, chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		t.Fatalf("the page never showed %s lagging by a second: %v", lagging, err)
	}
	t.Logf("%s's lag as shown: %q", lagging, lagText)

	// The other replica stopped: the page, without a reload, shows it down.
	if err := r1.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	downJS := fmt.Sprintf(`(() => {
		const a = document.querySelector('article[data-node=%q]');
		return a && a.dataset.state === "down" ? a.querySelector('dd.downfor').textContent.trim() : "";
	})()`, down)
	downText, err := chromedp.Run(tab, chromedp.Poll[string](downJS, chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		t.Fatalf("the page never showed %s down: %v", down, err)
	}
	t.Logf("%s as shown: down for %q", down, downText)

	// The chart: a line for each replica with some history, a down bar for
	// the stopped one; still lagging, still down, a few seconds later (for
	// the picture in the docs, 40 seconds later: a chart with more history).
	minPoints := 20
	if *screenshot != "" {
		minPoints = 160
	}
	chartJS := fmt.Sprintf(`(() => {
		const g = n => document.querySelector('#lag-chart g.replica[data-node="' + n + '"]');
		const lag = g(%q), dead = g(%q);
		if (!lag || !dead) return null;
		const pts = p => p.getAttribute("points").trim().split(/\s+/).length;
		const r = {
			lines: [...lag.querySelectorAll("polyline.series")].map(pts),
			deadLines: [...dead.querySelectorAll("polyline.series")].map(pts),
			downBars: dead.querySelectorAll("rect.downband").length,
			stillDown: document.querySelector('article[data-node=%q]').dataset.state === "down",
			lag: parseFloat(document.querySelector('article[data-node=%q] dd.lag').dataset.lagSeconds),
			yTop: [...document.querySelectorAll("#lag-chart > text")].map(t => t.textContent),
		};
		return r.downBars > 0 && r.lines.length > 0 && Math.max(...r.lines) >= %d && r.stillDown && r.lag >= 1 ? r : null;
	})()`, lagging, down, down, lagging, minPoints)
	type chartState struct {
		Lines     []int    `json:"lines"`
		DeadLines []int    `json:"deadLines"`
		DownBars  int      `json:"downBars"`
		StillDown bool     `json:"stillDown"`
		Lag       float64  `json:"lag"`
		YTop      []string `json:"yTop"`
	}
	chart, err := chromedp.Run(tab, chromedp.Poll[chartState](chartJS, chromedp.WithPollingTimeout(90*time.Second)))
	if err != nil {
		t.Fatalf("the chart never showed both replicas: %v", err)
	}
	t.Logf("chart: lagging replica's lines of %v points, the stopped one's %v, %d down bar(s), lag %.2f s; axis labels %v",
		chart.Lines, chart.DeadLines, chart.DownBars, chart.Lag, chart.YTop)
	if len(chart.DeadLines) == 0 {
		t.Errorf("no line for %s before it stopped", down)
	}

	shot, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	out := *screenshot
	if out == "" {
		out = filepath.Join(t.TempDir(), "status-page.png")
	}
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))

	// A phone's width: nothing wider than the screen.
	if err := chromedp.Do(tab, chromedp.EmulateViewport(390, 844)); err != nil {
		t.Fatal(err)
	}
	type widths struct {
		Inner  int `json:"inner"`
		Scroll int `json:"scroll"`
	}
	w, err := chromedp.Run(tab, chromedp.Poll[widths](`window.innerWidth === 390 ? {inner: window.innerWidth, scroll: document.documentElement.scrollWidth} : null`,
		chromedp.WithPollingTimeout(10*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	if w.Scroll > w.Inner {
		t.Errorf("on a 390 px wide screen the page is %d px wide", w.Scroll)
	}
	t.Logf("on a phone: %d px of page in a %d px window", w.Scroll, w.Inner)

	mu.Lock()
	defer mu.Unlock()
	live := 0
	for _, u := range requests {
		if !strings.HasPrefix(u, srv.URL+"/") {
			t.Errorf("the page asked for %s", u)
		}
		if strings.HasSuffix(u, "?live=1") {
			live++
		}
	}
	if live < 3 {
		t.Errorf("the page refreshed itself %d times", live)
	}
	for _, p := range problems {
		t.Errorf("the page reported: %s", p)
	}
	for _, w := range warnings {
		t.Logf("the browser warned: %s", w)
	}
	t.Logf("%d requests, all to the page's own server, %d of them refreshes", len(requests), live)
}

// workload writes and reads through db until stopped: inserts, reads of a
// session that wrote (to the primary), and reads that accept 5 s of
// staleness (to a replica, even the late one).
func workload(t *testing.T, ctx context.Context, db *switchyard.DB) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		stale := switchyard.MaxStaleness(ctx, 5*time.Second)
		for i := 0; ctx.Err() == nil; i++ {
			var n int64
			_, err := db.Exec(ctx, "INSERT INTO events DEFAULT VALUES")
			if err == nil {
				err = db.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&n)
			}
			if err == nil {
				err = db.QueryRow(stale, "SELECT count(*) FROM events").Scan(&n)
			}
			if err != nil && ctx.Err() == nil {
				t.Errorf("workload: %v", err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}
