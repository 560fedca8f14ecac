package switchyard_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
)

// BenchmarkAtomicAcrossClusters measures what two-phase commit costs: a
// block that writes a row on each of two clusters with AcrossClusters,
// beside the same two writes as two independent blocks (one per cluster,
// not atomic together) and a block on one cluster, interleaved op by op so
// that machine noise hits every arm alike. It reports each arm's mean time
// per block.
func BenchmarkAtomicAcrossClusters(b *testing.B) {
	accounts, compute := twoClusters(b, twoPhase)
	db := openClusters(b, clustersConfig(accounts, compute))
	ctx := context.Background()
	debit := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance - 1 WHERE id = 1")
		return err
	}
	book := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO ledger (account, amount) VALUES (1, 1)")
		return err
	}
	arms := []struct {
		name string
		run  func() error
		took time.Duration
	}{
		{name: "one-cluster", run: func() error {
			return db.Atomic(ctx, func(tx pgx.Tx) error { return debit(ctx, tx) })
		}},
		{name: "two-blocks", run: func() error {
			if err := db.Atomic(ctx, func(tx pgx.Tx) error { return debit(ctx, tx) }); err != nil {
				return err
			}
			return db.Atomic(ctx, func(tx pgx.Tx) error { return book(ctx, tx) })
		}},
		{name: "across", run: func() error {
			return db.Atomic(ctx, func(tx pgx.Tx) error {
				if err := debit(ctx, tx); err != nil {
					return err
				}
				return book(ctx, tx)
			}, switchyard.AcrossClusters())
		}},
	}
	n := 0
	for b.Loop() {
		n++
		for i := range arms {
			a := &arms[(i+n)%len(arms)] // each arm goes first in turn
			t0 := time.Now()
			if err := a.run(); err != nil {
				b.Fatalf("%s: %v", a.name, err)
			}
			a.took += time.Since(t0)
		}
	}
	for _, a := range arms {
		b.ReportMetric(float64(a.took.Microseconds())/float64(n), a.name+"-µs/op")
	}
}
