package switchyard

import (
	"errors"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// Errors that callers can test for with errors.Is.
var (
	// ErrConfig reports a Config (or connection string) that cannot work:
	// an empty primary, a malformed DSN, a node listed twice, a bad option,
	// a replica of another cluster.
	ErrConfig = engine.ErrConfig

	// ErrUnreachable reports a server that could not be reached when the DB
	// was opened. Only the primary (or, for Connect, every host) has to be
	// reachable at start-up; replicas that are down join when they come up.
	ErrUnreachable = engine.ErrUnreachable

	// ErrNoPrimary reports that no server accepts writes: Connect found every
	// host in recovery, the configured primary turned out to be a replica,
	// or, while running, the primary was gone (and no promoted replica had
	// taken its place) for longer than Config.PrimaryWait.
	ErrNoPrimary = engine.ErrNoPrimary

	// ErrCommitUnknown reports a COMMIT whose outcome could not be learned:
	// the connection died after COMMIT was sent, and asking the primary
	// (pg_xact_status) gave no answer, because it did not come back in time,
	// or another server became the primary, or the transaction id was too
	// old. The transaction may or may not have committed. Atomic does not
	// retry it; the error wraps the cause.
	ErrCommitUnknown = engine.ErrCommitUnknown

	// ErrClosed is returned by a DB after Close.
	ErrClosed = engine.ErrClosed

	// ErrBadToken reports a token that switchyard did not make: not base64,
	// a version it does not know, or truncated.
	ErrBadToken = engine.ErrBadToken

	// ErrCrossCluster reports a statement that touches tables of two
	// clusters, or one bound for another cluster than its transaction's
	// (see Config.Clusters): nothing of it was sent anywhere, and a
	// transaction it was run in is still usable. Use Atomic with
	// AcrossClusters for a block that must write to several clusters.
	ErrCrossCluster = errors.New("switchyard: statement crosses clusters")
)
