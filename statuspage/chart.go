package statuspage

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// chart is the lag chart, laid out for the SVG template: coordinates in the
// viewBox's units.
type chart struct {
	W, H                                     int
	PlotLeft, PlotRight, PlotTop, PlotBottom float64
	YLabelX, XLabelY, CenterX, CenterY       float64
	YTicks, XTicks                           []tick
	Series                                   []chartSeries
	Label                                    string // for screen readers
	Empty                                    bool   // no replica, or no sample yet
}

type tick struct {
	Pos   float64
	Label string
}

type chartSeries struct {
	Node, Cluster, Color string
	Lines                []string // polyline points, one per unbroken run
	Dots                 []dot    // runs of a single sample
	Down                 []band   // when it was down
	Points               int      // samples drawn
	Now                  string   // its latest lag, as text
}

type dot struct{ X, Y float64 }

type band struct{ X, Y, W float64 }

// palette colors the replicas' lines; red is kept for "down".
var palette = []string{"#2b7bd6", "#e69512", "#8a4fc7", "#1a9c7d", "#c2528b", "#6b7a8f", "#4e9a06", "#b5651d"}

const (
	chartW, chartH = 720, 240
	marginL        = 56.0
	marginR        = 12.0
	marginT        = 12.0
	marginB        = 26.0
)

// newChart lays out h's series ending at now.
func newChart(h History, now time.Time) chart {
	c := chart{
		W: chartW, H: chartH,
		PlotLeft: marginL, PlotRight: chartW - marginR, PlotTop: marginT, PlotBottom: chartH - marginB,
	}
	c.YLabelX, c.XLabelY = c.PlotLeft-6, c.PlotBottom+18
	c.CenterX, c.CenterY = (c.PlotLeft+c.PlotRight)/2, (c.PlotTop+c.PlotBottom)/2
	window := time.Duration(h.WindowSeconds * float64(time.Second))
	interval := time.Duration(h.IntervalSeconds * float64(time.Second))
	if window <= 0 {
		window = 5 * time.Minute
	}
	if interval <= 0 {
		interval = time.Second
	}
	from := now.Add(-window)

	top := 0.0
	total := 0
	for _, s := range h.Series {
		for _, p := range s.Points {
			if p.Up {
				top = max(top, p.LagSeconds)
			}
			total++
		}
	}
	step := niceStep(max(top, 1) / 4)
	ymax := step * math.Ceil(max(top, 1)/step)
	x := func(t time.Time) float64 {
		f := float64(t.Sub(from)) / float64(window)
		return c.PlotLeft + min(max(f, 0), 1)*(c.PlotRight-c.PlotLeft)
	}
	y := func(sec float64) float64 {
		return c.PlotBottom - min(max(sec/ymax, 0), 1)*(c.PlotBottom-c.PlotTop)
	}
	for v := 0.0; v <= ymax+step/2; v += step {
		c.YTicks = append(c.YTicks, tick{Pos: round(y(v)), Label: shortSeconds(v)})
	}
	for i := 0; i <= 5; i++ {
		ago := window * time.Duration(5-i) / 5
		label := "now"
		if ago > 0 {
			label = "-" + shortAgo(ago)
		}
		c.XTicks = append(c.XTicks, tick{Pos: round(x(now.Add(-ago))), Label: label})
	}

	bandW := max(float64(interval)/float64(window)*(c.PlotRight-c.PlotLeft), 2)
	for i, s := range h.Series {
		cs := chartSeries{Node: s.Node, Cluster: s.Cluster, Color: palette[i%len(palette)], Now: "no sample"}
		var run []dot
		flush := func() {
			switch len(run) {
			case 0:
			case 1:
				cs.Dots = append(cs.Dots, run[0])
			default:
				var b strings.Builder
				for j, d := range run {
					if j > 0 {
						b.WriteByte(' ')
					}
					b.WriteString(num(d.X) + "," + num(d.Y))
				}
				cs.Lines = append(cs.Lines, b.String())
			}
			run = run[:0]
		}
		var prev time.Time
		for _, p := range s.Points {
			if p.At.Before(from) {
				continue
			}
			if !prev.IsZero() && p.At.Sub(prev) > interval*5/2 {
				flush() // a gap: no one watched, or the page was closed
			}
			prev = p.At
			cs.Points++
			if !p.Up {
				flush()
				bx := x(p.At)
				if k := len(cs.Down); k > 0 && bx-(cs.Down[k-1].X+cs.Down[k-1].W) <= bandW {
					cs.Down[k-1].W = round(bx + bandW - cs.Down[k-1].X)
				} else {
					cs.Down = append(cs.Down, band{X: round(bx), Y: c.PlotTop + float64(7*i), W: round(bandW)})
				}
				cs.Now = "down"
				continue
			}
			run = append(run, dot{X: round(x(p.At)), Y: round(y(p.LagSeconds))})
			cs.Now = fmtSeconds(p.LagSeconds)
		}
		flush()
		c.Series = append(c.Series, cs)
	}
	c.Empty = total == 0
	var parts []string
	for _, s := range c.Series {
		parts = append(parts, s.Node+": "+s.Now)
	}
	c.Label = fmt.Sprintf("Replay lag of each replica over the last %s. %s", shortAgo(window), strings.Join(parts, "; "))
	return c
}

// niceStep is the smallest of 1, 2, 2.5 and 5 times a power of ten that is
// at least x.
func niceStep(x float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

func round(v float64) float64 { return math.Round(v*10) / 10 }

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// shortSeconds labels the y axis: 0, 250ms, 1s, 2.5s, 2m.
func shortSeconds(s float64) string {
	switch {
	case s == 0:
		return "0"
	case s < 1:
		return num(math.Round(s*1000)) + "ms"
	case s < 120:
		return num(math.Round(s*100)/100) + "s"
	default:
		return num(math.Round(s/6)/10) + "m"
	}
}

// shortAgo labels the x axis: 30s, 1m, 1m30s, 2h.
func shortAgo(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		m, s := int(d/time.Minute), int(d%time.Minute/time.Second)
		if s == 0 {
			return strconv.Itoa(m) + "m"
		}
		return fmt.Sprintf("%dm%ds", m, s)
	default:
		return num(math.Round(d.Hours()*10)/10) + "h"
	}
}
