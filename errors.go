package switchyard

import "errors"

// Errors that callers can test for with errors.Is.
var (
	// ErrConfig reports a Config (or connection string) that cannot work:
	// an empty primary, a malformed DSN, a node listed twice, a bad option.
	ErrConfig = errors.New("switchyard: invalid configuration")

	// ErrUnreachable reports a server that could not be reached when the DB
	// was opened. Only the primary (or, for Connect, every host) has to be
	// reachable at start-up; replicas that are down join when they come up.
	ErrUnreachable = errors.New("switchyard: server unreachable")

	// ErrNoPrimary reports that no server accepts writes: Connect found every
	// host in recovery, or the configured primary turned out to be a replica.
	ErrNoPrimary = errors.New("switchyard: no primary")

	// ErrClosed is returned by a DB after Close.
	ErrClosed = errors.New("switchyard: DB is closed")
)
