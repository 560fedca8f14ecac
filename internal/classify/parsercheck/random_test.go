package parsercheck

import (
	"flag"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/switchyard-db/switchyard/internal/classify"
)

var (
	randomN    = flag.Int("random.n", 20000, "number of statements TestRandomGrammar generates")
	randomSeed = flag.Uint64("random.seed", 1, "seed for TestRandomGrammar")
)

// gen writes random, mostly valid SQL from a small grammar: nested
// queries, CTEs (some data-modifying), locking clauses, function calls
// (some with side effects), every kind of literal, comments and blanks
// between tokens, and keywords in random case.
type gen struct {
	r interface{ IntN(int) int } // a *rand.Rand, or fuzz input
	b strings.Builder
}

// byteChooser makes choices from fuzz input, one byte each (zero when it
// runs out), so that the fuzzer explores the grammar.
type byteChooser struct{ b string }

func (c *byteChooser) IntN(n int) int {
	if c.b == "" {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % n
}

// fromBytes returns the statement gen makes from the choices in b.
func fromBytes(b string) string {
	g := &gen{r: &byteChooser{b: b}}
	g.statement()
	return g.b.String()
}

func (g *gen) n(k int) int            { return g.r.IntN(k) }
func (g *gen) p(pct int) bool         { return g.r.IntN(100) < pct }
func (g *gen) pick(l []string) string { return l[g.r.IntN(len(l))] }

// sep writes the space between two tokens.
func (g *gen) sep() {
	switch g.n(20) {
	case 0:
		g.b.WriteString("\n")
	case 1:
		g.b.WriteString("/* c */")
	case 2:
		g.b.WriteString(" -- c\n")
	case 3:
		g.b.WriteString("\t")
	case 4:
		g.b.WriteString(" /* /* n */ FOR UPDATE */ ")
	default:
		g.b.WriteString(" ")
	}
}

// kw writes a keyword (or several) in random case.
func (g *gen) kw(s string) {
	g.sep()
	switch g.n(3) {
	case 0:
		g.b.WriteString(strings.ToUpper(s))
	case 1:
		g.b.WriteString(strings.ToLower(s))
	default:
		for _, c := range []byte(s) {
			if g.p(50) && c >= 'a' && c <= 'z' {
				c -= 'a' - 'A'
			} else if c >= 'A' && c <= 'Z' && g.p(50) {
				c += 'a' - 'A'
			}
			g.b.WriteByte(c)
		}
	}
}

// raw writes text as is.
func (g *gen) raw(s string) { g.sep(); g.b.WriteString(s) }

var (
	genCols   = []string{"a", "b", "t.a", `"for"`, `"update"`, "update", "share", "key", "for_update", "nextval", "x.nextval", "t.bump_counter", "insert", "lo"}
	genTables = []string{"t", "u", "s.t", `"T"`, "only t", "update", "app.bump_counter", "t AS x", "u y", `s."U" AS "Y"`,
		"db.s.t", "only s.u *", "c_a", "d_a", `"c_a"`, "t TABLESAMPLE SYSTEM (1)", "t AS x(a, b)"}
	genFuncs = []string{"now", "count", "lower", "coalesce", "nextval", "pg_catalog.nextval", `"nextval"`, `"NEXTVAL"`,
		"setval", "currval", "set_config", "pg_advisory_lock", "pg_try_advisory_xact_lock", "lo_get", "pg_notify",
		"txid_current", "pg_current_wal_lsn", "bump_counter", "app.bump_counter", "other.bump_counter", "audit_log",
		"pg_sleep", "current_setting", "dblink_exec", "my_nextval", "PG_CATALOG.SETVAL", "setseed", "loread"}
	genStrings = []string{"'x'", "'it''s'", "'for update'", "E'\\''", "E'\\\\'", "E'a\\' FOR UPDATE'", "$$ FOR UPDATE $$",
		"$q$ $$ ; DELETE FROM t $q$", "'; DELETE FROM t'", "B'101'", "X'FF'", "N'n'", "U&'\\0041'",
		"'a'\n' FOR UPDATE'", "'nextval(1)'", "'C:\\'", "''"}
	genLocks = []string{"FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE"}
)

func (g *gen) expr(d int) {
	switch x := g.n(16); {
	case x < 4 || d > 3:
		if g.p(50) {
			g.raw(g.pick(genCols))
		} else if g.p(50) {
			g.raw(g.pick(genStrings))
		} else {
			g.raw(g.pick([]string{"1", "$1", "2.5", "NULL", "true"}))
		}
	case x < 7:
		g.raw(g.pick(genFuncs))
		g.raw("(")
		if g.p(70) {
			g.expr(d + 1)
		}
		g.raw(")")
	case x < 8:
		g.kw("(")
		g.query(d + 1)
		g.raw(")")
	case x < 9:
		g.kw("EXISTS")
		g.raw("(")
		g.query(d + 1)
		g.raw(")")
	case x < 10:
		overlay := g.p(50)
		if overlay {
			g.kw("overlay")
		} else {
			g.kw("substring")
		}
		g.raw("(")
		g.expr(d + 1)
		if overlay {
			g.kw("PLACING")
			g.expr(d + 1)
			g.kw("FROM")
			g.expr(d + 1)
		} else {
			g.kw("FROM")
			g.expr(d + 1)
		}
		if g.p(70) {
			g.kw("FOR")
			g.raw(g.pick([]string{"2", "update", "share", "no", "key", "a"}))
		}
		g.raw(")")
	case x < 11:
		g.kw("CASE WHEN")
		g.expr(d + 1)
		g.kw("THEN")
		g.expr(d + 1)
		g.kw("END")
	case x < 12:
		g.kw("TREAT")
		g.raw("(")
		g.expr(d + 1)
		g.kw("AS")
		g.raw(g.pick([]string{"int", "text", "nextval", "setval", `"nextval"`, "pg_catalog.set_config", "bump_counter"}))
		g.raw(")")
	case x < 13:
		g.expr(d + 1)
		g.kw(g.pick([]string{"IS DISTINCT FROM", "=", "<>", "AND", "OR", "||"}))
		g.expr(d + 1)
	case x < 14:
		g.expr(d + 1)
		g.kw(g.pick([]string{"IN", "= ANY"}))
		g.raw("(")
		g.query(d + 1)
		g.raw(")")
	case x < 15:
		g.raw("(")
		g.expr(d + 1)
		g.raw(")")
	default:
		g.kw("ARRAY")
		g.raw("(")
		g.query(d + 1)
		g.raw(")")
	}
}

func (g *gen) from(d int) {
	switch x := g.n(8); {
	case x < 4 || d > 3:
		g.raw(g.pick(genTables))
	case x < 5:
		g.raw("(")
		g.query(d + 1)
		g.raw(") s")
	case x < 6:
		switch g.n(4) {
		case 0:
			g.kw("ROWS FROM (generate_series(1, 2), unnest(ARRAY[1]))")
		case 1:
			g.kw("(VALUES (1), (2)) AS v(a)")
		default:
			g.raw(g.pick(genFuncs))
			g.raw("(1) AS f")
		}
	case x < 7:
		g.from(d + 1)
		kind := g.pick([]string{"JOIN", "LEFT JOIN", "CROSS JOIN LATERAL", "NATURAL JOIN", "CROSS JOIN", "FULL OUTER JOIN", "INNER JOIN"})
		g.kw(kind)
		if g.p(50) {
			g.raw("(")
			g.query(d + 1)
			g.raw(") j")
		} else if g.p(20) {
			g.raw("(")
			g.from(d + 1)
			g.kw("JOIN")
			g.raw(g.pick(genTables))
			g.kw("ON true)")
		} else {
			g.raw(g.pick(genTables))
		}
		if kind != "NATURAL JOIN" && kind != "CROSS JOIN" {
			if g.p(20) {
				g.kw("USING (a)")
			} else {
				g.kw("ON")
				g.expr(d + 1)
			}
		}
	default:
		g.kw("LATERAL")
		g.raw("(")
		g.query(d + 1)
		g.raw(") l")
	}
}

// with writes a WITH clause; data-modifying bodies only where allowed
// (top level).
func (g *gen) with(d int, top bool) {
	g.kw("WITH")
	rec := g.p(30)
	if rec {
		g.kw("RECURSIVE")
	}
	for i := 0; i < 1+g.n(2); i++ {
		if i > 0 {
			g.raw(",")
		}
		if g.p(20) {
			g.raw(g.pick([]string{"t", "u", `"T"`})) // shadows a table
		} else {
			g.raw(g.pick([]string{"c", "d", `"c"`, "insert", "nextval"}) + "_" + string(rune('a'+i)))
		}
		if g.p(30) {
			g.raw("(a)")
		}
		g.kw("AS")
		if g.p(20) {
			g.kw(g.pick([]string{"MATERIALIZED", "NOT MATERIALIZED"}))
		}
		g.raw("(")
		if d < 4 && g.p(25) {
			g.dml(d + 1)
		} else {
			g.query(d + 1)
		}
		g.raw(")")
		if rec && g.p(30) {
			g.kw("SEARCH DEPTH FIRST BY a SET o")
		}
		if rec && g.p(30) {
			g.kw(g.pick([]string{"CYCLE a SET c USING p", "CYCLE a SET c TO 1 DEFAULT 0 USING p"}))
		}
	}
}

func (g *gen) dml(d int) {
	if d < 3 && g.p(15) {
		g.with(d+1, false)
	}
	switch g.n(4) {
	case 0:
		g.kw("INSERT INTO")
		g.raw(g.pick([]string{"t", "s.t", `"T"`, "c_a"}))
		if g.p(50) {
			g.kw("SELECT")
			g.expr(d + 1)
			if g.p(50) {
				g.kw("FROM")
				g.from(d + 1)
			}
		} else {
			g.query(d + 1)
		}
	case 1:
		g.kw("UPDATE")
		g.raw(g.pick([]string{"t", "s.t AS x", "only t", "c_a"}))
		g.kw("SET a =")
		g.expr(d + 1)
		if g.p(50) {
			g.kw("FROM")
			g.from(d + 1)
		}
	case 2:
		g.kw("DELETE FROM")
		g.raw(g.pick([]string{"t", "s.t x", "c_a"}))
		if g.p(50) {
			g.kw("USING")
			g.from(d + 1)
		}
		g.kw("WHERE")
		g.expr(d + 1)
	default:
		g.kw("MERGE INTO")
		g.raw(g.pick([]string{"t", "s.t AS x"}))
		g.kw("USING")
		g.from(d + 1)
		g.kw("ON t.a = u.a WHEN MATCHED THEN DELETE")
	}
	g.kw("RETURNING *")
}

func (g *gen) simple(d int) {
	switch g.n(10) {
	case 0:
		g.kw("VALUES")
		g.raw("(")
		g.expr(d + 1)
		g.raw(")")
		return
	case 1:
		g.kw("TABLE")
		g.raw(g.pick(genTables))
		return
	}
	g.kw("SELECT")
	for i := 0; i < 1+g.n(3); i++ {
		if i > 0 {
			g.raw(",")
		}
		g.expr(d + 1)
	}
	if g.p(4) {
		g.kw(g.pick([]string{"INTO x", "INTO TEMP x", "INTO TABLE x"}))
	}
	if g.p(80) {
		g.kw("FROM")
		g.from(d + 1)
	}
	if g.p(40) {
		g.kw("WHERE")
		g.expr(d + 1)
	}
	if g.p(20) {
		g.kw("ORDER BY a LIMIT 1")
	}
}

func (g *gen) query(d int) {
	if d < 3 && g.p(20) {
		g.with(d, false)
	}
	if g.p(15) && d < 4 {
		g.raw("(")
		g.simple(d + 1)
		g.raw(")")
		g.kw(g.pick([]string{"UNION", "UNION ALL", "EXCEPT", "INTERSECT"}))
		g.raw("(")
		g.simple(d + 1)
		g.raw(")")
	} else {
		g.simple(d)
	}
	if g.p(12) {
		g.kw(g.pick(genLocks))
		if g.p(30) {
			g.kw(g.pick([]string{"OF t", "OF x", "OF s", "OF t, u", "OF j"}))
		}
		if g.p(30) {
			g.kw(g.pick([]string{"NOWAIT", "SKIP LOCKED"}))
		}
	}
}

func (g *gen) statement() {
	switch g.n(40) {
	case 2:
		g.kw(g.pick([]string{"COPY", "COPY ("}))
		if g.b.String()[g.b.Len()-1] == '(' {
			g.query(1)
			g.raw(")")
			g.kw("TO STDOUT")
		} else {
			g.raw(g.pick([]string{"t", "s.t", `"T"`}))
			g.kw(g.pick([]string{"FROM STDIN", "TO STDOUT", "TO '/tmp/x'"}))
		}
		return
	case 3:
		g.kw(g.pick([]string{"TRUNCATE", "LOCK TABLE", "DROP TABLE", "VACUUM", "GRANT SELECT ON"}))
		g.raw(g.pick([]string{"t", "s.t", `"T", u`, "only t"}))
		if strings.HasPrefix(strings.TrimSpace(strings.ToUpper(g.b.String())), "GRANT") {
			g.kw("TO bob")
		}
		return
	case 4:
		g.kw(g.pick([]string{"CREATE TABLE x AS", "CREATE VIEW v AS", "EXPLAIN", "PREPARE p AS", "DECLARE c CURSOR FOR"}))
		g.query(0)
		return
	}
	switch g.n(20) {
	case 0:
		g.kw(g.pick([]string{"EXPLAIN", "EXPLAIN ANALYZE", "EXPLAIN (ANALYZE false)", "EXPLAIN (ANALYZE, BUFFERS)", "EXPLAIN VERBOSE"}))
	case 1:
		g.kw(g.pick([]string{"SET x = 1", "DELETE FROM t", "SHOW x", "BEGIN", "SELECT 1"}))
		g.raw(";")
	}
	if g.p(15) {
		g.with(0, true)
		if g.p(30) {
			g.dml(1)
			return
		}
	}
	g.query(0)
}

// TestRandomGrammar compares the classifier with the parser on random
// statements from gen (-random.n, -random.seed).
func TestRandomGrammar(t *testing.T) {
	user := NewUserFuncs(testUserFuncs)
	c := classify.New(testUserFuncs, 0)
	g := &gen{r: rand.New(rand.NewPCG(*randomSeed, 7))}
	var parsed, reads, disagree, scsOff int
	var fc factCounts
	shown := 0
	for i := 0; i < *randomN; i++ {
		g.b.Reset()
		g.statement()
		sql := g.b.String()
		want, err := Truth(sql, user)
		if err != nil {
			continue
		}
		parsed++
		if want == classify.Read {
			reads++
		}
		if facts, err := TruthFacts(sql, user); err == nil {
			st := c.Analyze(sql)
			if tables, funcs, effects := fc.compare(st, facts); tables != "" || effects != "" || strings.Contains(funcs, "miss") {
				shown++
				if shown <= 20 {
					t.Errorf("analysis differs: %s %s %s: %q", tables, funcs, effects, sql)
				}
			}
		}
		got := c.Classify(sql)
		if got == classify.Read && want != classify.Read {
			t.Errorf("UNSAFE: classifier says read, parser says %v: %q", want, sql)
		} else if got != classify.Read && want == classify.Read && strings.Contains(sql, `\`) {
			// A backslash in an ordinary string: the classifier also
			// reads the text as a server with standard_conforming_strings
			// off would, and the parser does not. See below.
			scsOff++
			if scsOff <= 3 {
				t.Logf("not read with standard_conforming_strings off: %q", sql)
			}
		} else if (got == classify.Read) != (want == classify.Read) {
			disagree++
			if disagree <= 20 {
				t.Errorf("conservative: classifier says %v, parser says %v: %q", got, want, sql)
			}
		}
	}
	t.Logf("random grammar: %d generated, %d parsed, %d reads, %d read/non-read disagreements, %d reads that are not with standard_conforming_strings off",
		*randomN, parsed, reads, disagree, scsOff)
	for _, l := range fc.report() {
		t.Log(l)
	}
	if scsOff > reads/1000 {
		t.Errorf("%d of %d reads are not reads with standard_conforming_strings off: too many", scsOff, reads)
	}
	if parsed < *randomN/2 {
		t.Errorf("only %d of %d random statements parse", parsed, *randomN)
	}
}
