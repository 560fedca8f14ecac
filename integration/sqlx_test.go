package integration_test

import (
	"database/sql"
	"fmt"
	"testing"

	"github.com/jmoiron/sqlx"

	"github.com/switchyard-db/switchyard"
)

type sqlxPerson struct {
	ID    int64          `db:"id"`
	Name  string         `db:"name"`
	Email sql.NullString `db:"email"`
}

// TestSQLX runs sqlx's Get, Select, NamedExec, Preparex and transactions on
// a *sql.DB from stdlib.OpenDB.
func TestSQLX(t *testing.T) {
	ctx := testCtx(t)
	e := open(t, "switchyard_it_sqlx")
	db := sqlx.NewDb(e.sqlDB, "pgx") // "pgx" tells sqlx to bind $1, $2, ...
	if _, err := db.ExecContext(ctx, `DROP TABLE IF EXISTS sqlx_people; CREATE TABLE sqlx_people (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE, email text)`); err != nil {
		t.Fatal(err)
	}

	t.Run("writes go to the primary", func(t *testing.T) {
		before := e.primaryRoutes()
		res, err := db.NamedExecContext(ctx, `INSERT INTO sqlx_people (name, email) VALUES (:name, :email)`,
			[]sqlxPerson{{Name: "ada"}, {Name: "bob", Email: sql.NullString{String: "bob@example.com", Valid: true}}})
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := res.RowsAffected(); n != 2 {
			t.Errorf("NamedExec inserted %d rows", n)
		}
		var rec bool
		if err := db.GetContext(ctx, &rec, `UPDATE sqlx_people SET email = email WHERE name = $1 RETURNING pg_is_in_recovery()`, "ada"); err != nil || rec {
			t.Errorf("UPDATE ... RETURNING ran on a replica (%v, %v)", rec, err)
		}
		if got := e.primaryRoutes() - before; got != 2 {
			t.Errorf("%d statements reached the primary, want 2", got)
		}
	})

	t.Run("plain reads go to replicas", func(t *testing.T) {
		eventually(t, "Get ran on a replica", func() (bool, error) {
			var rec bool
			err := db.GetContext(ctx, &rec, `SELECT pg_is_in_recovery()`)
			return rec, err
		})
		eventually(t, "Select ran on a replica and saw the rows", func() (bool, error) {
			var rows []struct {
				sqlxPerson
				Rec bool `db:"rec"`
			}
			err := db.SelectContext(ctx, &rows, `SELECT id, name, email, pg_is_in_recovery() AS rec FROM sqlx_people ORDER BY name`)
			return len(rows) == 2 && rows[0].Rec && rows[0].Name == "ada" && rows[1].Email.String == "bob@example.com", err
		})
		var rec bool
		if err := db.GetContext(switchyard.Primary(ctx), &rec, `SELECT pg_is_in_recovery()`); err != nil || rec {
			t.Errorf("a Primary(ctx) Get ran on a replica (%v)", err)
		}
		if err := db.GetContext(ctx, &rec, `SELECT pg_is_in_recovery() FROM sqlx_people WHERE name = 'ada' FOR UPDATE`); err != nil || rec {
			t.Errorf("SELECT ... FOR UPDATE ran on a replica (%v)", err)
		}
	})

	t.Run("a session reads its own writes", func(t *testing.T) {
		for i := 0; i < rounds; i++ {
			sctx := session(ctx)
			name := fmt.Sprintf("ryw-%d", i)
			if _, err := db.NamedExecContext(sctx, `INSERT INTO sqlx_people (name) VALUES (:name)`, sqlxPerson{Name: name}); err != nil {
				t.Fatal(err)
			}
			var p sqlxPerson
			if err := db.GetContext(sctx, &p, `SELECT id, name, email FROM sqlx_people WHERE name = $1`, name); err != nil {
				t.Fatalf("round %d: the session's read missed its own write: %v", i, err)
			}
		}
	})

	t.Run("transactions stay on one connection", func(t *testing.T) {
		tx, err := db.BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		pids := map[int32]bool{}
		var who struct {
			Pid int32 `db:"pid"`
			Rec bool  `db:"rec"`
		}
		for _, q := range []string{
			`SELECT pg_backend_pid() AS pid, pg_is_in_recovery() AS rec`,
			`INSERT INTO sqlx_people (name) VALUES ('tx') RETURNING pg_backend_pid() AS pid, pg_is_in_recovery() AS rec`,
			`SELECT pg_backend_pid() AS pid, pg_is_in_recovery() AS rec FROM sqlx_people WHERE name = 'tx'`,
		} {
			if err := tx.GetContext(ctx, &who, q); err != nil {
				t.Fatal(err)
			}
			if who.Rec {
				t.Errorf("%s: a read-write transaction ran on a replica", q)
			}
			pids[who.Pid] = true
		}
		if _, err := tx.NamedExecContext(ctx, `UPDATE sqlx_people SET email = :email WHERE name = :name`, sqlxPerson{Name: "tx", Email: sql.NullString{String: "tx@example.com", Valid: true}}); err != nil {
			t.Fatal(err)
		}
		if len(pids) != 1 {
			t.Errorf("one transaction ran on %d backends", len(pids))
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		var email string
		if err := db.GetContext(switchyard.Primary(ctx), &email, `SELECT email FROM sqlx_people WHERE name = 'tx'`); err != nil || email != "tx@example.com" {
			t.Errorf("after commit: %q, %v", email, err)
		}

		// A read-only transaction runs on a replica (once one has replayed
		// the writes before it), in one snapshot.
		eventually(t, "a read-only transaction ran on a replica, in repeatable read", func() (bool, error) {
			// A plain read takes the DB's position after its writes (a
			// read-only transaction on the primary does not).
			if err := db.GetContext(ctx, new(int), `SELECT 1`); err != nil {
				return false, err
			}
			ro, err := db.BeginTxx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				return false, err
			}
			defer ro.Rollback()
			var rec bool
			var iso string
			err = ro.QueryRowxContext(ctx, `SELECT pg_is_in_recovery(), current_setting('transaction_isolation')`).Scan(&rec, &iso)
			return rec && iso == "repeatable read", err
		})
	})

	t.Run("prepared statements are routed at each execution", func(t *testing.T) {
		read, err := db.PreparexContext(ctx, `SELECT pg_is_in_recovery() FROM sqlx_people WHERE name = $1`)
		if err != nil {
			t.Fatal(err)
		}
		defer read.Close()
		write, err := db.PrepareNamedContext(ctx, `UPDATE sqlx_people SET email = :email WHERE name = :name RETURNING pg_is_in_recovery()`)
		if err != nil {
			t.Fatal(err)
		}
		defer write.Close()
		eventually(t, "a prepared read ran on a replica", func() (bool, error) {
			var rec bool
			err := read.GetContext(ctx, &rec, "ada")
			return rec, err
		})
		var rec bool
		if err := write.GetContext(ctx, &rec, sqlxPerson{Name: "ada"}); err != nil || rec {
			t.Errorf("a prepared write ran on a replica (%v)", err)
		}
	})
}
