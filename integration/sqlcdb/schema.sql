-- The schema sqlc would read (sqlc.yaml: engine postgresql, sql_package
-- database/sql, emit_prepared_queries true); query.sql holds the queries.
CREATE TABLE authors (
  id   bigserial PRIMARY KEY,
  name text      NOT NULL,
  bio  text
);
