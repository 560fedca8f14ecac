package parsercheck

import (
	"strings"

	"github.com/switchyard-db/switchyard/internal/classify"
)

// The function policy, written out independently of the classifier's
// tables (TestFuncPolicy checks that the two agree).
//
// The analysis policy: what TruthFacts derives from the parse tree, which
// classify.Analyze must match whenever it says Partial is false. Where
// PostgreSQL's parse tree leaves a choice, both sides choose alike:
//
//   - Relations are the RangeVar nodes (and the name lists of DROP and
//     COMMENT ON), less those that name a CTE in scope: a FROM item or
//     TABLE, unqualified, named like a CTE of an enclosing WITH (in a
//     RECURSIVE WITH, any CTE of the list; otherwise an earlier one). DML
//     targets, COPY, INTO and DDL names are never CTEs.
//   - Reads are the FROM items (and COPY t TO, CREATE TABLE's LIKE);
//     writes the DML targets, INTO, COPY t FROM, TRUNCATE, LOCK, and the
//     names of the DDL that Analyze follows. CREATE INDEX writes its
//     table (the index's name is no RangeVar); REFERENCES, INHERITS,
//     PARTITION OF, ATTACH and DETACH PARTITION and [NO] INHERIT write the
//     other table (its triggers or its partitions change); CREATE TYPE t
//     AS (...) names a type, not a relation.
//   - A locking clause without OF writes every relation in its SELECT's
//     FROM list and in the subqueries of that list (not in other
//     subqueries, nor in CTEs, nor in set operations, which PostgreSQL
//     rejects); FOR UPDATE OF x writes the FROM item of that SELECT named
//     x (a relation; a subquery's or a join's relations), and a name no
//     FROM item has (PostgreSQL rejects it) is written as a relation.
//   - Opaque statements, which may touch relations the text does not name,
//     must be Partial: EXECUTE, FETCH, MOVE, DO, CREATE TABLE AS EXECUTE,
//     DROP, TRUNCATE or ALTER ... CASCADE, VACUUM, ANALYZE and CLUSTER
//     without a table, REINDEX of a schema, database or system, GRANT ON
//     ALL TABLES or SEQUENCES IN SCHEMA, DROP EXTENSION, DROP OWNED,
//     CREATE SCHEMA with elements, renames and moves of objects other than
//     relations, roles and databases, and every statement type the walker
//     below does not list (CREATE FUNCTION, CREATE RULE, REASSIGN OWNED,
//     ...). Statements without relations (SET, transaction control,
//     LISTEN, CREATE ROLE, CREATE TYPE, ...) are not opaque.
//   - Funcs are the FuncCall nodes (so SQL syntax the grammar turns into a
//     call, such as EXTRACT or AT TIME ZONE, is pg_catalog.extract or
//     pg_catalog.timezone on both sides), and for the user's functions the
//     last field of a ColumnRef or A_Indirection (attribute notation).
//     CREATE TRIGGER's function and the functions DDL names (DROP FUNCTION
//     f(int)) are not calls.
//   - Effects: see funcEffect below for calls, and truth.go for statements.
//     A CREATE statement with a pg_temp name anywhere creates a temporary
//     object, as the kind rule has it.
//
// The classifier deliberately reports more than the parser in one place:
// in statements it marks Partial, it may report a call for a name before
// "(" that the grammar reads otherwise (in DDL it does not follow), since
// over-reporting a call is harmless and missing one is not. On the
// corpus and the random grammar it agrees with the parser exactly
// (TestDifferential and TestRandomGrammar print the figures).

// sessionFuncs are built-in functions whose calls make a statement Session.
var sessionFuncs = []string{
	"currval", "lastval", "set_config", "setseed", "pg_export_snapshot",
	"dblink_connect", "dblink_connect_u", "dblink_disconnect",
	"pg_replication_origin_session_setup", "pg_replication_origin_session_reset",
	"pg_replication_origin_xact_setup", "pg_replication_origin_xact_reset",
	// and every pg_advisory_* and pg_try_advisory_* (see funcKind)
	"pg_advisory_lock", "pg_advisory_lock_shared", "pg_advisory_unlock",
	"pg_advisory_unlock_shared", "pg_advisory_unlock_all", "pg_advisory_xact_lock",
	"pg_advisory_xact_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
	"pg_try_advisory_xact_lock", "pg_try_advisory_xact_lock_shared",
}

// writeFuncs are built-in functions whose calls make a statement Write.
var writeFuncs = []string{
	"nextval", "setval", "pg_notify",
	"txid_current", "txid_current_if_assigned", "pg_current_xact_id", "pg_current_xact_id_if_assigned",
	"pg_current_wal_lsn", "pg_current_wal_insert_lsn", "pg_current_wal_flush_lsn",
	"pg_current_xlog_location", "pg_current_xlog_insert_location", "pg_current_xlog_flush_location",
	"pg_switch_wal", "pg_switch_xlog", "pg_create_restore_point",
	"pg_walfile_name", "pg_walfile_name_offset", "pg_xlogfile_name", "pg_xlogfile_name_offset",
	"pg_start_backup", "pg_stop_backup", "pg_backup_start", "pg_backup_stop",
	"pg_promote", "pg_wal_replay_pause", "pg_wal_replay_resume",
	"pg_xlog_replay_pause", "pg_xlog_replay_resume", "pg_log_standby_snapshot",
	"pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
	"pg_drop_replication_slot", "pg_copy_physical_replication_slot",
	"pg_copy_logical_replication_slot", "pg_replication_slot_advance",
	"pg_logical_emit_message", "pg_sync_replication_slots",
	"pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf",
	"pg_rotate_logfile", "pg_rotate_logfile_old", "pg_log_backend_memory_contexts",
	"pg_import_system_collations", "pg_truncate_visibility_map",
	"pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync",
	"pg_stat_statements_reset", "pg_restore_relation_stats", "pg_clear_relation_stats",
	"pg_restore_attribute_stats", "pg_clear_attribute_stats",
	"brin_summarize_new_values", "brin_summarize_range", "brin_desummarize_range",
	"gin_clean_pending_list",
	"loread", "lowrite",
	// prefixes (see funcKind): lo_*, pg_logical_slot_*, pg_replication_origin_*,
	// pg_stat_reset*, dblink*
	"lo_import", "lo_export", "lo_create", "lo_creat", "lo_unlink", "lo_open", "lo_close",
	"lo_put", "lo_get", "lo_from_bytea", "lo_truncate", "lo_truncate64", "lo_lseek",
	"lo_lseek64", "lo_tell", "lo_tell64",
	"pg_logical_slot_get_changes", "pg_logical_slot_get_binary_changes",
	"pg_logical_slot_peek_changes", "pg_logical_slot_peek_binary_changes",
	"pg_replication_origin_create", "pg_replication_origin_drop", "pg_replication_origin_advance",
	"pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
	"pg_stat_reset_single_function_counters", "pg_stat_reset_slru",
	"pg_stat_reset_replication_slot", "pg_stat_reset_subscription_stats",
	"dblink", "dblink_exec", "dblink_open", "dblink_fetch", "dblink_close",
	"dblink_send_query", "dblink_get_result",
}

var sessionSet, writeSet = toSet(sessionFuncs), toSet(writeFuncs)

func toSet(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[s] = true
	}
	return m
}

// builtinKind is the policy for built-in functions, by exact (already
// folded) name.
func builtinKind(name string) classify.Kind {
	switch {
	case sessionSet[name],
		strings.HasPrefix(name, "pg_advisory_"), strings.HasPrefix(name, "pg_try_advisory_"):
		return classify.Session
	case writeSet[name],
		strings.HasPrefix(name, "lo_"), strings.HasPrefix(name, "pg_logical_slot_"),
		strings.HasPrefix(name, "pg_replication_origin_"), strings.HasPrefix(name, "pg_stat_reset"),
		strings.HasPrefix(name, "dblink"):
		return classify.Write
	}
	return classify.Read
}

// lowerASCII folds ASCII letters only, as PostgreSQL does for identifiers in
// UTF-8 databases.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// UserFuncs is a user list of functions with side effects, as given to
// classify.New.
type UserFuncs struct {
	byName map[string][]string // folded name -> folded schemas ("" = any)
	List   []string
}

// NewUserFuncs parses a list like classify.New's extraWriteFuncs.
func NewUserFuncs(list []string) *UserFuncs {
	u := &UserFuncs{byName: map[string][]string{}, List: list}
	for _, f := range list {
		f = strings.TrimSpace(f)
		schema, name := "", f
		if i := strings.LastIndexByte(f, '.'); i >= 0 {
			schema, name = f[:i], f[i+1:]
		}
		u.byName[lowerASCII(name)] = append(u.byName[lowerASCII(name)], lowerASCII(schema))
	}
	return u
}

// match reports whether a call of schema.name (schema "" when unqualified)
// may be a call of a listed function.
func (u *UserFuncs) match(schema, name string) bool {
	if u == nil {
		return false
	}
	schemas, ok := u.byName[lowerASCII(truncate(name))]
	if !ok {
		return false
	}
	if schema == "" {
		return true
	}
	for _, s := range schemas {
		if s == "" || s == lowerASCII(schema) {
			return true
		}
	}
	return false
}

// truncate clips a name to NAMEDATALEN-1 bytes as PostgreSQL does
// (pg_mbcliplen: whole characters, as long as their UTF-8 lead bytes say).
func truncate(s string) string {
	n := 0
	for n < len(s) {
		l := 1
		if c := s[n]; c >= 0xF0 && c < 0xF8 {
			l = 4
		} else if c >= 0xE0 && c < 0xF0 {
			l = 3
		} else if c >= 0xC0 && c < 0xE0 {
			l = 2
		}
		if n+l > 63 {
			break
		}
		n += l
	}
	return s[:n]
}

// The session-effect policy for built-in functions, by exact (folded) name
// in any schema; set_config is decided by its third argument (truth.go).
var (
	sessionDependentFuncs = toSet([]string{
		"currval", "lastval", "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all",
		"dblink_disconnect", "dblink_open", "dblink_fetch", "dblink_close", "dblink_send_query",
		"dblink_get_result", "dblink_is_busy", "dblink_cancel_query", "dblink_error_message",
		"dblink_get_connections", "dblink_get_notify",
	})
	sessionStateFuncs = toSet([]string{
		"pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
		"setseed", "dblink_connect", "dblink_connect_u",
		"pg_replication_origin_session_setup", "pg_replication_origin_session_reset",
	})
	txScopedFuncs = toSet([]string{
		"pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
		"pg_try_advisory_xact_lock_shared", "pg_export_snapshot",
		"pg_replication_origin_xact_setup", "pg_replication_origin_xact_reset",
	})
)

// funcEffect is the effect of a call of the built-in function name.
func funcEffect(name string) classify.Effect {
	switch {
	case sessionDependentFuncs[name]:
		return classify.EffectSessionDependent
	case sessionStateFuncs[name]:
		return classify.EffectSessionState
	case txScopedFuncs[name]:
		return classify.EffectTxScoped
	}
	return 0
}
