module github.com/switchyard-db/switchyard/internal/classify/parsercheck

go 1.26.0

require (
	github.com/pganalyze/pg_query_go/v6 v6.2.5
	github.com/switchyard-db/switchyard v0.0.0
	google.golang.org/protobuf v1.36.12
)

replace github.com/switchyard-db/switchyard => ../../..
