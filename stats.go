package switchyard

import "github.com/switchyard-db/switchyard/stats"

// Stats is a snapshot of a DB's routing and of its servers (see package
// stats, where the type lives so that the status page and the Prometheus
// collector read the proxy's snapshots too).
type Stats = stats.Stats

// RouteStats counts routing decisions since Open. A read run again after a
// failure is counted again, where it went, and once in Retried.
type RouteStats = stats.RouteStats

// QueryCacheStats counts reads run with a query cache (WithQueryCache).
type QueryCacheStats = stats.QueryCacheStats

// ClusterStats counts one cluster's routing decisions.
type ClusterStats = stats.ClusterStats

// NodeStats describes one server.
type NodeStats = stats.NodeStats

// Role is what a server currently is: the primary or a replica.
type Role = stats.Role

// The roles a server can have.
const (
	RolePrimary = stats.RolePrimary
	RoleReplica = stats.RoleReplica
)

// Stats returns a snapshot of routing counts, of each server (with its
// connection pool's statistics) and of recent changes of their state.
func (db *DB) Stats() Stats {
	s := db.engine.Snapshot()
	for i, n := range db.engine.Nodes() {
		s.Nodes[i].Pool = db.pool(n).Stat()
	}
	q := &db.qcStats
	s.QueryCache = stats.QueryCacheStats{Hits: q.hits.Load(), Misses: q.misses.Load(), Skipped: q.skipped.Load(),
		NotKept: q.notKept.Load(), Cleared: q.cleared.Load()}
	return s
}
