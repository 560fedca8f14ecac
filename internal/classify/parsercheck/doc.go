// Package parsercheck checks the classify package against PostgreSQL's own
// parser (libpg_query, through pg_query_go), which is the ground truth.
//
// It is a separate module so that the cgo dependency never reaches users of
// switchyard. Run it with
//
//	cd internal/classify/parsercheck && go test ./...
//
// Truth parses SQL with pg_query and computes the Kind the classifier should
// return by walking the parse tree with the same rules, and TruthFacts the
// relations read and written, the calls and the session effects that
// classify.Analyze should find (policy.go has the rules both follow);
// TestDifferential compares the two on a generated corpus,
// TestRandomGrammar on random statements and FuzzDifferential on fuzzed
// input. Run go test -run 'TestDifferential|TestRandomGrammar' -v for the
// agreement figures.
package parsercheck
