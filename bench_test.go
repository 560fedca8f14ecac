package switchyard_test

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// benchLab is a primary with one replica, so that a routed read and a bare
// pool's read hit the same server.
var (
	benchOnce sync.Once
	benchLab  *switchyardtest.Cluster
)

func benchSetup(b *testing.B) (*switchyard.DB, *pgxpool.Pool, *pgxpool.Pool) {
	b.Helper()
	ctx := context.Background()
	benchOnce.Do(func() {
		c, err := switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 1})
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Primary().Exec(ctx, "CREATE TABLE bench (id int PRIMARY KEY, name text NOT NULL); INSERT INTO bench SELECT g, 'name ' || g FROM generate_series(1, 1000) g"); err != nil {
			b.Fatal(err)
		}
		if err := c.WaitReplicas(ctx); err != nil {
			b.Fatal(err)
		}
		benchLab = c
	})
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: benchLab.Primary().DSN(), Replicas: []string{benchLab.Replicas()[0].DSN()}})
	if err != nil {
		b.Fatal(err)
	}
	replicaPool, err := pgxpool.New(ctx, benchLab.Replicas()[0].DSN())
	if err != nil {
		b.Fatal(err)
	}
	primaryPool, err := pgxpool.New(ctx, benchLab.Primary().DSN())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close(); replicaPool.Close(); primaryPool.Close() })
	return db, replicaPool, primaryPool
}

// BenchmarkRead compares a point read routed by switchyard (to the replica)
// with the same read on a bare pgxpool.Pool connected to that replica, side
// by side in one run.
func BenchmarkRead(b *testing.B) {
	db, replica, _ := benchSetup(b)
	ctx := context.Background()
	sessionCtx := switchyard.WithSession(ctx)
	tok, err := db.Token(switchyard.WithSession(ctx))
	if err != nil {
		b.Fatal(err)
	}
	tokenCtx, err := switchyard.WithToken(ctx, tok)
	if err != nil {
		b.Fatal(err)
	}
	const sql = "SELECT name FROM bench WHERE id = $1"
	read := map[string]func(id int) error{
		"pgxpool": func(id int) error {
			var name string
			return replica.QueryRow(ctx, sql, id).Scan(&name)
		},
		"switchyard": func(id int) error {
			var name string
			return db.QueryRow(ctx, sql, id).Scan(&name)
		},
		// In a session (monotonic reads by pinning: no extra work).
		"switchyard-session": func(id int) error {
			var name string
			return db.QueryRow(sessionCtx, sql, id).Scan(&name)
		},
		// In a session that carries a token (httpsession's): a replica read
		// also reads the replica's position in the same round trip.
		"switchyard-token": func(id int) error {
			var name string
			return db.QueryRow(tokenCtx, sql, id).Scan(&name)
		},
	}
	for _, name := range []string{"pgxpool", "switchyard", "switchyard-session", "switchyard-token"} {
		f := read[name]
		b.Run("serial/"+name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			i := 0
			for b.Loop() {
				i++
				if err := f(i%1000 + 1); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
	for _, name := range []string{"pgxpool", "switchyard"} {
		f := read[name]
		b.Run("parallel/"+name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			defer reportCPU(b, cpu)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					if err := f(i%1000 + 1); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// BenchmarkWrite compares an autocommit UPDATE through switchyard (to the
// primary) with the same statement on a bare pool on the primary.
func BenchmarkWrite(b *testing.B) {
	db, _, primary := benchSetup(b)
	ctx := context.Background()
	const sql = "UPDATE bench SET name = name WHERE id = $1"
	b.Run("pgxpool", func(b *testing.B) {
		b.ReportAllocs()
		cpu := processCPU()
		i := 0
		for b.Loop() {
			i++
			if _, err := primary.Exec(ctx, sql, i%1000+1); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
	})
	b.Run("switchyard", func(b *testing.B) {
		b.ReportAllocs()
		cpu := processCPU()
		i := 0
		for b.Loop() {
			i++
			if _, err := db.Exec(ctx, sql, i%1000+1); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
	})
}

// processCPU is the CPU time this process has used (user and system): the
// client's side of a query, which is what a router adds to. Wall-clock
// time on a small machine shared with the servers is too noisy to show a
// few percent.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
}
