// Package stats holds the types of a switchyard snapshot: where
// statements went and why, and what each server is doing. A
// *switchyard.DB gives one (DB.Stats), and so does a running switchyard
// proxy; the status page (package statuspage) and the Prometheus collector
// (package prom) read them. It depends on nothing of switchyard's, so that
// all of those can.
package stats

import (
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Stats is a snapshot of routing and of the servers.
type Stats struct {
	// Nodes are the servers, each cluster's configured primary first.
	Nodes []NodeStats

	// Routes counts where statements went and why, over every cluster.
	Routes RouteStats

	// Clusters are the same counts per cluster, in the order configured
	// (one for a DB of one cluster).
	Clusters []ClusterStats

	// Events are the latest changes of the servers' state (a node down
	// or back, a new primary), oldest first.
	Events []Event

	// QueryCache counts the use of query caches (the library's
	// WithQueryCache); zero for the proxy.
	QueryCache QueryCacheStats
}

// QueryCacheStats counts reads run with a query cache.
type QueryCacheStats struct {
	// Hits counts reads answered from a cache, without a round trip.
	Hits uint64
	// Misses counts reads that could be cached but were not in the cache
	// (or were, older than their session had seen since): they ran, and
	// their results were kept.
	Misses uint64
	// Skipped counts reads that cannot be cached: a volatile function, a
	// locking clause, an argument of a type not compared by value, a
	// Latest or Primary read, and so on.
	Skipped uint64
	// NotKept counts misses whose results were not kept after all: too
	// large, of a type the connections decode in their own way, not read
	// to the end, or the cache was emptied by a write meanwhile.
	NotKept uint64
	// Cleared counts the times a write emptied a cache (when it started,
	// and again when it ended).
	Cleared uint64
}

// ClusterStats counts one cluster's routing decisions.
type ClusterStats struct {
	// Name is the cluster's name.
	Name string
	// Routes counts where the cluster's statements went and why. Counts
	// that belong to no one cluster (AtomicRetries, TokensForeign) are
	// only in Stats.Routes.
	Routes RouteStats
}

// Role is what a server currently is: the primary or a replica.
type Role string

// The roles a server can have.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// RouteStats counts routing decisions since the DB (or proxy) started. A
// read run again after a failure is counted again, where it went, and once
// in Retried.
type RouteStats struct {
	// Replica counts reads served by a replica: known to be fresh enough,
	// or proved so by a freshness check.
	Replica uint64
	// AfterWrite counts reads sent to the primary because their session
	// had written since its position was last taken (the read also takes it,
	// in the same round trip).
	AfterWrite uint64
	// NotFresh counts reads sent to the primary because no healthy replica
	// had replayed their session's position.
	NotFresh uint64
	// Checked counts reads sent to a replica whose polled position was
	// older than the session's, with a freshness check in the same round
	// trip; CheckFailed counts those the check sent on to the primary.
	Checked, CheckFailed uint64
	// Waited counts reads that waited (ReplicaWait) for a replica to catch
	// up and got one.
	Waited uint64
	// TokensClamped counts session tokens that were ahead of the primary
	// (forged, or from a lost timeline) and were clamped to its position.
	TokensClamped uint64
	// TokensForeign counts session tokens from another cluster, ignored.
	TokensForeign uint64
	// AtomicRetries counts transactions run again after a failure that
	// proved nothing was committed.
	AtomicRetries uint64
	// InDoubtCommitted and InDoubtAborted count commits whose connection
	// failed during COMMIT and whose outcome the primary then told;
	// InDoubtUnknown counts those it could not (ErrCommitUnknown).
	InDoubtCommitted, InDoubtAborted, InDoubtUnknown uint64
	// Forced counts statements sent to the primary because their context
	// asked for it.
	Forced uint64
	// Write counts statements sent to the primary because they are not
	// provably pure reads (writes, locks, DDL, side-effect functions,
	// CopyFrom, batches holding any of these).
	Write uint64
	// Transaction counts transactions begun on the primary (read-write ones,
	// and read-only ones that could not start on a replica).
	Transaction uint64
	// NoHealthyReplica counts reads sent to the primary because no replica
	// was healthy (or there are none).
	NoHealthyReplica uint64
	// Retried counts reads run again on another node because the first one
	// failed (the replica died, or the statement turned out to write) before
	// any row reached the caller.
	Retried uint64
	// Pinned counts connections taken with Acquire and the statements run
	// on them.
	Pinned uint64
	// Latest counts the primary position queries of Latest reads.
	Latest uint64
	// ByReason is every routing count by reason name (replica, checked,
	// waited, stale_ok, after_write, not_fresh, no_replica, forced, write,
	// transaction, pinned, latest): the fields above, as metrics label
	// them.
	ByReason map[string]uint64
}

// NodeStats describes one server.
type NodeStats struct {
	// Name is host:port.
	Name string
	// Cluster is the name of its cluster.
	Cluster string
	// Role is what the server is now.
	Role Role
	// Healthy says whether it takes traffic.
	Healthy bool
	// DownSince is when it last went out of rotation (zero if never).
	DownSince time.Time
	// Weight is its share of replica reads.
	Weight int
	// Routed counts statements and transactions sent to it.
	Routed uint64
	// InFlight is the number under way now.
	InFlight int64
	// Errors counts those that ended in an error.
	Errors uint64
	// Position is its last polled WAL position (replay LSN of a replica,
	// insert LSN of a primary) in PostgreSQL's X/Y form.
	Position string
	// Lag is how far a replica's replay was behind the primary, in time, at
	// its last poll; LagBytes is the primary's position less the
	// replica's, both as last polled. Zero for a primary.
	Lag      time.Duration
	LagBytes uint64
	// Timeline is a primary's timeline (0 for a replica).
	Timeline uint32
	// Latency is how long its statements took, from sending to done.
	Latency Histogram
	// Pool is its connection pool's own statistics (nil for a proxy, whose
	// pools are per role).
	Pool *pgxpool.Stat
}

// Histogram counts durations into buckets.
type Histogram struct {
	// Bounds are the buckets' upper bounds, in seconds, rising.
	Bounds []float64
	// Counts are the counts per bucket (not cumulative); the last, one
	// more than Bounds, counts what exceeded every bound.
	Counts []uint64
	// Count and Sum (seconds) are over every observation.
	Count uint64
	Sum   float64
}

// Event is a change of a server's state.
type Event struct {
	At      time.Time
	Cluster string
	Node    string
	// What: "down", "up" or "primary" (became the primary).
	What string
	// Why, if known (an error, redacted).
	Why string
}
