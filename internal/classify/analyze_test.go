package classify

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// tl makes a list of tables from "name" and "schema.name" (split at the
// first dot; use a Table literal for names with dots).
func tl(names ...string) []Table {
	var out []Table
	for _, n := range names {
		if i := strings.IndexByte(n, '.'); i >= 0 {
			out = append(out, Table{Schema: n[:i], Name: n[i+1:]})
		} else {
			out = append(out, Table{Name: n})
		}
	}
	return out
}

// fl makes a list of functions as tl makes tables.
func fl(names ...string) []Func {
	var out []Func
	for _, t := range tl(names...) {
		out = append(out, Func(t))
	}
	return out
}

type tableCase struct {
	sql           string
	reads, writes []Table
	partial       bool
}

var tableCases = []tableCase{
	// FROM and JOIN, at any depth.
	{sql: "SELECT * FROM t", reads: tl("t")},
	{sql: "SELECT * FROM t, u AS x, ONLY v, w * , s.x y(a, b)", reads: tl("t", "u", "v", "w", "s.x")},
	{sql: "SELECT * FROM t JOIN u ON t.a = u.a LEFT OUTER JOIN v USING (a) NATURAL JOIN w CROSS JOIN x", reads: tl("t", "u", "v", "w", "x")},
	{sql: "SELECT * FROM t JOIN u JOIN v ON true ON true", reads: tl("t", "u", "v")},
	{sql: "SELECT * FROM (t JOIN u ON true) AS j, ((v JOIN w ON true))", reads: tl("t", "u", "v", "w")},
	{sql: "SELECT * FROM ((SELECT * FROM t) s JOIN u ON true)", reads: tl("t", "u")},
	{sql: "SELECT * FROM t TABLESAMPLE BERNOULLI (5) REPEATABLE (1)", reads: tl("t")},
	{sql: "SELECT (SELECT max(a) FROM t), x FROM u", reads: tl("t", "u")},
	{sql: "SELECT * FROM t WHERE a IN (SELECT a FROM u) AND EXISTS (SELECT 1 FROM v) AND b = ANY (SELECT b FROM w)", reads: tl("t", "u", "v", "w")},
	{sql: "SELECT a FROM t GROUP BY a HAVING count(*) > (SELECT count(*) FROM u)", reads: tl("t", "u")},
	{sql: "SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.a = t.a) l", reads: tl("t", "u")},
	{sql: "SELECT * FROM t JOIN u ON u.a = (SELECT a FROM v)", reads: tl("t", "u", "v")},
	{sql: "SELECT * FROM t UNION SELECT * FROM u INTERSECT (SELECT * FROM v) EXCEPT TABLE w", reads: tl("t", "u", "v", "w")},
	{sql: "TABLE t", reads: tl("t")},
	{sql: "VALUES ((SELECT a FROM t))", reads: tl("t")},
	{sql: "SELECT * FROM t ORDER BY (SELECT 1 FROM u) LIMIT (SELECT 1 FROM v)", reads: tl("t", "u", "v")},
	{sql: "SELECT a IS DISTINCT FROM b FROM t", reads: tl("t")},
	{sql: "SELECT extract(year FROM a), substring(b FROM 1 FOR 2) FROM t", reads: tl("t")},
	{sql: "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a), collation for (b) FROM t", reads: tl("t")},
	{sql: "SELECT 1 AS from, 2 where_ FROM t", reads: tl("t")},
	{sql: "SELECT (0).from a, t.case, t.end, x.where FROM t", reads: tl("t")},
	{sql: "SELECT (0).FROM a"},
	{sql: "SELECT 1 do, 2 left FROM t", reads: tl("t")},
	{sql: "SELECT xmlserialize(DOCUMENT (SELECT x FROM t) AS text), f((SELECT 1 FROM u))", reads: tl("t", "u")},
	{sql: "SELECT a::timestamp with time zone FROM t", reads: tl("t")},
	{sql: "SELECT * FROM t; SELECT * FROM u", reads: tl("t", "u")},
	{sql: "SELECT * FROM t, t, u, t", reads: tl("t", "u")},
	{sql: "EXPLAIN SELECT * FROM t", reads: tl("t")},
	{sql: "EXPLAIN ANALYZE DELETE FROM t USING u", reads: tl("u"), writes: tl("t")},

	// Not relations.
	{sql: "SELECT * FROM generate_series(1, 3) g, unnest(ARRAY[1]) WITH ORDINALITY AS u(x, n)"},
	{sql: "SELECT * FROM ROWS FROM (generate_series(1, 2), f() AS (a int)) r"},
	{sql: "SELECT * FROM s.f(1), current_date, current_user"},
	{sql: "SELECT * FROM (VALUES (1)) v(a)"},
	{sql: "SELECT t.*, t.a, s.t.b, a.f(1) FROM (SELECT 1) t"},
	{sql: "SELECT * FROM xmltable('/r' PASSING '<r/>' COLUMNS id int PATH '@id') x"},

	// CTEs: a name in scope is no table; its own body (unless RECURSIVE)
	// sees the table; qualified names are tables; scope ends with the
	// query.
	{sql: "WITH c AS (SELECT * FROM t) SELECT * FROM c, u", reads: tl("t", "u")},
	{sql: "WITH t AS (SELECT * FROM t) SELECT * FROM t", reads: tl("t")},
	{sql: "WITH t AS (SELECT 1) SELECT * FROM t, s.t", reads: tl("s.t")},
	{sql: `WITH "T" AS (SELECT 1) SELECT * FROM t, "T"`, reads: tl("t")},
	{sql: "WITH RECURSIVE t AS (SELECT 1 UNION ALL SELECT * FROM t) SELECT * FROM t"},
	{sql: "WITH RECURSIVE a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a"},
	{sql: "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a", reads: tl("b")},
	{sql: "WITH a AS (SELECT 1), b AS (SELECT * FROM a) SELECT * FROM b"},
	{sql: "SELECT * FROM (WITH c AS (SELECT 1) SELECT * FROM c) x, c", reads: tl("c")},
	{sql: "(WITH c AS (SELECT 1) SELECT * FROM c) UNION SELECT * FROM c", reads: tl("c")},
	{sql: "WITH c AS (SELECT 1) SELECT * FROM c UNION SELECT * FROM c"},
	{sql: "WITH c AS (SELECT 1) SELECT (SELECT * FROM c), (SELECT * FROM ONLY c), (TABLE c)"},
	{sql: "WITH c AS (SELECT 1) INSERT INTO c SELECT * FROM c", writes: tl("c")},
	{sql: "INSERT INTO t WITH t AS (SELECT 1) SELECT * FROM t", writes: tl("t")},
	{sql: "WITH c AS (SELECT 1) SELECT 1; SELECT * FROM c", reads: tl("c")},
	{sql: "WITH RECURSIVE a AS (WITH b AS (SELECT * FROM c) SELECT * FROM b), c AS (SELECT 1) SELECT * FROM a"},
	{sql: "CREATE VIEW v AS WITH t AS (SELECT 1) SELECT * FROM t", writes: tl("v")},
	{sql: "CREATE RECURSIVE VIEW s.v (n) AS VALUES (1) UNION ALL SELECT n + 1 FROM v, s.v", reads: tl("s.v"), writes: tl("s.v")},

	// Names as PostgreSQL folds them.
	{sql: `SELECT * FROM "T", S.T, "s"."T x", db.s.t, "a""b"`, reads: []Table{{Name: "T"}, {"s", "t"}, {"s", "T x"}, {Name: `a"b`}}},
	{sql: `SELECT * FROM U&"\0074", U&"d!0061t" UESCAPE '!', résumé, "Résumé"`, reads: tl("t", "dat", "résumé", "Résumé")},
	{sql: "SELECT * FROM " + strings.Repeat("x", 70), reads: tl(strings.Repeat("x", 63))},
	{sql: "SELECT * FROM " + strings.Repeat("x", 62) + "é", reads: tl(strings.Repeat("x", 62))},
	{sql: "SELECT * FROM " + strings.Repeat("x", 63) + "\x85", reads: tl(strings.Repeat("x", 63))}, // as pg_mbcliplen counts
	{sql: `SELECT * FROM U&"\D800"`, partial: true},

	// Writes.
	{sql: "INSERT INTO t VALUES (1)", writes: tl("t")},
	{sql: "INSERT INTO s.t AS x (a, b) SELECT a, b FROM u ON CONFLICT (a) DO UPDATE SET b = x.b RETURNING (SELECT 1 FROM v)", reads: tl("u", "v"), writes: tl("s.t")},
	{sql: "INSERT INTO t DEFAULT VALUES", writes: tl("t")},
	{sql: "INSERT INTO t (SELECT * FROM u)", reads: tl("u"), writes: tl("t")},
	{sql: "UPDATE t SET a = u.a FROM t AS u WHERE t.id = u.id", reads: tl("t"), writes: tl("t")},
	{sql: "UPDATE ONLY t x SET (a, b) = (SELECT a, b FROM u) WHERE CURRENT OF c", reads: tl("u"), writes: tl("t")},
	{sql: "DELETE FROM t x USING u, v WHERE x.a = u.a RETURNING *", reads: tl("u", "v"), writes: tl("t")},
	{sql: "MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN UPDATE SET b = 1 WHEN NOT MATCHED THEN INSERT (a) VALUES (u.a)", reads: tl("u"), writes: tl("t")},
	{sql: "MERGE INTO t USING (SELECT * FROM u) s ON true WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN DO NOTHING", reads: tl("u"), writes: tl("t")},
	{sql: "WITH d AS (DELETE FROM t RETURNING *), i AS (INSERT INTO u SELECT * FROM d RETURNING *) SELECT * FROM i, v", reads: tl("v"), writes: tl("t", "u")},
	{sql: "TRUNCATE t, ONLY s.u, v * RESTART IDENTITY", writes: tl("t", "s.u", "v")},
	{sql: "TRUNCATE t CASCADE", writes: tl("t"), partial: true},
	{sql: "LOCK TABLE t, u IN SHARE MODE NOWAIT", writes: tl("t", "u")},
	{sql: "COPY t FROM STDIN", writes: tl("t")},
	{sql: "COPY t (a) TO STDOUT", reads: tl("t")},
	{sql: "COPY (SELECT * FROM t JOIN u ON true) TO STDOUT", reads: tl("t", "u")},
	{sql: "COPY (DELETE FROM t RETURNING *) TO STDOUT", writes: tl("t")},
	{sql: "SELECT * INTO x FROM t", reads: tl("t"), writes: tl("x")},
	{sql: "SELECT * INTO TEMP TABLE s.x FROM t", reads: tl("t"), writes: tl("s.x")},

	// Locking clauses.
	{sql: "SELECT * FROM t, u FOR UPDATE", reads: tl("t", "u"), writes: tl("t", "u")},
	{sql: "SELECT * FROM t a JOIN u b ON true FOR SHARE OF a", reads: tl("t", "u"), writes: tl("t")},
	{sql: "SELECT * FROM t, (SELECT * FROM u) s FOR UPDATE OF s", reads: tl("t", "u"), writes: tl("u")},
	{sql: "SELECT * FROM (SELECT * FROM t) s WHERE a IN (SELECT a FROM u) FOR KEY SHARE", reads: tl("t", "u"), writes: tl("t")},
	{sql: "SELECT * FROM (t JOIN u ON true) j, v FOR UPDATE OF j", reads: tl("t", "u", "v"), writes: tl("t", "u")},
	{sql: "SELECT * FROM s.t FOR UPDATE OF t", reads: tl("s.t"), writes: tl("s.t")},
	{sql: "SELECT * FROM t FOR UPDATE OF nosuch", reads: tl("t"), writes: tl("nosuch")},
	{sql: "(SELECT * FROM t) FOR NO KEY UPDATE", reads: tl("t"), writes: tl("t")},
	{sql: "SELECT * FROM t UNION SELECT * FROM u FOR UPDATE", reads: tl("t", "u")},
	{sql: "WITH c AS (SELECT * FROM t) SELECT * FROM c, u FOR UPDATE", reads: tl("t", "u"), writes: tl("u")},
	{sql: "TABLE t FOR UPDATE", reads: tl("t"), writes: tl("t")},

	// DDL.
	{sql: "CREATE TABLE s.t (a int REFERENCES u (id), b geometry(Point), LIKE v INCLUDING ALL, FOREIGN KEY (b) REFERENCES w ON DELETE CASCADE)", reads: tl("v"), writes: tl("s.t", "u", "w")},
	{sql: "CREATE TABLE t (a int) INHERITS (p, s.q)", writes: tl("t", "p", "s.q")},
	{sql: "CREATE TABLE t PARTITION OF p FOR VALUES FROM (1) TO (2)", writes: tl("t", "p")},
	{sql: "CREATE TEMP TABLE t ON COMMIT DROP AS SELECT * FROM u WITH NO DATA", reads: tl("u"), writes: tl("t")},
	{sql: "CREATE OR REPLACE VIEW v (a) AS SELECT a FROM t WITH CHECK OPTION", reads: tl("t"), writes: tl("v")},
	{sql: "CREATE MATERIALIZED VIEW IF NOT EXISTS s.v AS SELECT * FROM t", reads: tl("t"), writes: tl("s.v")},
	{sql: "CREATE UNIQUE INDEX CONCURRENTLY i ON ONLY s.t USING btree (lower(a)) INCLUDE (b) WHERE c", writes: tl("s.t")},
	{sql: "CREATE SEQUENCE s.q START 1", writes: tl("s.q")},
	{sql: "CREATE TRIGGER tr AFTER UPDATE OF a ON t FROM u FOR EACH ROW WHEN (true) EXECUTE FUNCTION f('x')", writes: tl("t", "u")},
	{sql: "CREATE POLICY p ON t USING (a IN (SELECT a FROM u))", reads: tl("u"), writes: tl("t")},
	{sql: "ALTER TABLE IF EXISTS ONLY t ADD CONSTRAINT fk FOREIGN KEY (a) REFERENCES u (id), ATTACH PARTITION p FOR VALUES IN (1)", writes: tl("t", "u", "p")},
	{sql: "ALTER TABLE t DETACH PARTITION p; ALTER TABLE t NO INHERIT q; ALTER TABLE t RENAME TO x", writes: tl("t", "p", "q")},
	{sql: "ALTER TABLE t DROP COLUMN a CASCADE", writes: tl("t"), partial: true},
	{sql: "ALTER MATERIALIZED VIEW v RENAME TO w; ALTER INDEX i ATTACH PARTITION j; ALTER SEQUENCE q RESTART", writes: tl("v", "i", "j", "q")},
	{sql: "DROP TABLE IF EXISTS t, s.u", writes: tl("t", "s.u")},
	{sql: "DROP VIEW v CASCADE", writes: tl("v"), partial: true},
	{sql: "DROP TRIGGER tr ON t; DROP POLICY IF EXISTS p ON s.u", writes: tl("t", "s.u")},
	{sql: "DROP FUNCTION f(int)"},
	{sql: "DROP TYPE ty CASCADE", partial: true},
	{sql: "DROP EXTENSION e", partial: true},
	{sql: "REFRESH MATERIALIZED VIEW CONCURRENTLY v", writes: tl("v")},
	{sql: "VACUUM (ANALYZE) t (a), u; ANALYZE v; CLUSTER w USING i; REINDEX TABLE x", writes: tl("t", "u", "v", "w", "x")},
	{sql: "VACUUM", partial: true},
	{sql: "REINDEX DATABASE d", partial: true},
	{sql: "COMMENT ON TABLE t IS 'x'; COMMENT ON COLUMN s.u.c IS 'x'; COMMENT ON TRIGGER tr ON v IS 'x'", writes: tl("t", "s.u", "v")},
	{sql: "COMMENT ON FUNCTION f(int) IS 'x'"},
	{sql: "GRANT SELECT (a), UPDATE ON TABLE t, u TO bob; REVOKE ALL ON SEQUENCE q FROM bob", writes: tl("t", "u", "q")},
	{sql: "GRANT SELECT ON ALL TABLES IN SCHEMA s TO bob", partial: true},
	{sql: "GRANT USAGE ON SCHEMA s TO bob; GRANT bob TO alice"},
	{sql: "CREATE TYPE ty AS (a int); CREATE DOMAIN d AS int CHECK (VALUE > 0); CREATE SCHEMA s"},
	{sql: "CREATE SCHEMA s CREATE TABLE t (a int)", partial: true},
	{sql: "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1'", partial: true},

	// Statements that touch relations the text does not name.
	{sql: "EXECUTE p", partial: true},
	{sql: "FETCH c", partial: true},
	{sql: "DO $$ BEGIN END $$", partial: true},
	{sql: "CREATE TABLE t AS EXECUTE p", writes: tl("t"), partial: true},
	{sql: "garbage", partial: true},
	{sql: "SELECT * FROM t x y, u", reads: tl("t", "u"), partial: true},
	{sql: "SELECT * FROM t, (SELECT * FROM u", reads: tl("t", "u"), partial: true},
	{sql: "", partial: true},
	{sql: "SELECT 1\x00", partial: true},
}

func TestAnalyzeTables(t *testing.T) {
	for _, tc := range tableCases {
		st := Analyze(tc.sql)
		if !slices.Equal(st.Reads, tc.reads) || !slices.Equal(st.Writes, tc.writes) || st.Partial != tc.partial {
			t.Errorf("Analyze(%q): reads %v writes %v partial %v, want %v %v %v",
				tc.sql, st.Reads, st.Writes, st.Partial, tc.reads, tc.writes, tc.partial)
		}
	}
}

func TestAnalyzeFuncs(t *testing.T) {
	for _, tc := range []struct {
		sql   string
		funcs []Func
	}{
		{"SELECT now(), s.f(1), db.s.g(2), \"Q\"(3), count(*) FROM t", fl("now", "s.f", "s.g", "Q", "count")},
		{"SELECT f(1), f(2), F(3), s.f(4)", fl("f", "s.f")},
		{"SELECT * FROM generate_series(1, 2), ROWS FROM (unnest(a), g())", fl("generate_series", "unnest", "g")},
		{"SELECT f(g(h(1))), (SELECT k() FROM t WHERE l(a))", fl("f", "g", "h", "k", "l")},
		{"CALL p(f(1))", fl("p", "f")},
		{"INSERT INTO t VALUES (nextval('s')) RETURNING currval('s')", fl("nextval", "currval")},
		// SQL syntax calling functions.
		{"SELECT extract(year FROM a), position('x' IN b), normalize(c), xmlexists('/r' PASSING d)",
			fl("pg_catalog.extract", "pg_catalog.position", "pg_catalog.normalize", "pg_catalog.xmlexists")},
		{"SELECT substring(a FROM 1 FOR 2), substring(a, 1, 2), overlay(a PLACING b FROM 1), overlay(a, b, 1)",
			fl("pg_catalog.substring", "substring", "pg_catalog.overlay", "overlay")},
		{"SELECT trim(a), trim(BOTH 'x' FROM a), trim(LEADING FROM a), trim(TRAILING 'y' FROM a)", fl("pg_catalog.btrim", "pg_catalog.ltrim", "pg_catalog.rtrim")},
		{"SELECT a AT TIME ZONE 'UTC', b AT LOCAL, (a, b) OVERLAPS (c, d), e IS NFC NORMALIZED, system_user, collation for (f)",
			fl("pg_catalog.timezone", "pg_catalog.overlaps", "pg_catalog.is_normalized", "pg_catalog.system_user", "pg_catalog.pg_collation_for")},
		{"SELECT a LIKE b ESCAPE c, a ILIKE b, a SIMILAR TO b, a NOT SIMILAR TO b ESCAPE c", fl("pg_catalog.like_escape", "pg_catalog.similar_to_escape")},
		{"SELECT TREAT(a AS int), TREAT(b AS s.ty), TREAT(c AS double precision), TREAT(d AS character varying(3))",
			fl("pg_catalog.int4", "pg_catalog.ty", "pg_catalog.float8", "pg_catalog.varchar")},
		{"SELECT json_object('{a,1}'), json_object('a' VALUE 1), json_object()", fl("pg_catalog.json_object")},
		// Syntax that only looks like a call.
		{"SELECT CAST(a AS numeric(10, 2)), coalesce(a, b), nullif(a, b), greatest(a, b), least(a, b), EXISTS (SELECT 1), a IN (1), a = ANY (b), a = SOME (b), a = ALL (b), ARRAY(SELECT 1), ROW(1), grouping(a)", nil},
		{"SELECT a::varchar(10), a::numeric(10, 2), a::timestamp(3), a::character varying(3), a::interval day to second(3), a::pg_catalog.int4(1), a::geometry(Point)", nil},
		{"SELECT interval '1' second(3), varchar(10) 'x', mytype(3) 'x', localtime(2), current_timestamp(3)", nil},
		{"SELECT count(*) FILTER (WHERE a) OVER (PARTITION BY b) FROM t GROUP BY ROLLUP (a), CUBE (b), GROUPING SETS ((a)) ORDER BY (a) FETCH FIRST (1) ROWS ONLY", fl("count")},
		{"SELECT * FROM t AS x(a, b) TABLESAMPLE SYSTEM (1) JOIN u USING (a)", nil},
		{"SELECT a FROM t GROUP BY DISTINCT ROLLUP (a), GROUPING SETS ((a), CUBE (b))", nil},
		{"SELECT 1 FROM t GROUP BY ! rollup(a), (cube(b)), GROUPING SETS ((rollup(c)))", fl("rollup", "cube")},
		{"INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET (a, b) = (1, 2)", nil},
		{"MERGE INTO t USING u ON true WHEN NOT MATCHED THEN INSERT (a) VALUES (1)", nil},
		{"SELECT a OPERATOR(pg_catalog.+) abs(b) FROM t", fl("abs")},
		{"SELECT left(a, 1), right(a, 1), a LIKE (b), current_schema(), current_schema FROM t", fl("left", "right", "current_schema")},
		{"CREATE TABLE t (a int DEFAULT nextval('s'), g geometry(Point), PRIMARY KEY (a), CHECK (length(b) > 0)) PARTITION BY RANGE (a)", fl("nextval", "length")},
		{"CREATE INDEX ON t USING gin (lower(a)) WITH (fastupdate = off)", fl("lower")},
		{"PREPARE p (int, mytype(3)) AS SELECT f($1)", fl("f")},
		{"EXECUTE p (g(1))", fl("g")},
		{"CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()", nil},
		{"DROP FUNCTION f(int); GRANT EXECUTE ON FUNCTION g(int) TO bob", nil},
	} {
		if got := Analyze(tc.sql).Funcs; !slices.Equal(got, tc.funcs) {
			t.Errorf("Analyze(%q).Funcs = %v, want %v", tc.sql, got, tc.funcs)
		}
	}
}

// TestAttributeFuncs checks that t.f is a call of the user's function f.
func TestAttributeFuncs(t *testing.T) {
	c := New([]string{"app.bump", "audit"}, 0)
	st := c.Analyze("SELECT t.bump, (t).audit, t.other, bump, t.bump(1) FROM t")
	if want := fl("bump", "audit", "t.bump"); !slices.Equal(st.Funcs, want) {
		t.Errorf("Funcs = %v, want %v", st.Funcs, want)
	}
	if st := Analyze("SELECT t.bump FROM t"); st.Funcs != nil {
		t.Errorf("the package Analyze knows user functions: %v", st.Funcs)
	}
}

func TestAnalyzeEffects(t *testing.T) {
	const (
		SS = EffectSessionState
		SD = EffectSessionDependent
		TX = EffectTxScoped
	)
	for _, tc := range []struct {
		sql     string
		effects Effect
	}{
		{"SELECT 1", 0},
		{"BEGIN", EffectBegin},
		{"BEGIN WORK", EffectBegin},
		{"START TRANSACTION READ ONLY", EffectBegin},
		{"COMMIT", EffectCommit},
		{"END TRANSACTION", EffectCommit},
		{"COMMIT AND CHAIN", EffectCommit | EffectChain},
		{"COMMIT AND NO CHAIN", EffectCommit},
		{"ROLLBACK", EffectRollback},
		{"ABORT WORK AND CHAIN", EffectRollback | EffectChain},
		{"ROLLBACK TO SAVEPOINT s", EffectSavepoint},
		{"ROLLBACK WORK TO s", EffectSavepoint},
		{"SAVEPOINT s", EffectSavepoint},
		{"RELEASE SAVEPOINT s", EffectSavepoint},
		{"RELEASE s", EffectSavepoint},
		{"PREPARE TRANSACTION 'g'", EffectTwoPhase},
		{"COMMIT PREPARED 'g'", EffectTwoPhase},
		{"ROLLBACK PREPARED 'g'", EffectTwoPhase},
		{"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", EffectSetTransaction | TX},
		{"SET TRANSACTION SNAPSHOT '1-2-3'", EffectSetTransaction | TX},
		{"SET LOCAL TRANSACTION READ ONLY", EffectSetTransaction | TX},
		{"SET SESSION TRANSACTION READ ONLY", EffectSetTransaction | TX},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", SS},
		{"SET x = 1", SS},
		{"SET SESSION x = 1", SS},
		{"SET search_path TO a, b", SS},
		{"SET TIME ZONE 'UTC'", SS},
		{"SET ROLE bob", SS},
		{"SET SESSION AUTHORIZATION bob", SS},
		{"SET LOCAL x = 1", TX},
		{"SET LOCAL ROLE bob", TX},
		{"SET CONSTRAINTS ALL DEFERRED", TX},
		{"RESET x", SS},
		{"RESET ALL", SS},
		{"LISTEN c", SS | EffectListen},
		{"UNLISTEN *", SD},
		{"NOTIFY c", 0},
		{"PREPARE p AS SELECT 1", SS | EffectPrepare},
		{"EXECUTE p", SD},
		{"DEALLOCATE ALL", SD},
		{"DECLARE c CURSOR FOR SELECT 1", TX},
		{"DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1", TX},
		{"DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT 1", SS},
		{"FETCH c", SD},
		{"MOVE c", SD},
		{"CLOSE c", SD},
		{"DISCARD ALL", EffectDiscardAll},
		{"DISCARD TEMP", SD},
		{"DISCARD PLANS", SD},
		{"LOAD 'x'", SS},
		{"CREATE TEMP TABLE x (a int)", SS},
		{"CREATE TEMPORARY TABLE x (a int) ON COMMIT DROP", TX},
		{"CREATE TEMP TABLE x ON COMMIT DROP AS SELECT 1", TX},
		{"CREATE TABLE pg_temp.x (a int)", SS},
		{"CREATE TEMP VIEW v AS SELECT 1", SS},
		{"CREATE TEMP SEQUENCE s", SS},
		{"CREATE TABLE x (a int)", 0},
		{"SELECT 1 INTO TEMP x", SS},
		{"SELECT 1 INTO pg_temp.x", SS},
		{"SELECT pg_advisory_lock(1), pg_try_advisory_lock_shared(1)", SS},
		{"SELECT pg_advisory_xact_lock(1), pg_try_advisory_xact_lock_shared(1)", TX},
		{"SELECT pg_advisory_unlock(1), pg_advisory_unlock_all()", SD},
		{"SELECT set_config('a', 'b', true)", TX},
		{"SELECT set_config('a', 'b', false)", SS},
		{"SELECT set_config('a', 'b', $1)", SS},
		{"SELECT set_config('a', 'b', 't')", SS},
		{"SELECT pg_catalog.set_config('a', (SELECT 'b'), TRUE)", TX},
		{"SELECT setseed(0.5)", SS},
		{"SELECT currval('s'), lastval()", SD},
		{"SELECT pg_export_snapshot()", TX},
		{"SELECT dblink_connect('c', 'x')", SS},
		{"SELECT dblink_disconnect('c'), dblink_fetch('c', 1)", SD},
		{`SELECT "PG_ADVISORY_LOCK"(1), pg_advisory_lockx(1)`, 0},
		{"COPY t FROM STDIN", EffectCopyFrom},
		{"COPY t TO STDOUT", EffectCopyTo},
		{"COPY t TO STDIN", EffectCopyTo},
		{"COPY t FROM '/tmp/x'", 0},
		{"COPY t TO PROGRAM 'cat'", 0},
		{"BEGIN; SELECT pg_advisory_xact_lock(1); COMMIT", EffectBegin | TX | EffectCommit},
		{"EXPLAIN EXECUTE p", SD},
		{"CREATE TABLE x AS EXECUTE p", SD},
	} {
		if got := Analyze(tc.sql).Effects; got != tc.effects {
			t.Errorf("Analyze(%q).Effects = %v, want %v", tc.sql, got, tc.effects)
		}
	}
}

func TestAnalyzeTransactionModes(t *testing.T) {
	for _, tc := range []struct {
		sql        string
		access     Access
		isolation  Isolation
		deferrable bool
	}{
		{"BEGIN", AccessDefault, IsolationDefault, false},
		{"BEGIN TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE", AccessReadOnly, Serializable, true},
		{"BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE NOT DEFERRABLE", AccessReadWrite, ReadCommitted, false},
		{"START TRANSACTION ISOLATION LEVEL REPEATABLE READ", AccessDefault, RepeatableRead, false},
		{"START TRANSACTION READ ONLY, ISOLATION LEVEL READ UNCOMMITTED", AccessReadOnly, ReadUncommitted, false},
		{"SET TRANSACTION READ WRITE", AccessReadWrite, IsolationDefault, false},
		{"BEGIN READ ONLY; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", AccessReadOnly, Serializable, false},
		{"BEGIN ISOLATION LEVEL SERIALIZABLE; COMMIT; BEGIN", AccessDefault, IsolationDefault, false},
		{"SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", AccessDefault, IsolationDefault, false},
	} {
		st := Analyze(tc.sql)
		if st.TxAccess != tc.access || st.TxIsolation != tc.isolation || st.TxDeferrable != tc.deferrable {
			t.Errorf("Analyze(%q) modes = %v, %v, %v; want %v, %v, %v",
				tc.sql, st.TxAccess, st.TxIsolation, st.TxDeferrable, tc.access, tc.isolation, tc.deferrable)
		}
	}
}

func TestAnalyzeSampled(t *testing.T) {
	for sql, want := range map[string]bool{
		"SELECT * FROM t TABLESAMPLE SYSTEM (10)":                            true,
		"SELECT * FROM t tablesample bernoulli (5) WHERE a > 1":              true,
		"SELECT * FROM t TABLESAMPLE SYSTEM (10) REPEATABLE (42)":            false,
		"SELECT * FROM u, (SELECT * FROM t TABLESAMPLE SYSTEM (1)) s":        true,
		"WITH s AS (SELECT * FROM t TABLESAMPLE SYSTEM (1)) SELECT * FROM s": true,
		"SELECT 'TABLESAMPLE' FROM t":                                        false,
		"SELECT * FROM t":                                                    false,
	} {
		if got := Analyze(sql).Sampled; got != want {
			t.Errorf("Analyze(%q).Sampled = %v, want %v", sql, got, want)
		}
	}
}

func TestAnalyzeCountsAndLocking(t *testing.T) {
	for _, tc := range []struct {
		sql        string
		statements int
		locking    bool
	}{
		{"", 0, false},
		{"-- c\n;; /* c */", 0, false},
		{"SELECT 1", 1, false},
		{"SELECT 1;; SELECT 2;", 2, false},
		{"SELECT * FROM t FOR UPDATE", 1, true},
		{"SELECT * FROM t WHERE a IN (SELECT a FROM u FOR KEY SHARE)", 1, true},
		{"SELECT * FROM t FOR READ ONLY", 1, false},
		{"SELECT substring(a FOR 2), collation for (b) FROM t", 1, false},
		{"CREATE POLICY p ON t FOR UPDATE USING (true)", 1, false},
		{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END", 1, false},
	} {
		st := Analyze(tc.sql)
		if st.Statements != tc.statements || st.Locking != tc.locking {
			t.Errorf("Analyze(%q): %d statements, locking %v; want %d, %v", tc.sql, st.Statements, st.Locking, tc.statements, tc.locking)
		}
	}
}

// TestAnalyzeKind checks that Analyze's Kind is Classify's, and that
// Unknown is always Partial.
func TestAnalyzeKind(t *testing.T) {
	c := New(nil, 0)
	for _, tc := range cases {
		st := Analyze(tc.sql)
		if st.Kind != tc.want || c.Analyze(tc.sql).Kind != tc.want {
			t.Errorf("Analyze(%q).Kind = %v, want %v", tc.sql, st.Kind, tc.want)
		}
		if st.Kind == Unknown && !st.Partial {
			t.Errorf("Analyze(%q) is Unknown but not Partial", tc.sql)
		}
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		t    Table
		want string
	}{
		{Table{Name: "t"}, "t"},
		{Table{Schema: "s", Name: "t"}, "s.t"},
		{Table{Name: "T"}, `"T"`},
		{Table{Name: "a b"}, `"a b"`},
		{Table{Name: `a"b`}, `"a""b"`},
		{Table{Name: "1a"}, `"1a"`},
		{Table{Name: "_a1$"}, `"_a1$"`},
		{Table{Name: "résumé"}, `"résumé"`},
		{Table{Name: "select"}, `"select"`},     // reserved
		{Table{Name: "left"}, `"left"`},         // type or function name
		{Table{Name: "coalesce"}, `"coalesce"`}, // column name
		{Table{Name: "update"}, "update"},       // unreserved
		{Table{Schema: "pg_catalog", Name: "extract"}, `pg_catalog."extract"`},
		{Table{}, `""`},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%#v.String() = %s, want %s", tc.t, got, tc.want)
		}
		if got := Func(tc.t).String(); got != tc.want {
			t.Errorf("Func %#v.String() = %s, want %s", tc.t, got, tc.want)
		}
	}
}

func TestEffectString(t *testing.T) {
	for e, want := range map[Effect]string{
		0:                                     "0",
		EffectBegin:                           "Begin",
		EffectSessionState | EffectListen:     "SessionState|Listen",
		EffectCopyTo | 1<<20:                  "CopyTo|0x100000",
		EffectTxScoped | EffectSetTransaction: "SetTransaction|TxScoped",
	} {
		if got := e.String(); got != want {
			t.Errorf("Effect(%d).String() = %q, want %q", e, got, want)
		}
	}
	for _, s := range []fmt.Stringer{AccessReadOnly, Serializable, Access(9), Isolation(9)} {
		if s.String() == "" {
			t.Errorf("%T(%v) has no name", s, s)
		}
	}
}

func TestAnalyzeShared(t *testing.T) {
	c := New(nil, 0)
	sql := "SELECT * FROM t JOIN u ON true"
	a, b := c.Analyze(sql), c.Analyze(strings.Clone(sql))
	if a != b {
		t.Errorf("a repeated Analyze returns a new Statement")
	}
	var zero Classifier
	var nilc *Classifier
	if st := zero.Analyze(sql); !slices.Equal(st.Reads, tl("t", "u")) {
		t.Errorf("zero Classifier: %v", st.Reads)
	}
	if st := nilc.Analyze(sql); !slices.Equal(st.Reads, tl("t", "u")) {
		t.Errorf("nil Classifier: %v", st.Reads)
	}
	long := "SELECT * FROM t" + strings.Repeat(" ", maxCachedLen)
	if st := c.Analyze(long); !slices.Equal(st.Reads, tl("t")) || c.Classify(long) != Read {
		t.Errorf("uncached long text: %v", st.Reads)
	}
}

// TestCacheBudgetsStatements checks that the Statements' memory counts
// against the cache's byte budget.
func TestCacheBudgetsStatements(t *testing.T) {
	c := New(nil, 64)
	var b strings.Builder
	for i := 0; i < 200; i++ {
		fmt.Fprintf(&b, "t%d, ", i)
	}
	tables := b.String()
	for i := 0; i < 500; i++ {
		c.Analyze(fmt.Sprintf("SELECT * FROM %s u%d", tables, i))
	}
	ca := c.cache.Load()
	for i := range ca.shards {
		sh := &ca.shards[i]
		sh.mu.RLock()
		used := 0
		for k, st := range sh.m {
			used += len(k) + st.size()
		}
		if used != sh.bytes || sh.bytes > ca.maxBytes {
			t.Errorf("shard %d holds %d bytes, accounts %d, budget %d", i, used, sh.bytes, ca.maxBytes)
		}
		sh.mu.RUnlock()
	}
}

func TestAnalyzeCachedAllocs(t *testing.T) {
	c := New([]string{"app.f"}, 0)
	for _, q := range benchQueries {
		c.Analyze(q)
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, q := range benchQueries {
			c.Analyze(q)
			c.Classify(q)
		}
	})
	if allocs != 0 {
		t.Errorf("cached Analyze allocates %.1f times per run, want 0", allocs)
	}
}

// TestAnalyzeColdAllocs bounds what a cold analysis allocates: the
// Statement and its three lists, and names that need folding.
func TestAnalyzeColdAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops pooled analyses")
	}
	Analyze(benchCTE) // fill the pool
	for _, q := range []string{benchShort, benchCTE} {
		if allocs := testing.AllocsPerRun(100, func() { Analyze(q) }); allocs > 3 {
			t.Errorf("Analyze(%q) allocates %.1f times, want at most 3", q, allocs)
		}
	}
}

// benchShort is a 70-byte statement; benchCTE a 500-byte statement with
// CTEs and joins.
const (
	benchShort = `SELECT id, name, email FROM users WHERE id = $1 AND deleted_at IS NULL`
	benchCTE   = `WITH recent AS (SELECT o.user_id, sum(o.total) AS spent FROM orders o ` +
		`JOIN order_items i ON i.order_id = o.id WHERE o.created_at > now() - interval '30 days' GROUP BY o.user_id), ` +
		`ranked AS (SELECT user_id, spent, rank() OVER (ORDER BY spent DESC) AS r FROM recent) ` +
		`SELECT u.id, u.name, r.spent, p.plan FROM ranked r JOIN users u ON u.id = r.user_id ` +
		`LEFT JOIN billing.plans p ON p.id = u.plan_id LEFT JOIN LATERAL (SELECT count(*) FROM sessions s ` +
		`WHERE s.user_id = u.id) c ON true WHERE r.r <= 100 AND u.id NOT IN (SELECT user_id FROM blocked) ORDER BY r.r`
)

func BenchmarkAnalyzeCold(b *testing.B) {
	for _, bc := range []struct{ name, sql string }{{"70B", benchShort}, {"500B-join-cte", benchCTE}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.sql)))
			for b.Loop() {
				Analyze(bc.sql)
			}
		})
	}
}

func BenchmarkAnalyzeCached(b *testing.B) {
	c := New(nil, 0)
	for _, q := range benchQueries {
		c.Analyze(q)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Analyze(benchQueries[i%len(benchQueries)])
	}
}
