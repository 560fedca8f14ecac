package parsercheck

import (
	"math/rand/v2"
	"strings"
)

// testUserFuncs is the user function list the differential tests use.
var testUserFuncs = []string{"app.bump_counter", "audit_log", "Billing.Charge_Card"}

// reads are hand-written statements that are pure reads, including near
// misses of every rule.
var reads = []string{
	`SELECT 1`,
	`select 1`,
	`SELECT * FROM t`,
	`SELECT a, b FROM t WHERE a = $1`,
	`SELECT * FROM t WHERE id = $1`,
	`SELECT a FROM t WHERE b = 'x' AND c <> 'y'`,
	`SELECT count(*) FROM t GROUP BY a HAVING count(*) > 1`,
	`SELECT * FROM t ORDER BY a DESC NULLS LAST LIMIT 10 OFFSET 5`,
	`SELECT * FROM t FETCH FIRST 1 ROWS ONLY`,
	`SELECT * FROM t ORDER BY a FETCH FIRST 3 ROWS WITH TIES`,
	`SELECT * FROM t OFFSET 2 ROWS FETCH NEXT 2 ROWS ONLY`,
	`SELECT * FROM t JOIN u ON t.id = u.t_id LEFT JOIN v USING (id)`,
	`SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.a = t.a) s`,
	`SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b`,
	`SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t`,
	`SELECT sum(a) OVER w FROM t WINDOW w AS (PARTITION BY b)`,
	`SELECT sum(a) OVER (ORDER BY b ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t`,
	`SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY a) FROM t`,
	`SELECT count(*) FILTER (WHERE a > 1) FROM t`,
	`SELECT * FROM generate_series(1, 10) WITH ORDINALITY AS g(x, n)`,
	`SELECT CAST(a AS timestamp with time zone) FROM t`,
	`SELECT a::text, b::int[], c::numeric(10,2) FROM t`,
	`SELECT ARRAY[1,2,3], ARRAY(SELECT 1), '{1,2}'::int[]`,
	`SELECT EXISTS (SELECT 1 FROM t)`,
	`SELECT * FROM t WHERE a IN (SELECT b FROM u)`,
	`SELECT * FROM t WHERE a = ANY($1::int[])`,
	`SELECT substring(a FROM 1 FOR 2) FROM t`,
	`SELECT substring(a for 2) FROM t`,
	`SELECT SUBSTRING(a FROM 2) FROM t`,
	`SELECT overlay(a placing 'x' from 2 for 3) FROM t`,
	`SELECT substring(a FROM 'x' FOR '#') FROM t`,
	`SELECT substring(a similar 'x' escape '#') FROM t`,
	`SELECT substring(x for update) FROM t`,
	`SELECT substring(x from 1 for share) FROM t`,
	`SELECT overlay(x placing y from 1 for key) FROM t`,
	`SELECT substring(x for no) FROM t`,
	`SELECT position('a' IN b) FROM t`,
	`SELECT trim(both 'x' from a) FROM t`,
	`SELECT extract(year FROM now())`,
	`SELECT now(), current_timestamp, current_user, session_user, localtime(2)`,
	`SELECT coalesce(a, b), nullif(a, b), greatest(a, b), least(a, b) FROM t`,
	`SELECT CASE WHEN a THEN 1 ELSE 2 END FROM t`,
	`SELECT * FROM t WHERE a BETWEEN 1 AND 10`,
	`SELECT * FROM t WHERE a LIKE 'x%' ESCAPE '\'`,
	`SELECT * FROM t WHERE a IS DISTINCT FROM b`,
	`SELECT * FROM t WHERE a IS NOT NULL AND b ISNULL`,
	`SELECT 1 UNION SELECT 2`,
	`SELECT 1 UNION ALL SELECT 2 INTERSECT SELECT 3 EXCEPT SELECT 4`,
	`(SELECT 1) UNION (SELECT 2)`,
	`((SELECT 1))`,
	`(SELECT * FROM t ORDER BY a LIMIT 1)`,
	`(SELECT 1) UNION ALL ((SELECT 2) EXCEPT (SELECT 3)) ORDER BY 1`,
	`VALUES (1), (2)`,
	`VALUES (1),(2)`,
	`VALUES (1, 'a'), (2, 'b') ORDER BY 1`,
	`(VALUES (1))`,
	`VALUES (1) UNION SELECT 2`,
	`TABLE t`,
	`TABLE ONLY t`,
	`TABLE s.t`,
	`TABLE t UNION TABLE u`,
	`SHOW search_path`,
	`SHOW ALL`,
	`SHOW TRANSACTION ISOLATION LEVEL`,
	`SHOW TIME ZONE`,
	`show "search_path"`,
	`WITH x AS (SELECT 1) SELECT * FROM x`,
	`WITH x(a) AS (SELECT 1) SELECT a FROM x`,
	`WITH x (a, b) AS (SELECT 1, 2) SELECT a FROM x`,
	`WITH x AS MATERIALIZED (SELECT 1) SELECT * FROM x`,
	`WITH x AS NOT MATERIALIZED (SELECT 1) SELECT * FROM x`,
	`WITH x AS (SELECT 1), y AS (SELECT * FROM x) SELECT * FROM y`,
	`WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET ord SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH BREADTH FIRST BY n, n SET ord SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) CYCLE n SET is_cycle USING path SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) CYCLE n SET is_cycle TO 'Y' DEFAULT 'N' USING path SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) CYCLE n SET is_cycle TO true DEFAULT false USING path SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH BREADTH FIRST BY n SET ord CYCLE n SET c USING p SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET ord, s AS (SELECT 2) SELECT * FROM r, s`,
	`WITH RECURSIVE r AS (SELECT 1 AS insert UNION ALL SELECT insert + 1 FROM r) CYCLE insert SET update USING delete SELECT * FROM r`,
	`WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET set SELECT * FROM r`,
	`WITH x AS (VALUES (1)) SELECT * FROM x`,
	`WITH x AS (TABLE t) SELECT * FROM x`,
	`WITH x AS (SELECT 1) VALUES (1)`,
	`WITH x AS (SELECT 1) TABLE x`,
	`WITH x AS (SELECT 1) (SELECT * FROM x)`,
	`WITH x AS ((SELECT 1)) SELECT * FROM x`,
	`(WITH x AS (SELECT 1) SELECT * FROM x)`,
	`SELECT * FROM (WITH x AS (SELECT 1) SELECT * FROM x) s`,
	`SELECT (WITH x AS (SELECT 1) SELECT * FROM x)`,
	`SELECT * FROM t WHERE EXISTS (WITH x AS (SELECT 1) SELECT * FROM x)`,
	`WITH a AS (WITH b AS (SELECT 1) SELECT * FROM b) SELECT * FROM a`,
	`WITH "update" AS (SELECT 1) SELECT * FROM "update"`,
	`WITH insert AS (SELECT 1) SELECT * FROM insert`,
	`WITH x(update) AS (SELECT 1) SELECT update FROM x`,
	`WITH recursive AS (SELECT 1) SELECT * FROM recursive`,
	`SELECT update, delete, insert, merge FROM t`,
	`SELECT t.update FROM t`,
	`SELECT share, key, no FROM t`,
	`SELECT for_update, "for", "update" FROM t`,
	`SELECT "for update" FROM t`,
	`SELECT 1 AS "FOR UPDATE"`,
	`SELECT "for" FROM t`,
	`SELECT "insert" FROM t`,
	`SELECT "into" FROM t`,
	`SELECT into_x FROM t`,
	`SELECT * FROM f() AS (update int, insert text)`,
	`SELECT * FROM json_to_record('{}') AS x(update int)`,
	`EXPLAIN SELECT 1`,
	`EXPLAIN VERBOSE SELECT 1`,
	`EXPLAIN (FORMAT JSON) SELECT 1`,
	`EXPLAIN (ANALYZE false) SELECT 1`,
	`EXPLAIN (ANALYZE off, BUFFERS) SELECT 1`,
	`EXPLAIN (ANALYZE 0) SELECT 1`,
	`EXPLAIN (COSTS false, ANALYZE FALSE) SELECT 1`,
	`EXPLAIN (ANALYZE 'off') SELECT 1`,
	`EXPLAIN (ANALYZE "false") SELECT 1`,
	`EXPLAIN (SELECT 1)`,
	`EXPLAIN ((SELECT 1))`,
	`EXPLAIN (VALUES (1))`,
	`EXPLAIN VALUES (1)`,
	`EXPLAIN TABLE t`,
	`EXPLAIN WITH x AS (SELECT 1) SELECT * FROM x`,
	`EXPLAIN (GENERIC_PLAN) SELECT * FROM t WHERE a = $1`,
	`EXPLAIN (VERBOSE, COSTS OFF, SETTINGS ON, FORMAT YAML) SELECT 1`,
	`SELECT pg_sleep(1)`,
	`SELECT current_setting('search_path')`,
	`SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_last_xact_replay_timestamp()`,
	`SELECT * FROM lo_table`,
	`SELECT lo FROM t`,
	`SELECT lower(a), log(2, 8) FROM t`,
	`SELECT nextval FROM t`,
	`SELECT t.nextval FROM t`,
	`SELECT my_nextval(1)`,
	`SELECT nextval_x(1)`,
	`SELECT "NEXTVAL"('s')`,
	`SELECT "Set_Config"('a', 'b', false)`,
	`SELECT 'nextval(1)'`,
	`SELECT * FROM t AS nextval`,
	`SELECT * FROM t FOR READ ONLY`,
	`SELECT collation for ('x')`,
	`SELECT * FROM json_table('[]', '$[*]' COLUMNS (id FOR ORDINALITY, a int PATH '$.a')) jt`,
	`SELECT * FROM xmltable('/r' PASSING '<r/>' COLUMNS id FOR ORDINALITY)`,
	`SELECT * FROM t TABLESAMPLE SYSTEM (10)`,
	`SELECT * FROM ROWS FROM (generate_series(1,2), generate_series(1,3))`,
	`SELECT * FROM t WHERE a = 1 OR b = 2 AND NOT c`,
	`SELECT $1, $2::text`,
	`SELECT 1 WHERE 1 = 1`,
	`SELECT a FROM t GROUP BY ROLLUP (a), CUBE (b), GROUPING SETS ((a), ())`,
	`SELECT E'\''`,
	`SELECT E'\\'`,
	`SELECT e'it''s'`,
	`SELECT B'1010', X'FF', b'1', x'a'`,
	`SELECT N'national'`,
	`SELECT U&'\0041'`,
	`SELECT U&'d!0061t!+000061' UESCAPE '!'`,
	`SELECT U&"a" FROM t`,
	`SELECT $$a$$, $tag$b$tag$, $a$ $b$ $a$`,
	`SELECT $$$$`,
	`SELECT a$b$c FROM t`,
	"SELECT 'a'\n'b'",
	"SELECT 'a' -- c\n'b'",
	`SELECT 1 /* c /* nested */ still */`,
	`SELECT 1 -- trailing`,
	"-- leading\nSELECT 1",
	`/* leading */ SELECT 1`,
	`/**/SELECT/**/1`,
	"SELECT\t1",
	"SELECT\n*\nFROM\tt",
	`SELECT 1;`,
	`SELECT 1; SELECT 2`,
	`SELECT 1;;SELECT 2;`,
	`SELECT 1 -- ; DELETE FROM t`,
	`SELECT 1 /* ; DELETE FROM t */`,
	`SELECT '; DELETE FROM t'`,
	`SELECT ';' FROM t`,
	`SELECT "a;b" FROM t`,
	`SELECT $$;$$`,
	`SELECT 'it''s' FROM t`,
	`SELECT '' FROM t`,
	`SELECT 'for update' FROM t`,
	`SELECT $$ INSERT $$`,
	`SELECT $x$ FOR UPDATE $x$`,
	`SELECT 1 -- FOR UPDATE`,
	`/* INSERT */ SELECT 1`,
	`SELECT /* /* nested */ FOR UPDATE */ 1`,
	`SELECT E'\' FOR UPDATE'`,
	`SELECT 'a\' FROM t`,
	`SELECT 'C:\path' FROM t`,
	`SELECT 1.5e10, .5, 1., 0x1F, 1_000`,
	`SELECT 1::float8 + 2 * 3 / 4 % 5 ^ 6`,
	`SELECT a <-> b, a @> b, a ~~ b, a !~* b FROM t`,
	`SELECT 1 +-- comment` + "\n2",
	`SELECT 1 */* comment */ 2`,
	`SELECT ¿ FROM t`,
	`SELECT résumé, "naïve" FROM t`,
	`SELECT 日本 FROM テーブル`,
	`SELECT a FROM t WHERE a ~ '^for update$'`,
	`SELECT * FROM "select"`,
	`SELECT * FROM "t" "for"`,
	`SELECT * FROM t AS "update"`,
	`SELECT row(1, 2), (1, 2)`,
	`SELECT (t).a, (t.b).c FROM t`,
	`SELECT a[1], a[1:2] FROM t`,
	`SELECT interval '1 day', timestamp '2020-01-01', date '2020-01-01'`,
	`SELECT 'x'::regclass`,
	`SELECT * FROM t WHERE a = 'x' COLLATE "C"`,
	`SELECT xmlelement(name foo, 'bar')`,
	`SELECT json_object('a' VALUE 1)`,
	`SELECT * FROM t WHERE a OPERATOR(pg_catalog.=) 1`,
	`SELECT pg_current_snapshot(), txid_current_snapshot()`,
	`SELECT pg_backend_pid()`,
	`SELECT * FROM pg_stat_activity`,
	`SELECT pg_advisory_lock FROM t`,
	`SELECT "pg_advisory_lock" FROM t`,
	`SELECT setval FROM t`,
	`SELECT * FROM app.bump_counter_log`,
	`SELECT bump_counter FROM t`,
	`SELECT app_bump_counter(1)`,
	`SELECT audit_log_x(1)`,
	`SELECT 1 FROM t WHERE x IN (SELECT y FROM u)`,
	`SELECT * FROM t WHERE a = (SELECT max(b) FROM u)`,
	`SELECT 1 FROM t t1 JOIN t t2 ON (t1.a = t2.a)`,
	`SELECT * FROM (VALUES (1, 2)) AS v(a, b)`,
	`SELECT * FROM t NATURAL JOIN u CROSS JOIN v`,
	`SELECT * FROM ONLY t`,
	`SELECT ALL a FROM t`,
	`SELECT a AS b, c d FROM t`,
	`SELECT * FROM t WHERE a = ALL (SELECT 1)`,
	`SELECT a FROM t ORDER BY a USING <`,
	`SELECT 1 LIMIT ALL`,
	`SELECT a FROM t GROUP BY DISTINCT a`,
	`SELECT * FROM t WHERE (a, b) OVERLAPS (c, d)`,
	`SELECT * FROM t WHERE a AT TIME ZONE 'UTC' > now()`,
	`SELECT normalize(a, NFC), a IS NFC NORMALIZED FROM t`,
	`SELECT 1 AS for_`,
	`SELECT * FROM t WHERE for_update = 1`,
	`SELECT * FROM t WHERE "for"."update" = 1`,
	`SELECT * FROM t LIMIT 1 FOR READ ONLY`,
	`SELECT a, b INTO_ FROM t`,
	`SELECT TREAT(a AS int) FROM t`,
	`SELECT TREAT(a AS double precision) FROM t`,
	`SELECT TREAT(a AS "NEXTVAL") FROM t`,
	`SELECT * FROM app.bump_counter`,
	`SELECT * FROM only app.bump_counter JOIN billing.charge_card ON true`,
	`SELECT (SELECT 1 FROM app.bump_counter) FROM t`,
	`SELECT * FROM t WHERE EXISTS (SELECT 1 FROM app.bump_counter)`,
	`TABLE app.bump_counter`,
	`WITH nextval(a) AS (SELECT 1) SELECT * FROM nextval`,
	`WITH x AS (SELECT 1), pg_advisory_lock(b) AS (SELECT 2) SELECT * FROM x`,
}

// writes are hand-written statements that are not reads.
var writes = []string{
	`SELECT * FROM t FOR UPDATE`,
	`select * from t for   no key update`,
	`SELECT a FROM t FOR SHARE OF t SKIP LOCKED`,
	`SELECT 1 FROM t WHERE x IN (SELECT y FROM u FOR UPDATE)`,
	`SELECT * FROM t FOR KEY SHARE`,
	`SELECT * FROM t FOR UPDATE OF t NOWAIT`,
	`SELECT * FROM t FOR UPDATE FOR SHARE`,
	`SELECT * FROM t LIMIT 1 FOR UPDATE`,
	`SELECT * FROM t FOR UPDATE LIMIT 1`,
	`TABLE t FOR UPDATE`,
	`VALUES (1) FOR UPDATE`,
	`SELECT * FROM t FOR/**/UPDATE`,
	"SELECT * FROM t FOR -- x\nUPDATE",
	"SELECT * FROM t\tFOR\n\tNO\n\tKEY\n\tUPDATE",
	`SELECT 'x' FROM t FOR UPDATE`,
	`SELECT $$x$$ FROM t FOR UPDATE`,
	`SELECT E'\'' FROM t FOR UPDATE`,
	`SELECT 'a''b' FROM t FOR UPDATE`,
	"SELECT 'a' -- c\nFROM t FOR UPDATE",
	`SELECT /* /* */ */ 1 FROM t FOR UPDATE`,
	`SELECT a$$ FROM t FOR UPDATE`,
	`SELECT 1 FROM t WHERE a = $1 FOR UPDATE`,
	`SELECT substring(x for 2) FROM t FOR UPDATE`,
	`SELECT * FROM (SELECT * FROM t FOR UPDATE) s`,
	`SELECT EXISTS (SELECT 1 FROM t FOR SHARE)`,
	`SELECT ARRAY(SELECT a FROM t FOR UPDATE)`,
	`WITH x AS (SELECT * FROM t FOR UPDATE) SELECT * FROM x`,
	`(SELECT * FROM t FOR UPDATE) UNION (SELECT * FROM u)`,
	`SELECT * FROM t WHERE a = (SELECT b FROM u FOR NO KEY UPDATE)`,
	`SELECT INTO newtable FROM t`,
	`SELECT a INTO newtable FROM t`,
	`SELECT a INTO TABLE newtable FROM t`,
	`SELECT a INTO TEMP x FROM t`,
	`SELECT a INTO TEMPORARY x FROM t`,
	`SELECT a INTO LOCAL TEMP x FROM t`,
	`SELECT a INTO UNLOGGED x FROM t`,
	`SELECT a INTO pg_temp.x FROM t`,
	`SELECT * INTO x FROM t UNION SELECT * FROM u`,
	`SELECT * FROM (SELECT 1 INTO x) s`,
	`WITH c AS (SELECT 1) SELECT * INTO x FROM c`,
	`WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d`,
	`WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d`,
	`WITH d AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM d`,
	`WITH d AS (MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE RETURNING t.*) SELECT * FROM d`,
	`WITH d AS (SELECT 1) DELETE FROM t`,
	`WITH d AS (SELECT 1) INSERT INTO t SELECT * FROM d`,
	`WITH d AS (SELECT 1) UPDATE t SET a = 1`,
	`WITH d AS (SELECT 1) MERGE INTO t USING d ON true WHEN MATCHED THEN DO NOTHING`,
	`SELECT nextval('s')`,
	`SELECT pg_catalog.nextval('s')`,
	`SELECT "nextval"('s')`,
	`SELECT NEXTVAL('s')`,
	`SELECT setval('s', 1)`,
	`SELECT currval('s')`,
	`SELECT lastval()`,
	`SELECT set_config('a','b',false)`,
	`SELECT pg_advisory_xact_lock(1)`,
	`SELECT pg_advisory_lock(1)`,
	`SELECT pg_try_advisory_lock(1, 2)`,
	`SELECT pg_notify('c', 'p')`,
	`SELECT txid_current()`,
	`SELECT pg_current_xact_id()`,
	`SELECT pg_current_wal_lsn()`,
	`SELECT pg_current_wal_insert_lsn()`,
	`SELECT lo_create(0)`,
	`SELECT lo_get(1)`,
	`SELECT loread(1, 2)`,
	`SELECT pg_terminate_backend(1)`,
	`SELECT dblink_exec('c', 'DELETE FROM t')`,
	`SELECT * FROM t WHERE id = nextval('s')`,
	`SELECT app.bump_counter(1)`,
	`SELECT bump_counter(1)`,
	`SELECT other.audit_log('x')`,
	`SELECT t.bump_counter FROM t`,
	`SELECT (t).audit_log FROM t`,
	`SELECT billing.charge_card(1)`,
	`SELECT charge_card(1)`,
	`SELECT 1; DELETE FROM t`,
	`SELECT 1; SET x = 1`,
	`INSERT INTO t VALUES (1) RETURNING id`,
	`UPDATE t SET a=1 RETURNING *`,
	`DELETE FROM t WHERE a = 1`,
	`MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN UPDATE SET b = u.b`,
	`COPY t FROM STDIN`,
	`COPY (SELECT 1) TO STDOUT`,
	`CREATE TABLE x (a int)`,
	`CREATE TABLE x AS SELECT 1`,
	`CREATE TEMP TABLE x (a int)`,
	`CREATE TEMPORARY TABLE x AS SELECT 1`,
	`CREATE LOCAL TEMP TABLE x (a int)`,
	`CREATE OR REPLACE TEMP VIEW v AS SELECT 1`,
	`CREATE TEMP SEQUENCE s`,
	`CREATE TABLE pg_temp.x (a int)`,
	`CREATE UNLOGGED TABLE x (a int)`,
	`CREATE VIEW v AS SELECT 1`,
	`CREATE MATERIALIZED VIEW v AS SELECT 1`,
	`CREATE INDEX ON t (a)`,
	`CREATE INDEX CONCURRENTLY i ON t USING gin (a) WITH (fastupdate = off)`,
	`CREATE SEQUENCE s`,
	`CREATE SCHEMA s`,
	`CREATE EXTENSION IF NOT EXISTS pg_trgm`,
	`CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$`,
	`CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END`,
	`CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; SELECT 2; END`,
	`CREATE PROCEDURE p() LANGUAGE sql AS 'SELECT 1'`,
	`CREATE TRIGGER tr AFTER INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()`,
	`CREATE POLICY p ON t FOR UPDATE USING (true)`,
	`CREATE PUBLICATION p FOR TABLE t`,
	`CREATE TYPE ty AS (a int)`,
	`CREATE RULE r AS ON INSERT TO t DO INSTEAD NOTHING`,
	`ALTER TABLE t ADD COLUMN b int`,
	`ALTER SYSTEM SET work_mem = '1MB'`,
	`DROP TABLE t`,
	`TRUNCATE t`,
	`GRANT SELECT ON t TO u`,
	`REVOKE ALL ON t FROM u`,
	`VACUUM t`,
	`VACUUM (ANALYZE) t`,
	`ANALYZE t`,
	`ANALYSE t`,
	`CALL p()`,
	`DO $$ BEGIN END $$`,
	`LOCK TABLE t IN ACCESS EXCLUSIVE MODE`,
	`REFRESH MATERIALIZED VIEW v`,
	`CLUSTER t USING i`,
	`REINDEX TABLE t`,
	`COMMENT ON TABLE t IS 'x'`,
	`SECURITY LABEL ON TABLE t IS 'x'`,
	`IMPORT FOREIGN SCHEMA s FROM SERVER srv INTO t`,
	`NOTIFY c`,
	`NOTIFY c, 'payload'`,
	`CHECKPOINT`,
	`REASSIGN OWNED BY a TO b`,
	`SET x = 1`,
	`SET search_path TO a, b`,
	`SET LOCAL statement_timeout = 0`,
	`SET SESSION AUTHORIZATION u`,
	`SET ROLE u`,
	`SET TRANSACTION ISOLATION LEVEL SERIALIZABLE`,
	`SET CONSTRAINTS ALL DEFERRED`,
	`RESET ALL`,
	`RESET search_path`,
	`LISTEN c`,
	`UNLISTEN *`,
	`PREPARE p AS SELECT 1`,
	`PREPARE p (int) AS SELECT $1`,
	`EXECUTE p`,
	`EXECUTE p (1)`,
	`DEALLOCATE p`,
	`DEALLOCATE ALL`,
	`DECLARE c CURSOR FOR SELECT 1`,
	`DECLARE c SCROLL CURSOR WITH HOLD FOR SELECT * FROM t`,
	`FETCH NEXT FROM c`,
	`FETCH 10 c`,
	`MOVE FORWARD 2 IN c`,
	`CLOSE c`,
	`CLOSE ALL`,
	`DISCARD ALL`,
	`DISCARD TEMP`,
	`LOAD 'auto_explain'`,
	`BEGIN`,
	`BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`,
	`START TRANSACTION READ ONLY`,
	`COMMIT`,
	`COMMIT AND CHAIN`,
	`END`,
	`ROLLBACK`,
	`ABORT`,
	`SAVEPOINT s`,
	`RELEASE SAVEPOINT s`,
	`RELEASE s`,
	`ROLLBACK TO SAVEPOINT s`,
	`PREPARE TRANSACTION 'x'`,
	`COMMIT PREPARED 'x'`,
	`ROLLBACK PREPARED 'x'`,
	`EXPLAIN ANALYZE DELETE FROM t`,
	`EXPLAIN ANALYZE SELECT 1`,
	`EXPLAIN ANALYSE SELECT 1`,
	`EXPLAIN ANALYZE VERBOSE SELECT 1`,
	`EXPLAIN (ANALYZE) SELECT 1`,
	`EXPLAIN (ANALYZE, BUFFERS) SELECT 1`,
	`EXPLAIN (ANALYZE true) SELECT 1`,
	`EXPLAIN (ANALYZE on) SELECT 1`,
	`EXPLAIN (ANALYZE 1) SELECT 1`,
	`EXPLAIN (ANALYZE 'true') SELECT 1`,
	`EXPLAIN (analyse) SELECT 1`,
	`EXPLAIN ("analyze") SELECT 1`,
	`EXPLAIN (ANALYZE false, ANALYZE) SELECT 1`,
	`EXPLAIN (BUFFERS, ANALYZE) (SELECT 1)`,
	`EXPLAIN DELETE FROM t`,
	`EXPLAIN INSERT INTO t VALUES (1)`,
	`EXPLAIN SELECT * FROM t FOR UPDATE`,
	`EXPLAIN SELECT nextval('s')`,
	`EXPLAIN SELECT 1 INTO x`,
	`EXPLAIN EXECUTE p`,
	`EXPLAIN CREATE TABLE x AS SELECT 1`,
	`EXPLAIN DECLARE c CURSOR FOR SELECT 1`,
	`EXPLAIN ANALYZE EXECUTE p(1)`,
	`SELECT TREAT('s' AS nextval)`,
	`SELECT treat(a AS pg_catalog.set_config[]) FROM t`,
	`SELECT TREAT(a AS "nextval") FROM t`,
	`SELECT TREAT(a AS bump_counter) FROM t`,
	`EXPLAIN (ANALYZE 'falſe') SELECT 1`,
	`EXPLAIN (ANALYZE 'FALSE ') SELECT 1`,
	`SELECT * FROM t WHERE a IS DISTINCT FROM t.bump_counter`,
	`SELECT extract(year FROM t.bump_counter) FROM t`,
	`SELECT trim(FROM t.audit_log) FROM t`,
	`SELECT substring(a FROM t.bump_counter) FROM t`,
	`SELECT * FROM (SELECT 1 FROM x WHERE a IS NOT DISTINCT FROM x.audit_log) s`,
	"SELECT 'C:\\' FROM t WHERE a = E'\\'' FOR UPDATE",
	`WITH RECURSIVE nextval(a) AS (SELECT 1) SELECT * FROM nextval`,
}

// Lock clauses and placements.
var (
	lockStrengths = []string{"FOR UPDATE", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE"}
	lockSuffixes  = []string{"", " OF t", " OF t, u", " NOWAIT", " SKIP LOCKED", " OF t SKIP LOCKED", " OF s.t NOWAIT"}
	lockPlaces    = []string{
		"SELECT * FROM t %s",
		"SELECT * FROM t WHERE a IN (SELECT b FROM u %s)",
		"WITH c AS (SELECT * FROM t %s) SELECT * FROM c",
		"WITH c AS (SELECT 1), d AS MATERIALIZED (SELECT * FROM t %s) SELECT * FROM c",
		"(SELECT * FROM t %s) UNION ALL (SELECT * FROM u)",
		"SELECT * FROM (SELECT * FROM t %s) s",
		"SELECT * FROM t ORDER BY a LIMIT 1 %s",
		"SELECT EXISTS (SELECT 1 FROM t %s)",
		"EXPLAIN SELECT * FROM t %s",
		"SELECT * FROM t, LATERAL (SELECT * FROM u %s) x",
		"SELECT substring(a FROM 1 FOR 2), (SELECT 1 FROM u %s) FROM t",
		"SELECT 1; SELECT * FROM t %s",
	}
	// lockMisses are like lockPlaces but the clause is hidden or harmless.
	lockMisses = []string{
		"SELECT * FROM t -- %s",
		"SELECT * FROM t /* %s */",
		"SELECT * FROM t /* /* */ %s */",
		"SELECT '%s' FROM t",
		"SELECT E'\\'%s' FROM t",
		"SELECT $$%s$$ FROM t",
		"SELECT $q$ $$ %s $q$ FROM t",
		`SELECT "%s" FROM t`,
		"SELECT 1 AS \"%s\" FROM t",
		"SELECT * FROM t WHERE a = '%s'",
		"SELECT * FROM t WHERE a = U&'%s'",
		"SELECT * FROM t WHERE a = N'%s'",
	}
)

// Function call forms and places; %s is the name.
var (
	callForms = []string{
		"%s(1)",
		"pg_catalog.%s(1)",
		`"%s"(1)`,
		"%s (1)",
		"%s/* c */(1)",
		"PUBLIC.%s('a', 2)",
		`"public"."%s"()`,
	}
	callPlaces = []string{
		"SELECT %s",
		"SELECT * FROM t WHERE a = %s",
		"SELECT * FROM %s",
		"WITH c AS (SELECT %s) SELECT * FROM c",
		"SELECT (SELECT %s)",
		"VALUES (1), (%s)",
		"SELECT 1 UNION SELECT %s",
		"SELECT a FROM t ORDER BY %s",
		"EXPLAIN SELECT %s",
	}
	// callMisses use the name without calling it.
	callMisses = []string{
		"SELECT %s FROM t",
		"SELECT t.%s FROM t",
		"SELECT my_%s(1)",
		"SELECT %s_2(1)",
		"SELECT '%s(1)'",
		"SELECT 1 -- %s(1)",
		"SELECT $$%s(1)$$",
		`SELECT "%s" FROM t`,
		"SELECT * FROM %s",
		"SELECT * FROM t AS %s",
	}
	extraNames = []string{"bump_counter", "app.bump_counter", "audit_log", "charge_card", "billing.charge_card",
		"now", "count", "coalesce", "pg_sleep", "lower", "current_setting", "pg_backend_pid",
		"lo", "pg_advisory", "dblin", "setval2", "xnextval", "pg_try_advisory"}
)

// CTE bodies that modify data, and forms that place a body.
var (
	dmlBodies = []string{
		"INSERT INTO t VALUES (1) RETURNING *",
		"UPDATE t SET a = 1 RETURNING *",
		"UPDATE ONLY t AS x SET a = 1 RETURNING *",
		"DELETE FROM t RETURNING *",
		"DELETE FROM t WHERE a IN (SELECT 1) RETURNING a",
		"MERGE INTO t USING u ON t.a = u.a WHEN MATCHED THEN DELETE RETURNING t.*",
		"INSERT INTO t SELECT * FROM u RETURNING a",
		"WITH y AS (SELECT 1) DELETE FROM t RETURNING *",
		"WITH y AS (SELECT 1) INSERT INTO t SELECT * FROM y RETURNING *",
	}
	readBodies = []string{
		"SELECT 1",
		"SELECT insert FROM t",
		"SELECT update FROM t",
		"VALUES (1)",
		"TABLE t",
		"(SELECT 1)",
		"WITH y AS (SELECT 1) SELECT * FROM y",
		"SELECT delete FROM t",
		"SELECT * FROM update",
	}
	cteForms = []string{
		"WITH x AS (%s) SELECT * FROM x",
		"WITH x AS MATERIALIZED (%s) SELECT * FROM x",
		"WITH x AS NOT MATERIALIZED (%s) SELECT * FROM x",
		"WITH x(a) AS (%s) SELECT * FROM x",
		"WITH RECURSIVE x AS (%s) SELECT * FROM x",
		"WITH a AS (SELECT 1), x AS (%s) SELECT 1",
		"SELECT * FROM (WITH x AS (%s) SELECT * FROM x) s",
		"SELECT EXISTS (WITH x AS (%s) SELECT * FROM x)",
		"WITH a AS (WITH x AS (%s) SELECT * FROM x) SELECT * FROM a",
		"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) SEARCH DEPTH FIRST BY n SET ord, x AS (%s) SELECT 1",
		"WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r) CYCLE n SET c TO 1 DEFAULT 0 USING p, x AS (%s) SELECT 1",
		"(WITH x AS (%s) SELECT * FROM x)",
		"EXPLAIN WITH x AS (%s) SELECT * FROM x",
		"WITH x AS (%s) SELECT * FROM x UNION SELECT 1",
	}
)

// EXPLAIN options and statements.
var (
	explainOpts = []string{
		"", "ANALYZE ", "ANALYSE ", "VERBOSE ", "ANALYZE VERBOSE ",
		"(ANALYZE) ", "(ANALYZE true) ", "(ANALYZE false) ", "(ANALYZE off) ", "(ANALYZE on) ",
		"(ANALYZE 0) ", "(ANALYZE 1) ", "(ANALYZE '0') ", "(ANALYZE 'false') ", "(ANALYZE FALSE, BUFFERS) ",
		"(BUFFERS, ANALYZE) ", "(FORMAT JSON) ", "(COSTS OFF, ANALYZE OFF, TIMING OFF) ", "(analyze \"off\") ",
		"(ANALYZE -0) ", "(ANALYZE +1) ", "(ANALYZE yes) ", "(SERIALIZE, ANALYZE) ", "(\"analyze\" false) ",
		"(\"ANALYZE\") ", "(GENERIC_PLAN TRUE) ",
	}
	explainStmts = []string{
		"SELECT 1", "SELECT * FROM t WHERE a = $1", "(SELECT 1)", "VALUES (1)", "TABLE t",
		"WITH x AS (SELECT 1) SELECT * FROM x", "SELECT nextval('s')", "SELECT * FROM t FOR UPDATE",
		"DELETE FROM t", "INSERT INTO t VALUES (1)", "UPDATE t SET a = 1", "SELECT 1 INTO x",
		"EXECUTE p", "CREATE TABLE x AS SELECT 1", "DECLARE c CURSOR FOR SELECT 1",
		"MERGE INTO t USING u ON true WHEN MATCHED THEN DELETE", "SELECT set_config('a', 'b', false)",
	}
)

// hiders wrap a payload so that it should mean nothing; payloads try to
// break out of them.
var (
	hiders = []string{
		"'%s'", "E'%s'", "$$%s$$", "$q$%s$q$", "/* %s */", "-- %s\n", `"%s"`, "/* /* */ %s */",
		"U&'%s'", "B'%s'", "X'%s'", "'a' \n'%s'", "E'a'\n'%s'",
	}
	payloads = []string{
		"FOR UPDATE", "' FOR UPDATE --", "'' FOR UPDATE", "\\' FOR UPDATE --", "$$ FOR UPDATE $$",
		"*/ FOR UPDATE /*", "*/ FOR UPDATE", "\n FOR UPDATE", "\" FOR UPDATE \"", "\"\" FOR UPDATE",
		"$q$ FOR UPDATE", "; DELETE FROM t", "' ; DELETE FROM t; --", "nextval(1)", "', nextval('s'), '",
		"INTO x", "' INTO x --", "/* FOR UPDATE", "$", "$a$ FOR UPDATE $a$",
	}
	hiderPlaces = []string{
		"SELECT %s FROM t",
		"SELECT * FROM t WHERE a = %s",
		"SELECT 1, %s",
	}
)

// multiParts are joined in pairs.
var multiParts = []string{
	"SELECT 1", "SELECT * FROM t", "VALUES (1)", "SHOW x", "EXPLAIN SELECT 1",
	"DELETE FROM t", "SET x = 1", "BEGIN", "SELECT nextval('s')", "SELECT * FROM t FOR UPDATE",
	"", "/* c */", "SELECT 'a;b'", "CREATE TEMP TABLE x (a int)",
}

// corpus returns the differential corpus: hand-written statements, the
// generated combinations and variants of them.
func corpus() []string {
	var out []string
	add := func(s string) { out = append(out, s) }
	f := func(format, arg string) string { return strings.Replace(format, "%s", arg, -1) }

	base := append(append(append([]string{}, reads...), writes...), tableCorpus()...)
	for _, s := range base {
		add(s)
	}
	for _, l := range lockStrengths {
		for _, suf := range lockSuffixes {
			for _, p := range lockPlaces {
				add(f(p, l+suf))
			}
		}
		for _, p := range lockMisses {
			add(f(p, l))
		}
	}
	names := append(append(append([]string{}, sessionFuncs...), writeFuncs...), extraNames...)
	for _, n := range names {
		for _, form := range callForms {
			for _, p := range callPlaces {
				add(f(p, f(form, n)))
			}
		}
		for _, p := range callMisses {
			add(f(p, n))
		}
	}
	for _, b := range append(append([]string{}, dmlBodies...), readBodies...) {
		for _, form := range cteForms {
			add(f(form, b))
		}
	}
	for _, o := range explainOpts {
		for _, s := range explainStmts {
			add("EXPLAIN " + o + s)
		}
	}
	for _, h := range hiders {
		for _, p := range payloads {
			for _, pl := range hiderPlaces {
				add(f(pl, f(h, p)))
			}
		}
	}
	for _, a := range multiParts {
		for _, b := range multiParts {
			add(a + "; " + b)
		}
	}

	// Variants of the hand-written statements and a sample of the rest.
	r := rand.New(rand.NewPCG(1, 2))
	n := len(out)
	for i := 0; i < n; i++ {
		s := out[i]
		if i >= len(base) && r.IntN(4) != 0 {
			continue
		}
		for _, v := range variants(s, r) {
			add(v)
		}
	}
	return out
}

// variants rewrites s in ways that must not change its kind (or, where
// they do, the parser says so): case, whitespace, comments, semicolons.
func variants(s string, r *rand.Rand) []string {
	mixed := []byte(s)
	for i, c := range mixed {
		if r.IntN(2) == 0 {
			if c >= 'a' && c <= 'z' {
				mixed[i] = c - 'a' + 'A'
			} else if c >= 'A' && c <= 'Z' {
				mixed[i] = c - 'A' + 'a'
			}
		}
	}
	return []string{
		strings.ToUpper(s),
		strings.ToLower(s),
		string(mixed),
		strings.ReplaceAll(s, " ", "\n\t "),
		strings.ReplaceAll(s, " ", "/**/"),
		strings.ReplaceAll(s, " ", " /* x /* y */ z */ "),
		strings.ReplaceAll(s, " ", " --c\n"),
		"/* lead */ " + s,
		"-- lead\n" + s,
		s + ";",
		s + " ; ;",
		" \n\t" + s + "\n",
		"/* FOR UPDATE */" + s + "-- ; DELETE FROM t",
	}
}
