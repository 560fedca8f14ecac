package integration_test

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/logger"

	"github.com/switchyard-db/switchyard"
)

type gormAccount struct {
	ID      uint   `gorm:"primaryKey"`
	Owner   string `gorm:"uniqueIndex;not null"`
	Balance int64  `gorm:"not null"`
}

// TestGORM runs GORM (gorm.io/driver/postgres over the *sql.DB) through
// AutoMigrate, Create, First, Transaction and locking clauses, with and
// without prepared statements.
func TestGORM(t *testing.T) {
	for _, prepare := range []bool{false, true} {
		t.Run(fmt.Sprintf("PrepareStmt=%v", prepare), func(t *testing.T) { testGORM(t, prepare) })
	}
}

func testGORM(t *testing.T, prepare bool) {
	ctx := testCtx(t)
	e := open(t, fmt.Sprintf("switchyard_it_gorm_%v", prepare))
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: e.sqlDB}), &gorm.Config{
		Logger:      logger.Default.LogMode(logger.Silent),
		PrepareStmt: prepare,
	})
	if err != nil {
		t.Fatal(err)
	}
	db := gdb.WithContext(ctx)
	table := fmt.Sprintf("gorm_accounts_%v", prepare)
	model := db.Table(table).Session(&gorm.Session{}) // safe to reuse
	if err := gdb.WithContext(ctx).Migrator().DropTable(table); err != nil {
		t.Fatal(err)
	}
	// Migrations read the catalog, then change it: run them on the primary.
	if err := gdb.WithContext(switchyard.Primary(ctx)).Table(table).AutoMigrate(&gormAccount{}); err != nil {
		t.Fatal(err)
	}
	if err := gdb.WithContext(switchyard.Primary(ctx)).Table(table).AutoMigrate(&gormAccount{}); err != nil {
		t.Fatalf("second AutoMigrate: %v", err)
	}

	t.Run("Create goes to the primary", func(t *testing.T) {
		before := e.primaryRoutes()
		accts := []gormAccount{{Owner: "alice", Balance: 100}, {Owner: "bob", Balance: 0}}
		if err := model.Create(&accts).Error; err != nil {
			t.Fatal(err)
		}
		if accts[0].ID == 0 || accts[1].ID == 0 {
			t.Errorf("Create returned no ids: %+v", accts)
		}
		if e.primaryRoutes() == before {
			t.Error("Create did not reach the primary")
		}
		var rec bool
		if err := model.Raw("UPDATE "+table+" SET balance = balance WHERE owner = ? RETURNING pg_is_in_recovery()", "alice").Scan(&rec).Error; err != nil || rec {
			t.Errorf("an UPDATE ran on a replica (%v)", err)
		}
	})

	t.Run("First and plain reads go to replicas", func(t *testing.T) {
		eventually(t, "a raw read ran on a replica", func() (bool, error) {
			var rec bool
			err := db.Raw("SELECT pg_is_in_recovery()").Scan(&rec).Error
			return rec, err
		})
		eventually(t, "First was served by a replica and found the row", func() (bool, error) {
			before := e.replicaRoutes()
			var a gormAccount
			err := model.Where("owner = ?", "alice").First(&a).Error
			return a.Balance == 100 && e.replicaRoutes() == before+1, err
		})
	})

	t.Run("locking clauses go to the primary", func(t *testing.T) {
		var rec bool
		if err := model.Clauses(clause.Locking{Strength: "UPDATE"}).Select("pg_is_in_recovery()").Where("owner = ?", "alice").Scan(&rec).Error; err != nil || rec {
			t.Errorf("SELECT ... FOR UPDATE ran on a replica (%v)", err)
		}
		if err := model.Clauses(clause.Locking{Strength: "SHARE", Options: "NOWAIT"}).Select("pg_is_in_recovery()").Where("owner = ?", "alice").Scan(&rec).Error; err != nil || rec {
			t.Errorf("SELECT ... FOR SHARE NOWAIT ran on a replica (%v)", err)
		}
		before := e.db.Stats().Routes.Write
		var a gormAccount
		if err := model.Clauses(clause.Locking{Strength: "UPDATE"}).Where("owner = ?", "bob").First(&a).Error; err != nil {
			t.Fatal(err)
		}
		if e.db.Stats().Routes.Write != before+1 {
			t.Error("First with clause.Locking was not routed as a write")
		}
	})

	t.Run("a session reads its own writes", func(t *testing.T) {
		for i := 0; i < rounds; i++ {
			s := gdb.WithContext(session(ctx)).Table(table).Session(&gorm.Session{})
			a := gormAccount{Owner: fmt.Sprintf("ryw-%d", i), Balance: int64(i)}
			if err := s.Create(&a).Error; err != nil {
				t.Fatal(err)
			}
			var got gormAccount
			if err := s.First(&got, a.ID).Error; err != nil {
				t.Fatalf("round %d: the session's read missed its own write: %v", i, err)
			}
			if err := s.Model(&got).Update("balance", 1000+i).Error; err != nil {
				t.Fatal(err)
			}
			if err := s.First(&got, a.ID).Error; err != nil || got.Balance != int64(1000+i) {
				t.Fatalf("round %d: the session's read missed its own update: %+v, %v", i, got, err)
			}
		}
	})

	t.Run("Transaction stays on one connection", func(t *testing.T) {
		pids := map[int32]bool{}
		err := db.Transaction(func(tx *gorm.DB) error {
			tx = tx.Table(table).Session(&gorm.Session{})
			var from, to gormAccount
			if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("owner = ?", "alice").First(&from).Error; err != nil {
				return err
			}
			if err := tx.Clauses(clause.Locking{Strength: "UPDATE"}).Where("owner = ?", "bob").First(&to).Error; err != nil {
				return err
			}
			for i := 0; i < 3; i++ {
				var who struct {
					Pid int32
					Rec bool
				}
				if err := tx.Raw("SELECT pg_backend_pid() AS pid, pg_is_in_recovery() AS rec").Scan(&who).Error; err != nil {
					return err
				}
				if who.Rec {
					t.Error("a read-write transaction ran on a replica")
				}
				pids[who.Pid] = true
				if err := tx.Model(&from).Update("balance", gorm.Expr("balance - ?", 10)).Error; err != nil {
					return err
				}
				if err := tx.Model(&to).Update("balance", gorm.Expr("balance + ?", 10)).Error; err != nil {
					return err
				}
			}
			// A nested transaction is a savepoint on the same connection.
			return tx.Transaction(func(tx2 *gorm.DB) error {
				var pid int32
				if err := tx2.Raw("SELECT pg_backend_pid()").Scan(&pid).Error; err != nil {
					return err
				}
				pids[pid] = true
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) != 1 {
			t.Errorf("one transaction ran on %d backends", len(pids))
		}
		var sum int64
		if err := gdb.WithContext(switchyard.Primary(ctx)).Table(table).Where("owner IN ?", []string{"alice", "bob"}).Select("sum(balance)").Scan(&sum).Error; err != nil || sum != 100 {
			t.Errorf("balances sum to %d (%v), want 100", sum, err)
		}

		// A failed Transaction rolls back.
		boom := errors.New("boom")
		err = db.Transaction(func(tx *gorm.DB) error {
			if err := tx.Table(table).Create(&gormAccount{Owner: "ghost"}).Error; err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Errorf("Transaction returned %v", err)
		}
		var n int64
		if err := gdb.WithContext(switchyard.Primary(ctx)).Table(table).Where("owner = ?", "ghost").Count(&n).Error; err != nil || n != 0 {
			t.Errorf("a rolled-back Create left %d rows (%v)", n, err)
		}

		// A read-only Transaction runs on a replica (once one has replayed
		// the writes before it).
		eventually(t, "a read-only Transaction ran on a replica", func() (bool, error) {
			// A plain read takes the DB's position after its writes (a
			// read-only transaction on the primary does not).
			if err := db.Raw("SELECT 1").Scan(new(int)).Error; err != nil {
				return false, err
			}
			var rec bool
			err := db.Transaction(func(tx *gorm.DB) error {
				return tx.Raw("SELECT pg_is_in_recovery()").Scan(&rec).Error
			}, &sql.TxOptions{ReadOnly: true})
			return rec, err
		})
	})
}
