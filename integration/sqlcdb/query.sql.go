// Code in the shape sqlc generates (see db.go).
// source: query.sql

package sqlcdb

import (
	"context"
	"database/sql"
)

const createAuthor = `-- name: CreateAuthor :one
INSERT INTO authors (name, bio) VALUES ($1, $2)
RETURNING id, name, bio
`

// CreateAuthorParams are CreateAuthor's parameters.
type CreateAuthorParams struct {
	Name string
	Bio  sql.NullString
}

// CreateAuthor inserts an author and returns it.
func (q *Queries) CreateAuthor(ctx context.Context, arg CreateAuthorParams) (Author, error) {
	row := q.queryRow(ctx, q.createAuthorStmt, createAuthor, arg.Name, arg.Bio)
	var i Author
	err := row.Scan(&i.ID, &i.Name, &i.Bio)
	return i, err
}

const deleteAuthor = `-- name: DeleteAuthor :execrows
DELETE FROM authors
WHERE id = $1
`

// DeleteAuthor deletes an author and returns the number of rows deleted.
func (q *Queries) DeleteAuthor(ctx context.Context, id int64) (int64, error) {
	result, err := q.exec(ctx, q.deleteAuthorStmt, deleteAuthor, id)
	if err != nil {
		return 0, err
	}
	return result.RowsAffected()
}

const getAuthor = `-- name: GetAuthor :one
SELECT id, name, bio FROM authors
WHERE id = $1 LIMIT 1
`

// GetAuthor returns one author.
func (q *Queries) GetAuthor(ctx context.Context, id int64) (Author, error) {
	row := q.queryRow(ctx, q.getAuthorStmt, getAuthor, id)
	var i Author
	err := row.Scan(&i.ID, &i.Name, &i.Bio)
	return i, err
}

const listAuthors = `-- name: ListAuthors :many
SELECT id, name, bio FROM authors
ORDER BY name
`

// ListAuthors returns every author.
func (q *Queries) ListAuthors(ctx context.Context) ([]Author, error) {
	rows, err := q.query(ctx, q.listAuthorsStmt, listAuthors)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []Author
	for rows.Next() {
		var i Author
		if err := rows.Scan(&i.ID, &i.Name, &i.Bio); err != nil {
			return nil, err
		}
		items = append(items, i)
	}
	if err := rows.Close(); err != nil {
		return nil, err
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return items, nil
}

const updateAuthorBio = `-- name: UpdateAuthorBio :exec
UPDATE authors SET bio = $2
WHERE id = $1
`

// UpdateAuthorBioParams are UpdateAuthorBio's parameters.
type UpdateAuthorBioParams struct {
	ID  int64
	Bio sql.NullString
}

// UpdateAuthorBio sets an author's bio.
func (q *Queries) UpdateAuthorBio(ctx context.Context, arg UpdateAuthorBioParams) error {
	_, err := q.exec(ctx, q.updateAuthorBioStmt, updateAuthorBio, arg.ID, arg.Bio)
	return err
}

const whoAmI = `-- name: WhoAmI :one
SELECT inet_server_port()::int AS port, pg_is_in_recovery() AS in_recovery, pg_backend_pid() AS pid
`

// WhoAmIRow is WhoAmI's row.
type WhoAmIRow struct {
	Port       int32
	InRecovery bool
	Pid        int32
}

// WhoAmI says which server and backend answered.
func (q *Queries) WhoAmI(ctx context.Context) (WhoAmIRow, error) {
	row := q.queryRow(ctx, q.whoAmIStmt, whoAmI)
	var i WhoAmIRow
	err := row.Scan(&i.Port, &i.InRecovery, &i.Pid)
	return i, err
}
