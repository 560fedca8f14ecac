// Code in the shape sqlc (v1.x) generates for database/sql with
// emit_prepared_queries: true, written by hand from schema.sql and
// query.sql so that the test needs no code generator.

package sqlcdb

import (
	"context"
	"database/sql"
	"fmt"
)

// DBTX is what the queries run on: a *sql.DB, *sql.Conn or *sql.Tx.
type DBTX interface {
	ExecContext(context.Context, string, ...interface{}) (sql.Result, error)
	PrepareContext(context.Context, string) (*sql.Stmt, error)
	QueryContext(context.Context, string, ...interface{}) (*sql.Rows, error)
	QueryRowContext(context.Context, string, ...interface{}) *sql.Row
}

// New returns queries that run on db.
func New(db DBTX) *Queries {
	return &Queries{db: db}
}

// Prepare prepares every query on db.
func Prepare(ctx context.Context, db DBTX) (*Queries, error) {
	q := Queries{db: db}
	var err error
	if q.createAuthorStmt, err = db.PrepareContext(ctx, createAuthor); err != nil {
		return nil, fmt.Errorf("error preparing query CreateAuthor: %w", err)
	}
	if q.deleteAuthorStmt, err = db.PrepareContext(ctx, deleteAuthor); err != nil {
		return nil, fmt.Errorf("error preparing query DeleteAuthor: %w", err)
	}
	if q.getAuthorStmt, err = db.PrepareContext(ctx, getAuthor); err != nil {
		return nil, fmt.Errorf("error preparing query GetAuthor: %w", err)
	}
	if q.listAuthorsStmt, err = db.PrepareContext(ctx, listAuthors); err != nil {
		return nil, fmt.Errorf("error preparing query ListAuthors: %w", err)
	}
	if q.updateAuthorBioStmt, err = db.PrepareContext(ctx, updateAuthorBio); err != nil {
		return nil, fmt.Errorf("error preparing query UpdateAuthorBio: %w", err)
	}
	if q.whoAmIStmt, err = db.PrepareContext(ctx, whoAmI); err != nil {
		return nil, fmt.Errorf("error preparing query WhoAmI: %w", err)
	}
	return &q, nil
}

// Close closes the prepared statements.
func (q *Queries) Close() error {
	var err error
	for _, s := range []*sql.Stmt{q.createAuthorStmt, q.deleteAuthorStmt, q.getAuthorStmt, q.listAuthorsStmt, q.updateAuthorBioStmt, q.whoAmIStmt} {
		if s != nil {
			if cerr := s.Close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	}
	return err
}

func (q *Queries) exec(ctx context.Context, stmt *sql.Stmt, query string, args ...interface{}) (sql.Result, error) {
	switch {
	case stmt != nil && q.tx != nil:
		return q.tx.StmtContext(ctx, stmt).ExecContext(ctx, args...)
	case stmt != nil:
		return stmt.ExecContext(ctx, args...)
	default:
		return q.db.ExecContext(ctx, query, args...)
	}
}

func (q *Queries) query(ctx context.Context, stmt *sql.Stmt, query string, args ...interface{}) (*sql.Rows, error) {
	switch {
	case stmt != nil && q.tx != nil:
		return q.tx.StmtContext(ctx, stmt).QueryContext(ctx, args...)
	case stmt != nil:
		return stmt.QueryContext(ctx, args...)
	default:
		return q.db.QueryContext(ctx, query, args...)
	}
}

func (q *Queries) queryRow(ctx context.Context, stmt *sql.Stmt, query string, args ...interface{}) *sql.Row {
	switch {
	case stmt != nil && q.tx != nil:
		return q.tx.StmtContext(ctx, stmt).QueryRowContext(ctx, args...)
	case stmt != nil:
		return stmt.QueryRowContext(ctx, args...)
	default:
		return q.db.QueryRowContext(ctx, query, args...)
	}
}

// Queries runs the queries of query.sql.
type Queries struct {
	db                  DBTX
	tx                  *sql.Tx
	createAuthorStmt    *sql.Stmt
	deleteAuthorStmt    *sql.Stmt
	getAuthorStmt       *sql.Stmt
	listAuthorsStmt     *sql.Stmt
	updateAuthorBioStmt *sql.Stmt
	whoAmIStmt          *sql.Stmt
}

// WithTx returns queries that run in tx.
func (q *Queries) WithTx(tx *sql.Tx) *Queries {
	return &Queries{
		db:                  tx,
		tx:                  tx,
		createAuthorStmt:    q.createAuthorStmt,
		deleteAuthorStmt:    q.deleteAuthorStmt,
		getAuthorStmt:       q.getAuthorStmt,
		listAuthorsStmt:     q.listAuthorsStmt,
		updateAuthorBioStmt: q.updateAuthorBioStmt,
		whoAmIStmt:          q.whoAmIStmt,
	}
}
