package statuspage

import (
	"regexp"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/switchyard-db/switchyard/stats"
)

// Status is what the page shows, and what <mount>/status.json returns: a
// snapshot of the servers and of routing, made readable, with the
// replicas' recent lag.
type Status struct {
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// Nodes are the servers, each cluster's configured primary first.
	Nodes []Node `json:"nodes"`
	// Routes counts routing decisions since the source started.
	Routes Routes `json:"routes"`
	// Events are the latest changes of the servers' state, newest first.
	Events []Event `json:"events"`
	// History is each replica's lag over the page's window (empty in a
	// Status made by NewStatus).
	History History `json:"history"`
}

// Node is one server.
type Node struct {
	Name    string `json:"name"` // host:port
	Cluster string `json:"cluster"`
	Role    string `json:"role"`  // primary or replica
	State   string `json:"state"` // up (takes traffic) or down
	Healthy bool   `json:"healthy"`
	// DownSince is when it last went out of rotation (absent if never);
	// DownForSeconds is how long it has been out, while it is.
	DownSince      *time.Time `json:"down_since,omitempty"`
	DownForSeconds float64    `json:"down_for_seconds,omitempty"`
	Weight         int        `json:"weight"`
	Routed         uint64     `json:"routed"`
	InFlight       int64      `json:"in_flight"`
	Errors         uint64     `json:"errors"`
	// Position is its last polled WAL position (X/Y).
	Position string `json:"position"`
	// LagSeconds and LagBytes are how far a replica's replay was behind
	// the primary at its last poll (0 for a primary).
	LagSeconds float64 `json:"lag_seconds"`
	LagBytes   uint64  `json:"lag_bytes"`
	// Timeline is a primary's timeline (0 for a replica).
	Timeline uint32 `json:"timeline,omitempty"`
	// Statements is how many statements it ran; MeanSeconds their mean
	// duration.
	Statements  uint64  `json:"statements"`
	MeanSeconds float64 `json:"mean_seconds"`
	// Pool is its connection pool (absent for a proxy's nodes).
	Pool *Pool `json:"pool,omitempty"`
}

// Pool is a server's connection pool.
type Pool struct {
	Acquired int32 `json:"acquired"`
	Idle     int32 `json:"idle"`
	Total    int32 `json:"total"`
	Max      int32 `json:"max"`
	Acquires int64 `json:"acquires"`
	// EmptyAcquires counts acquires that waited because no connection was
	// idle.
	EmptyAcquires int64 `json:"empty_acquires"`
}

// Routes counts routing decisions (see stats.RouteStats for each).
type Routes struct {
	// ByReason is every routing count by reason name.
	ByReason         map[string]uint64 `json:"by_reason"`
	Replica          uint64            `json:"replica"`
	AfterWrite       uint64            `json:"after_write"`
	NotFresh         uint64            `json:"not_fresh"`
	NoHealthyReplica uint64            `json:"no_healthy_replica"`
	Checked          uint64            `json:"checked"`
	CheckFailed      uint64            `json:"check_failed"`
	Waited           uint64            `json:"waited"`
	Write            uint64            `json:"write"`
	Transaction      uint64            `json:"transaction"`
	Forced           uint64            `json:"forced"`
	Retried          uint64            `json:"retried"`
	AtomicRetries    uint64            `json:"atomic_retries"`
	InDoubtCommitted uint64            `json:"in_doubt_committed"`
	InDoubtAborted   uint64            `json:"in_doubt_aborted"`
	InDoubtUnknown   uint64            `json:"in_doubt_unknown"`
	TokensClamped    uint64            `json:"tokens_clamped"`
	TokensForeign    uint64            `json:"tokens_foreign"`
}

// ReplicaShare is the share of reads that replicas served, among those
// switchyard could send either way (reads forced to the primary left out),
// between 0 and 1; -1 when there were none.
func (r Routes) ReplicaShare() float64 {
	total := r.Replica + r.AfterWrite + r.NotFresh + r.NoHealthyReplica
	if total == 0 {
		return -1
	}
	return float64(r.Replica) / float64(total)
}

// Event is a change of a server's state.
type Event struct {
	At      time.Time `json:"at"`
	Cluster string    `json:"cluster"`
	Node    string    `json:"node"`
	What    string    `json:"what"` // down, up, or primary (became the primary)
	Why     string    `json:"why,omitempty"`
}

// History is each replica's lag over the page's window.
type History struct {
	IntervalSeconds float64  `json:"interval_seconds"`
	WindowSeconds   float64  `json:"window_seconds"`
	Series          []Series `json:"series"`
}

// Series is one replica's samples, oldest first.
type Series struct {
	Cluster string  `json:"cluster"`
	Node    string  `json:"node"`
	Points  []Point `json:"points"`
}

// Point is one sample of a replica: when, its lag, and whether it was up.
type Point struct {
	At         time.Time `json:"t"`
	LagSeconds float64   `json:"lag_seconds"`
	LagBytes   uint64    `json:"lag_bytes"`
	Up         bool      `json:"up"`
}

// maxWhy bounds the length of an event's reason as shown.
const maxWhy = 300

// NewStatus turns a snapshot taken at now into a Status, without history:
// what the page and status.json show, and what switchyard status prints.
// Events come newest first; their reasons, which switchyard redacts
// already, lose anything still shaped like a password and are cut to 300
// characters.
func NewStatus(s stats.Stats, now time.Time) Status {
	st := Status{Time: now, Nodes: make([]Node, 0, len(s.Nodes)), Events: make([]Event, 0, len(s.Events))}
	for _, n := range s.Nodes {
		v := Node{
			Name: n.Name, Cluster: n.Cluster, Role: string(n.Role), Healthy: n.Healthy, State: "up",
			Weight: n.Weight, Routed: n.Routed, InFlight: n.InFlight, Errors: n.Errors, Position: n.Position,
			Timeline: n.Timeline, Statements: n.Latency.Count,
		}
		if !n.Healthy {
			v.State = "down"
		}
		if !n.DownSince.IsZero() {
			d := n.DownSince
			v.DownSince = &d
			if !n.Healthy {
				v.DownForSeconds = max(now.Sub(d), 0).Seconds()
			}
		}
		if n.Role == stats.RoleReplica {
			v.LagSeconds, v.LagBytes = n.Lag.Seconds(), n.LagBytes
		}
		if n.Latency.Count > 0 {
			v.MeanSeconds = n.Latency.Sum / float64(n.Latency.Count)
		}
		if p := n.Pool; p != nil {
			v.Pool = &Pool{
				Acquired: p.AcquiredConns(), Idle: p.IdleConns(), Total: p.TotalConns(), Max: p.MaxConns(),
				Acquires: p.AcquireCount(), EmptyAcquires: p.EmptyAcquireCount(),
			}
		}
		st.Nodes = append(st.Nodes, v)
	}
	r := s.Routes
	st.Routes = Routes{
		ByReason: make(map[string]uint64, len(r.ByReason)),
		Replica:  r.Replica, AfterWrite: r.AfterWrite, NotFresh: r.NotFresh, NoHealthyReplica: r.NoHealthyReplica,
		Checked: r.Checked, CheckFailed: r.CheckFailed, Waited: r.Waited, Write: r.Write, Transaction: r.Transaction,
		Forced: r.Forced, Retried: r.Retried, AtomicRetries: r.AtomicRetries,
		InDoubtCommitted: r.InDoubtCommitted, InDoubtAborted: r.InDoubtAborted, InDoubtUnknown: r.InDoubtUnknown,
		TokensClamped: r.TokensClamped, TokensForeign: r.TokensForeign,
	}
	for k, v := range r.ByReason {
		st.Routes.ByReason[k] = v
	}
	for i := len(s.Events) - 1; i >= 0; i-- {
		e := s.Events[i]
		st.Events = append(st.Events, Event{At: e.At, Cluster: e.Cluster, Node: e.Node, What: e.What, Why: scrub(e.Why)})
	}
	sort.SliceStable(st.Events, func(i, j int) bool { return st.Events[i].At.After(st.Events[j].At) })
	return st
}

// Anything shaped like a secret that might have slipped into an error's
// text: password=..., a URL's user:password@.
var (
	secretParam = regexp.MustCompile(`(?i)\b(password|passwd|pwd|sslpassword|secret|token)(\s*[=:]\s*)('[^']*'|"[^"]*"|[^\s&;,]+)`)
	secretURL   = regexp.MustCompile(`(://[^/\s:@]*):[^@\s/]*@`)
)

// scrub removes what looks like a password from s and cuts it to maxWhy
// characters.
func scrub(s string) string {
	s = secretParam.ReplaceAllString(s, "${1}${2}xxxxx")
	s = secretURL.ReplaceAllString(s, "${1}:xxxxx@")
	if utf8.RuneCountInString(s) > maxWhy {
		r := []rune(s)
		s = string(r[:maxWhy-1]) + "…"
	}
	return s
}
