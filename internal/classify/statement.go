package classify

import (
	"strconv"
	"strings"
)

// Statement is what the classifier learned of one SQL text (which may hold
// several statements). A Statement returned by a [Classifier] is shared by
// every caller that analyzes the same text: it must not be modified.
type Statement struct {
	// Kind is the text's kind, exactly as [Classifier.Classify] returns it.
	Kind Kind
	// Statements is the number of statements in the text: 0 for empty
	// text, or only comments and semicolons.
	Statements int

	// Reads lists the relations (tables, views, materialized views,
	// sequences, foreign tables) the text reads, and Writes those it
	// writes, locks or changes, each without duplicates, in order of first
	// appearance. A relation may be in both. See the package documentation
	// for what counts as which.
	Reads, Writes []Table
	// Partial reports that the text has shapes the analysis does not
	// follow: Reads and Writes may miss relations. It is true whenever
	// Kind is Unknown.
	Partial bool

	// Funcs lists every function the text calls, at any depth, without
	// duplicates, in order of first appearance.
	Funcs []Func
	// Locking reports a locking clause (FOR UPDATE, FOR NO KEY UPDATE,
	// FOR SHARE, FOR KEY SHARE) anywhere in the text.
	Locking bool
	// Sampled reports TABLESAMPLE without REPEATABLE anywhere in the
	// text: its rows may differ from one run to the next.
	Sampled bool

	// Effects says what the text does to the transaction and the session.
	// For several statements it is the union of theirs.
	Effects Effect
	// TxAccess, TxIsolation and TxDeferrable are the transaction modes that
	// BEGIN, START TRANSACTION and SET TRANSACTION in the text ask for.
	// Statements apply in order: BEGIN or START TRANSACTION sets all three
	// (to the defaults for modes it does not name), SET TRANSACTION sets
	// the modes it names, and nothing else changes them; so they describe
	// the last transaction the text begins, as its SET TRANSACTION
	// statements leave it. SET SESSION CHARACTERISTICS does not change them.
	TxAccess     Access
	TxIsolation  Isolation
	TxDeferrable bool
}

// Table is a relation: a table, view, materialized view, sequence, index
// or foreign table. Schema and Name are as PostgreSQL folds identifiers:
// unquoted ones lower-cased (ASCII letters only) and quoted ones exact,
// both truncated to 63 bytes. Schema is "" for an unqualified name; a
// name qualified with a database (db.schema.name) keeps the schema and
// the name.
type Table struct{ Schema, Name string }

// String returns "name" or "schema.name", each part quoted as PostgreSQL's
// quote_ident would quote it (only when needed).
func (t Table) String() string { return qualifiedString(t.Schema, t.Name) }

// Func is a function a statement calls, named as [Table] names relations:
// Schema is "" for an unqualified call. Calls PostgreSQL's grammar makes
// of SQL syntax (EXTRACT, POSITION, TRIM, AT TIME ZONE, ...) have Schema
// "pg_catalog" and the function's real name (extract, position, btrim,
// timezone, ...).
type Func struct{ Schema, Name string }

// String returns "name" or "schema.name", quoted as [Table.String] quotes.
func (f Func) String() string { return qualifiedString(f.Schema, f.Name) }

func qualifiedString(schema, name string) string {
	if schema == "" {
		return quoteIdent(name)
	}
	return quoteIdent(schema) + "." + quoteIdent(name)
}

// quoteIdent quotes s as PostgreSQL's quote_ident does: unless it is made
// of lower-case ASCII letters, digits and underscores, does not start with
// a digit, and is not a keyword other than an unreserved one.
func quoteIdent(s string) string {
	safe := s != "" && (s[0] >= 'a' && s[0] <= 'z' || s[0] == '_')
	for i := 0; safe && i < len(s); i++ {
		c := s[i]
		safe = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_'
	}
	if safe && lookupKw(s).category() == catUnreserved {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// Effect is a set of things a statement does to the transaction or the
// session, as a connection pool or a proxy must know them.
type Effect uint32

const (
	// EffectBegin: BEGIN or START TRANSACTION, in any spelling (BEGIN WORK,
	// BEGIN TRANSACTION), with or without transaction modes.
	EffectBegin Effect = 1 << iota
	// EffectCommit: COMMIT or END (also COMMIT AND CHAIN). Not COMMIT
	// PREPARED.
	EffectCommit
	// EffectRollback: ROLLBACK or ABORT (also ROLLBACK AND CHAIN). Not
	// ROLLBACK TO SAVEPOINT, not ROLLBACK PREPARED.
	EffectRollback
	// EffectChain: AND CHAIN on COMMIT, END, ROLLBACK or ABORT: a new
	// transaction begins at once, with the same modes.
	EffectChain
	// EffectSavepoint: SAVEPOINT, RELEASE [SAVEPOINT], ROLLBACK [WORK |
	// TRANSACTION] TO [SAVEPOINT].
	EffectSavepoint
	// EffectTwoPhase: PREPARE TRANSACTION, COMMIT PREPARED, ROLLBACK
	// PREPARED.
	EffectTwoPhase
	// EffectSetTransaction: SET TRANSACTION (modes or SNAPSHOT), also
	// spelled SET LOCAL TRANSACTION or SET SESSION TRANSACTION. It is also
	// EffectTxScoped.
	EffectSetTransaction
	// EffectSessionState: the statement leaves state on the server session
	// that outlives the transaction: SET or RESET without LOCAL (any
	// parameter, SET ROLE, SET SESSION AUTHORIZATION, SET SESSION
	// CHARACTERISTICS AS TRANSACTION, SET TIME ZONE, ...; RESET ALL too,
	// since it undoes what the session set), CREATE TEMP (or pg_temp.)
	// objects other than ON COMMIT DROP tables, SELECT INTO TEMP, LISTEN,
	// SQL-level PREPARE, DECLARE ... WITH HOLD, LOAD, and calls of
	// pg_advisory_lock, pg_advisory_lock_shared, pg_try_advisory_lock,
	// pg_try_advisory_lock_shared (session-level advisory locks),
	// set_config unless its third argument is the literal true, setseed,
	// dblink_connect, dblink_connect_u, pg_replication_origin_session_setup
	// and pg_replication_origin_session_reset.
	EffectSessionState
	// EffectSessionDependent: the statement depends on state only its
	// session has: EXECUTE, FETCH, MOVE, CLOSE, DEALLOCATE, UNLISTEN,
	// DISCARD other than ALL, and calls of currval, lastval, the
	// session-level pg_advisory_unlock, pg_advisory_unlock_shared and
	// pg_advisory_unlock_all, dblink_disconnect, and the dblink functions
	// that work on a named connection (dblink_open, dblink_fetch,
	// dblink_close, dblink_send_query, dblink_get_result, dblink_is_busy,
	// dblink_cancel_query, dblink_error_message, dblink_get_connections,
	// dblink_get_notify). A reference to a temporary table depends on the
	// session too, but text cannot tell a temporary table from another.
	EffectSessionDependent
	// EffectTxScoped: session-like state that ends with the transaction:
	// SET LOCAL, SET CONSTRAINTS, SET TRANSACTION, DECLARE without WITH
	// HOLD, CREATE TEMP TABLE ... ON COMMIT DROP, and calls of
	// pg_advisory_xact_lock, pg_advisory_xact_lock_shared,
	// pg_try_advisory_xact_lock, pg_try_advisory_xact_lock_shared,
	// set_config(..., ..., true), pg_export_snapshot (the snapshot lives as
	// long as the transaction), pg_replication_origin_xact_setup and
	// pg_replication_origin_xact_reset.
	EffectTxScoped
	// EffectDiscardAll: DISCARD ALL, which resets the session.
	EffectDiscardAll
	// EffectPrepare: SQL-level PREPARE name AS ..., whose statement lives
	// until DEALLOCATE. It is also EffectSessionState.
	EffectPrepare
	// EffectListen: LISTEN. It is also EffectSessionState.
	EffectListen
	// EffectCopyFrom: COPY ... FROM STDIN: the client sends data.
	EffectCopyFrom
	// EffectCopyTo: COPY ... TO STDOUT: the server sends data.
	EffectCopyTo
)

var effectNames = [...]string{
	"Begin", "Commit", "Rollback", "Chain", "Savepoint", "TwoPhase", "SetTransaction",
	"SessionState", "SessionDependent", "TxScoped", "DiscardAll", "Prepare", "Listen",
	"CopyFrom", "CopyTo",
}

// String returns the names of the effects in e, such as "Begin|TxScoped",
// or "0" for none.
func (e Effect) String() string {
	if e == 0 {
		return "0"
	}
	var b strings.Builder
	for i, n := range effectNames {
		if e&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(n)
		}
	}
	if rest := e &^ (1<<len(effectNames) - 1); rest != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		b.WriteString("0x" + strconv.FormatUint(uint64(rest), 16))
	}
	return b.String()
}

// Access is a transaction's access mode.
type Access uint8

const (
	// AccessDefault: the statement names no access mode.
	AccessDefault Access = iota
	// AccessReadOnly: READ ONLY.
	AccessReadOnly
	// AccessReadWrite: READ WRITE.
	AccessReadWrite
)

// String returns "default", "read only" or "read write".
func (a Access) String() string {
	switch a {
	case AccessDefault:
		return "default"
	case AccessReadOnly:
		return "read only"
	case AccessReadWrite:
		return "read write"
	}
	return "Access(" + strconv.Itoa(int(a)) + ")"
}

// Isolation is a transaction isolation level.
type Isolation uint8

const (
	// IsolationDefault: the statement names no isolation level.
	IsolationDefault Isolation = iota
	// ReadUncommitted: ISOLATION LEVEL READ UNCOMMITTED (which PostgreSQL
	// runs as READ COMMITTED).
	ReadUncommitted
	// ReadCommitted: ISOLATION LEVEL READ COMMITTED.
	ReadCommitted
	// RepeatableRead: ISOLATION LEVEL REPEATABLE READ.
	RepeatableRead
	// Serializable: ISOLATION LEVEL SERIALIZABLE.
	Serializable
)

// String returns "default" or the level as SQL spells it, in lower case.
func (i Isolation) String() string {
	switch i {
	case IsolationDefault:
		return "default"
	case ReadUncommitted:
		return "read uncommitted"
	case ReadCommitted:
		return "read committed"
	case RepeatableRead:
		return "repeatable read"
	case Serializable:
		return "serializable"
	}
	return "Isolation(" + strconv.Itoa(int(i)) + ")"
}
