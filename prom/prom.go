// Package prom exports switchyard's statistics as Prometheus metrics: a
// collector for anything that has a Stats method returning a stats.Stats (a
// *switchyard.DB, also the one behind a stdlib *sql.DB, or the switchyard
// proxy), and an http.Handler serving them with the Go runtime's and the
// process's metrics for a /metrics endpoint.
//
//	db, err := switchyard.Open(ctx, cfg)
//	...
//	http.Handle("/metrics", prom.Handler(db))
//
// or, on a registry of your own:
//
//	prometheus.MustRegister(prom.NewCollector(db))
//
// Every metric is named switchyard_..., counters end in _total, durations
// are in seconds and sizes in bytes, and the label values are bounded: a
// server's metrics are labelled with its cluster, node (host:port, as
// configured) and role (primary or replica); routing counts with their
// reason, one of a fixed set. docs/observability.md in the repository lists
// every metric, with what it means and the queries that answer the usual
// questions.
//
// The collector reads one snapshot (Stats) per scrape and keeps nothing
// between scrapes: it starts no goroutine and needs no Close.
//
// # Why a package of the main module
//
// This package is the only one of the module that imports client_golang,
// and Go compiles only the packages a program imports: a program that does
// not import prom (nor cmd/switchyard) builds none of client_golang, even
// though the module's go.mod names it. A nested module would also keep
// client_golang out of the root go.mod, but the switchyard command, in this
// module, serves /metrics itself (switchyard proxy --admin, switchyard lab up
// --status), so the dependency belongs here.
package prom

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/stats"
)

// Source is what the collector reads: a *switchyard.DB, or the proxy.
type Source interface {
	Stats() stats.Stats
}

// An Option changes a Collector.
type Option func(*options)

type options struct {
	constLabels prometheus.Labels
}

// ConstLabels adds labels with fixed values to every metric of the
// collector, to tell apart several DBs of one process (such as
// prometheus.Labels{"db": "orders"}). Their names must not be cluster, node,
// role, reason or outcome.
func ConstLabels(l prometheus.Labels) Option {
	return func(o *options) {
		o.constLabels = make(prometheus.Labels, len(l))
		for k, v := range l {
			o.constLabels[k] = v
		}
	}
}

// Collector is a prometheus.Collector of a Source's statistics. Its metrics
// are listed in docs/observability.md.
type Collector struct {
	src Source

	// Each server's, labelled cluster, node, role.
	up, weight, inFlight, routed, errors, position, lagSeconds, lagBytes *prometheus.Desc
	lastDown, timeline, latency                                          *prometheus.Desc

	// Each server's connection pool, labelled cluster, node, role.
	poolAcquired, poolIdle, poolConstructing, poolTotal, poolMax               *prometheus.Desc
	poolAcquires, poolAcquireSeconds, poolCanceled, poolEmpty                  *prometheus.Desc
	poolEmptyWaitSeconds, poolNewConns, poolLifetimeDestroys, poolIdleDestroys *prometheus.Desc

	// Routing, for the whole source.
	routedByReason, replicaReads, writes, checks, checkFailures, waits *prometheus.Desc
	retries, atomicRetries, inDoubt, tokensClamped, tokensForeign      *prometheus.Desc

	// Query caches (the library's WithQueryCache).
	cacheReads, cacheNotKept, cacheCleared *prometheus.Desc
}

var nodeLabels = []string{"cluster", "node", "role"}

// NewCollector returns a collector of src's statistics, to register on a
// prometheus.Registerer. Each scrape calls src.Stats once.
func NewCollector(src Source, opts ...Option) *Collector {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("switchyard_"+name, help, labels, o.constLabels)
	}
	node := func(name, help string) *prometheus.Desc { return desc(name, help, nodeLabels...) }
	return &Collector{
		src: src,

		up:         node("node_up", "Whether the server takes traffic (1) or is out of rotation (0)."),
		weight:     node("node_weight", "The server's share of replica reads."),
		inFlight:   node("node_in_flight", "Statements and transactions under way on the server."),
		routed:     node("node_routed_total", "Statements and transactions sent to the server."),
		errors:     node("node_errors_total", "Statements and transactions sent to the server that ended in an error."),
		position:   node("node_wal_position_bytes", "The server's last polled WAL position as a byte offset: a replica's replay LSN, a primary's insert LSN."),
		lagSeconds: node("node_replay_lag_seconds", "How far the replica's replay was behind the primary, in time, at its last poll."),
		lagBytes:   node("node_replay_lag_bytes", "The primary's WAL position less the replica's replay position, both as last polled."),
		lastDown:   node("node_last_down_timestamp_seconds", "When the server last went out of rotation, in seconds since the Unix epoch (absent if never)."),
		timeline:   node("node_timeline", "The primary's timeline (a promotion starts a new one)."),
		latency:    node("node_statement_duration_seconds", "How long the server's statements took, from sending to done."),

		poolAcquired:         node("pool_acquired_connections", "Connections of the server's pool in use."),
		poolIdle:             node("pool_idle_connections", "Idle connections of the server's pool."),
		poolConstructing:     node("pool_constructing_connections", "Connections of the server's pool being opened."),
		poolTotal:            node("pool_connections", "Connections of the server's pool: acquired, idle and being opened."),
		poolMax:              node("pool_max_connections", "The most connections the server's pool may hold."),
		poolAcquires:         node("pool_acquires_total", "Connections acquired from the server's pool."),
		poolAcquireSeconds:   node("pool_acquire_seconds_total", "Time spent acquiring connections from the server's pool."),
		poolCanceled:         node("pool_canceled_acquires_total", "Acquires from the server's pool canceled by their context."),
		poolEmpty:            node("pool_empty_acquires_total", "Acquires from the server's pool that waited for a connection because none was idle."),
		poolEmptyWaitSeconds: node("pool_empty_acquire_wait_seconds_total", "Time acquires from the server's pool waited because none was idle."),
		poolNewConns:         node("pool_new_connections_total", "Connections the server's pool opened."),
		poolLifetimeDestroys: node("pool_max_lifetime_closed_connections_total", "Connections the server's pool closed at their maximum lifetime."),
		poolIdleDestroys:     node("pool_max_idle_closed_connections_total", "Connections the server's pool closed after their maximum idle time."),

		routedByReason: desc("routed_total", "Routing decisions by reason: replica, checked, waited, stale_ok (reads sent to a replica), after_write, not_fresh, no_replica (reads sent to the primary), forced, write, transaction, pinned, latest; per cluster.", "cluster", "reason"),
		replicaReads:   desc("replica_reads_total", "Reads a replica served: known fresh enough, proved so by a freshness check, caught up while the read waited, or within the read's MaxStaleness."),
		writes:         desc("writes_total", "Statements sent to the primary because they are not provably pure reads (routed_total{reason=\"write\"})."),
		checks:         desc("freshness_checks_total", "Reads sent to a replica whose polled position was older than the session's, with a freshness check in the same round trip (routed_total{reason=\"checked\"})."),
		checkFailures:  desc("freshness_check_failures_total", "Freshness checks that found the replica behind, sending the read on to the primary."),
		waits:          desc("replica_waits_total", "Reads that waited for a replica to catch up and got one (routed_total{reason=\"waited\"})."),
		retries:        desc("read_retries_total", "Reads run again on another server because the first one failed before any row reached the caller."),
		atomicRetries:  desc("atomic_retries_total", "Atomic transactions run again after a failure that proved nothing was committed."),
		inDoubt:        desc("in_doubt_commits_total", "Commits whose connection failed during COMMIT, by the outcome the primary then told: committed, aborted, or unknown (ErrCommitUnknown).", "outcome"),
		tokensClamped:  desc("tokens_clamped_total", "Session tokens ahead of the primary (forged, or from a lost timeline), clamped to its position."),
		tokensForeign:  desc("tokens_foreign_total", "Session tokens from another cluster, ignored."),
		cacheReads:     desc("query_cache_reads_total", "Reads run with a query cache, by result: hit (answered from the cache), miss (run, to be kept), skipped (cannot be cached: a volatile function, say).", "result"),
		cacheNotKept:   desc("query_cache_not_kept_total", "Misses whose results were not kept after all: too large, of a type the connections decode their own way, not read to the end, or the cache was emptied meanwhile."),
		cacheCleared:   desc("query_cache_clears_total", "Times a write emptied a query cache (when it started, and again when it ended)."),
	}
}

func (c *Collector) descs() []*prometheus.Desc {
	return []*prometheus.Desc{
		c.up, c.weight, c.inFlight, c.routed, c.errors, c.position, c.lagSeconds, c.lagBytes,
		c.lastDown, c.timeline, c.latency,
		c.poolAcquired, c.poolIdle, c.poolConstructing, c.poolTotal, c.poolMax,
		c.poolAcquires, c.poolAcquireSeconds, c.poolCanceled, c.poolEmpty,
		c.poolEmptyWaitSeconds, c.poolNewConns, c.poolLifetimeDestroys, c.poolIdleDestroys,
		c.routedByReason, c.replicaReads, c.writes, c.checks, c.checkFailures, c.waits,
		c.retries, c.atomicRetries, c.inDoubt, c.tokensClamped, c.tokensForeign,
		c.cacheReads, c.cacheNotKept, c.cacheCleared,
	}
}

// Describe sends the descriptions of every metric the collector makes.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs() {
		ch <- d
	}
}

// Collect takes one snapshot of the source and sends its metrics.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	for i := range s.Nodes {
		c.collectNode(ch, &s.Nodes[i])
	}
	r := &s.Routes
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	clusters := s.Clusters
	if len(clusters) == 0 { // a source that does not count per cluster
		clusters = []stats.ClusterStats{{Name: "default", Routes: s.Routes}}
	}
	for _, cl := range clusters {
		for reason, n := range cl.Routes.ByReason {
			counter(c.routedByReason, n, cl.Name, reason)
		}
	}
	counter(c.replicaReads, r.Replica)
	counter(c.writes, r.Write)
	counter(c.checks, r.Checked)
	counter(c.checkFailures, r.CheckFailed)
	counter(c.waits, r.Waited)
	counter(c.retries, r.Retried)
	counter(c.atomicRetries, r.AtomicRetries)
	counter(c.inDoubt, r.InDoubtCommitted, "committed")
	counter(c.inDoubt, r.InDoubtAborted, "aborted")
	counter(c.inDoubt, r.InDoubtUnknown, "unknown")
	counter(c.tokensClamped, r.TokensClamped)
	counter(c.tokensForeign, r.TokensForeign)
	q := &s.QueryCache
	counter(c.cacheReads, q.Hits, "hit")
	counter(c.cacheReads, q.Misses, "miss")
	counter(c.cacheReads, q.Skipped, "skipped")
	counter(c.cacheNotKept, q.NotKept)
	counter(c.cacheCleared, q.Cleared)
}

func (c *Collector) collectNode(ch chan<- prometheus.Metric, n *stats.NodeStats) {
	labels := []string{n.Cluster, n.Name, string(n.Role)}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	up := 0.0
	if n.Healthy {
		up = 1
	}
	gauge(c.up, up)
	gauge(c.weight, float64(n.Weight))
	gauge(c.inFlight, float64(n.InFlight))
	counter(c.routed, float64(n.Routed))
	counter(c.errors, float64(n.Errors))
	if p, err := lsn.Parse(n.Position); err == nil && p != lsn.Invalid {
		gauge(c.position, float64(p))
	}
	if n.Role == stats.RoleReplica {
		gauge(c.lagSeconds, n.Lag.Seconds())
		gauge(c.lagBytes, float64(n.LagBytes))
	}
	if n.Role == stats.RolePrimary && n.Timeline != 0 {
		gauge(c.timeline, float64(n.Timeline))
	}
	if !n.DownSince.IsZero() {
		gauge(c.lastDown, float64(n.DownSince.UnixNano())/1e9)
	}
	if h := n.Latency; len(h.Bounds) > 0 && len(h.Counts) > len(h.Bounds) {
		buckets := make(map[float64]uint64, len(h.Bounds))
		var cum uint64
		for i, b := range h.Bounds {
			cum += h.Counts[i]
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(c.latency, h.Count, h.Sum, buckets, labels...)
	}
	if p := n.Pool; p != nil {
		gauge(c.poolAcquired, float64(p.AcquiredConns()))
		gauge(c.poolIdle, float64(p.IdleConns()))
		gauge(c.poolConstructing, float64(p.ConstructingConns()))
		gauge(c.poolTotal, float64(p.TotalConns()))
		gauge(c.poolMax, float64(p.MaxConns()))
		counter(c.poolAcquires, float64(p.AcquireCount()))
		counter(c.poolAcquireSeconds, p.AcquireDuration().Seconds())
		counter(c.poolCanceled, float64(p.CanceledAcquireCount()))
		counter(c.poolEmpty, float64(p.EmptyAcquireCount()))
		counter(c.poolEmptyWaitSeconds, p.EmptyAcquireWaitTime().Seconds())
		counter(c.poolNewConns, float64(p.NewConnsCount()))
		counter(c.poolLifetimeDestroys, float64(p.MaxLifetimeDestroyCount()))
		counter(c.poolIdleDestroys, float64(p.MaxIdleDestroyCount()))
	}
}

// NewRegistry returns a registry holding a collector of src's statistics
// (NewCollector with opts) and the Go runtime's and the process's
// collectors, as the default registry has them.
func NewRegistry(src Source, opts ...Option) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(src, opts...),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Handler returns an http.Handler for a /metrics endpoint: the metrics of
// NewRegistry(src, opts...) in Prometheus's text format (or OpenMetrics, or
// the protobuf format, as the scraper asks), compressed if it accepts that,
// with promhttp's own counts of scrapes. Each handler has its own registry,
// so a process may serve several; to add the collector to a registry of
// your own, use NewCollector.
func Handler(src Source, opts ...Option) http.Handler {
	reg := NewRegistry(src, opts...)
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
	}))
}
