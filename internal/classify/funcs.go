package classify

import "strings"

// builtinFuncs maps built-in functions (by name, in any schema) that must not
// run on a replica to the kind a call makes its statement.
var builtinFuncs = map[string]Kind{
	// Sequences. currval and lastval only work on the connection that called
	// nextval: the caller must stay on it.
	"nextval": Write, "setval": Write, "currval": Session, "lastval": Session,

	// Session state.
	"set_config":         Session,
	"setseed":            Session, // seeds random() for the session
	"pg_export_snapshot": Session, // the snapshot lives as long as the transaction
	"dblink_connect":     Session, "dblink_connect_u": Session, "dblink_disconnect": Session,
	"pg_replication_origin_session_setup": Session, "pg_replication_origin_session_reset": Session,
	"pg_replication_origin_xact_setup": Session, "pg_replication_origin_xact_reset": Session,

	// Notifications.
	"pg_notify": Write,

	// Transaction ids: these assign one.
	"txid_current": Write, "txid_current_if_assigned": Write,
	"pg_current_xact_id": Write, "pg_current_xact_id_if_assigned": Write,

	// WAL, backup and recovery control: fail on a standby or act on the primary.
	"pg_current_wal_lsn": Write, "pg_current_wal_insert_lsn": Write, "pg_current_wal_flush_lsn": Write,
	"pg_current_xlog_location": Write, "pg_current_xlog_insert_location": Write,
	"pg_current_xlog_flush_location": Write,
	"pg_switch_wal":                  Write, "pg_switch_xlog": Write, "pg_create_restore_point": Write,
	"pg_walfile_name": Write, "pg_walfile_name_offset": Write,
	"pg_xlogfile_name": Write, "pg_xlogfile_name_offset": Write,
	"pg_start_backup": Write, "pg_stop_backup": Write, "pg_backup_start": Write, "pg_backup_stop": Write,
	"pg_promote": Write, "pg_wal_replay_pause": Write, "pg_wal_replay_resume": Write,
	"pg_xlog_replay_pause": Write, "pg_xlog_replay_resume": Write, "pg_log_standby_snapshot": Write,

	// Replication slots.
	"pg_create_physical_replication_slot": Write, "pg_create_logical_replication_slot": Write,
	"pg_drop_replication_slot": Write, "pg_copy_physical_replication_slot": Write,
	"pg_copy_logical_replication_slot": Write, "pg_replication_slot_advance": Write,
	"pg_logical_emit_message": Write, "pg_sync_replication_slots": Write,

	// Server administration.
	"pg_terminate_backend": Write, "pg_cancel_backend": Write, "pg_reload_conf": Write,
	"pg_rotate_logfile": Write, "pg_rotate_logfile_old": Write,
	"pg_log_backend_memory_contexts": Write, "pg_import_system_collations": Write,
	"pg_truncate_visibility_map": Write,
	"pg_file_write":              Write, "pg_file_rename": Write, "pg_file_unlink": Write, "pg_file_sync": Write,
	"pg_stat_statements_reset":  Write,
	"pg_restore_relation_stats": Write, "pg_clear_relation_stats": Write,
	"pg_restore_attribute_stats": Write, "pg_clear_attribute_stats": Write,

	// Index maintenance.
	"brin_summarize_new_values": Write, "brin_summarize_range": Write,
	"brin_desummarize_range": Write, "gin_clean_pending_list": Write,

	// Large objects (lo_* is matched by prefix).
	"loread": Write, "lowrite": Write,
}

// builtinPrefixes are name prefixes of built-in functions that must not run
// on a replica. builtinFuncs is consulted first.
var builtinPrefixes = [...]struct {
	prefix string
	kind   Kind
}{
	{"pg_advisory_", Session},     // advisory locks are held by the session (or transaction)
	{"pg_try_advisory_", Session}, //
	{"lo_", Write},                // large objects
	{"pg_logical_slot_", Write},   // logical decoding consumes changes
	{"pg_replication_origin_", Write},
	{"pg_stat_reset", Write},
	{"dblink", Write}, // runs arbitrary SQL elsewhere
}

// funcTable is the set of function names a Classifier treats as side effects.
type funcTable struct {
	// user maps a lower-cased bare function name to the lower-cased schemas
	// it was listed with; "" means any schema.
	user map[string][]string
}

// defaultFuncs is the table of the package-level Classify: built-ins only.
var defaultFuncs = &funcTable{}

// newFuncTable builds a funcTable from user-supplied function names.
func newFuncTable(extra []string) *funcTable {
	ft := &funcTable{}
	for _, f := range extra {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		schema, name := "", f
		if i := strings.LastIndexByte(f, '.'); i >= 0 {
			schema, name = f[:i], f[i+1:]
			if j := strings.LastIndexByte(schema, '.'); j >= 0 { // db.schema.func
				schema = schema[j+1:]
			}
		}
		schema, name = normName(schema), normName(name)
		if name == "" {
			continue
		}
		if ft.user == nil {
			ft.user = make(map[string][]string)
		}
		ft.user[name] = append(ft.user[name], schema)
	}
	return ft
}

// normName trims quotes and blanks and folds ASCII case.
func normName(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		s = strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	var buf [maxIdentLen]byte
	return string(lowerASCII(&buf, s, true))
}

// builtinKind returns the kind of a call of the built-in function name
// (already folded as PostgreSQL folds it), or Read if it is harmless.
func builtinKind(name []byte) Kind {
	if k, ok := builtinFuncs[string(name)]; ok {
		return k
	}
	for _, p := range builtinPrefixes {
		if len(name) >= len(p.prefix) && string(name[:len(p.prefix)]) == p.prefix {
			return p.kind
		}
	}
	return Read
}

// userMatch reports whether a call (or attribute-notation use) of name,
// qualified by schema if hasSchema, matches the user's list. Both are
// compared ASCII case-insensitively. An entry qualified with a schema also
// matches an unqualified call: the search path may resolve to it. With
// schema.kind == tEOF and hasSchema, the schema is pg_catalog.
func (ft *funcTable) userMatch(src string, name, schema token, hasSchema bool) bool {
	if len(ft.user) == 0 {
		return false
	}
	var nb, sb [maxIdentLen]byte
	schemas, ok := ft.user[string(lowerASCII(&nb, src[name.s:name.e], true))]
	if !ok {
		return false
	}
	if !hasSchema {
		return true
	}
	if schema.kind == tUIdent && schema.flags&fUncertain != 0 {
		return true
	}
	sn := []byte("pg_catalog")
	if schema.kind != tEOF {
		sn = lowerASCII(&sb, src[schema.s:schema.e], true)
	}
	for _, s := range schemas {
		if s == "" || s == string(sn) {
			return true
		}
	}
	return false
}

// callKind returns the kind of a call of the function named by the token
// name, qualified by the token schema if hasSchema.
func (ft *funcTable) callKind(src string, name, schema token, hasSchema bool) Kind {
	if name.kind == tUIdent && name.flags&fUncertain != 0 {
		// U&"\006Eextval": the lexer does not decode escapes.
		return Write
	}
	var buf [maxIdentLen]byte
	k := builtinKind(lowerASCII(&buf, src[name.s:name.e], name.kind == tIdent))
	if k != Session && ft.userMatch(src, name, schema, hasSchema) {
		k = Write
	}
	return k
}
