package switchyard

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/topology"
)

// Role is what a server currently is: the primary or a replica.
type Role string

// The roles a server can have.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

func roleOf(r topology.Role) Role {
	if r == topology.RolePrimary {
		return RolePrimary
	}
	return RoleReplica
}

// Stats is a snapshot of a DB's routing and of its servers.
type Stats struct {
	// Nodes are the servers, the configured primary first.
	Nodes []NodeStats

	// Routes counts where statements went and why.
	Routes RouteStats
}

// RouteStats counts routing decisions since Open. A statement retried on
// another node counts once here, and once in Retried.
type RouteStats struct {
	// Replica counts reads served by a replica.
	Replica uint64
	// Forced counts statements sent to the primary because their context
	// came from Primary.
	Forced uint64
	// Write counts statements sent to the primary because they are not
	// provably pure reads (writes, locks, DDL, side-effect functions,
	// CopyFrom, batches holding any of these).
	Write uint64
	// Transaction counts transactions begun on the primary (read-write ones,
	// and read-only ones that could not start on a replica).
	Transaction uint64
	// NoHealthyReplica counts reads sent to the primary because no replica
	// was healthy.
	NoHealthyReplica uint64
	// Retried counts reads run again on another node because the first one
	// failed (the replica died, or the statement turned out to write) before
	// any row reached the caller.
	Retried uint64
}

// NodeStats describes one server.
type NodeStats struct {
	// Name is host:port.
	Name string
	// Role is what the server is now.
	Role Role
	// Healthy says whether it takes traffic.
	Healthy bool
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
	// Pool is its connection pool's own statistics.
	Pool *pgxpool.Stat
}

// Stats returns a snapshot of routing counts and of each server.
func (db *DB) Stats() Stats {
	s := Stats{Routes: RouteStats{
		Replica:          db.routes.replica.Load(),
		Forced:           db.routes.forced.Load(),
		Write:            db.routes.write.Load(),
		Transaction:      db.routes.transaction.Load(),
		NoHealthyReplica: db.routes.noHealthyReplica.Load(),
		Retried:          db.routes.retried.Load(),
	}}
	primary := db.cluster.Primary()
	for _, n := range db.cluster.Nodes {
		role := roleOf(n.Role())
		if n == primary {
			role = RolePrimary
		}
		s.Nodes = append(s.Nodes, NodeStats{
			Name:     n.Name,
			Role:     role,
			Healthy:  n.Healthy(),
			Weight:   n.Weight(),
			Routed:   n.Routed(),
			InFlight: n.InFlight(),
			Errors:   n.Errors(),
			Position: n.Position().String(),
			Pool:     n.Pool.Stat(),
		})
	}
	return s
}
