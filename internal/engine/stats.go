package engine

import (
	"sort"
	"sync/atomic"

	"github.com/switchyard-db/switchyard/internal/topology"
	"github.com/switchyard-db/switchyard/stats"
)

// Reason is why a statement went where it went.
type Reason uint8

// The reasons. Replica reasons first.
const (
	// ReasonReplica: a replica known (from its polled position, or its pin)
	// to have replayed the session's position.
	ReasonReplica Reason = iota
	// ReasonChecked: a replica whose polled position predates the
	// session's, with a freshness check in the same round trip.
	ReasonChecked
	// ReasonWaited: a replica that caught up while the read waited
	// (ReplicaWait).
	ReasonWaited
	// ReasonStaleOK: a replica within the read's MaxStaleness.
	ReasonStaleOK
	// ReasonAfterWrite: the primary, because the session wrote since its
	// position was last taken.
	ReasonAfterWrite
	// ReasonNotFresh: the primary, because no healthy replica had replayed
	// the session's position (or a freshness check failed, or a replica
	// canceled the read).
	ReasonNotFresh
	// ReasonNoReplica: the primary, because no replica was healthy (or
	// there are none).
	ReasonNoReplica
	// ReasonForced: the primary, because the caller asked for it.
	ReasonForced
	// ReasonWrite: the primary, because the statement is not provably a
	// pure read (or turned out to write).
	ReasonWrite
	// ReasonTransaction: the primary, for a read-write transaction (or a
	// read-only one that cannot begin on a replica).
	ReasonTransaction
	// ReasonPinned: a connection the caller holds.
	ReasonPinned
	// ReasonLatest: the primary, asked for its position for Latest reads.
	ReasonLatest

	numReasons
)

var reasonNames = [numReasons]string{
	"replica", "checked", "waited", "stale_ok", "after_write", "not_fresh",
	"no_replica", "forced", "write", "transaction", "pinned", "latest",
}

// String is the reason's name, as metrics and traces show it.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// OnReplica reports whether the reason sends a read to a replica.
func (r Reason) OnReplica() bool { return r <= ReasonStaleOK }

// Reasons lists every reason, for metrics.
func Reasons() []Reason {
	rs := make([]Reason, numReasons)
	for i := range rs {
		rs[i] = Reason(i)
	}
	return rs
}

// Counters that are not routing reasons.
const (
	statCheckPassed = iota
	statCheckFailed
	statRetried
	statTokensClamped
	statTokensForeign
	statAtomicRetries
	statInDoubtCommitted
	statInDoubtAborted
	statInDoubtUnknown
	numStats
)

// stats counts what the engine did since it opened.
type counters struct {
	reasons [numReasons]atomic.Uint64
	other   [numStats]atomic.Uint64
}

func (s *counters) routed(r Reason) { s.reasons[r].Add(1) }
func (s *counters) add(i int)       { s.other[i].Add(1) }

// of is cluster c's counters.
func (e *Engine) of(c *topology.Cluster) *counters { return e.cstats[c.Index] }

// Stats is a snapshot of the engine's counters.
type Stats struct {
	// Routed counts statements (and transactions) sent, by reason; a
	// statement run again after a failure counts again.
	Routed [numReasons]uint64
	// CheckPassed and CheckFailed count freshness checks by outcome.
	CheckPassed, CheckFailed uint64
	// Retried counts reads run again elsewhere after a failure.
	Retried uint64
	// TokensClamped counts session positions that were ahead of the
	// primary (a forged token, or one from a lost timeline) and were
	// clamped; TokensForeign counts tokens of clusters the engine does not
	// have.
	TokensClamped, TokensForeign uint64
	// AtomicRetries counts transactions run again after a failure that
	// proved nothing was committed.
	AtomicRetries uint64
	// InDoubtCommitted, InDoubtAborted and InDoubtUnknown count COMMITs
	// whose connection failed, by what the primary then said.
	InDoubtCommitted, InDoubtAborted, InDoubtUnknown uint64
}

// Stats returns the engine's counters, over every cluster.
func (e *Engine) Stats() Stats {
	cs := make([]*counters, 0, len(e.cstats)+1)
	cs = append(cs, &e.stats)
	cs = append(cs, e.cstats...)
	return statsOf(cs...)
}

// ClusterStats returns the counters of cluster c's statements.
func (e *Engine) ClusterStats(c *topology.Cluster) Stats { return statsOf(e.of(c)) }

// statsOf sums counters.
func statsOf(cs ...*counters) Stats {
	var s Stats
	var o [numStats]uint64
	for _, c := range cs {
		for i := range s.Routed {
			s.Routed[i] += c.reasons[i].Load()
		}
		for i := range o {
			o[i] += c.other[i].Load()
		}
	}
	s.CheckPassed, s.CheckFailed = o[statCheckPassed], o[statCheckFailed]
	s.Retried = o[statRetried]
	s.TokensClamped, s.TokensForeign = o[statTokensClamped], o[statTokensForeign]
	s.AtomicRetries = o[statAtomicRetries]
	s.InDoubtCommitted, s.InDoubtAborted, s.InDoubtUnknown = o[statInDoubtCommitted], o[statInDoubtAborted], o[statInDoubtUnknown]
	return s
}

// Snapshot returns the engine's counters and its servers' state in the
// public shape (package stats); the front adds its pools'.
func (e *Engine) Snapshot() stats.Stats {
	s := stats.Stats{Routes: routeStats(e.Stats())}
	for _, c := range e.clusters {
		s.Clusters = append(s.Clusters, stats.ClusterStats{Name: c.Name, Routes: routeStats(e.ClusterStats(c))})
	}
	bounds := make([]float64, len(topology.LatencyBounds))
	for i, b := range topology.LatencyBounds {
		bounds[i] = b.Seconds()
	}
	for _, c := range e.clusters {
		primary := c.Primary()
		for _, n := range c.Nodes {
			ns := stats.NodeStats{
				Name: n.Name, Cluster: c.Name, Role: stats.RoleReplica, Healthy: n.Healthy(), DownSince: n.DownSince(),
				Weight: n.Weight(), Routed: n.Routed(), InFlight: n.InFlight(), Errors: n.Errors(),
				Position: n.Position().String(),
			}
			if n == primary {
				ns.Role, ns.Timeline = stats.RolePrimary, n.Timeline()
			} else {
				ns.Lag = n.Lag()
				if pp, rp := primary.Position(), n.Position(); pp > rp {
					ns.LagBytes = uint64(pp - rp)
				}
			}
			counts, sum := n.Latency()
			ns.Latency = stats.Histogram{Bounds: bounds, Counts: counts, Sum: sum.Seconds()}
			for _, k := range counts {
				ns.Latency.Count += k
			}
			s.Nodes = append(s.Nodes, ns)
		}
		for _, ev := range c.Events() {
			s.Events = append(s.Events, stats.Event{At: ev.At, Cluster: c.Name, Node: ev.Node.Name, What: ev.What, Why: ev.Why})
		}
	}
	sort.SliceStable(s.Events, func(i, j int) bool { return s.Events[i].At.Before(s.Events[j].At) })
	return s
}

// routeStats is st in the public shape.
func routeStats(st Stats) stats.RouteStats {
	r := &st.Routed
	rs := stats.RouteStats{
		Replica:          r[ReasonReplica] + r[ReasonWaited] + r[ReasonStaleOK] + st.CheckPassed,
		AfterWrite:       r[ReasonAfterWrite],
		NotFresh:         r[ReasonNotFresh],
		Checked:          r[ReasonChecked],
		CheckFailed:      st.CheckFailed,
		Waited:           r[ReasonWaited],
		TokensClamped:    st.TokensClamped,
		TokensForeign:    st.TokensForeign,
		AtomicRetries:    st.AtomicRetries,
		InDoubtCommitted: st.InDoubtCommitted,
		InDoubtAborted:   st.InDoubtAborted,
		InDoubtUnknown:   st.InDoubtUnknown,
		Forced:           r[ReasonForced],
		Write:            r[ReasonWrite],
		Transaction:      r[ReasonTransaction],
		NoHealthyReplica: r[ReasonNoReplica],
		Retried:          st.Retried,
		Pinned:           r[ReasonPinned],
		Latest:           r[ReasonLatest],
		ByReason:         make(map[string]uint64, numReasons),
	}
	for i, n := range r {
		rs.ByReason[Reason(i).String()] = n
	}
	return rs
}
