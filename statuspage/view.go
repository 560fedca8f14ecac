package statuspage

import (
	"embed"
	"fmt"
	"html/template"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed page.html
var files embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"seconds": fmtSeconds,
	"bytes":   fmtBytes,
	"clock":   clock,
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) },
	"ago":     func(now, t time.Time) string { return fmtAgo(now.Sub(t)) },
	"num":     num,
	"int":     func(v uint64) string { return group(strconv.FormatUint(v, 10)) },
}).ParseFS(files, "page.html"))

// view is what the templates render.
type view struct {
	Title     string
	Nonce     string
	LiveHref  string
	JSONHref  string
	RefreshMS int64
	Refresh   string
	S         Status
	Servers   int
	Down      int
	Share     string
	Reasons   []reasonRow
	Counters  []counterRow
	Chart     chart
	Window    string
}

type reasonRow struct {
	Reason, Target, Meaning string
	Count                   uint64
	Fraction                float64 // of the largest count
}

type counterRow struct {
	Name, Meaning string
	Count         uint64
	Bad           bool // nonzero and worth a look
}

// reasons: where each routing reason sends a statement, and what it means.
var reasons = map[string][2]string{
	"replica":     {"replica", "a replica known to have replayed the session's position"},
	"checked":     {"replica", "a replica, with a freshness check in the same round trip"},
	"waited":      {"replica", "a replica that caught up while the read waited"},
	"stale_ok":    {"replica", "a replica within the read's MaxStaleness"},
	"after_write": {"primary", "the session had written since its position was taken"},
	"not_fresh":   {"primary", "no healthy replica had replayed the session's position"},
	"no_replica":  {"primary", "no replica was healthy"},
	"forced":      {"primary", "the context asked for the primary"},
	"write":       {"primary", "not a provably pure read"},
	"transaction": {"primary", "a transaction begun on the primary"},
	"pinned":      {"primary", "a connection taken with Acquire"},
	"latest":      {"primary", "the primary's position, for a Latest read"},
}

func (p *Page) view(st Status, nonce, urlPath string) view {
	v := view{
		Title: p.cfg.title, Nonce: nonce, LiveHref: "?live=1", JSONHref: "?format=json",
		RefreshMS: p.cfg.interval.Milliseconds(), Refresh: fmtSeconds(p.cfg.interval.Seconds()), S: st, Servers: len(st.Nodes),
		Chart: newChart(st.History, st.Time), Window: shortAgo(p.cfg.window),
	}
	if strings.HasSuffix(urlPath, "/") {
		v.JSONHref = "status.json"
	}
	for _, n := range st.Nodes {
		if !n.Healthy {
			v.Down++
		}
	}
	if s := st.Routes.ReplicaShare(); s >= 0 {
		v.Share = strconv.Itoa(int(math.Round(s*100))) + "%"
	} else {
		v.Share = "no reads yet"
	}
	var top uint64
	for _, c := range st.Routes.ByReason {
		top = max(top, c)
	}
	for r, c := range st.Routes.ByReason {
		if c == 0 {
			continue
		}
		row := reasonRow{Reason: r, Count: c, Target: "primary"}
		if m, ok := reasons[r]; ok {
			row.Target, row.Meaning = m[0], m[1]
		}
		if top > 0 {
			row.Fraction = math.Round(float64(c)/float64(top)*1000) / 1000
		}
		v.Reasons = append(v.Reasons, row)
	}
	sort.Slice(v.Reasons, func(i, j int) bool {
		a, b := v.Reasons[i], v.Reasons[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return a.Reason < b.Reason
	})
	r := st.Routes
	v.Counters = []counterRow{
		{"freshness checks", "reads sent to a replica with a check of its position", r.Checked, false},
		{"checks failed", "checks that sent the read on to the primary", r.CheckFailed, false},
		{"waits", "reads that waited for a replica to catch up", r.Waited, false},
		{"read retries", "reads run again elsewhere after a failure", r.Retried, r.Retried > 0},
		{"atomic retries", "Atomic blocks run again after a failure", r.AtomicRetries, false},
		{"in-doubt commits: committed", "COMMIT's connection failed; the primary said committed", r.InDoubtCommitted, r.InDoubtCommitted > 0},
		{"in-doubt commits: aborted", "COMMIT's connection failed; the primary said aborted", r.InDoubtAborted, r.InDoubtAborted > 0},
		{"in-doubt commits: unknown", "COMMIT's outcome could not be told (ErrCommitUnknown)", r.InDoubtUnknown, r.InDoubtUnknown > 0},
		{"tokens clamped", "session tokens ahead of the primary", r.TokensClamped, r.TokensClamped > 0},
		{"tokens foreign", "session tokens of another cluster", r.TokensForeign, r.TokensForeign > 0},
	}
	return v
}

// fmtSeconds shows a lag or latency: 0 s, 850 µs, 12 ms, 1.25 s, 3 min 5 s.
func fmtSeconds(s float64) string {
	switch {
	case s <= 0:
		return "0 s"
	case s < 1e-3:
		return num(math.Round(s*1e6)) + " µs"
	case s < 1:
		return num(math.Round(s*1e4)/10) + " ms"
	case s < 60:
		return num(math.Round(s*100)/100) + " s"
	default:
		return fmtAgo(time.Duration(s * float64(time.Second)))
	}
}

// fmtBytes shows a size: 0 B, 812 B, 12.4 KiB, 3.2 MiB.
func fmtBytes(b uint64) string {
	if b < 1024 {
		return strconv.FormatUint(b, 10) + " B"
	}
	v, units := float64(b)/1024, []string{"KiB", "MiB", "GiB", "TiB", "PiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + units[i]
}

// fmtAgo shows a duration coarsely: 4 s, 2 min 5 s, 3 h 10 min, 2 d 4 h.
func fmtAgo(d time.Duration) string {
	d = max(d, 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%d d %d h", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}

// clock shows a time of day in the server's zone, with the date if it is
// not the day of now.
func clock(t time.Time, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("Jan 2 15:04:05")
}

// group puts thin spaces between groups of three digits.
func group(s string) string {
	if len(s) <= 4 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	return b.String()
}
