package engine

import "errors"

// Errors a caller can test for with errors.Is. The root package exports
// them under the same names.
var (
	// ErrConfig reports a configuration that cannot work.
	ErrConfig = errors.New("switchyard: invalid configuration")

	// ErrUnreachable reports a server that could not be reached when the
	// engine was opened.
	ErrUnreachable = errors.New("switchyard: server unreachable")

	// ErrNoPrimary reports that no server accepts writes.
	ErrNoPrimary = errors.New("switchyard: no primary")

	// ErrCommitUnknown reports a COMMIT whose outcome could not be learned.
	ErrCommitUnknown = errors.New("switchyard: commit outcome unknown")

	// ErrClosed is returned after Close.
	ErrClosed = errors.New("switchyard: DB is closed")

	// ErrBadToken reports a token that switchyard did not make.
	ErrBadToken = errors.New("switchyard: malformed session token")

	// ErrNotFresh is what a front's run function returns when the freshness
	// check ahead of a read said the replica has not replayed the session's
	// position: the executor runs the read again on the primary. It never
	// reaches the caller.
	ErrNotFresh = errors.New("switchyard: replica not fresh enough")
)

// NotCommittedError wraps the cause of a COMMIT that did not happen, as the
// protocol or pg_xact_status showed: the transaction may be run again.
type NotCommittedError struct{ Cause error }

func (e *NotCommittedError) Error() string {
	return "switchyard: the transaction did not commit: " + e.Cause.Error()
}

func (e *NotCommittedError) Unwrap() error { return e.Cause }
