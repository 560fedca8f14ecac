// Package parsercheck checks the classify package against PostgreSQL's own
// parser (libpg_query, through pg_query_go), which is the ground truth.
//
// It is a separate module so that the cgo dependency never reaches users of
// switchyard. Run it with
//
//	cd internal/classify/parsercheck && go test ./...
//
// Truth parses SQL with pg_query and computes the Kind the classifier should
// return by walking the parse tree with the same rules; TestDifferential
// compares the two on a generated corpus and FuzzDifferential on fuzzed
// input.
package parsercheck
