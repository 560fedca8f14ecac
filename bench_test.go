package switchyard_test

import (
	"context"
	"slices"
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

// BenchmarkRead measures what routing adds to a point read: switchyard's
// read and the same read on a bare pgxpool.Pool connected to the replica
// switchyard routes it to, interleaved op by op (the two arms alternate
// within one loop, so that machine noise hits both alike). It reports the
// median, over blocks of 100 pairs, of the ratio of switchyard's time to
// the pool's, and each arm's allocations per read: for a read without a
// session, in a session, and in a session that carries a token.
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
	bare := func(id int) error {
		var name string
		return replica.QueryRow(ctx, sql, id).Scan(&name)
	}
	routed := func(ctx context.Context) func(int) error {
		return func(id int) error {
			var name string
			return db.QueryRow(ctx, sql, id).Scan(&name)
		}
	}
	for _, arm := range []struct {
		name string
		read func(int) error
	}{
		{"plain", routed(ctx)},
		{"session", routed(sessionCtx)},
		{"token", routed(tokenCtx)},
	} {
		b.Run(arm.name, func(b *testing.B) {
			// Every read must reach the replica, or the ratio says nothing.
			before := db.Stats().Routes.Replica
			if err := arm.read(1); err != nil {
				b.Fatal(err)
			}
			if db.Stats().Routes.Replica == before {
				b.Fatal("the routed read did not go to the replica")
			}
			poolAllocs, routedAllocs := allocsPerRead(b, bare), allocsPerRead(b, arm.read)
			const block = 100
			var ratios []float64
			var tBare, tRouted time.Duration
			timed := func(read func(int) error, id int) time.Duration {
				t0 := time.Now()
				if err := read(id); err != nil {
					b.Fatal(err)
				}
				return time.Since(t0)
			}
			i := 0
			for b.Loop() {
				i++
				id := i%1000 + 1
				// Alternate which arm goes first, so that neither always
				// follows the other.
				if i%2 == 0 {
					tBare += timed(bare, id)
					tRouted += timed(arm.read, id)
				} else {
					tRouted += timed(arm.read, id)
					tBare += timed(bare, id)
				}
				if i%block == 0 {
					ratios = append(ratios, float64(tRouted)/float64(tBare))
					tBare, tRouted = 0, 0
				}
			}
			if len(ratios) > 0 {
				slices.Sort(ratios)
				b.ReportMetric(ratios[len(ratios)/2], "ratio")
			}
			b.ReportMetric(poolAllocs, "pool-allocs/read")
			b.ReportMetric(routedAllocs, "allocs/read")
		})
	}
}

// allocsPerRead counts the allocations of one read.
func allocsPerRead(b *testing.B, read func(int) error) float64 {
	return testing.AllocsPerRun(200, func() {
		if err := read(7); err != nil {
			b.Fatal(err)
		}
	})
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

// BenchmarkLatest measures what a Latest read costs against a read on
// the primary and a plain read on the replica, interleaved, for a point
// read and for a 1,000-row read; with no writes meanwhile, so that the
// replica has everything and Latest reads run there.
func BenchmarkLatest(b *testing.B) {
	db, _, _ := benchSetup(b)
	ctx := context.Background()
	for _, size := range []struct {
		name string
		sql  string
	}{
		{"point", "SELECT name FROM bench WHERE id = $1"},
		{"1000rows", "SELECT name FROM bench WHERE id > $1::int - $1::int ORDER BY id"},
	} {
		read := func(ctx context.Context) func(int) error {
			return func(id int) error {
				rows, err := db.Query(ctx, size.sql, id)
				if err != nil {
					return err
				}
				for rows.Next() {
				}
				rows.Close()
				return rows.Err()
			}
		}
		arms := []struct {
			name string
			read func(int) error
		}{
			{"replica", read(ctx)},
			{"primary", read(switchyard.Primary(ctx))},
			{"latest", read(switchyard.Latest(ctx))},
		}
		b.Run(size.name, func(b *testing.B) {
			var total [3]time.Duration
			i := 0
			for b.Loop() {
				i++
				for k := range arms {
					a := arms[(k+i)%len(arms)] // rotate the order
					t0 := time.Now()
					if err := a.read(i%1000 + 1); err != nil {
						b.Fatal(err)
					}
					total[(k+i)%len(arms)] += time.Since(t0)
				}
			}
			for k, a := range arms {
				b.ReportMetric(float64(total[k].Microseconds())/float64(b.N), a.name+"-µs/read")
			}
			if s := db.Stats().Routes; s.Latest == 0 {
				b.Fatal("no Latest read asked the primary")
			}
		})
	}
}

// BenchmarkQueryCache measures a query cache's miss and hit against the
// same point read without a cache, interleaved op by op: a miss (the read
// runs, its row is copied and kept) and a hit (a cache holding every row). It reports the median, over blocks of 100, of
// the ratio of each to the uncached read, the hit's time, and each arm's
// allocations per read.
func BenchmarkQueryCache(b *testing.B) {
	db, _, _ := benchSetup(b)
	ctx := context.Background()
	const sql = "SELECT name FROM bench WHERE id = $1"
	uncached := func(ctx context.Context, id int) error {
		var name string
		return db.QueryRow(ctx, sql, id).Scan(&name)
	}
	// A cache of one entry: each read (of the next id) misses, runs, and
	// is kept in place of the one before.
	cold := switchyard.WithQueryCacheLimits(ctx, switchyard.QueryCacheLimits{Entries: 1})
	miss := func(_ context.Context, id int) error { return uncached(cold, id) }
	warm := switchyard.WithQueryCacheLimits(ctx, switchyard.QueryCacheLimits{Entries: 2000})
	for id := 1; id <= 1000; id++ {
		if err := uncached(warm, id); err != nil {
			b.Fatal(err)
		}
	}
	hits := db.Stats().QueryCache.Hits
	if err := uncached(warm, 1); err != nil || db.Stats().QueryCache.Hits != hits+1 {
		b.Fatalf("the warm cache does not serve (%v)", err)
	}
	hit := func(_ context.Context, id int) error { return uncached(warm, id) }
	const block = 100
	timed := func(read func(context.Context, int) error, id int) time.Duration {
		t0 := time.Now()
		if err := read(ctx, id); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	allocs := func(read func(context.Context, int) error) float64 {
		id := 0
		return testing.AllocsPerRun(200, func() {
			id++
			if err := read(ctx, id%1000+1); err != nil {
				b.Fatal(err)
			}
		})
	}
	aUncached, aMiss, aHit := allocs(uncached), allocs(miss), allocs(hit)
	var missRatios, hitRatios []float64
	var tUncached, tMiss, tHit, hitTotal time.Duration
	i := 0
	for b.Loop() {
		i++
		id := i%1000 + 1
		order := []func(context.Context, int) error{uncached, miss, hit}
		times := []*time.Duration{&tUncached, &tMiss, &tHit}
		for k := range order { // rotate which arm goes first
			j := (k + i) % 3
			*times[j] += timed(order[j], id)
		}
		if i%block == 0 {
			missRatios = append(missRatios, float64(tMiss)/float64(tUncached))
			hitRatios = append(hitRatios, float64(tHit)/float64(tUncached))
			hitTotal += tHit
			tUncached, tMiss, tHit = 0, 0, 0
		}
	}
	if len(missRatios) > 0 {
		slices.Sort(missRatios)
		slices.Sort(hitRatios)
		b.ReportMetric(missRatios[len(missRatios)/2], "miss-ratio")
		b.ReportMetric(hitRatios[len(hitRatios)/2], "hit-ratio")
		b.ReportMetric(float64(hitTotal.Nanoseconds())/float64(len(hitRatios)*block), "hit-ns")
	}
	b.ReportMetric(aUncached, "uncached-allocs/read")
	b.ReportMetric(aMiss, "miss-allocs/read")
	b.ReportMetric(aHit, "hit-allocs/read")
}
