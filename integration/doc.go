// Package integration holds switchyard's integration tests with the
// libraries people use on top of database/sql (sqlx, GORM, bun, and code in
// the shape sqlc generates), and the benchmark of stdlib.OpenDB against
// pgx's own database/sql driver. It is a module of its own so that those
// libraries stay out of the switchyard module's dependencies; it has no API.
package integration
