package classify

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

type tcase struct {
	sql  string
	want Kind
}

// Short names for the table.
const (
	U = Unknown
	R = Read
	W = Write
	S = Session
)

var cases = []tcase{
	// Plain reads.
	{"SELECT 1", R},
	{"select 1", R},
	{"SeLeCt 1", R},
	{"select\t*\nfrom\tt", R},
	{"SELECT * FROM t WHERE id = $1", R},
	{"SELECT a, b FROM t JOIN u USING (id) WHERE a > $2 ORDER BY b LIMIT 10", R},
	{"(SELECT 1) UNION (SELECT 2)", R},
	{"((SELECT 1))", R},
	{"SELECT 1 UNION ALL SELECT 2 INTERSECT SELECT 3 EXCEPT SELECT 4", R},
	{"VALUES (1),(2)", R},
	{"(VALUES (1))", R},
	{"TABLE t", R},
	{"TABLE ONLY s.t", R},
	{"SHOW search_path", R},
	{"SHOW ALL", R},
	{"SHOW TRANSACTION ISOLATION LEVEL", R},
	{"SELECT * FROM t FETCH FIRST 1 ROWS ONLY", R},
	{"SELECT * FROM t ORDER BY a FETCH FIRST 3 ROWS WITH TIES", R},
	{"SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t", R},
	{"SELECT sum(a) OVER w FROM t WINDOW w AS (PARTITION BY b)", R},
	{"SELECT count(*) FILTER (WHERE a > 1) FROM t", R},
	{"SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t", R},
	{"SELECT * FROM generate_series(1, 3) WITH ORDINALITY AS g(x, n)", R},
	{"SELECT CAST(a AS timestamp with time zone) FROM t", R},
	{"SELECT * FROM t FOR READ ONLY", R},
	{"SELECT collation for ('x')", R},
	{"SELECT * FROM json_table('[]', '$[*]' COLUMNS (id FOR ORDINALITY)) j", R},
	{"SELECT pg_sleep(1)", R},
	{"SELECT * FROM lo_table", R},
	{"SELECT lower(a), log(2, 8) FROM t", R},
	{"SELECT 日本 FROM テーブル", R},
	{"SELECT résumé, \"naïve\" FROM t", R},
	{"  \n\t SELECT 1  \n", R},
	{"SELECT 1;", R},
	{"SELECT 1; SELECT 2", R},
	{"SELECT 1;;; SELECT 2;", R},

	// WITH.
	{"WITH x AS (SELECT 1) SELECT * FROM x", R},
	{"WITH x(a, b) AS (SELECT 1, 2) SELECT a FROM x", R},
	{"WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x", R},
	{"WITH x AS NOT MATERIALIZED (SELECT 1) SELECT * FROM x", R},
	{"WITH x AS (SELECT 1), y AS (SELECT * FROM x) SELECT * FROM y", R},
	{"WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 9) SELECT * FROM r", R},
	{"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET o SELECT * FROM r", R},
	{"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) CYCLE n SET c TO 'Y' DEFAULT 'N' USING p SELECT * FROM r", R},
	{"WITH RECURSIVE r AS (SELECT 1 AS insert UNION ALL SELECT insert + 1 FROM r) CYCLE insert SET update USING delete SELECT * FROM r", R},
	{"WITH x AS (SELECT 1) VALUES (1)", R},
	{"WITH x AS (SELECT 1) TABLE x", R},
	{"WITH x AS (SELECT 1) (SELECT * FROM x)", R},
	{"(WITH x AS (SELECT 1) SELECT * FROM x)", R},
	{"SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s", R},
	{"WITH a AS (WITH b AS (SELECT 1) SELECT * FROM b) SELECT * FROM a", R},
	{"WITH insert AS (SELECT 1) SELECT * FROM insert", R},
	{`WITH "update" AS (SELECT 1) SELECT * FROM "update"`, R},
	{"WITH recursive AS (SELECT 1) SELECT * FROM recursive", R},
	{"WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", W},
	{"WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d", W},
	{"WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d", W},
	{"WITH d AS (MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE RETURNING t.*) SELECT 1", W},
	{"WITH d AS MATERIALIZED (DELETE FROM t RETURNING *) SELECT * FROM d", W},
	{"WITH a AS (SELECT 1), d AS (DELETE FROM t RETURNING *) SELECT 1", W},
	{"WITH a AS (WITH y AS (SELECT 1) DELETE FROM t RETURNING *) SELECT 1", W},
	{"SELECT * FROM (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) s", W},
	{"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET o, d AS (DELETE FROM t RETURNING 1) SELECT 1", W},
	{"WITH x AS (SELECT 1) DELETE FROM t", W},
	{"WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", W},
	{"WITH x AS (SELECT 1) garbage", U},
	{"WITH x AS (SELECT 1)", U},

	// Locking clauses.
	{"SELECT * FROM t FOR UPDATE", W},
	{"select * from t for   no key update", W},
	{"SELECT * FROM t FOR SHARE OF t SKIP LOCKED", W},
	{"SELECT * FROM t FOR KEY SHARE NOWAIT", W},
	{"SELECT 1 FROM t WHERE x IN (SELECT y FROM u FOR UPDATE)", W},
	{"WITH c AS (SELECT * FROM t FOR UPDATE) SELECT * FROM c", W},
	{"(SELECT * FROM t FOR UPDATE) UNION (SELECT 1)", W},
	{"TABLE t FOR UPDATE", W},
	{"SELECT * FROM t FOR/**/UPDATE", W},
	{"SELECT * FROM t FOR -- c\nUPDATE", W},
	{"SELECT * FROM t\tFOR\n\tNO\n\tKEY\n\tUPDATE", W},
	{"SELECT substring(a FROM 1 FOR 2) FROM t FOR UPDATE", W},
	{"SELECT for_update FROM t", R},
	{`SELECT "for" FROM t`, R},
	{`SELECT "for update" FROM t`, R},
	{"SELECT 'for update'", R},
	{"SELECT $$ FOR UPDATE $$", R},
	{"SELECT 1 -- FOR UPDATE", R},
	{"SELECT /* FOR UPDATE */ 1", R},
	{"SELECT /* /* nested */ FOR UPDATE */ 1", R},
	{"SELECT substring(x FROM 1 FOR 2) FROM t", R},
	{"SELECT SUBSTRING(x FOR 2) FROM t", R},
	{"SELECT overlay(x PLACING y FROM 1 FOR 2) FROM t", R},
	{"SELECT substring(x for update) FROM t", R},
	{"SELECT overlay(x placing y from 1 for share) FROM t", R},
	{"SELECT update, share, key, no FROM t", R},

	// SELECT INTO.
	{"SELECT INTO newtable FROM t", W},
	{"SELECT a INTO newtable FROM t", W},
	{"SELECT a INTO TABLE newtable FROM t", W},
	{"SELECT a INTO UNLOGGED newtable FROM t", W},
	{"SELECT a INTO TEMP x FROM t", S},
	{"SELECT a INTO TEMPORARY x FROM t", S},
	{"SELECT a INTO LOCAL TEMP x FROM t", S},
	{"SELECT a INTO pg_temp.x FROM t", S},
	{"SELECT * FROM (SELECT 1 INTO x) s", W},
	{`SELECT "into" FROM t`, R},

	// Functions.
	{"SELECT nextval('s')", W},
	{"SELECT pg_catalog.nextval('s')", W},
	{`SELECT "nextval"('s')`, W},
	{`SELECT pg_catalog."nextval"('s')`, W},
	{"SELECT NEXTVAL ('s')", W},
	{"SELECT nextval/* c */('s')", W},
	{`SELECT "NEXTVAL"('s')`, R},
	{"SELECT nextval FROM t", R},
	{"SELECT t.nextval FROM t", R},
	{"SELECT my_nextval(1), nextval_x(1)", R},
	{"SELECT 'nextval(1)'", R},
	{"SELECT * FROM t WHERE id = nextval('s')", W},
	{"SELECT setval('s', 1)", W},
	{"SELECT currval('s')", S},
	{"SELECT lastval()", S},
	{"SELECT set_config('a','b',false)", S},
	{"SELECT setseed(0.5)", S},
	{"SELECT pg_advisory_lock(1)", S},
	{"SELECT pg_advisory_xact_lock(1)", S},
	{"SELECT pg_try_advisory_lock_shared(1, 2)", S},
	{"SELECT pg_advisory_unlock_all()", S},
	{"SELECT pg_export_snapshot()", S},
	{"SELECT pg_notify('c', 'x')", W},
	{"SELECT lo_create(0)", W},
	{"SELECT lo_import('/tmp/x')", W},
	{"SELECT lo_get(1)", W},
	{"SELECT loread(1, 2)", W},
	{"SELECT txid_current()", W},
	{"SELECT pg_current_xact_id()", W},
	{"SELECT txid_current_if_assigned()", W},
	{"SELECT pg_current_wal_lsn()", W},
	{"SELECT pg_current_wal_insert_lsn()", W},
	{"SELECT pg_switch_wal()", W},
	{"SELECT pg_create_restore_point('x')", W},
	{"SELECT pg_terminate_backend(1)", W},
	{"SELECT pg_cancel_backend(1)", W},
	{"SELECT pg_reload_conf()", W},
	{"SELECT pg_rotate_logfile()", W},
	{"SELECT dblink_exec('c', 'DELETE FROM t')", W},
	{"SELECT * FROM dblink('c', 'SELECT 1') AS t(a int)", W},
	{"SELECT dblink_connect('c', 'dbname=x')", S},
	{"SELECT * FROM t WHERE a = (SELECT nextval('s'))", W},
	{"VALUES (nextval('s'))", W},
	{"WITH c AS (SELECT nextval('s')) SELECT * FROM c", W},
	{"SELECT 1 UNION SELECT pg_advisory_lock(1)", S},
	{"SELECT current_setting('x'), pg_backend_pid(), pg_is_in_recovery()", R},
	{"INSERT INTO t VALUES (pg_advisory_lock(1))", S},
	{"EXPLAIN SELECT nextval('s')", W},
	{"SELECT TREAT('s' AS nextval)", W}, // TREAT(x AS t) calls pg_catalog.t(x)
	{"SELECT treat(a AS pg_catalog.set_config[]) FROM t", S},
	{"SELECT TREAT(a AS int) FROM t", R},
	{"SELECT x.treat(a AS nextval) FROM t", R},

	// EXPLAIN.
	{"EXPLAIN SELECT 1", R},
	{"EXPLAIN VERBOSE SELECT 1", R},
	{"EXPLAIN (FORMAT JSON, COSTS OFF) SELECT 1", R},
	{"EXPLAIN (SELECT 1)", R},
	{"EXPLAIN VALUES (1)", R},
	{"EXPLAIN WITH x AS (SELECT 1) SELECT * FROM x", R},
	{"EXPLAIN (ANALYZE false) SELECT 1", R},
	{"EXPLAIN (ANALYZE off, BUFFERS) SELECT 1", R},
	{"EXPLAIN (ANALYZE 0) SELECT 1", R},
	{"EXPLAIN (ANALYZE 'off') SELECT 1", R},
	{"EXPLAIN ANALYZE SELECT 1", W},
	{"EXPLAIN ANALYSE SELECT 1", W},
	{"EXPLAIN ANALYZE VERBOSE SELECT 1", W},
	{"EXPLAIN ANALYZE DELETE FROM t", W},
	{"EXPLAIN (ANALYZE) SELECT 1", W},
	{"EXPLAIN (ANALYZE, BUFFERS) SELECT 1", W},
	{"EXPLAIN (ANALYZE true) SELECT 1", W},
	{"EXPLAIN (ANALYZE 1) SELECT 1", W},
	{"EXPLAIN (ANALYZE '0') SELECT 1", W},
	{`EXPLAIN ("analyze") SELECT 1`, W},
	{"EXPLAIN (ANALYZE false, ANALYZE) SELECT 1", W},
	{"EXPLAIN (BUFFERS, ANALYZE) (SELECT 1)", W},
	{"EXPLAIN DELETE FROM t", W},
	{"EXPLAIN SELECT * FROM t FOR UPDATE", W},
	{"EXPLAIN SELECT 1 INTO x", W},
	{"EXPLAIN EXECUTE p", S},
	{"EXPLAIN ANALYZE EXECUTE p", S},
	{"EXPLAIN", U},
	{"EXPLAIN (ANALYZE", U},

	// Everything else.
	{"INSERT INTO t VALUES (1) RETURNING id", W},
	{"UPDATE t SET a=1 RETURNING *", W},
	{"DELETE FROM t", W},
	{"MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE", W},
	{"COPY (SELECT 1) TO STDOUT", R}, // runs on a standby
	{"COPY t TO STDOUT", R},
	{"COPY BINARY s.t (a, b) TO STDOUT WITH (FORMAT binary)", R},
	{"COPY ((SELECT 1) UNION (SELECT 2)) TO STDIN", R}, // STDIN means STDOUT here
	{"COPY (SELECT nextval('s')) TO STDOUT", W},
	{"COPY (SELECT * FROM t FOR UPDATE) TO STDOUT", W},
	{"COPY (SELECT 1 INTO x) TO STDOUT", W},
	{"COPY (DELETE FROM t RETURNING *) TO STDOUT", W},
	{"COPY (WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d) TO STDOUT", W},
	{"COPY (garbage) TO STDOUT", U},
	{"COPY t TO '/tmp/x'", W},
	{"COPY t TO PROGRAM 'cat'", W},
	{"COPY (SELECT 1) TO '/tmp/x'", W},
	{"COPY t FROM STDIN", W},
	{"CREATE TABLE x AS SELECT 1", W},
	{"CREATE TABLE x (a int)", W},
	{"CREATE TEMP TABLE x (a int)", S},
	{"CREATE TEMPORARY TABLE x AS SELECT 1", S},
	{"CREATE GLOBAL TEMPORARY TABLE x (a int)", S},
	{"CREATE OR REPLACE TEMP VIEW v AS SELECT 1", S},
	{"CREATE TABLE pg_temp.x (a int)", S},
	{"CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END", W},
	{"ALTER TABLE t ADD b int", W},
	{"DROP TABLE t", W},
	{"TRUNCATE t", W},
	{"GRANT SELECT ON t TO u", W},
	{"VACUUM t", W},
	{"ANALYZE t", W},
	{"CALL p()", W},
	{"DO $$ BEGIN PERFORM 1; END $$", W},
	{"LOCK TABLE t", W},
	{"REFRESH MATERIALIZED VIEW v", W},
	{"NOTIFY c", W},
	{"CHECKPOINT", W},
	{"SET x = 1", S},
	{"SET LOCAL x = 1", S},
	{"RESET ALL", S},
	{"LISTEN c", S},
	{"UNLISTEN *", S},
	{"PREPARE p AS SELECT 1", S},
	{"EXECUTE p", S},
	{"DEALLOCATE p", S},
	{"DECLARE c CURSOR FOR SELECT 1", S},
	{"FETCH NEXT FROM c", S},
	{"MOVE c", S},
	{"CLOSE c", S},
	{"DISCARD ALL", S},
	{"LOAD 'x'", S},
	{"BEGIN", S},
	{"START TRANSACTION READ ONLY", S},
	{"COMMIT", S},
	{"END", S},
	{"ROLLBACK", S},
	{"ABORT", S},
	{"SAVEPOINT s", S},
	{"RELEASE s", S},
	{"PREPARE TRANSACTION 'x'", S},

	// Several statements.
	{"SELECT 1; DELETE FROM t", W},
	{"DELETE FROM t; SELECT 1", W},
	{"SELECT 1; SET x = 1; DELETE FROM t", S},
	{"SELECT 1; garbage", U},
	{"SELECT 1 -- ; DELETE FROM t", R},
	{"SELECT 1 /* ; DELETE FROM t */", R},
	{"SELECT '; DELETE FROM t'", R},
	{"SELECT $$; DELETE FROM t$$", R},
	{`SELECT "; DELETE FROM t" FROM t`, R},

	// Lexing.
	{"SELECT $$ INSERT $$", R},
	{"SELECT $tag$ $$ DELETE $tag$", R},
	{"SELECT $a$ FOR UPDATE $a$ FROM t", R},
	{"SELECT $a$ $b$ $a$ FOR UPDATE", W},
	{"SELECT a$$ FROM t FOR UPDATE --$$", W}, // a$$ is an identifier
	{"SELECT $1 FROM t FOR UPDATE", W},
	{"SELECT $1$ FOR UPDATE", W},
	{"/* INSERT */ SELECT 1", R},
	{"-- DELETE\nSELECT 1", R},
	{"SELECT 1 -- x\n FOR UPDATE", W},
	{"SELECT 1 -- x\r FOR UPDATE", W},
	{"SELECT 1 /* x */ FOR UPDATE", W},
	{"SELECT 'it''s' FROM t", R},
	{"SELECT 'it'' FOR UPDATE' FROM t", R},
	{"SELECT E'\\' FOR UPDATE' FROM t", R},
	{"SELECT E'\\\\' FROM t FOR UPDATE", W},
	{"SELECT e'x''' FROM t", R},
	{"SELECT B'1' FROM t", R},
	{"SELECT X'1F' FROM t", R},
	{"SELECT N'x' FROM t", R},
	{"SELECT U&'\\0041' FROM t", R},
	{"SELECT U&'x' UESCAPE '!' FROM t", R},
	{"SELECT 'a'\n' FOR UPDATE' FROM t", R},
	{"SELECT E'a'\n'\\' FOR UPDATE --' FROM t", R}, // continuation keeps E'' escapes
	{`SELECT "a""b" FROM t`, R},
	{`SELECT "a"" FOR UPDATE" FROM t`, R},
	{`SELECT U&"a" FROM t`, R},
	{`SELECT U&"\006Eextval"('s')`, W}, // escapes are not decoded: unsure
	{"SELECT 1 +-- c\n2", R},
	{"SELECT 1 */* c */ 2", R},
	{"SELECT 1.5e10, .5, 1., 0x1F, 1_000", R},
	{"SELECT 1for update", W},
	{"SELECT 'a\\' FROM t", R},
	{"SELECT 'a\\' FOR UPDATE --'", W},
	{"SELECT 'x\\', ' FOR UPDATE --'", W}, // a read only while standard_conforming_strings is on
	{`SELECT "" FROM t`, U},

	// Unclassifiable.
	{"", U},
	{"   ", U},
	{";", U},
	{";;", U},
	{"-- only a comment", U},
	{"/* only a comment */", U},
	{"SELECT 'unterminated", U},
	{"SELECT $$unterminated", U},
	{"SELECT /* unterminated", U},
	{"SELECT /* /* */ unterminated", U},
	{`SELECT "unterminated`, U},
	{"SELECT (1", U},
	{"SELECT 1)", U},
	{"(DELETE FROM t)", U},
	{`"select" 1`, U},
	{"garbage", U},
	{"SELECT 1\x00; DELETE FROM t", U},
	{"SELECT 1; SELECT 'x", U},
	{"$$$$;END", S}, // a statement that starts with a string
	{`"x" ; SELECT 1`, U},
}

func TestClassify(t *testing.T) {
	c := New(nil, 0)
	for _, tc := range cases {
		if got := Classify(tc.sql); got != tc.want {
			t.Errorf("Classify(%q) = %v, want %v", tc.sql, got, tc.want)
		}
		for i := 0; i < 2; i++ {
			if got := c.Classify(tc.sql); got != tc.want {
				t.Errorf("cached Classify(%q) = %v, want %v (call %d)", tc.sql, got, tc.want, i)
			}
		}
	}
}

func TestUserFuncs(t *testing.T) {
	c := New([]string{"app.bump_counter", " Audit_Log ", `"Billing"."Charge"`, "", "db.app2.f2"}, 16)
	for _, tc := range []tcase{
		{"SELECT app.bump_counter(1)", W},
		{"SELECT APP.BUMP_COUNTER(1)", W},
		{`SELECT "app"."bump_counter"(1)`, W},
		{"SELECT bump_counter(1)", W}, // the search path may reach app
		{"SELECT other.bump_counter(1)", R},
		{"SELECT bump_counter FROM t", R},
		{"SELECT t.bump_counter FROM t", W}, // attribute notation: bump_counter(t)
		{"SELECT (t).bump_counter FROM t", W},
		{"SELECT * FROM app.bump_counter", R}, // a table
		{"SELECT * FROM t JOIN app.bump_counter ON true", R},
		{"SELECT * FROM t WHERE a IS DISTINCT FROM t.bump_counter", W},
		{"SELECT * FROM t WHERE a IS NOT DISTINCT FROM t.bump_counter", W},
		{"SELECT extract(year FROM t.bump_counter) FROM t", W},
		{"SELECT substring(a FROM t.bump_counter) FROM t", W},
		{"SELECT * FROM (SELECT 1 FROM app.bump_counter) s", R},
		{"SELECT audit_log('x')", W},
		{"SELECT any.audit_log('x')", W},
		{"SELECT AUDIT_LOG('x')", W},
		{`SELECT "AUDIT_LOG"('x')`, W}, // user names compare case-insensitively
		{"SELECT billing.charge(1)", W},
		{"SELECT app2.f2()", W},
		{"SELECT f2()", W},
		{"SELECT app3.f2()", R},
		{"SELECT pg_advisory_lock(1)", S},
		{"SELECT audit_log_2('x')", R},
	} {
		if got := c.Classify(tc.sql); got != tc.want {
			t.Errorf("Classify(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
	if got := Classify("SELECT audit_log('x')"); got != R {
		t.Errorf("package Classify knows user functions: %v", got)
	}
}

func TestLongIdentifiers(t *testing.T) {
	// PostgreSQL truncates identifiers to 63 bytes.
	long := strings.Repeat("x", 63)
	c := New([]string{long}, 0)
	if got := c.Classify("SELECT " + long + "yyy(1)"); got != W {
		t.Errorf("truncated user function: %v", got)
	}
	if got := Classify("SELECT nextval" + strings.Repeat("_", 100) + "(1)"); got != R {
		t.Errorf("long name: %v", got)
	}
	if got := Classify("SELECT " + strings.Repeat("é", 40) + "(1)"); got != R {
		t.Errorf("long UTF-8 name: %v", got)
	}
}

func TestKind(t *testing.T) {
	for k, s := range map[Kind]string{Unknown: "unknown", Read: "read", Write: "write", Session: "session", Kind(9): "Kind(9)"} {
		if k.String() != s {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), s)
		}
		if k.ReplicaSafe() != (k == Read) {
			t.Errorf("%v.ReplicaSafe() = %v", k, k.ReplicaSafe())
		}
	}
}

func TestZeroAndNilClassifier(t *testing.T) {
	var zero Classifier
	var nilc *Classifier
	for _, tc := range cases[:40] {
		if got := zero.Classify(tc.sql); got != tc.want {
			t.Errorf("zero Classifier: Classify(%q) = %v, want %v", tc.sql, got, tc.want)
		}
		if got := nilc.Classify(tc.sql); got != tc.want {
			t.Errorf("nil Classifier: Classify(%q) = %v, want %v", tc.sql, got, tc.want)
		}
	}
}

// cached returns the number of cached strings and their total length.
func (c *Classifier) cached() (n, bytes int) {
	ca := c.cache.Load()
	for i := range ca.shards {
		sh := &ca.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		for k := range sh.m {
			bytes += len(k)
		}
		sh.mu.RUnlock()
	}
	return n, bytes
}

func TestCacheBounded(t *testing.T) {
	for _, size := range []int{1, 10, 100, 1000, 5000} {
		c := New(nil, size)
		for i := 0; i < 20000; i++ {
			sql := fmt.Sprintf("SELECT * FROM t WHERE id = %d", i)
			if got := c.Classify(sql); got != R {
				t.Fatalf("%q: %v", sql, got)
			}
			if n, _ := c.cached(); n > size {
				t.Fatalf("cache size %d holds %d strings", size, n)
			}
		}
		if n, _ := c.cached(); n == 0 {
			t.Errorf("cache size %d holds nothing", size)
		}
	}
	// Key bytes are bounded too, and long strings are not cached.
	c := New(nil, 64)
	big := strings.Repeat(" ", 4000)
	for i := 0; i < 1000; i++ {
		c.Classify(fmt.Sprintf("SELECT %d%s", i, big))
	}
	if _, b := c.cached(); b > 64*avgKeyBytes+2*maxCachedLen {
		t.Errorf("cache holds %d key bytes", b)
	}
	huge := "SELECT 1" + strings.Repeat(" ", maxCachedLen)
	c = New(nil, 64)
	c.Classify(huge)
	if _, b := c.cached(); b >= maxCachedLen {
		t.Errorf("huge string cached")
	}
}

func TestCacheKeyCopied(t *testing.T) {
	c := New(nil, 0)
	buf := []byte("SELECT 1")
	c.Classify(string(buf))
	copy(buf, "DELETE 1")
	if got := c.Classify("DELETE 1"); got != W {
		t.Errorf("cache key aliases the caller's buffer: %v", got)
	}
}

func TestConcurrent(t *testing.T) {
	c := New([]string{"app.f"}, 50)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				tc := cases[(i*7+g)%len(cases)]
				if got := c.Classify(tc.sql); got != tc.want {
					t.Errorf("Classify(%q) = %v, want %v", tc.sql, got, tc.want)
					return
				}
				c.Classify(fmt.Sprintf("SELECT %d", i))
			}
		}(g)
	}
	wg.Wait()
}

func TestCachedAllocs(t *testing.T) {
	c := New([]string{"app.f"}, 0)
	for _, q := range benchQueries {
		c.Classify(q)
	}
	allocs := testing.AllocsPerRun(200, func() {
		for _, q := range benchQueries {
			c.Classify(q)
		}
	})
	if allocs != 0 {
		t.Errorf("cached Classify allocates %.1f times per run, want 0", allocs)
	}
}

func TestColdAllocs(t *testing.T) {
	allocs := testing.AllocsPerRun(100, func() {
		for _, q := range benchQueries {
			Classify(q)
		}
		for _, tc := range cases {
			Classify(tc.sql)
		}
	})
	if allocs != 0 {
		t.Errorf("uncached Classify allocates %.1f times per run, want 0", allocs)
	}
}

// benchQueries is a representative mix of application statements.
var benchQueries = []string{
	`SELECT id, name, email, created_at FROM users WHERE id = $1`,
	`SELECT u.id, u.name, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.created_at > $1 GROUP BY u.id, u.name ORDER BY count(o.id) DESC LIMIT 20`,
	`INSERT INTO orders (user_id, total, status) VALUES ($1, $2, 'new') RETURNING id`,
	`UPDATE users SET last_seen = now() WHERE id = $1`,
	`SELECT * FROM accounts WHERE id = $1 FOR UPDATE`,
	`WITH recent AS (SELECT * FROM events WHERE at > now() - interval '1 hour') SELECT kind, count(*) FROM recent GROUP BY kind`,
	`SELECT "users"."id", "users"."email" FROM "users" WHERE "users"."deleted_at" IS NULL AND ("users"."email" = $1) LIMIT 1`,
	`DELETE FROM sessions WHERE expires_at < now()`,
	`SELECT nextval('orders_id_seq')`,
	`BEGIN`,
	`SELECT 1`,
	`/* controller:users,action:show */ SELECT * FROM users WHERE id = 42 -- trailing`,
}

func BenchmarkClassifyCold(b *testing.B) {
	b.ReportAllocs()
	n := 0
	for _, q := range benchQueries {
		n += len(q)
	}
	b.SetBytes(int64(n / len(benchQueries)))
	for i := 0; b.Loop(); i++ {
		Classify(benchQueries[i%len(benchQueries)])
	}
}

func BenchmarkClassifyCached(b *testing.B) {
	c := New(nil, 0)
	for _, q := range benchQueries {
		c.Classify(q)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Classify(benchQueries[i%len(benchQueries)])
	}
}

func BenchmarkClassifyCachedParallel(b *testing.B) {
	c := New(nil, 0)
	for _, q := range benchQueries {
		c.Classify(q)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			c.Classify(benchQueries[i%len(benchQueries)])
			i++
		}
	})
}
