package switchyardtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrNeedsRestart reports that SetSetting wrote a setting that the server
// applies only when it starts (pg_settings.context "postmaster", such as
// max_connections, max_prepared_transactions or hot_standby): restart the
// node (Node.Restart) for it to take effect.
var ErrNeedsRestart = errors.New("switchyardtest: the setting takes effect when the server restarts")

// SetSetting sets a server setting on the running node, as a DBA would:
// ALTER SYSTEM SET name = 'value' (so it lasts across restarts), then a
// configuration reload. It returns once new sessions see the value. For a
// setting that PostgreSQL applies only at server start it returns an error
// wrapping ErrNeedsRestart once the value is written; the caller restarts
// the node when it chooses:
//
//	err := n.SetSetting(ctx, "max_connections", "50")
//	if errors.Is(err, switchyardtest.ErrNeedsRestart) {
//		err = n.Restart(ctx)
//	}
//
// value is the setting's value as postgresql.conf would hold it, unquoted
// ("100ms", "repeatable read", "off"); the values of list settings
// (search_path, shared_preload_libraries, ...) are split at commas.
// Sessions open already keep the old value of session defaults such as
// statement_timeout until they reconnect; the lab's own sessions ignore
// the settings that could stop it working (see Options.NodeSettings).
//
// A standby whose hot_standby is off accepts no connections: for it,
// SetSetting writes postgresql.auto.conf itself and signals a reload,
// without a check of the value, and asks the primary whether the setting
// needs a restart.
//
// PostgreSQL requires a hot standby's max_connections,
// max_prepared_transactions, max_worker_processes, max_wal_senders and
// max_locks_per_transaction to be at least the primary's: raise them on the
// replicas (and restart them) before raising them on the primary.
func (n *Node) SetSetting(ctx context.Context, name, value string) error {
	if name == "" || strings.ContainsAny(name, "\x00\n\r=") {
		return fmt.Errorf("switchyardtest: bad setting name %q", name)
	}
	if strings.ContainsAny(value, "\x00\n\r") {
		return fmt.Errorf("switchyardtest: setting %s: the value holds a line break or NUL", name)
	}
	if n.acceptsNoQueries() {
		return n.setSettingOffline(ctx, name, value)
	}
	conn, err := n.adminConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var loaded time.Time
	if err := conn.QueryRow(ctx, "SELECT pg_conf_load_time()").Scan(&loaded); err != nil {
		return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
	}
	if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET %s = %s", pgx.Identifier{name}.Sanitize(), sqlValue(name, value))); err != nil {
		return fmt.Errorf("switchyardtest: %s: set %s: %w", n.name, name, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
	}
	// pg_reload_conf only signals the postmaster; new sessions see the
	// value once it has read the files again, which moves
	// pg_conf_load_time.
	for {
		var now time.Time
		var pending bool
		err := n.queryRow(ctx, `SELECT pg_conf_load_time(),
			coalesce((SELECT pending_restart FROM pg_settings WHERE name = lower($1)), false)`, []any{name}, &now, &pending)
		if err == nil && now.After(loaded) {
			n.noteSetting(name, value)
			if pending {
				return fmt.Errorf("switchyardtest: %s: %s = %q is written but takes effect only at restart: %w", n.name, name, value, ErrNeedsRestart)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switchyardtest: %s: %s not applied: %w (last error: %v)", n.name, name, ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// setSettingOffline is SetSetting for a server that accepts no
// connections: it edits postgresql.auto.conf as ALTER SYSTEM would, then
// signals a reload.
func (n *Node) setSettingOffline(ctx context.Context, name, value string) error {
	var context string
	err := n.cluster.Primary().queryRow(ctx, "SELECT coalesce((SELECT context FROM pg_settings WHERE name = lower($1)), '')", []any{name}, &context)
	if err != nil {
		return fmt.Errorf("switchyardtest: %s accepts no connections (hot_standby is off) and the primary cannot say what %s needs: %w", n.name, name, err)
	}
	if context == "" && !strings.Contains(name, ".") {
		return fmt.Errorf("switchyardtest: %s: unrecognized configuration parameter %q", n.name, name)
	}
	path := filepath.Join(n.dataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	var b bytes.Buffer
	s := bufio.NewScanner(bytes.NewReader(old))
	for s.Scan() {
		line := s.Text()
		if k, _, ok := strings.Cut(line, "="); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			continue
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprintf(&b, "%s = %s\n", name, quote(value))
	tmp := path + ".switchyardtest"
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	if err := n.cluster.acct.own(tmp); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if !isClosed(done) {
		cmd.Process.Signal(syscall.SIGHUP)
	}
	n.noteSetting(name, value)
	if context == "postmaster" {
		return fmt.Errorf("switchyardtest: %s: %s = %q is written but takes effect only at restart: %w", n.name, name, value, ErrNeedsRestart)
	}
	return nil
}

// noteSetting remembers what the lab needs to know of a setting written on
// the node: whether hot_standby is off, for its next start.
func (n *Node) noteSetting(name, value string) {
	if strings.EqualFold(name, "hot_standby") {
		if on, ok := parseBool(value); ok {
			n.mu.Lock()
			n.hotStandbyOff = !on
			n.mu.Unlock()
		}
	}
}

// listSettings take a list of values (GUC_LIST_INPUT): ALTER SYSTEM takes
// them as one literal per element.
var listSettings = map[string]bool{
	"search_path": true, "temp_tablespaces": true, "datestyle": true,
	"shared_preload_libraries": true, "local_preload_libraries": true, "session_preload_libraries": true,
	"listen_addresses": true, "unix_socket_directories": true, "wal_consistency_checking": true,
}

// sqlValue is value as ALTER SYSTEM's argument.
func sqlValue(name, value string) string {
	lit := func(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
	if !listSettings[strings.ToLower(name)] || strings.TrimSpace(value) == "" {
		return lit(value)
	}
	var parts []string
	for _, p := range strings.Split(value, ",") {
		parts = append(parts, lit(strings.TrimSpace(p)))
	}
	return strings.Join(parts, ", ")
}

// parseBool reads a boolean setting as PostgreSQL does (on, off, true,
// false, yes, no, 1, 0 and unambiguous prefixes), quoted or not.
func parseBool(v string) (value, ok bool) {
	v = strings.ToLower(strings.Trim(strings.TrimSpace(v), "'"))
	switch {
	case v == "":
		return false, false
	case v == "1", v == "on", strings.HasPrefix("true", v), strings.HasPrefix("yes", v):
		return true, true
	case v == "0", v == "of" || v == "off", strings.HasPrefix("false", v), strings.HasPrefix("no", v):
		return false, true
	}
	return false, false
}

// labOwned are the settings the lab manages on replicas; Options.Settings
// and Options.NodeSettings may not set them.
var labOwned = map[string]string{
	"primary_conninfo":         "the lab points each replica at the primary",
	"primary_slot_name":        "the lab gives each replica a slot",
	"recovery_min_apply_delay": "use Options.ApplyDelay or Node.SetApplyDelay",
}

// standbyMinimums are the settings a hot standby must have at least as
// high as its primary (PostgreSQL stops replay otherwise), with
// PostgreSQL's defaults where the lab sets none.
var standbyMinimums = map[string]int{
	"max_connections":           0, // the lab sets it
	"max_prepared_transactions": 0,
	"max_worker_processes":      8,
	"max_wal_senders":           0, // the lab sets it
	"max_locks_per_transaction": 64,
}

// nodeConfs works out every node's postgresql.conf settings: the lab's
// defaults, then opts.Settings, then opts.NodeSettings for the node. A
// replica takes the primary's value of each of standbyMinimums that is
// higher than its own unless it sets that setting itself, which must then
// be at least the primary's.
func nodeConfs(opts Options, names []string) (map[string]map[string]string, error) {
	known := map[string]bool{}
	for _, name := range names {
		known[name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(opts.NodeSettings)) {
		if !known[name] {
			return nil, fmt.Errorf("switchyardtest: NodeSettings names node %q, but the cluster's nodes are %s", name, strings.Join(names, ", "))
		}
	}
	check := func(where string, settings map[string]string) error {
		for k := range settings {
			if why, ok := labOwned[strings.ToLower(k)]; ok {
				return fmt.Errorf("switchyardtest: %s sets %s, which the lab manages (%s)", where, k, why)
			}
			if k == "" || strings.ContainsAny(k, "\x00\n\r= ") {
				return fmt.Errorf("switchyardtest: %s: bad setting name %q", where, k)
			}
		}
		return nil
	}
	if err := check("Options.Settings", opts.Settings); err != nil {
		return nil, err
	}
	for name, s := range opts.NodeSettings {
		if err := check(fmt.Sprintf("Options.NodeSettings[%q]", name), s); err != nil {
			return nil, err
		}
	}
	confs := map[string]map[string]string{}
	for _, name := range names {
		conf := labDefaults()
		for k, v := range opts.Settings {
			conf[strings.ToLower(k)] = v
		}
		for k, v := range opts.NodeSettings[name] {
			conf[strings.ToLower(k)] = v
		}
		confs[name] = conf
	}
	primary := confs[names[0]]
	for _, name := range names[1:] {
		conf := confs[name]
		if on, ok := parseBool(conf["hot_standby"]); ok && !on {
			continue // the minimums bind a hot standby only
		}
		for _, k := range slices.Sorted(maps.Keys(standbyMinimums)) {
			p, pok := intSetting(primary, k)
			r, rok := intSetting(conf, k)
			if !pok || !rok || r >= p {
				continue
			}
			if _, own := opts.NodeSettings[name][k]; own {
				return nil, fmt.Errorf("switchyardtest: %s: %s = %d is lower than the primary's %d; "+
					"PostgreSQL stops replay on a hot standby whose %s is lower than its primary's (set it on the primary too, or turn hot_standby off)",
					name, k, r, p, k)
			}
			conf[k] = strconv.Itoa(p)
		}
	}
	return confs, nil
}

// intSetting reads an integer setting from conf, or its default.
func intSetting(conf map[string]string, k string) (int, bool) {
	v, ok := conf[k]
	if !ok {
		return standbyMinimums[k], true
	}
	i, err := strconv.Atoi(strings.Trim(strings.TrimSpace(v), "'"))
	return i, err == nil
}

// labDefaults are the settings of every lab node before the options.
func labDefaults() map[string]string {
	return map[string]string{
		"listen_addresses":             quote("127.0.0.1"),
		"unix_socket_directories":      quote(""),
		"fsync":                        "off",
		"full_page_writes":             "off",
		"shared_buffers":               quote("32MB"),
		"max_connections":              "200",
		"max_wal_senders":              "10",
		"max_replication_slots":        "10",
		"wal_keep_size":                quote("256MB"),
		"hot_standby":                  "on",
		"hot_standby_feedback":         "on",
		"wal_retrieve_retry_interval":  quote("100ms"),
		"wal_receiver_status_interval": quote("1s"),
		"log_min_messages":             "warning",
		"log_line_prefix":              quote("%m [%p] "),
		"shared_preload_libraries":     quote(""),
		// Dynamic shared memory in the data directory, so that a server
		// killed without a clean shutdown leaves nothing in /dev/shm.
		"dynamic_shared_memory_type": "mmap",
	}
}
