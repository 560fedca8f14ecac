// Package classify decides, from the SQL text alone, whether a PostgreSQL
// statement may run on a read replica.
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
// Session. INSERT, UPDATE, DELETE, MERGE, COPY, CREATE, ALTER, DROP,
// TRUNCATE, GRANT, REVOKE, VACUUM, ANALYZE, CALL, DO, LOCK, REFRESH,
// CLUSTER, REINDEX, COMMENT, SECURITY LABEL, IMPORT FOREIGN SCHEMA, NOTIFY,
// CHECKPOINT and REASSIGN are Write. A string of several statements is
// Session if any statement is, else Write if any is, else Read if all are,
// else Unknown. Unknown is also the kind of empty text (or only comments
// and semicolons), of text that does not lex (an unterminated quote or
// comment, a NUL byte), of unbalanced parentheses, of statements that start
// with an unknown word, and of shapes the classifier does not recognize.
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
// and is not Read if that reading finds a write.
//
// # Limits
//
// The classifier sees only the text. A view, rule, trigger, default,
// operator or cast that calls a function with side effects is invisible to
// it: list such functions, or send such statements to the primary yourself.
// The function lists assume PostgreSQL's built-in functions have not been
// shadowed in schemas searched before pg_catalog.
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
