package pgerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func pg(code string) error { return &pgconn.PgError{Severity: "ERROR", Code: code, Message: "m"} }

// safe is an error that never left the process, as pgconn reports one.
type safe struct{ ok bool }

func (s safe) Error() string     { return "conn closed" }
func (s safe) SafeToRetry() bool { return s.ok }

// timeoutErr is a net.Error.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestCode(t *testing.T) {
	if Code(pg("40001")) != "40001" || Code(fmt.Errorf("x: %w", pg("25006"))) != "25006" || Code(io.EOF) != "" || Code(nil) != "" {
		t.Error("Code")
	}
}

// connectError is a pgconn.ConnectError, as pgconn.Connect returns one.
func connectError(t *testing.T) error {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = pgconn.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=x sslmode=disable connect_timeout=5", addr.Port))
	var ce *pgconn.ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("not a ConnectError: %T %v", err, err)
	}
	return err
}

func TestNodeDownAndRetryReadElsewhere(t *testing.T) {
	for _, c := range []struct {
		name        string
		err         error
		down, retry bool
	}{
		{"nil", nil, false, false},
		{"admin shutdown", pg(AdminShutdown), true, true},
		{"crash shutdown", pg(CrashShutdown), true, true},
		{"cannot connect now", pg(CannotConnectNow), true, true},
		{"too many connections", pg(TooManyConnections), true, true},
		{"connection exception 08000", pg("08000"), true, true},
		{"connection failure 08006", pg("08006"), true, true},
		{"08P01 protocol violation", pg("08P01"), true, true},
		{"wrapped 57P01", fmt.Errorf("query: %w", pg(AdminShutdown)), true, true},
		{"read only", pg(ReadOnlySQLTransaction), false, true},
		{"serialization / recovery conflict", pg(SerializationFailure), false, true},
		{"deadlock", pg(DeadlockDetected), false, false},
		{"unique violation", pg("23505"), false, false},
		{"undefined table", pg("42P01"), false, false},
		{"query canceled", pg("57014"), false, false},
		{"a short SQLSTATE", pg("08"), false, false},
		{"io.EOF", io.EOF, true, true},
		{"io.ErrUnexpectedEOF", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true, true},
		{"net.ErrClosed", net.ErrClosed, true, true},
		{"a net.Error", timeoutErr{}, true, true},
		{"net.OpError", &net.OpError{Op: "read", Net: "tcp", Err: errors.New("x")}, true, true},
		{"ECONNRESET", syscall.ECONNRESET, true, true},
		{"ECONNREFUSED", &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}, true, true},
		{"EPIPE", fmt.Errorf("write: %w", syscall.EPIPE), true, true},
		{"ConnectError", connectError(t), true, true},
		{"safe to retry (conn closed)", safe{true}, true, true},
		{"not safe to retry", safe{false}, false, false},
		{"context canceled", context.Canceled, false, false},
		{"deadline exceeded", context.DeadlineExceeded, false, false},
		{"wrapped deadline", fmt.Errorf("timeout: %w", context.DeadlineExceeded), false, false},
		{"deadline and EOF", errors.Join(context.DeadlineExceeded, io.EOF), false, false},
		{"canceled with a SQLSTATE that is down", errors.Join(context.Canceled, pg(AdminShutdown)), false, false},
		{"plain error", errors.New("boom"), false, false},
	} {
		if got := NodeDown(c.err); got != c.down {
			t.Errorf("%s: NodeDown = %v", c.name, got)
		}
		if got := RetryReadElsewhere(c.err); got != c.retry {
			t.Errorf("%s: RetryReadElsewhere = %v", c.name, got)
		}
	}
}

// A PgError whose SQLSTATE is not a down one is not down, even if it also
// wraps a network error: SQLSTATEs decide.
func TestSQLStateDecides(t *testing.T) {
	err := errors.Join(pg("23505"), io.EOF)
	if NodeDown(err) {
		t.Error("a constraint violation joined with EOF is down")
	}
}
