package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestProxyAdmin runs switchyard proxy with --admin on a lab and reads its
// status page, its JSON, its metrics and /healthz, and switchyard status
// against it; the password in the connection strings shows nowhere.
func TestProxyAdmin(t *testing.T) {
	switchyardtest.NeedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	const secret = "hunter2-admin"
	if err := c.Primary().Exec(ctx, "ALTER ROLE postgres PASSWORD '"+secret+"'"); err != nil {
		t.Fatal(err)
	}
	withPassword := func(dsn string) string {
		return strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:"+secret+"@", 1)
	}
	pctx, stop := context.WithCancel(ctx)
	var logs syncBuffer
	done := make(chan int)
	go func() {
		done <- run(pctx, []string{"proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--primary", withPassword(c.Primary().DSN()), "--replica", withPassword(c.Replicas()[0].DSN())}, io.Discard, &logs)
	}()
	defer func() {
		stop()
		if code := <-done; code != 0 {
			t.Errorf("proxy: exit %d:\n%s", code, logs.String())
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the password is in the proxy's log:\n%s", logs.String())
		}
	}()
	admin := waitOutput(t, &logs, regexp.MustCompile(`admin" addr=([0-9.:]+)`), "the admin address")[1]
	listen := waitOutput(t, &logs, regexp.MustCompile(`listening" addr=([0-9.:]+)`), "the listen address")[1]

	// A little traffic through the proxy, so that the counts move.
	conn, err := pgx.Connect(ctx, "postgres://postgres@"+listen+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("%s shows the password", path)
		}
		return res.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "switchyard proxy") || !strings.Contains(body, `id="lag-chart"`) {
		t.Errorf("/: %d\n%s", code, body)
	}
	if code, body := get("/status.json"); code != 200 || !regexp.MustCompile(`"role": *"replica"`).MatchString(body) {
		t.Errorf("/status.json: %d\n%s", code, body)
	}
	code, body := get("/metrics")
	if code != 200 || strings.Count(body, "\nswitchyard_node_up{") != 2 || !strings.Contains(body, "\nswitchyard_routed_total{") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"status", "--admin", admin}, &out, &errOut); code != 0 {
		t.Fatalf("status --admin: exit %d: %s", code, errOut.String())
	}
	if rows := statusTable(t, out.String()); len(rows) != 2 || rows[0].role != "primary" || rows[1].role != "replica" {
		t.Errorf("switchyard status --admin:\n%s", out.String())
	}
}

// TestProxyUsageErrors: a bad setting is one line on stderr and exit
// status 2, and never shows a password.
func TestProxyUsageErrors(t *testing.T) {
	dir := t.TempDir()
	unknownKey := filepath.Join(dir, "unknown.toml")
	os.WriteFile(unknownKey, []byte("listen = \"127.0.0.1:6432\"\nprimray = \"postgres://db1/app\"\n"), 0o644)
	badSyntax := filepath.Join(dir, "bad.toml")
	os.WriteFile(badSyntax, []byte("listen = \n"), 0o644)
	const pw = "s3cret-pw"
	for _, args := range [][]string{
		{"proxy"},
		{"proxy", "--bogus"},
		{"proxy", "--primary", "postgres://db1/app", "--connect", "postgres://db1,db2/app"},
		{"proxy", "--connect", "postgres://db1,db2/app", "--replica", "postgres://db2/app"},
		{"proxy", "--primary", "postgres://db1/app", "--consistency", "eventual"},
		{"proxy", "--primary", "postgres://db1/app", "--tls-cert", "cert.pem"},
		{"proxy", "--primary", "postgres://db1/app", "--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.key")},
		{"proxy", "--primary", "postgres://db1/app", "--pool-size", "0"},
		{"proxy", "--primary", "postgres://db1/app", "--replica-wait", "-1s"},
		{"proxy", "--primary", "postgres://db1/app", "--replica-wait", "soon"},
		{"proxy", "--primary", "postgres://db1/app", "--replica", "postgres://db2/app", "--replica-weight", "2", "--replica-weight", "3"},
		{"proxy", "--primary", "postgres://db1/app", "--log-level", "loud"},
		{"proxy", "--primary", "postgres://u:" + pw + "@db1:notaport/app"},
		{"proxy", "--primary", "postgres://u:" + pw + "@db1/app", "--replica", "postgres://u:" + pw + "@db1/app"},
		{"proxy", "--config", filepath.Join(dir, "missing.toml")},
		{"proxy", "--config", unknownKey},
		{"proxy", "--config", badSyntax},
		{"proxy", "--primary", "postgres://db1/app", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%q: exit %d, want 2 (%s)", args, code, stderr.String())
		}
		lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "switchyard: proxy: ") {
			t.Errorf("%q: want one line naming the command, got:\n%s", args, stderr.String())
		}
		if strings.Contains(stderr.String(), pw) {
			t.Errorf("%q: the error shows the password: %s", args, stderr.String())
		}
	}
}

// TestProxyHelp: --help lists every setting, on stdout, exit 0.
func TestProxyHelp(t *testing.T) {
	for _, args := range [][]string{{"proxy", "--help"}, {"help", "proxy"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("%q: exit %d: %s", args, code, stderr.String())
		}
		for _, flag := range []string{"-listen", "-primary", "-replica", "-connect", "-consistency", "-tls-cert", "-tls-key",
			"-admin", "-config", "-pool-size", "-loopback-passwords", "-shutdown-grace", "-replica-wait", "-write-function"} {
			if !strings.Contains(stdout.String(), flag) {
				t.Errorf("%q: help does not list %s:\n%s", args, flag, stdout.String())
			}
		}
	}
}

// TestProxyConfigFile: the config file carries the flags' settings, and a
// flag given on the command line wins.
func TestProxyConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "switchyard.toml")
	os.WriteFile(file, []byte(`listen = "127.0.0.1:7000"
primary = "postgres://monitor@db1/app"
replica = ["postgres://monitor@db2/app", "postgres://monitor@db3/app"]
replica-weight = [1, 3]
consistency = "connection"
pool-size = 7
replica-wait = "50ms"
loopback-passwords = true
`), 0o644)
	st, err := loadSettings([]string{"--config", file, "--pool-size", "9", "--replica", "postgres://monitor@db4/app", "--replica-weight", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st.Listen != "127.0.0.1:7000" || st.Primary != "postgres://monitor@db1/app" || st.Consistency != "connection" ||
		st.PoolSize != 9 || st.ReplicaWait.Duration != 50*time.Millisecond || !st.LoopbackPasswords ||
		len(st.Replica) != 1 || st.Replica[0] != "postgres://monitor@db4/app" || len(st.ReplicaWeight) != 1 {
		t.Errorf("settings %+v", st)
	}
}

// TestProxySignals runs the proxy as a process, as `go run ./cmd/switchyard
// proxy` would, and stops it with SIGTERM while a client is in a
// transaction: the transaction may still commit, an idle client is told
// the proxy is going away, and the process exits 0.
func TestProxySignals(t *testing.T) {
	switchyardtest.NeedServer(t)
	if os.Getenv("SWITCHYARD_CLI_CHILD") == "1" {
		for i, a := range os.Args {
			if a == "--" {
				os.Args = append([]string{"switchyard"}, os.Args[i+1:]...)
			}
		}
		main()
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	if err := c.Primary().Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v int); INSERT INTO t VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProxySignals$", "--", "proxy", "--listen", "127.0.0.1:0",
		"--primary", c.Primary().DSN(), "--replica", c.Replicas()[0].DSN())
	cmd.Env = append(os.Environ(), "SWITCHYARD_CLI_CHILD=1")
	var logs syncBuffer
	cmd.Stderr = &logs
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	listen := waitOutput(t, &logs, regexp.MustCompile(`listening" addr=([0-9.:]+)`), "the listen address")[1]
	dsn := "postgres://postgres@" + listen + "/postgres?sslmode=disable"
	var first *pgx.Conn
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var err error
		if first, err = pgx.Connect(ctx, dsn); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	t.Logf("the proxy process served its first client %v after it was started", time.Since(start).Round(time.Millisecond))
	defer first.Close(ctx)
	// psql (libpq) too, where the lab's binaries have it (the clients'
	// own tests are in internal/proxy).
	if bin, err := switchyardtest.FindBinaries(); err == nil {
		if psql := filepath.Join(bin, "psql"); fileExists(psql) {
			out, err := exec.CommandContext(ctx, psql, "-X", "-A", "-t", "-d", dsn, "-c", "SELECT count(*) FROM t").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "1" {
				t.Errorf("psql through the proxy process: %v: %s", err, out)
			}
		}
	}
	idle, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(ctx)

	tx, err := first.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE t SET v = 42 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitOutput(t, &logs, regexp.MustCompile(`shutting down`), "the shutdown to begin")
	// The idle client is let go at once; no new client gets in.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("gave up waiting for %s", what)
			}
		}
	}
	waitFor("the idle client to be let go", func() bool {
		_, err := idle.Exec(ctx, "SELECT 1")
		return err != nil
	})
	if conn, err := pgx.Connect(ctx, dsn); err == nil {
		conn.Close(ctx)
		t.Error("a new client got in after SIGTERM")
	}
	// The transaction under way finishes.
	if _, err := tx.Exec(ctx, "UPDATE t SET v = v + 1 WHERE id = 1"); err != nil {
		t.Errorf("in the transaction after SIGTERM: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Errorf("COMMIT after SIGTERM: %v", err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("the proxy exited with %v:\n%s", err, logs.String())
	}
	var v int
	direct, err := c.Primary().Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if err := direct.QueryRow(ctx, "SELECT v FROM t WHERE id = 1").Scan(&v); err != nil || v != 43 {
		t.Errorf("after the graceful stop: v = %d, %v; want 43", v, err)
	}
	if !strings.Contains(logs.String(), "stopped") {
		t.Errorf("no word of the stop:\n%s", logs.String())
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
