package switchyard_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
)

// TestEmptyResultKeepsItsColumns: a read whose result is empty has ended
// before Query returns, and its connection is back in the pool; its
// rows still describe their own columns, not those of the next query on
// that connection (pgx keeps a connection's field descriptions in the
// connection, for its next query to reuse). database/sql asks for the
// columns only at the first Next, and GORM's migrator reads an empty
// result's column types: found as a data race under GORM's AlterColumn.
func TestEmptyResultKeepsItsColumns(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1)
	db := openDB(t, c, func(cfg *switchyard.Config) {
		cfg.ConfigurePool = func(pc *pgxpool.Config) { pc.MaxConns = 1 }
	})
	pctx := switchyard.Primary(ctx)
	names := func(fields []string) string {
		s := ""
		for _, f := range fields {
			s += f + " "
		}
		return s
	}

	rows, err := db.Query(pctx, "SELECT 1 AS a, 'b' AS b WHERE false")
	if err != nil {
		t.Fatal(err)
	}
	var other string
	if err := db.QueryRow(pctx, "SELECT 'x' AS other").Scan(&other); err != nil { // the one connection, again
		t.Fatal(err)
	}
	var got []string
	for _, f := range rows.FieldDescriptions() {
		got = append(got, f.Name)
	}
	if names(got) != "a b " {
		t.Errorf("an empty result's columns, after another query on its connection: %q, want a b", names(got))
	}
	if rows.Next() {
		t.Error("an empty result had a row")
	}
	rows.Close()

	sqlDB := stdlib.OpenDB(db)
	defer sqlDB.Close()
	srows, err := sqlDB.QueryContext(pctx, "SELECT 1 AS a, 'b' AS b WHERE false")
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.QueryRowContext(pctx, "SELECT 'x' AS other").Scan(&other); err != nil {
		t.Fatal(err)
	}
	cols, err := srows.Columns()
	if err != nil || names(cols) != "a b " {
		t.Errorf("through database/sql: columns %q, %v; want a b", names(cols), err)
	}
	types, err := srows.ColumnTypes()
	if err != nil || len(types) != 2 || types[0].DatabaseTypeName() != "INT4" || types[1].DatabaseTypeName() != "TEXT" {
		t.Errorf("through database/sql: column types %v, %v; want INT4, TEXT", types, err)
	}
	if srows.Next() {
		t.Error("an empty result had a row")
	}
	srows.Close()
}
