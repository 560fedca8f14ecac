// Package classify reads PostgreSQL SQL text and says what it does:
// whether it may run on a read replica (its [Kind]), and, from the same
// single pass, which relations it reads and writes, which functions it
// calls, and what it does to the transaction and the session ([Analyze]).
//
// The rule is "when unsure, primary": only text that is provably a pure read
// is [Read]. Everything else goes to the primary; text that changes or
// depends on the connection's session state is [Session], telling the
// caller to keep using the same connection; text the classifier cannot
// make sense of is [Unknown].
//
// # Reads
//
// A text is Read only if every statement in it is one of
//
//   - SELECT, VALUES or TABLE, including parenthesized queries and UNION,
//     INTERSECT and EXCEPT of them;
//   - WITH [RECURSIVE] ... (with SEARCH and CYCLE clauses) whose common
//     table expressions and main statement are all queries;
//   - SHOW;
//   - COPY table [(columns)] TO STDOUT, and COPY (query) TO STDOUT of such
//     a query (its own kind counts: COPY (SELECT nextval('s')) TO STDOUT is
//     Write); a standby runs them. COPY to a file or a program, and COPY
//     FROM, are Write;
//   - EXPLAIN, without ANALYZE, of one of the above. EXPLAIN ANALYZE runs
//     the statement, so it is Write (Session if the statement is);
//     EXPLAIN (ANALYZE false), (ANALYZE off) and (ANALYZE 0) do not run it.
//     EXPLAIN without ANALYZE of anything else has the kind of that
//     statement: an EXPLAIN DELETE does not delete, but it is not worth a
//     replica;
//
// and no statement contains, at any depth (subqueries, CTEs, set operations):
//
//   - a locking clause: FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE or
//     FOR KEY SHARE, with or without OF, NOWAIT or SKIP LOCKED: Write.
//     (SUBSTRING(x FROM 1 FOR 2) and OVERLAY(... FOR n) are not locking
//     clauses, even if n is a column named "update".)
//   - SELECT ... INTO, which creates a table: Write, or Session for a
//     temporary table;
//   - a data-modifying CTE, WITH x AS (INSERT | UPDATE | DELETE | MERGE ...):
//     Write;
//   - a call of a function with side effects. Write: nextval, setval,
//     pg_notify, txid_current, txid_current_if_assigned, pg_current_xact_id
//     and pg_current_xact_id_if_assigned (they assign a transaction id),
//     lo_* and loread/lowrite (large objects), the WAL, backup, recovery and
//     replication-slot functions that fail on a standby or act on the
//     primary (pg_current_wal_lsn, pg_current_wal_insert_lsn, pg_switch_wal,
//     pg_create_restore_point, ...), server signalling
//     (pg_terminate_backend, pg_cancel_backend, pg_reload_conf,
//     pg_rotate_logfile, ...), pg_stat_reset*, dblink*, and the user's
//     list. Session: currval and lastval (they only work on the connection
//     that called nextval), set_config, setseed, every pg_advisory_* and
//     pg_try_advisory_* lock function, pg_export_snapshot, dblink_connect and
//     dblink_disconnect.
//
// A function name may be schema-qualified (a built-in name matches in any
// schema) or quoted: unquoted names match case-insensitively, quoted
// built-in names only exactly ("nextval", not "NEXTVAL"). A name not
// followed by "(" is not a call: a column named nextval is harmless. Two
// call syntaxes without "(" are covered too: TREAT(x AS f), which PostgreSQL
// runs as pg_catalog.f(x), and, for the user's functions, attribute notation
// t.f, which PostgreSQL runs as f(t).
//
// # Everything else
//
// SET, RESET, LISTEN, UNLISTEN, PREPARE, EXECUTE, DEALLOCATE, DECLARE,
// FETCH, MOVE, CLOSE, DISCARD, LOAD, transaction control (BEGIN, START,
// COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE, PREPARE TRANSACTION,
// COMMIT PREPARED) and CREATE TEMP ... (or CREATE ... pg_temp.x) are
// Session. INSERT, UPDATE, DELETE, MERGE, COPY (but for the reads above),
// CREATE, ALTER, DROP, TRUNCATE, GRANT, REVOKE, VACUUM, ANALYZE, CALL, DO,
// LOCK, REFRESH, CLUSTER, REINDEX, COMMENT, SECURITY LABEL, IMPORT FOREIGN
// SCHEMA, NOTIFY, CHECKPOINT and REASSIGN are Write. A string of several
// statements is Session if any statement is, else Write if any is, else
// Read if all are, else Unknown. Unknown is also the kind of empty text
// (or only comments and semicolons), of text that does not lex (an
// unterminated quote or comment, a NUL byte), of unbalanced parentheses, of
// statements that start with an unknown word, and of shapes the classifier
// does not recognize.
//
// # Analysis
//
// [Classifier.Analyze] (and the uncached [Analyze]) return a [Statement]:
// the kind, and what a router by table, a connection pool, a proxy and a
// query cache need to know. It reads the text once, with the same lexer,
// and Classify is Analyze(sql).Kind.
//
// Reads lists every relation (table, view, materialized view, sequence,
// foreign table) named where a query reads one, at any depth: FROM and
// JOIN items (also parenthesized joins, LATERAL subqueries, ONLY t, t *,
// TABLESAMPLE), subqueries anywhere (the select list, WHERE, HAVING, ON,
// ORDER BY, IN, EXISTS, ANY, scalar subqueries, VALUES), CTE bodies, set
// operations, TABLE t, the queries of INSERT ... SELECT, CREATE TABLE AS,
// CREATE [MATERIALIZED] VIEW, DECLARE, PREPARE, COPY (query) and EXPLAIN,
// UPDATE's FROM, DELETE's USING, MERGE's USING, COPY t TO, and CREATE
// TABLE's LIKE source.
//
// Writes lists the relations the text writes, locks or changes: the
// targets of INSERT, UPDATE, DELETE and MERGE (also in data-modifying
// CTEs), COPY t FROM, TRUNCATE, LOCK, SELECT ... INTO's new table, and the
// relations a locking clause locks: FOR UPDATE OF a locks the FROM item a
// (a relation, or every relation of a subquery or a join so named; a name
// no FROM item has is taken as a relation), and FOR UPDATE without OF
// every relation of that SELECT's FROM list, also inside its subqueries in
// FROM (as PostgreSQL locks them), but not those of subqueries elsewhere
// (WHERE, the select list) nor of the CTEs it reads. DDL targets are writes
// too: CREATE TABLE (with its REFERENCES, INHERITS and PARTITION OF
// tables), CREATE VIEW, CREATE MATERIALIZED VIEW, CREATE INDEX ... ON t
// (the table, not the index), CREATE SEQUENCE, CREATE TRIGGER ... ON t
// [FROM u], CREATE POLICY ... ON t, ALTER TABLE, VIEW, MATERIALIZED VIEW,
// INDEX, SEQUENCE and FOREIGN TABLE (with the tables of REFERENCES, ATTACH
// PARTITION, DETACH PARTITION and [NO] INHERIT), DROP of those (every
// name), DROP TRIGGER, POLICY or RULE ... ON t, REFRESH MATERIALIZED VIEW,
// VACUUM, ANALYZE, CLUSTER and REINDEX TABLE or INDEX of named tables,
// COMMENT ON and SECURITY LABEL ON a relation, a column (its table) or a
// trigger, policy, rule or constraint on a table, and GRANT and REVOKE ON
// [TABLE | SEQUENCE] names. A relation may be in both lists (UPDATE t ...
// FROM t AS u); each list has no duplicates and keeps the order of first
// appearance.
//
// Not relations: a CTE's name where the CTE is in scope (it shadows a
// table of the same name; a qualified name is never a CTE; a CTE's own body
// sees the table of its name unless the WITH is RECURSIVE, where every
// CTE of the list is in scope in every body; outside its query the name is
// a table again), functions in FROM (generate_series(...), unnest, ROWS
// FROM, CURRENT_DATE, XMLTABLE, JSON_TABLE), VALUES lists, aliases, column
// references, t.* and schema.f(...) calls. The targets of INSERT, UPDATE,
// DELETE and MERGE are never CTEs, as in PostgreSQL.
//
// Names are as PostgreSQL folds them: unquoted ones lower-cased (ASCII
// letters only), quoted ones exact, U&"..." ones decoded, all truncated to
// 63 bytes; db.schema.name keeps schema and name.
//
// Partial says that the analysis may miss relations: always for Unknown
// text; for statements that touch relations the text does not name
// (EXECUTE, FETCH, MOVE, DO, CREATE TABLE AS EXECUTE, CASCADE on DROP,
// TRUNCATE and ALTER, VACUUM, ANALYZE or CLUSTER of every table, REINDEX
// SCHEMA or DATABASE, GRANT ... ON ALL TABLES IN SCHEMA, DROP EXTENSION,
// DROP OWNED, CREATE SCHEMA with elements, REASSIGN OWNED, IMPORT FOREIGN
// SCHEMA); for statements the analysis does not follow (CREATE FUNCTION,
// PROCEDURE or AGGREGATE, and CREATE and ALTER of objects other than those
// above, schemas, types, domains and roles); and for shapes it does not
// know. What it has found is kept: the
// lists of a Partial Statement hold every relation it saw, and the walker
// goes on reading after what it does not know, so that the subqueries and
// FROM items further on still count. When Partial is false the lists are
// exactly what PostgreSQL's parser has (the parsercheck tests check it).
//
// Funcs lists every function call, at any depth, including functions in
// FROM and CALL's procedure. A query cache checks each against pg_proc, so
// it errs on the side of reporting: the names are as written (schema ""
// when unqualified), not resolved. SQL syntax is reported as the function
// PostgreSQL's grammar calls, in pg_catalog: EXTRACT (extract), POSITION
// (position), SUBSTRING with FROM, FOR or SIMILAR (substring; with commas
// it is the plain call substring), OVERLAY with PLACING (overlay), TRIM
// (btrim, ltrim, rtrim), NORMALIZE and IS NORMALIZED (normalize,
// is_normalized), XMLEXISTS (xmlexists), COLLATION FOR (pg_collation_for),
// AT TIME ZONE and AT LOCAL (timezone), (a, b) OVERLAPS (c, d) (overlaps),
// LIKE and ILIKE ... ESCAPE (like_escape), SIMILAR TO (similar_to_escape),
// SYSTEM_USER (system_user), the legacy JSON_OBJECT(text[]) (json_object)
// and TREAT(x AS type) (the type's function: int4 for INTEGER, ...). Not
// calls: CAST, COALESCE, NULLIF, GREATEST, LEAST, EXISTS, IN, ANY, SOME,
// ALL, ARRAY, ROW, VALUES, GROUPING, the JSON and XML constructors
// (JSON_OBJECT with keys, XMLELEMENT, ...), CURRENT_DATE and the other
// SQL value functions (also with a precision), type modifiers
// (varchar(10), numeric(10, 2), timestamp(3), geometry(Point), INTERVAL
// SECOND(3)), typed literals (mytype(3) 'x'), ROLLUP and CUBE in GROUP BY,
// OPERATOR(...), FILTER and OVER, the function a trigger executes and the
// argument types of PREPARE, DROP FUNCTION and the like. A Classifier
// with user functions also reports their attribute-notation calls t.f as f.
//
// Effects is a set of [Effect] bits, the union over the text's statements;
// see each bit for what sets it. Function calls set bits wherever they
// appear in the text, as they make the kind: the calls in an EXPLAIN or a
// PREPARE count although they do not run yet. TxAccess, TxIsolation and
// TxDeferrable give the modes of BEGIN, START TRANSACTION and SET
// TRANSACTION (see [Statement]).
//
// # Lexing
//
// The text is read in one pass, as PostgreSQL's scanner reads it: -- and
// nested /* */ comments; '...' strings with doubled quotes; E'...' strings with
// backslash escapes; B'...', X'...', N'...' and U&'...' strings; string
// continuation across a newline; $$ and $tag$ dollar quoting (while $1 is a
// parameter and a$b$ an identifier); "quoted" and U&"quoted" identifiers;
// keywords in any case. Keywords inside strings, comments and quoted
// identifiers mean nothing. A text with a backslash in an ordinary string is
// also read as a server with standard_conforming_strings off would read it,
// and is not Read if that reading finds a write (its analysis then holds
// what both readings find, and is Partial).
//
// # Limits
//
// The classifier sees only the text. A view, rule, trigger, default,
// operator or cast that calls a function with side effects is invisible to
// it: list such functions, or send such statements to the primary yourself.
// The function lists assume PostgreSQL's built-in functions have not been
// shadowed in schemas searched before pg_catalog. In the same way,
// functions, procedures, views, triggers, rules and foreign keys' actions
// can read and write relations the text does not name, and the analysis
// does not report them: when routing by table, route such statements
// explicitly. A temporary table cannot be told from another by its name,
// so a statement that uses one is not marked as depending on the session;
// nor does the analysis resolve names through search_path.
//
// The tests in the parsercheck module check the classifier against
// PostgreSQL's own parser (libpg_query) on a generated corpus, random
// statements and fuzzed input.
package classify

import (
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Kind is what a statement (or a string of statements) does, as far as
// routing cares.
type Kind uint8

const (
	// Unknown means the text could not be classified: it goes to the primary.
	Unknown Kind = iota
	// Read means the text is provably a pure read: it may run on a replica.
	Read
	// Write means the text writes, locks rows, takes sequence values, runs
	// DDL or calls functions with side effects: it goes to the primary.
	Write
	// Session means the text changes or depends on the connection's session
	// state (SET, LISTEN, PREPARE, cursors, transaction control, temporary
	// tables, advisory locks, set_config, currval, ...): it goes to the
	// primary and the caller must pin the connection.
	Session
)

// String returns "unknown", "read", "write" or "session".
func (k Kind) String() string {
	switch k {
	case Unknown:
		return "unknown"
	case Read:
		return "read"
	case Write:
		return "write"
	case Session:
		return "session"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ReplicaSafe reports whether a statement of kind k may run on a replica,
// that is whether k is Read.
func (k Kind) ReplicaSafe() bool { return k == Read }

// Classify classifies sql with the built-in list of functions with side
// effects, without caching. Use a [Classifier] for repeated statements.
func Classify(sql string) Kind { return classify(sql, defaultFuncs) }

// Analyze analyzes sql with the built-in list of functions with side
// effects, without caching. Use a [Classifier] for repeated statements.
func Analyze(sql string) *Statement { return analyze(sql, defaultFuncs) }

// DefaultCacheSize is the number of strings a Classifier caches when New is
// given a cacheSize <= 0.
const DefaultCacheSize = 8192

// Cache limits.
const (
	// maxCachedLen is the longest string that is cached; longer ones are
	// classified every time.
	maxCachedLen = 16 << 10
	// avgKeyBytes is the key memory budgeted per cache entry.
	avgKeyBytes = 1 << 10
	maxShards   = 32
)

// seed hashes SQL strings to cache shards.
var seed = maphash.MakeSeed()

// shard is one lock-protected part of the cache.
type shard struct {
	mu    sync.RWMutex
	m     map[string]*Statement
	bytes int // key and Statement bytes held by m
	_     [64]byte
}

// Classifier classifies SQL text; it caches results per exact SQL string and
// is safe for concurrent use. The zero value is usable: it knows the
// built-in functions only and caches DefaultCacheSize strings.
type Classifier struct {
	funcs *funcTable
	cache atomic.Pointer[cache]
}

// cache is a sharded map from SQL text to its analysis.
type cache struct {
	shards     []shard
	maxEntries int // per shard
	maxBytes   int // per shard, keys and Statements
}

// New returns a Classifier.
//
// extraWriteFuncs names user functions with side effects: a call of any of
// them makes a statement Write. Names are case-insensitive and may be
// schema-qualified ("app.bump_counter", matching calls qualified with that
// schema or not qualified at all) or bare ("bump_counter", matching any
// schema).
//
// cacheSize bounds the number of cached strings (<= 0 means
// DefaultCacheSize). The cache never grows past it: when a part of the
// cache fills up, that part is emptied, so a stream of distinct statements
// (inlined literals) costs bounded memory. Key memory is bounded too (about
// 1 KiB per entry on average), and strings longer than 16 KiB are never
// cached.
func New(extraWriteFuncs []string, cacheSize int) *Classifier {
	c := &Classifier{funcs: newFuncTable(extraWriteFuncs)}
	c.cache.Store(newCache(cacheSize))
	return c
}

func newCache(size int) *cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	n := 1
	for n < maxShards && n*2*64 <= size { // at least 64 entries a shard
		n *= 2
	}
	c := &cache{shards: make([]shard, n), maxEntries: max(size/n, 1)}
	c.maxBytes = max(c.maxEntries*avgKeyBytes, 2*maxCachedLen)
	for i := range c.shards {
		c.shards[i].m = make(map[string]*Statement)
	}
	return c
}

// Classify classifies sql (see the package documentation); it returns
// Analyze(sql).Kind. The result for each distinct string is cached: a
// repeated call does not allocate.
func (c *Classifier) Classify(sql string) Kind {
	if c == nil {
		return Classify(sql)
	}
	if len(sql) > maxCachedLen {
		return classify(sql, c.funcTable())
	}
	return c.Analyze(sql).Kind
}

// Analyze returns what the classifier learned of sql (see the package
// documentation). The result is cached per SQL string and shared: callers
// must not modify it. A repeated call allocates nothing.
func (c *Classifier) Analyze(sql string) *Statement {
	if c == nil {
		return Analyze(sql)
	}
	funcs := c.funcTable()
	if len(sql) > maxCachedLen {
		return analyze(sql, funcs)
	}
	ca := c.cache.Load()
	if ca == nil {
		c.cache.CompareAndSwap(nil, newCache(0))
		ca = c.cache.Load()
	}
	sh := &ca.shards[maphash.String(seed, sql)&uint64(len(ca.shards)-1)]
	sh.mu.RLock()
	st, ok := sh.m[sql]
	sh.mu.RUnlock()
	if ok {
		return st
	}
	// Analyze the copy, so that the Statement's names are substrings of
	// the key: the caller's buffer is neither kept alive nor seen to change.
	key := strings.Clone(sql)
	st = analyze(key, funcs)
	size := len(key) + st.size()
	sh.mu.Lock()
	if old, ok := sh.m[key]; ok {
		st = old
	} else {
		if len(sh.m) >= ca.maxEntries || sh.bytes+size > ca.maxBytes {
			clear(sh.m)
			sh.bytes = 0
		}
		sh.m[key] = st
		sh.bytes += size
	}
	sh.mu.Unlock()
	return st
}

func (c *Classifier) funcTable() *funcTable {
	if c.funcs == nil {
		return defaultFuncs
	}
	return c.funcs
}
