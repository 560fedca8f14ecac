package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// psql runs psql on script (its standard input) against dsn and returns
// its output; a failure (ON_ERROR_STOP) is returned with it.
func (cl *clientLab) psql(t *testing.T, bin, dsn, script string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn}, args...)...)
	cmd.Env = cl.env
	cmd.Stdin = strings.NewReader(script)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	if strings.Contains(out.String()+errOut.String(), rightPassword) {
		t.Errorf("psql shows the password")
	}
	return out.String(), err
}

// TestPsql drives the proxy with psql (libpq, the simple protocol).
func TestPsql(t *testing.T) {
	psql := pgTool(t, "psql")
	cl := newClientLab(t)
	dsn := cl.p.dsn()
	run := func(t *testing.T, script string, args ...string) string {
		t.Helper()
		out, err := cl.psql(t, psql, dsn, script, args...)
		if err != nil {
			t.Fatalf("psql: %v\n%s", err, out)
		}
		return out
	}
	// staleLoop counts the stale reads of rounds of a write, then a read;
	// reconnect puts each on a new connection (psql's \connect), as a web
	// application that connects for every request.
	staleLoop := func(t *testing.T, id int, reconnect bool) {
		const rounds = 1000
		var b strings.Builder
		for range rounds {
			if reconnect {
				b.WriteString("\\connect\n")
			}
			fmt.Fprintf(&b, "UPDATE counters SET v = v + 1 WHERE id = %d RETURNING v AS wrote \\gset\n", id)
			if reconnect {
				b.WriteString("\\connect\n")
			}
			fmt.Fprintf(&b, "SELECT CASE WHEN v < :wrote THEN 'stale' ELSE 'fresh' END, pg_is_in_recovery() FROM counters WHERE id = %d;\n", id)
		}
		out := run(t, b.String())
		stale, fresh, replica := strings.Count(out, "stale|"), strings.Count(out, "fresh|"), strings.Count(out, "|t")
		what := "psql, one connection"
		if reconnect {
			what = "psql, a new connection for every statement"
		}
		checkStale(t, what, map[string]any{"rounds": float64(stale + fresh), "stale": float64(stale), "replica": float64(replica)})
		if stale+fresh != rounds {
			t.Errorf("%d reads, want %d:\n%s", stale+fresh, rounds, out)
		}
	}
	t.Run("stale reads, one connection", func(t *testing.T) { staleLoop(t, 0, false) })
	t.Run("stale reads, a connection per statement", func(t *testing.T) { staleLoop(t, 1, true) })

	t.Run("transactions", func(t *testing.T) {
		out := run(t, `BEGIN;
SELECT pg_backend_pid(), pg_is_in_recovery();
UPDATE counters SET v = v + 1 WHERE id = 4 RETURNING pg_backend_pid(), pg_is_in_recovery();
SELECT pg_backend_pid(), pg_is_in_recovery() FROM counters WHERE id = 4;
COMMIT;
`)
		lines := strings.Fields(out)
		if len(lines) != 3 || lines[0] != lines[1] || lines[1] != lines[2] || !strings.HasSuffix(lines[0], "|f") {
			t.Errorf("a transaction's statements ran on %q, want one primary backend", lines)
		}
	})

	t.Run("COPY", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "rows.tsv")
		var data strings.Builder
		for i := range 1000 {
			fmt.Fprintf(&data, "%d\tname %d\n", i, i)
		}
		if err := os.WriteFile(file, []byte(data.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		out := run(t, "CREATE TABLE copied_psql (id int, name text);\n"+
			"\\copy copied_psql FROM '"+file+"'\n"+
			"COPY (SELECT id, name FROM copied_psql ORDER BY id) TO STDOUT;\n")
		if out != data.String() {
			t.Errorf("COPY TO STDOUT gave %d bytes, want %d", len(out), data.Len())
		}
		if _, err := cl.psql(t, psql, dsn, "COPY copied_psql FROM STDIN;\nnot a number\tx\n\\.\n"); err == nil || !strings.Contains(err.Error(), "invalid input syntax for type integer") {
			t.Errorf("bad COPY data: %v", err)
		}
	})

	t.Run("LISTEN and NOTIFY", func(t *testing.T) {
		// psql shows a notification after its next command; \! runs the
		// notifier (another psql, another client connection) meanwhile.
		out := run(t, "LISTEN psql_news;\n"+
			"\\! "+psql+" -X -q -d '"+dsn+"' -c \"NOTIFY psql_news, 'hello'\"\n"+
			"SELECT 1;\n")
		if !strings.Contains(out, `Asynchronous notification "psql_news" with payload "hello" received`) {
			t.Errorf("no notification:\n%s", out)
		}
	})

	t.Run("cancel", func(t *testing.T) {
		// Ctrl-C: psql sends a CancelRequest with the key the proxy gave.
		const sql = "SELECT pg_sleep(30) /* psql */"
		cmd := exec.Command(psql, "-X", "-d", dsn, "-c", sql)
		cmd.Env = cl.env
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitRunning(t, cl, sql)
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || !strings.Contains(errOut.String(), "canceling statement due to user request") {
			t.Errorf("psql after Ctrl-C: %v: %s", err, errOut.String())
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("the canceled query took %v", d)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := cl.psql(t, psql, dsn, "\\set VERBOSITY verbose\nINSERT INTO counters VALUES (0, 0);\n")
		if err == nil || !strings.Contains(err.Error(), `ERROR:  23505: duplicate key value violates unique constraint "counters_pkey"`) {
			t.Errorf("a duplicate key: %v", err)
		}
	})

	t.Run("TLS and passwords", func(t *testing.T) {
		out := run(t, "SELECT current_user;\n\\conninfo\n", "-d", cl.passwordDSN(rightPassword))
		if !strings.HasPrefix(out, cl.role+"\n") || !strings.Contains(out, "SSL connection") {
			t.Errorf("over TLS with a password: %s", out)
		}
		_, err := cl.psql(t, psql, cl.passwordDSN("wrong-pw"), "SELECT 1;\n")
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(err.Error(), `password authentication failed for user "`+cl.role+`"`) {
			t.Errorf("a wrong password: %v", err)
		}
		// Without TLS, the proxy does not ask for the password at all.
		plain := strings.Replace(cl.passwordDSN(rightPassword), "sslmode=require", "sslmode=disable", 1)
		if _, err := cl.psql(t, psql, plain, "SELECT 1;\n"); err == nil || !strings.Contains(err.Error(), "clear text") {
			t.Errorf("a password without TLS: %v", err)
		}
	})

	t.Run("switchyard.token", func(t *testing.T) {
		tok := strings.TrimSpace(run(t, "UPDATE counters SET v = v + 1 WHERE id = 5;\nSHOW switchyard.token;\n"))
		if tok == "" || strings.Contains(tok, "\n") {
			t.Fatalf("SHOW switchyard.token: %q", tok)
		}
		// Another connection (another process's) carries the position on.
		out := run(t, "SET switchyard.token = '"+tok+"';\nSELECT v > 0 FROM counters WHERE id = 5;\n")
		if strings.TrimSpace(out) != "t" {
			t.Errorf("a read after SET switchyard.token: %q", out)
		}
		if _, err := cl.psql(t, psql, dsn, "\\set VERBOSITY verbose\nSET switchyard.token = 'garbage!';\n"); err == nil || !strings.Contains(err.Error(), "22023") {
			t.Errorf("a malformed token: %v", err)
		}
	})

	t.Run("disconnect in a transaction", func(t *testing.T) {
		cmd := exec.Command(psql, "-X", "-q", "-d", dsn)
		cmd.Env = cl.env
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprint(stdin, "BEGIN;\nUPDATE counters SET v = 999 WHERE id = 3;\n")
		waitFor(t, "the update to run", func() bool {
			var n int
			queryNode(t, cl.lab.Primary(), "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' AND query LIKE 'UPDATE counters SET v = 999%'", &n)
			return n == 1
		})
		cmd.Process.Kill()
		cmd.Wait()
		stdin.Close()
		cl.checkAbandoned(t)
	})
}

// waitRunning waits until sql runs on one of the lab's servers.
func waitRunning(t *testing.T, cl *clientLab, sql string) {
	t.Helper()
	waitFor(t, "the query to start", func() bool {
		for _, node := range cl.lab.Nodes() {
			var n int
			queryNode(t, node, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query = '"+strings.ReplaceAll(sql, "'", "''")+"'", &n)
			if n == 1 {
				return true
			}
		}
		return false
	})
}
