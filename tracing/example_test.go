package tracing_test

import (
	"context"
	"fmt"
	"log"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
	"github.com/switchyard-db/switchyard/tracing"
)

// appTracer stands for the application's own tracer (otelpgx, a logger):
// it prints each statement as it starts.
type appTracer struct{}

func (appTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	fmt.Println(d.SQL)
	return ctx
}
func (appTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (appTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	var sqls []string
	for _, q := range d.Batch.QueuedQueries {
		sqls = append(sqls, q.SQL)
	}
	fmt.Printf("batch: %s\n", strings.Join(sqls, "; "))
	return ctx
}
func (appTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (appTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// The application's tracer, wrapped, sees every statement as before; after
// it, the hook gets where switchyard sent the statement and why. With
// OpenTelemetry, the hook would set them on the span the tracer started:
//
//	span := trace.SpanFromContext(ctx)
//	for _, a := range attrs {
//		switch v := a.Value.(type) {
//		case string:
//			span.SetAttributes(attribute.String(a.Key, v))
//		case int64:
//			span.SetAttributes(attribute.Int64(a.Key, v))
//		}
//	}
func ExampleNew() {
	ctx := context.Background()
	lab, err := switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer lab.Close()
	if err := lab.Primary().Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, v int)"); err != nil {
		log.Fatal(err)
	}
	if err := lab.WaitReplicas(ctx); err != nil {
		log.Fatal(err)
	}

	tr := tracing.New(appTracer{}, func(ctx context.Context, attrs []tracing.Attribute) {
		for _, a := range attrs {
			switch a.Key {
			case tracing.KeyServerAddress, tracing.KeyServerPort, tracing.KeyNode:
				continue // the lab's ports change from run to run
			}
			fmt.Printf("  %s=%v\n", a.Key, a.Value)
		}
	})
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:       lab.Primary().DSN(),
		Replicas:      []string{lab.Replicas()[0].DSN()},
		ConfigurePool: func(c *pgxpool.Config) { c.ConnConfig.Tracer = tr },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n); err != nil {
		log.Fatal(err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO items VALUES (1, 1)"); err != nil {
		log.Fatal(err)
	}
	// Output:
	// SELECT count(*) FROM items
	//   db.system=postgresql
	//   db.system.name=postgresql
	//   switchyard.cluster=default
	//   switchyard.role=replica
	//   switchyard.reason=replica
	// INSERT INTO items VALUES (1, 1)
	//   db.system=postgresql
	//   db.system.name=postgresql
	//   switchyard.cluster=default
	//   switchyard.role=primary
	//   switchyard.reason=write
}
