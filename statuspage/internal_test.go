package statuspage

import (
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/stats"
)

type counting struct {
	s stats.Stats
	n int
}

func (c *counting) Stats() stats.Stats { c.n++; return c.s }

func replicaStats(lag time.Duration, up bool) stats.Stats {
	return stats.Stats{Nodes: []stats.NodeStats{
		{Name: "p:1", Cluster: "default", Role: stats.RolePrimary, Healthy: true},
		{Name: "r:2", Cluster: "default", Role: stats.RoleReplica, Healthy: up, Lag: lag, LagBytes: 100},
	}}
}

// TestRingBounded: however many samples are taken, the page keeps one
// window of them, and the history shows only those within the window.
func TestRingBounded(t *testing.T) {
	src := &counting{s: replicaStats(time.Second, true)}
	p := Handler(src, Interval(100*time.Millisecond), Window(time.Second))
	defer p.Close()
	if len(p.ring.buf) != 11 {
		t.Fatalf("ring of %d samples for a 1 s window at 100 ms", len(p.ring.buf))
	}
	t0 := time.Now()
	for i := range 1000 {
		p.take(t0.Add(time.Duration(i)*100*time.Millisecond), false)
	}
	if p.ring.n != 11 {
		t.Errorf("%d samples held", p.ring.n)
	}
	now := t0.Add(999 * 100 * time.Millisecond)
	h := p.status(src.Stats(), now).History
	if len(h.Series) != 1 || h.Series[0].Node != "r:2" {
		t.Fatalf("series: %+v", h.Series)
	}
	pts := h.Series[0].Points
	if len(pts) != 11 || !pts[0].At.Equal(now.Add(-time.Second)) || !pts[10].At.Equal(now) {
		t.Errorf("%d points from %v to %v", len(pts), pts[0].At.Sub(now), pts[len(pts)-1].At.Sub(now))
	}
	// Requests closer together than an interval keep one sample.
	before := p.ring.n
	next := p.ring.buf[(p.ring.next-1+len(p.ring.buf))%len(p.ring.buf)].at
	p.take(next.Add(10*time.Millisecond), false)
	p.take(next.Add(50*time.Millisecond), false)
	if last, _ := p.ring.newest(); !last.at.Equal(next) || p.ring.n != before {
		t.Errorf("a request 10 ms after a sample added one")
	}
	// Samples older than the window are not shown, even if held.
	h = p.status(src.Stats(), now.Add(time.Hour)).History
	if n := len(h.Series[0].Points); n != 0 {
		t.Errorf("%d points an hour later", n)
	}
	if huge := Handler(src, Interval(100*time.Millisecond), Window(24*time.Hour)); len(huge.ring.buf) != maxSamples {
		t.Errorf("a day at 100 ms keeps %d samples", len(huge.ring.buf))
	}
}

// TestChart: unbroken runs become polylines, a lone sample a dot, a gap
// (no sample for over 2.5 intervals) or a down sample breaks the line, down
// samples become bars, and the y axis fits the largest lag.
func TestChart(t *testing.T) {
	now := time.Now()
	at := func(s float64) time.Time { return now.Add(time.Duration(-s * float64(time.Second))) }
	h := History{IntervalSeconds: 1, WindowSeconds: 60, Series: []Series{{
		Node: "r:2",
		Points: []Point{
			{At: at(50), LagSeconds: 0.1, Up: true}, {At: at(49), LagSeconds: 0.2, Up: true}, {At: at(48), LagSeconds: 0.3, Up: true},
			// a gap of 10 s
			{At: at(38), LagSeconds: 3.2, Up: true},
			{At: at(37), Up: false}, {At: at(36), Up: false},
			{At: at(35), LagSeconds: 0.5, Up: true}, {At: at(34), LagSeconds: 0.4, Up: true},
		},
	}, {Node: "r:3"}}}
	c := newChart(h, now)
	s := c.Series[0]
	if len(s.Lines) != 2 || len(s.Dots) != 1 || len(s.Down) != 1 || s.Points != 8 {
		t.Errorf("lines %q, dots %v, down %v, points %d", s.Lines, s.Dots, s.Down, s.Points)
	}
	if got := strings.Count(s.Lines[0], ","); got != 3 {
		t.Errorf("first run has %d points: %q", got, s.Lines[0])
	}
	if last := c.YTicks[len(c.YTicks)-1].Label; last != "4s" {
		t.Errorf("y axis up to %s for a 3.2 s lag; ticks %v", last, c.YTicks)
	}
	if c.XTicks[0].Label != "-1m" || c.XTicks[5].Label != "now" {
		t.Errorf("x ticks %v", c.XTicks)
	}
	if c.Series[1].Now != "no sample" || c.Empty {
		t.Errorf("an empty series: %+v, empty chart %v", c.Series[1], c.Empty)
	}
	if !strings.Contains(c.Label, "r:2: 400 ms") {
		t.Errorf("label %q", c.Label)
	}
	if e := newChart(History{IntervalSeconds: 1, WindowSeconds: 60}, now); !e.Empty {
		t.Error("a chart with no series is not empty")
	}
}

func TestNiceStep(t *testing.T) {
	for x, want := range map[float64]float64{0.25: 0.25, 0.3: 0.5, 1: 1, 1.1: 2, 2.2: 2.5, 3: 5, 7: 10, 0.04: 0.05} {
		if got := niceStep(x); got < want*0.999 || got > want*1.001 {
			t.Errorf("niceStep(%v) = %v, want %v", x, got, want)
		}
	}
}

func TestFormats(t *testing.T) {
	for s, want := range map[float64]string{0: "0 s", 0.00085: "850 µs", 0.0123: "12.3 ms", 1.254: "1.25 s", 185: "3 min 5 s"} {
		if got := fmtSeconds(s); got != want {
			t.Errorf("fmtSeconds(%v) = %q, want %q", s, got, want)
		}
	}
	for b, want := range map[uint64]string{0: "0 B", 812: "812 B", 12698: "12.4 KiB", 3 << 20: "3.0 MiB"} {
		if got := fmtBytes(b); got != want {
			t.Errorf("fmtBytes(%v) = %q, want %q", b, got, want)
		}
	}
	if got := group("1234567"); got != "1\u202f234\u202f567" {
		t.Errorf("group: %q", got)
	}
}

func TestScrub(t *testing.T) {
	for in, want := range map[string]string{
		"failed: password=hunter2 host=db1":               "failed: password=xxxxx host=db1",
		"dial postgres://app:s3cret@db1:5432/app refused": "dial postgres://app:xxxxx@db1:5432/app refused",
		"PASSWORD = 'two words' next":                     "PASSWORD = xxxxx next",
		"connection refused":                              "connection refused",
	} {
		if got := scrub(in); got != want {
			t.Errorf("scrub(%q) = %q, want %q", in, got, want)
		}
	}
	if got := scrub(strings.Repeat("é", 400)); len([]rune(got)) != maxWhy {
		t.Errorf("a long reason kept %d characters", len([]rune(got)))
	}
}
