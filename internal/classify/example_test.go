package classify_test

import (
	"fmt"

	"github.com/switchyard-db/switchyard/internal/classify"
)

func ExampleClassifier_Analyze() {
	c := classify.New(nil, 0)
	st := c.Analyze(`WITH recent AS (SELECT * FROM orders WHERE at > now() - interval '1 day')
		UPDATE customers c SET last_order = r.at FROM recent r WHERE c.id = r.customer_id`)
	fmt.Println(st.Kind, st.Reads, st.Writes, st.Funcs, st.Partial)
	// Output: write [orders] [customers] [now] false
}

// A connection pool decides from Effects whether a statement run in a
// transaction leaves state on the connection after it.
func ExampleEffect() {
	c := classify.New(nil, 0)
	for _, sql := range []string{
		"SET LOCAL statement_timeout = 0",
		"SAVEPOINT a",
		"SET search_path TO app",
		"PREPARE q AS SELECT 1",
		"SELECT pg_advisory_xact_lock(1)",
	} {
		e := c.Analyze(sql).Effects
		fmt.Printf("%-32s outlives the transaction: %-5v prepared: %v\n", sql,
			e&classify.EffectSessionState != 0, e&classify.EffectPrepare != 0)
	}
	// Output:
	// SET LOCAL statement_timeout = 0  outlives the transaction: false prepared: false
	// SAVEPOINT a                      outlives the transaction: false prepared: false
	// SET search_path TO app           outlives the transaction: true  prepared: false
	// PREPARE q AS SELECT 1            outlives the transaction: true  prepared: true
	// SELECT pg_advisory_xact_lock(1)  outlives the transaction: false prepared: false
}
