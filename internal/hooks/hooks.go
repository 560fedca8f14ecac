// Package hooks lets switchyard's integration packages (stdlib) reach the
// parts of a *switchyard.DB that are not public API, without an import
// cycle: the root package fills these in at init.
package hooks

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/classify"
)

var (
	// Classify classifies sql with db's classifier (which knows the
	// configured write functions). db is a *switchyard.DB.
	Classify func(db any, sql string) classify.Kind

	// AcquirePrimary acquires a connection to db's current primary, for a
	// caller that must keep session state (SET, temporary tables, advisory
	// locks, LISTEN, PREPARE) on one connection. Release it when done.
	AcquirePrimary func(db any, ctx context.Context) (*pgxpool.Conn, error)

	// MarkWritten records that something may have been written through db
	// outside its own methods (on a connection from AcquirePrimary), for the
	// session in ctx and for db, so that their next read sees it.
	MarkWritten func(db any, ctx context.Context)
)
