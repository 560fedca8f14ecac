package switchyardtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// show reads a setting on a new session of the node's own defaults.
func show(t *testing.T, ctx context.Context, n *switchyardtest.Node, name string) string {
	t.Helper()
	conn := connectVia(t, ctx, n.DSN())
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
		t.Fatalf("%s: SHOW %s: %v", n.Name(), name, err)
	}
	return v
}

func sqlStateOf(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func TestNodeSettings(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{
		Replicas: 2,
		Settings: map[string]string{"lock_timeout": "5s"},
		NodeSettings: map[string]map[string]string{
			"primary": {
				"default_transaction_read_only": "on",
				"statement_timeout":             "2s",
				"max_prepared_transactions":     "5",
			},
			"replica1": {"default_transaction_isolation": "repeatable read", "lock_timeout": "'7s'"},
			"replica2": {"default_transaction_isolation": "serializable"},
		},
	})
	p, r1, r2 := c.Primary(), c.Replicas()[0], c.Replicas()[1]
	for _, check := range []struct {
		n          *switchyardtest.Node
		name, want string
	}{
		{p, "default_transaction_read_only", "on"},
		{p, "statement_timeout", "2s"},
		{p, "lock_timeout", "5s"},
		{r1, "default_transaction_isolation", "repeatable read"},
		{r1, "lock_timeout", "7s"},
		{r1, "default_transaction_read_only", "off"},
		// The replicas take the primary's higher max_prepared_transactions,
		// which PostgreSQL requires of a hot standby.
		{r1, "max_prepared_transactions", "5"},
	} {
		if got := show(t, ctx, check.n, check.name); got != check.want {
			t.Errorf("%s: %s = %q, want %q", check.n.Name(), check.name, got, check.want)
		}
	}

	// The read-only primary refuses writes to its ordinary sessions...
	if err := p.Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY)"); sqlStateOf(err) != "25006" {
		t.Fatalf("write on a read-only primary: %v, want SQLSTATE 25006", err)
	}
	conn := connectVia(t, ctx, p.DSN())
	for _, sql := range []string{
		"SET default_transaction_read_only = off",
		"CREATE TABLE t (id int PRIMARY KEY)",
		"BEGIN", "INSERT INTO t VALUES (1)", "PREPARE TRANSACTION 'one'",
		"COMMIT PREPARED 'one'",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	// ... while the lab's own sessions work on every node, even the
	// replica where every snapshot fails.
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	if !hasRow(t, ctx, r1, 1) {
		t.Error("replica1 lacks the prepared transaction's row")
	}
	var one int
	err := connectVia(t, ctx, r2.DSN()).QueryRow(ctx, "SELECT 1").Scan(&one)
	if sqlStateOf(err) != "0A000" || !strings.Contains(err.Error(), "serializable") {
		t.Errorf("query on a standby whose default isolation is serializable: %v, want PostgreSQL's 0A000", err)
	}
}

func TestNodeSettingsErrors(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	for _, tc := range []struct {
		name string
		opts switchyardtest.Options
		want string
	}{
		{"unknown node", switchyardtest.Options{Replicas: 2, NodeSettings: map[string]map[string]string{"replica3": {"work_mem": "1MB"}}},
			`NodeSettings names node "replica3", but the cluster's nodes are primary, replica1, replica2`},
		{"not a node name", switchyardtest.Options{NodeSettings: map[string]map[string]string{"standby": {}}}, `"standby"`},
		{"lab's setting", switchyardtest.Options{Replicas: 1, NodeSettings: map[string]map[string]string{"replica1": {"primary_conninfo": "x"}}}, "the lab manages"},
		{"lab's setting in Settings", switchyardtest.Options{Settings: map[string]string{"recovery_min_apply_delay": "1s"}}, "ApplyDelay"},
		{"replica below the primary", switchyardtest.Options{Replicas: 1, NodeSettings: map[string]map[string]string{"replica1": {"max_connections": "100"}}},
			"max_connections = 100 is lower than the primary's 200"},
		{"bad encoding name", switchyardtest.Options{Encoding: "-x"}, "encoding"},
	} {
		c, err := switchyardtest.Start(ctx, tc.opts)
		if err == nil {
			c.Close()
			t.Errorf("%s: no error", tc.name)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want it to say %q", tc.name, err, tc.want)
		}
	}
}

func TestNodeSettingsLowerEverywhere(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	// max_connections=100 on the primary alone, and on every node.
	cs := switchyardtest.NewClusters(t,
		switchyardtest.Options{Replicas: 1, NodeSettings: map[string]map[string]string{"primary": {"max_connections": "100"}}},
		switchyardtest.Options{Replicas: 1, Settings: map[string]string{"max_connections": "100"}})
	for i, want := range []string{"200", "100"} {
		c := cs[i]
		if got := show(t, ctx, c.Primary(), "max_connections"); got != "100" {
			t.Errorf("lab %d: primary max_connections = %s", i, got)
		}
		if got := show(t, ctx, c.Replicas()[0], "max_connections"); got != want {
			t.Errorf("lab %d: replica max_connections = %s, want %s", i, got, want)
		}
		withTable(t, ctx, c)
	}
}

func TestSetSetting(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	p, r := c.Primary(), c.Replicas()[0]
	withTable(t, ctx, c)

	// statement_timeout on the replica: its sessions' statements are cut
	// short, the lab's are not.
	if err := r.SetSetting(ctx, "statement_timeout", "100ms"); err != nil {
		t.Fatal(err)
	}
	if err := r.Exec(ctx, "SELECT pg_sleep(2)"); sqlStateOf(err) != "57014" {
		t.Errorf("long query under statement_timeout: %v, want SQLSTATE 57014", err)
	}
	if err := r.WaitReplay(ctx, insert(t, ctx, c, 1)); err != nil {
		t.Fatal(err)
	}
	if err := r.SetSetting(ctx, "statement_timeout", "0"); err != nil {
		t.Fatal(err)
	}

	// default_transaction_read_only on the primary.
	if err := p.SetSetting(ctx, "default_transaction_read_only", "on"); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, "INSERT INTO t VALUES (2)"); sqlStateOf(err) != "25006" {
		t.Errorf("write with default_transaction_read_only on: %v, want SQLSTATE 25006", err)
	}
	if err := p.SetSetting(ctx, "default_transaction_read_only", "off"); err != nil {
		t.Fatal(err)
	}

	// idle_in_transaction_session_timeout ends a session left in a
	// transaction.
	if err := p.SetSetting(ctx, "idle_in_transaction_session_timeout", "200ms"); err != nil {
		t.Fatal(err)
	}
	idle := connectVia(t, ctx, p.DSN())
	var pid int
	if err := idle.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := idle.Exec(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	admin := connectVia(t, ctx, p.DSN())
	waitFor(t, "the idle transaction's session to end", func() bool {
		var alive bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", pid).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		return !alive
	})
	if _, err := idle.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("a session past idle_in_transaction_session_timeout still answers")
	}

	// A setting read at server start says so, and applies after Restart.
	err := p.SetSetting(ctx, "max_connections", "150")
	if !errors.Is(err, switchyardtest.ErrNeedsRestart) {
		t.Fatalf("SetSetting(max_connections): %v, want ErrNeedsRestart", err)
	}
	if got := show(t, ctx, p, "max_connections"); got != "200" {
		t.Errorf("max_connections = %s before the restart", got)
	}
	if err := p.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if got := show(t, ctx, p, "max_connections"); got != "150" {
		t.Errorf("max_connections = %s after the restart, want 150", got)
	}

	if err := p.SetSetting(ctx, "no_such_setting", "1"); err == nil || !strings.Contains(err.Error(), "no_such_setting") {
		t.Errorf("SetSetting of an unknown setting: %v", err)
	}
	// A list setting takes its elements apart.
	if err := p.SetSetting(ctx, "search_path", "public, pg_catalog"); err != nil {
		t.Fatal(err)
	}
	if got := show(t, ctx, p, "search_path"); got != "public, pg_catalog" {
		t.Errorf("search_path = %q", got)
	}
}

// TestHotStandbyFeedbackOff checks what the settings are for: without
// feedback, a VACUUM on the primary conflicts with a replica's snapshot,
// and max_standby_streaming_delay decides how soon replay cancels it.
func TestHotStandbyFeedbackOff(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1, NodeSettings: map[string]map[string]string{
		"replica1": {"hot_standby_feedback": "off", "max_standby_streaming_delay": "100ms"},
	}})
	r := c.Replicas()[0]
	withTable(t, ctx, c)
	for i := 1; i <= 10; i++ {
		insert(t, ctx, c, i)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	reader := connectVia(t, ctx, r.DSN())
	tx, err := reader.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 10 {
		t.Fatalf("count %d, %v", n, err)
	}
	if err := c.Primary().Exec(ctx, "DELETE FROM t"); err != nil {
		t.Fatal(err)
	}
	if err := c.Primary().Exec(ctx, "VACUUM t"); err != nil {
		t.Fatal(err)
	}
	// Replay goes on (within 100ms, not the default 30s)...
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	// ... having cancelled the snapshot that was in its way.
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err == nil {
		t.Errorf("the replica's old snapshot survived a conflicting VACUUM (count %d)", n)
	} else {
		t.Logf("conflicting snapshot: %v", err)
	}
}

func TestHotStandbyOff(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2, NodeSettings: map[string]map[string]string{
		"replica1": {"hot_standby": "off"},
	}})
	off, on := c.Replicas()[0], c.Replicas()[1]
	if _, err := pgx.Connect(ctx, off.DSN()); sqlStateOf(err) != "57P03" {
		t.Fatalf("connect to a standby with hot_standby off: %v, want SQLSTATE 57P03", err)
	}
	withTable(t, ctx, c) // WaitReplicas watches it through the primary
	target := insert(t, ctx, c, 1)
	if err := off.WaitReplay(ctx, target); err != nil {
		t.Fatal(err)
	}
	if l, err := off.ReplayLSN(ctx); err != nil || l < target {
		t.Fatalf("ReplayLSN = %s, %v; want at least %s", l, err, target)
	}
	if !hasRow(t, ctx, on, 1) {
		t.Fatal("the other replica lacks the row")
	}
	// It survives a restart, and turns back into a hot standby.
	if err := off.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := off.WaitReplay(ctx, insert(t, ctx, c, 2)); err != nil {
		t.Fatal(err)
	}
	if err := off.SetSetting(ctx, "hot_standby", "on"); !errors.Is(err, switchyardtest.ErrNeedsRestart) {
		t.Fatalf("SetSetting(hot_standby) on a standby that takes no connections: %v, want ErrNeedsRestart", err)
	}
	if err := off.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := off.WaitReplay(ctx, insert(t, ctx, c, 3)); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if !hasRow(t, ctx, off, i) {
			t.Errorf("row %d missing once hot_standby is back on", i)
		}
	}
}

func TestHotStandbyOffPromotes(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2, NodeSettings: map[string]map[string]string{
		"replica1": {"hot_standby": "off"},
	}})
	withTable(t, ctx, c)
	insert(t, ctx, c, 1)
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Primary().Stop(ctx); err != nil {
		t.Fatal(err)
	}
	next := c.Replicas()[0]
	if err := c.Promote(ctx, next); err != nil {
		t.Fatal(err)
	}
	if rec, err := next.InRecovery(ctx); err != nil || rec {
		t.Fatalf("promoted node: in recovery %v, %v", rec, err)
	}
	target := insert(t, ctx, c, 2)
	if !hasRow(t, ctx, next, 1) {
		t.Error("the promoted node lacks the old primary's row")
	}
	follower := c.Replicas()[1]
	if err := follower.WaitReplay(ctx, target); err != nil {
		t.Fatal(err)
	}
}
