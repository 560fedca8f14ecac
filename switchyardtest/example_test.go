package switchyardtest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// A relay in front of the primary makes it look hung: a query waits for its
// deadline, and flows again after Heal. In a test, Node.NewRelay(t) does the
// same and closes the relay at the end of the test.
func ExampleNode_NewRelay() {
	ctx := context.Background()
	lab, err := switchyardtest.Start(ctx, switchyardtest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer lab.Close()
	relay, err := switchyardtest.StartRelay(fmt.Sprintf("127.0.0.1:%d", lab.Primary().Port()))
	if err != nil {
		log.Fatal(err)
	}
	defer relay.Close()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", relay.Addr()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)

	relay.Blackhole()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err = conn.Exec(short, "SELECT 1")
	fmt.Println("through the blackhole:", errors.Is(err, context.DeadlineExceeded))

	relay.Heal()
	conn, err = pgx.Connect(ctx, fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", relay.Addr()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	fmt.Println("after Heal:", one, err)
	// Output:
	// through the blackhole: true
	// after Heal: 1 <nil>
}
