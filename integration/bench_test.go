package integration_test

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // registers pgx's own driver as "pgx"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// benchLab is a primary with one replica and no delay, so that a read
// routed by switchyard and the same read through pgx's own driver hit the
// same server.
var (
	benchOnce sync.Once
	benchLab  *switchyardtest.Cluster
	benchErr  error
)

func benchSetup(b *testing.B) *switchyardtest.Cluster {
	b.Helper()
	benchOnce.Do(func() {
		ctx := context.Background()
		benchLab, benchErr = switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 1})
		if benchErr != nil {
			return
		}
		benchErr = benchLab.Primary().Exec(ctx, "CREATE TABLE bench (id int PRIMARY KEY, name text NOT NULL); INSERT INTO bench SELECT g, 'name ' || g FROM generate_series(1, 1000) g")
		if benchErr == nil {
			benchErr = benchLab.WaitReplicas(ctx)
		}
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return benchLab
}

// BenchmarkRead compares, side by side in one run, a point read through
// stdlib.OpenDB (routed to the replica) with the same read through pgx's
// own database/sql driver connected to that replica, and with the same read
// through switchyard's pgx API.
func BenchmarkRead(b *testing.B) {
	lab := benchSetup(b)
	ctx := context.Background()
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: lab.Primary().DSN(), Replicas: []string{lab.Replicas()[0].DSN()}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	routed := stdlib.OpenDB(db)
	defer routed.Close()
	bare, err := sql.Open("pgx", lab.Replicas()[0].DSN())
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()

	const query = "SELECT name FROM bench WHERE id = $1"
	reads := []struct {
		name string
		read func(id int) (string, error)
	}{
		{"stdlib.OpenDB", func(id int) (s string, err error) { err = routed.QueryRowContext(ctx, query, id).Scan(&s); return }},
		{"pgx-stdlib", func(id int) (s string, err error) { err = bare.QueryRowContext(ctx, query, id).Scan(&s); return }},
		{"switchyard-pgx", func(id int) (s string, err error) { err = db.QueryRow(ctx, query, id).Scan(&s); return }},
	}
	for _, r := range reads {
		// Warm up pools and statement caches, and check the result.
		for id := 1; id <= 10; id++ {
			s, err := r.read(id)
			if err != nil || s != fmt.Sprintf("name %d", id) {
				b.Fatalf("%s: %q, %v", r.name, s, err)
			}
		}
	}
	for _, r := range reads {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			id := 0
			for b.Loop() {
				id = id%1000 + 1
				if _, err := r.read(id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if s := db.Stats(); s.Routes.Replica == 0 || s.Routes.NoHealthyReplica != 0 {
		b.Errorf("the routed reads did not all go to the replica: %+v", s.Routes)
	}
}

// BenchmarkReadParallel is BenchmarkRead with concurrent readers.
func BenchmarkReadParallel(b *testing.B) {
	lab := benchSetup(b)
	ctx := context.Background()
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: lab.Primary().DSN(), Replicas: []string{lab.Replicas()[0].DSN()}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	routed := stdlib.OpenDB(db)
	defer routed.Close()
	bare, err := sql.Open("pgx", lab.Replicas()[0].DSN())
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Close()
	// Keep pgx's server connections between reads (database/sql keeps 2
	// idle by default); stdlib.OpenDB's connections hold none.
	bare.SetMaxIdleConns(8)
	const query = "SELECT name FROM bench WHERE id = $1"
	for _, c := range []struct {
		name string
		db   *sql.DB
	}{{"stdlib.OpenDB", routed}, {"pgx-stdlib", bare}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				id := 0
				var s string
				for pb.Next() {
					id = id%1000 + 1
					if err := c.db.QueryRowContext(ctx, query, id).Scan(&s); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
