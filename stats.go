package switchyard

import (
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// Role is what a server currently is: the primary or a replica.
type Role string

// The roles a server can have.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// Stats is a snapshot of a DB's routing and of its servers.
type Stats struct {
	// Nodes are the servers, the configured primary first.
	Nodes []NodeStats

	// Routes counts where statements went and why.
	Routes RouteStats
}

// RouteStats counts routing decisions since Open. A read run again after a
// failure is counted again, where it went, and once in Retried.
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
	// Waited counts reads that waited (Config.ReplicaWait) for a replica to
	// catch up and got one.
	Waited uint64
	// TokensClamped counts session tokens that were ahead of the primary
	// (forged, or from a lost timeline) and were clamped to its position.
	TokensClamped uint64
	// TokensForeign counts session tokens from another cluster, ignored.
	TokensForeign uint64
	// AtomicRetries counts transactions Atomic ran again after a failure
	// that proved nothing was committed.
	AtomicRetries uint64
	// InDoubtCommitted and InDoubtAborted count commits whose connection
	// failed during COMMIT and whose outcome the primary then told;
	// InDoubtUnknown counts those it could not (ErrCommitUnknown).
	InDoubtCommitted, InDoubtAborted, InDoubtUnknown uint64
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
	// was healthy (or there are none).
	NoHealthyReplica uint64
	// Retried counts reads run again on another node because the first one
	// failed (the replica died, or the statement turned out to write) before
	// any row reached the caller.
	Retried uint64
	// Pinned counts connections taken with Acquire and the statements run
	// on them.
	Pinned uint64
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
	e := db.engine.Stats()
	r := &e.Routed
	s := Stats{Routes: RouteStats{
		Replica:          r[engine.ReasonReplica] + r[engine.ReasonWaited] + r[engine.ReasonStaleOK] + e.CheckPassed,
		AfterWrite:       r[engine.ReasonAfterWrite],
		NotFresh:         r[engine.ReasonNotFresh],
		Checked:          r[engine.ReasonChecked],
		CheckFailed:      e.CheckFailed,
		Waited:           r[engine.ReasonWaited],
		TokensClamped:    e.TokensClamped,
		TokensForeign:    e.TokensForeign,
		AtomicRetries:    e.AtomicRetries,
		InDoubtCommitted: e.InDoubtCommitted,
		InDoubtAborted:   e.InDoubtAborted,
		InDoubtUnknown:   e.InDoubtUnknown,
		Forced:           r[engine.ReasonForced],
		Write:            r[engine.ReasonWrite],
		Transaction:      r[engine.ReasonTransaction],
		NoHealthyReplica: r[engine.ReasonNoReplica],
		Retried:          e.Retried,
		Pinned:           r[engine.ReasonPinned],
	}}
	for _, n := range db.engine.Nodes() {
		role := RoleReplica
		if n.IsPrimary() {
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
			Pool:     db.pool(n).Stat(),
		})
	}
	return s
}
