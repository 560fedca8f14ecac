package integration_test

import (
	"context"
	"database/sql"
	"fmt"
	"testing"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/switchyard-db/switchyard"
)

type bunBook struct {
	bun.BaseModel `bun:"table:bun_books"`

	ID    int64  `bun:",pk,autoincrement"`
	Title string `bun:",notnull,unique"`
	Stock int    `bun:",notnull"`
}

// TestBun runs bun (pgdialect over the *sql.DB) through CreateTable,
// Insert, Select, Update, RunInTx and locking selects.
func TestBun(t *testing.T) {
	ctx := testCtx(t)
	e := open(t, "switchyard_it_bun")
	db := bun.NewDB(e.sqlDB, pgdialect.New())
	if _, err := db.NewDropTable().Model((*bunBook)(nil)).IfExists().Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NewCreateTable().Model((*bunBook)(nil)).Exec(ctx); err != nil {
		t.Fatal(err)
	}

	t.Run("writes go to the primary", func(t *testing.T) {
		before := e.primaryRoutes()
		books := []bunBook{{Title: "Dune", Stock: 3}, {Title: "Emma", Stock: 1}}
		if _, err := db.NewInsert().Model(&books).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if books[0].ID == 0 || books[1].ID == 0 {
			t.Errorf("Insert returned no ids: %+v", books)
		}
		var rec bool
		if err := db.NewUpdate().Model((*bunBook)(nil)).Set("stock = stock").Where("title = ?", "Dune").Returning("pg_is_in_recovery()").Scan(ctx, &rec); err != nil || rec {
			t.Errorf("an UPDATE ran on a replica (%v)", err)
		}
		if got := e.primaryRoutes() - before; got != 2 {
			t.Errorf("%d statements reached the primary, want 2", got)
		}
	})

	t.Run("plain reads go to replicas", func(t *testing.T) {
		eventually(t, "a Select ran on a replica and saw the rows", func() (bool, error) {
			var rec bool
			var n int
			err := db.NewSelect().Model((*bunBook)(nil)).ColumnExpr("pg_is_in_recovery(), count(*)").Scan(ctx, &rec, &n)
			return rec && n == 2, err
		})
		eventually(t, "a model Select was served by a replica", func() (bool, error) {
			before := e.replicaRoutes()
			var books []bunBook
			err := db.NewSelect().Model(&books).Order("title").Scan(ctx)
			return len(books) == 2 && e.replicaRoutes() == before+1, err
		})
		var rec bool
		if err := db.NewSelect().ColumnExpr("pg_is_in_recovery()").Scan(switchyard.Primary(ctx), &rec); err != nil || rec {
			t.Errorf("a Primary(ctx) read ran on a replica (%v)", err)
		}
	})

	t.Run("locking selects go to the primary", func(t *testing.T) {
		var rec bool
		if err := db.NewSelect().Model((*bunBook)(nil)).ColumnExpr("pg_is_in_recovery()").Where("title = ?", "Dune").For("UPDATE").Scan(ctx, &rec); err != nil || rec {
			t.Errorf("SELECT ... FOR UPDATE ran on a replica (%v)", err)
		}
		if err := db.NewSelect().Model((*bunBook)(nil)).ColumnExpr("pg_is_in_recovery()").Where("title = ?", "Dune").For("NO KEY UPDATE SKIP LOCKED").Scan(ctx, &rec); err != nil || rec {
			t.Errorf("SELECT ... FOR NO KEY UPDATE SKIP LOCKED ran on a replica (%v)", err)
		}
	})

	t.Run("a session reads its own writes", func(t *testing.T) {
		for i := 0; i < rounds; i++ {
			sctx := session(ctx)
			b := bunBook{Title: fmt.Sprintf("ryw-%d", i), Stock: i}
			if _, err := db.NewInsert().Model(&b).Exec(sctx); err != nil {
				t.Fatal(err)
			}
			got := bunBook{ID: b.ID}
			if err := db.NewSelect().Model(&got).WherePK().Scan(sctx); err != nil {
				t.Fatalf("round %d: the session's read missed its own write: %v", i, err)
			}
		}
	})

	t.Run("RunInTx stays on one connection", func(t *testing.T) {
		pids := map[int32]bool{}
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var b bunBook
			if err := tx.NewSelect().Model(&b).Where("title = ?", "Dune").For("UPDATE").Scan(ctx); err != nil {
				return err
			}
			for i := 0; i < 3; i++ {
				var pid int32
				var rec bool
				if err := tx.NewSelect().ColumnExpr("pg_backend_pid(), pg_is_in_recovery()").Scan(ctx, &pid, &rec); err != nil {
					return err
				}
				if rec {
					t.Error("a read-write transaction ran on a replica")
				}
				pids[pid] = true
				if _, err := tx.NewUpdate().Model(&b).Set("stock = stock - 1").WherePK().Exec(ctx); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) != 1 {
			t.Errorf("one transaction ran on %d backends", len(pids))
		}
		var stock int
		if err := db.NewSelect().Model((*bunBook)(nil)).Column("stock").Where("title = ?", "Dune").Scan(switchyard.Primary(ctx), &stock); err != nil || stock != 0 {
			t.Errorf("stock %d (%v), want 0", stock, err)
		}

		// Right after a write a read-only transaction begins on the primary
		// (no replica has the write yet); then on a replica.
		eventually(t, "a read-only RunInTx ran on a replica, in repeatable read", func() (bool, error) {
			// A plain read takes the DB's position after its writes (a
			// read-only transaction on the primary does not).
			if err := db.NewSelect().ColumnExpr("1").Scan(ctx, new(int)); err != nil {
				return false, err
			}
			var rec bool
			var iso string
			err := db.RunInTx(ctx, &sql.TxOptions{ReadOnly: true}, func(ctx context.Context, tx bun.Tx) error {
				return tx.NewSelect().ColumnExpr("pg_is_in_recovery(), current_setting('transaction_isolation')").Scan(ctx, &rec, &iso)
			})
			return rec && iso == "repeatable read", err
		})
	})
}
