package statuspage

import (
	"time"

	"github.com/switchyard-db/switchyard/stats"
)

// sample is the replicas' lag at one time.
type sample struct {
	at     time.Time
	points []point
}

type point struct {
	cluster, node string
	lag           time.Duration
	bytes         uint64
	up            bool
}

func sampleOf(s stats.Stats, now time.Time) sample {
	sm := sample{at: now}
	for _, n := range s.Nodes {
		if n.Role != stats.RoleReplica {
			continue
		}
		sm.points = append(sm.points, point{cluster: n.Cluster, node: n.Name, lag: n.Lag, bytes: n.LagBytes, up: n.Healthy})
	}
	return sm
}

// ring holds the latest len(buf) samples.
type ring struct {
	buf  []sample
	next int // where the next sample goes
	n    int // how many are held
}

func (r *ring) add(s sample) {
	r.buf[r.next] = s
	r.next = (r.next + 1) % len(r.buf)
	r.n = min(r.n+1, len(r.buf))
}

func (r *ring) newest() (sample, bool) {
	if r.n == 0 {
		return sample{}, false
	}
	return r.buf[(r.next-1+len(r.buf))%len(r.buf)], true
}

// each calls fn on the samples, oldest first.
func (r *ring) each(fn func(*sample)) {
	start := (r.next - r.n + len(r.buf)) % len(r.buf)
	for i := range r.n {
		fn(&r.buf[(start+i)%len(r.buf)])
	}
}

// history returns each replica's samples of the window before now: the
// replicas of nodes (the current snapshot's) first, in their order, then
// any that are gone since.
func (r *ring) history(now time.Time, interval, window time.Duration, nodes []Node) History {
	h := History{IntervalSeconds: interval.Seconds(), WindowSeconds: window.Seconds(), Series: []Series{}}
	type key struct{ cluster, node string }
	index := map[key]int{}
	for _, n := range nodes {
		if n.Role == string(stats.RoleReplica) {
			index[key{n.Cluster, n.Name}] = len(h.Series)
			h.Series = append(h.Series, Series{Cluster: n.Cluster, Node: n.Name, Points: []Point{}})
		}
	}
	from := now.Add(-window)
	r.each(func(s *sample) {
		if s.at.Before(from) || s.at.After(now) {
			return
		}
		for _, p := range s.points {
			k := key{p.cluster, p.node}
			i, ok := index[k]
			if !ok {
				i = len(h.Series)
				index[k] = i
				h.Series = append(h.Series, Series{Cluster: p.cluster, Node: p.node})
			}
			h.Series[i].Points = append(h.Series[i].Points, Point{At: s.at, LagSeconds: p.lag.Seconds(), LagBytes: p.bytes, Up: p.up})
		}
	})
	return h
}
