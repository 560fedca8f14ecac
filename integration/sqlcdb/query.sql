-- name: GetAuthor :one
SELECT id, name, bio FROM authors
WHERE id = $1 LIMIT 1;

-- name: ListAuthors :many
SELECT id, name, bio FROM authors
ORDER BY name;

-- name: CreateAuthor :one
INSERT INTO authors (name, bio) VALUES ($1, $2)
RETURNING id, name, bio;

-- name: UpdateAuthorBio :exec
UPDATE authors SET bio = $2
WHERE id = $1;

-- name: DeleteAuthor :execrows
DELETE FROM authors
WHERE id = $1;

-- name: WhoAmI :one
SELECT inet_server_port()::int AS port, pg_is_in_recovery() AS in_recovery, pg_backend_pid() AS pid;
