// Package pgerr sorts errors from pgx and PostgreSQL into what the router
// does about them. It goes by Go error types and SQLSTATE codes only, never
// by message text.
package pgerr

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes the router acts on.
const (
	ReadOnlySQLTransaction = "25006" // a write reached a standby (or a read-only primary)
	SerializationFailure   = "40001" // also: query canceled by a recovery conflict on a standby
	DeadlockDetected       = "40P01"
	AdminShutdown          = "57P01"
	CrashShutdown          = "57P02"
	CannotConnectNow       = "57P03"
	TooManyConnections     = "53300"
)

// Code returns err's SQLSTATE, or "" when err carries none.
func Code(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// NodeDown reports whether err means the server or the connection to it is
// gone (or refusing connections), as opposed to a statement that failed.
// The caller's own cancellation is never NodeDown.
func NodeDown(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if code := Code(err); code != "" {
		switch code {
		case AdminShutdown, CrashShutdown, CannotConnectNow, TooManyConnections:
			return true
		}
		return len(code) == 5 && code[:2] == "08" // connection exception
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	switch {
	case errors.As(err, &connErr),
		errors.As(err, &netErr),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.EPIPE):
		return true
	}
	// pgx reports a connection it closed after an earlier failure as
	// "conn closed"; such an error is safe to retry and carries no SQLSTATE.
	return pgconn.SafeToRetry(err)
}

// RetryReadElsewhere reports whether a read that failed with err, before any
// row reached the caller, should be run again on another node: the node is
// down, the statement turned out to write (a function with side effects on a
// standby: 25006), or a standby canceled it for a recovery conflict (40001).
func RetryReadElsewhere(err error) bool {
	if NodeDown(err) {
		return true
	}
	switch Code(err) {
	case ReadOnlySQLTransaction, SerializationFailure:
		return true
	}
	return false
}

// NotSent reports whether err proves that a statement never left the
// process: pgx says it is safe to retry, or the connection to send it on
// could not be made.
func NotSent(err error) bool {
	var connErr *pgconn.ConnectError
	return pgconn.SafeToRetry(err) || errors.As(err, &connErr)
}

// SQLSTATEs of statements a server threw out from under a client.
const (
	FeatureNotSupported  = "0A000" // with Routine RevalidateCachedQuery: "cached plan must not change result type"
	InvalidStatementName = "26000" // "prepared statement ... does not exist"
)

// StaleStatement reports whether err is a prepared statement that the
// server no longer runs as prepared: its result type changed under it (a
// migration altered the table; PostgreSQL reports 0A000 from
// RevalidateCachedQuery), or it is gone (26000, after DISCARD or
// DEALLOCATE). The statement did not run, and pgx has dropped it from the
// connection's cache, so running it again there prepares it afresh.
func StaleStatement(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return pgErr.Code == InvalidStatementName || pgErr.Code == FeatureNotSupported && pgErr.Routine == "RevalidateCachedQuery"
}
