package integration_test

import (
	"database/sql"
	"fmt"
	"testing"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/integration/sqlcdb"
)

// TestSQLC runs code in the shape sqlc generates for database/sql, with
// and without prepared queries, on the *sql.DB and in transactions.
func TestSQLC(t *testing.T) {
	ctx := testCtx(t)
	e := open(t, "switchyard_it_sqlc")
	if _, err := e.sqlDB.ExecContext(ctx, `DROP TABLE IF EXISTS authors; CREATE TABLE authors (id bigserial PRIMARY KEY, name text NOT NULL, bio text)`); err != nil {
		t.Fatal(err)
	}
	prepared, err := sqlcdb.Prepare(ctx, e.sqlDB)
	if err != nil {
		t.Fatal(err)
	}
	defer prepared.Close()
	for _, c := range []struct {
		name string
		q    *sqlcdb.Queries
	}{{"New", sqlcdb.New(e.sqlDB)}, {"Prepare", prepared}} {
		t.Run(c.name, func(t *testing.T) {
			q := c.q
			before := e.primaryRoutes()
			a, err := q.CreateAuthor(ctx, sqlcdb.CreateAuthorParams{Name: "Le Guin " + c.name})
			if err != nil {
				t.Fatal(err)
			}
			if err := q.UpdateAuthorBio(ctx, sqlcdb.UpdateAuthorBioParams{ID: a.ID, Bio: sql.NullString{String: "Earthsea", Valid: true}}); err != nil {
				t.Fatal(err)
			}
			if got := e.primaryRoutes() - before; got != 2 {
				t.Errorf("%d of CreateAuthor and UpdateAuthorBio reached the primary, want 2", got)
			}

			eventually(t, "WhoAmI ran on a replica", func() (bool, error) {
				w, err := q.WhoAmI(ctx)
				return w.InRecovery, err
			})
			eventually(t, "GetAuthor was served by a replica and saw the update", func() (bool, error) {
				before := e.replicaRoutes()
				got, err := q.GetAuthor(ctx, a.ID)
				return got.Bio.String == "Earthsea" && e.replicaRoutes() == before+1, err
			})
			if w, err := q.WhoAmI(switchyard.Primary(ctx)); err != nil || w.InRecovery {
				t.Errorf("a Primary(ctx) WhoAmI ran on a replica (%v)", err)
			}

			for i := 0; i < rounds; i++ {
				sctx := session(ctx)
				a, err := q.CreateAuthor(sctx, sqlcdb.CreateAuthorParams{Name: fmt.Sprintf("ryw %s %d", c.name, i)})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := q.GetAuthor(sctx, a.ID); err != nil {
					t.Fatalf("round %d: the session's read missed its own write: %v", i, err)
				}
				list, err := q.ListAuthors(sctx)
				if err != nil {
					t.Fatal(err)
				}
				found := false
				for _, x := range list {
					found = found || x.ID == a.ID
				}
				if !found {
					t.Fatalf("round %d: ListAuthors missed the session's own write", i)
				}
			}

			tx, err := e.sqlDB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			qtx := q.WithTx(tx)
			w1, err := qtx.WhoAmI(ctx)
			if err != nil {
				t.Fatal(err)
			}
			b, err := qtx.CreateAuthor(ctx, sqlcdb.CreateAuthorParams{Name: "in tx " + c.name})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := qtx.GetAuthor(ctx, b.ID); err != nil {
				t.Fatalf("the transaction does not see its own row: %v", err)
			}
			if n, err := qtx.DeleteAuthor(ctx, b.ID); err != nil || n != 1 {
				t.Errorf("DeleteAuthor: %d, %v", n, err)
			}
			w2, err := qtx.WhoAmI(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if w1.InRecovery || w1.Pid != w2.Pid {
				t.Errorf("a transaction ran on backends %d and %d (first on a replica: %v)", w1.Pid, w2.Pid, w1.InRecovery)
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}

			// A read-only transaction runs on a replica (once one has
			// replayed the writes before it).
			eventually(t, "a read-only transaction ran on a replica", func() (bool, error) {
				// A plain read takes the DB's position after its writes (a
				// read-only transaction on the primary does not).
				if _, err := q.WhoAmI(ctx); err != nil {
					return false, err
				}
				ro, err := e.sqlDB.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
				if err != nil {
					return false, err
				}
				defer ro.Rollback()
				w, err := q.WithTx(ro).WhoAmI(ctx)
				return w.InRecovery, err
			})
		})
	}
}
