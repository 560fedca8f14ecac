package pgscript_test

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/pgscript"
)

// A server that answers one query and drops the connection on COMMIT, as a
// primary that crashes during COMMIT would.
func ExampleStart() {
	s, err := pgscript.Start(func(q pgscript.Query) pgscript.Reply {
		switch q.SQL {
		case "SELECT pg_is_in_recovery()":
			return pgscript.Rows([]pgscript.Column{{Name: "pg_is_in_recovery", OID: pgscript.BoolOID}}, []any{false})
		case "COMMIT":
			return pgscript.Reply{Drop: true}
		}
		return pgscript.Reply{} // "BEGIN", "SET"...: a tag from the first word
	})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	cfg, _ := pgconn.ParseConfig(s.ConnString())
	conn, err := pgconn.ConnectConfig(context.Background(), cfg)
	if err != nil {
		panic(err)
	}
	defer conn.Close(context.Background())

	r := conn.ExecParams(context.Background(), "SELECT pg_is_in_recovery()", nil, nil, nil, nil).Read()
	fmt.Println(string(r.Rows[0][0]), r.CommandTag, r.Err)
	_, err = conn.Exec(context.Background(), "BEGIN").ReadAll()
	fmt.Println(err, string(conn.TxStatus()))
	_, err = conn.Exec(context.Background(), "COMMIT").ReadAll()
	fmt.Println(err != nil, conn.IsClosed())
	fmt.Println(s.Queries())
	// Output:
	// f SELECT 1 <nil>
	// <nil> T
	// true true
	// 3
}
