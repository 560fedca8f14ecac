package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/proxy"
	"github.com/switchyard-db/switchyard/internal/topology"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// The tests of this file drive the proxy with real clients in their own
// languages: psql, pgbench, psycopg2 (Debian's python3-psycopg2) and
// node-postgres (npm pg, pinned in testdata/node/package.json); pgx is the
// client of the package's other tests. A client that is missing is
// installed (apt-get, npm ci); if that fails the test skips, in one line,
// unless SWITCHYARD_REQUIRE_SERVER is set, as .ci/run sets it.

// installMu serializes installs.
var installMu sync.Mutex

// need makes sure a client is there: have reports whether it is, install
// tries to get it.
func need(t *testing.T, what string, have func() bool, install func() error) {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	if have() {
		return
	}
	err := install()
	if err == nil && !have() {
		err = errors.New("installed, but still not found")
	}
	if err == nil {
		return
	}
	if os.Getenv("SWITCHYARD_REQUIRE_SERVER") != "" {
		t.Fatalf("%s is missing and could not be installed: %v", what, err)
	}
	t.Skipf("%s is missing and could not be installed: %v", what, err)
}

// aptInstall installs Debian packages, updating the package lists if the
// first try fails.
func aptInstall(pkgs ...string) error {
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("no apt-get to install %s", strings.Join(pkgs, " "))
	}
	run := func(args ...string) error {
		cmd := exec.Command("apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get %s: %v: %s", args[0], err, lastLines(out, 3))
		}
		return nil
	}
	install := append([]string{"install", "-y", "--no-install-recommends"}, pkgs...)
	if run(install...) == nil {
		return nil
	}
	if err := run("update"); err != nil {
		return err
	}
	return run(install...)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], " / ")
}

// pgTool returns the path of psql or pgbench: beside the server binaries
// the lab uses, else on PATH, else installed (postgresql-client).
func pgTool(t *testing.T, name string) string {
	t.Helper()
	find := func() string {
		if bin, err := switchyardtest.FindBinaries(); err == nil {
			if p := filepath.Join(bin, name); fileExists(p) {
				return p
			}
		}
		p, _ := exec.LookPath(name)
		return p
	}
	need(t, name, func() bool { return find() != "" }, func() error { return aptInstall("postgresql-client") })
	return find()
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// systemPython is Debian's Python, where python3-psycopg2 installs (a
// python3 earlier on PATH may be another one).
const systemPython = "/usr/bin/python3"

func needPsycopg2(t *testing.T) {
	need(t, "psycopg2 (python3-psycopg2)", func() bool {
		return exec.Command(systemPython, "-c", "import psycopg2").Run() == nil
	}, func() error { return aptInstall("python3", "python3-psycopg2") })
}

// nodeDir holds node-postgres's package.json and lock file; npm ci
// installs node_modules there (kept out of git).
var nodeDir = filepath.Join("testdata", "node")

func needNodePostgres(t *testing.T) {
	need(t, "node-postgres (npm pg)", func() bool {
		_, err := exec.LookPath("node")
		return err == nil && fileExists(filepath.Join(nodeDir, "node_modules", "pg", "package.json"))
	}, func() error {
		if _, err := exec.LookPath("npm"); err != nil {
			if err := aptInstall("nodejs", "npm"); err != nil {
				return err
			}
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = nodeDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("npm ci: %v: %s", err, lastLines(out, 3))
		}
		return nil
	})
}

// clientLab is a primary with a replica 50 ms behind, a role that logs in
// with a password (SCRAM on the servers), and a proxy with TLS in front.
type clientLab struct {
	lab  *switchyardtest.Cluster
	p    *running
	role string
	env  []string // for the client scripts
}

const rightPassword = "right-pw"

func newClientLab(t *testing.T, edit ...func(*proxy.Config)) *clientLab {
	t.Helper()
	c := laggingLab(t, 50*time.Millisecond)
	role := passwordRole(t, c, rightPassword)
	tlsConfig := selfSigned(t)
	p := startProxy(t, c, append([]func(*proxy.Config){func(cfg *proxy.Config) { cfg.TLS = tlsConfig }}, edit...)...)
	var nodes []string
	for _, n := range c.Nodes() {
		nodes = append(nodes, n.DSN())
	}
	cl := &clientLab{lab: c, p: p, role: role}
	cl.env = append(os.Environ(),
		"PROXY_DSN="+p.dsn(),
		"TLS_DSN="+cl.passwordDSN(rightPassword),
		"BAD_DSN="+cl.passwordDSN("wrong-pw"),
		"NODE_DSNS="+strings.Join(nodes, " "),
		"ROUNDS=1000",
		"PGCONNECT_TIMEOUT=20",
	)
	return cl
}

// passwordDSN is the proxy over TLS as the role with a password.
func (cl *clientLab) passwordDSN(password string) string {
	return "postgres://" + cl.role + ":" + password + "@" + cl.p.addr + "/postgres?sslmode=require"
}

// script runs a client script's case and returns the JSON object it
// printed last.
func (cl *clientLab) script(t *testing.T, dir string, argv ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(testCtx(t), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = dir, cl.env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var res map[string]any
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil || jerr != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv[1:], " "), err, out.String())
	}
	if strings.Contains(out.String(), rightPassword) {
		t.Errorf("the password shows in the client's output:\n%s", out.String())
	}
	return res
}

// checkStale checks a write-then-read loop's result: no stale read; it
// logs the replica share.
func checkStale(t *testing.T, what string, res map[string]any) {
	t.Helper()
	rounds, stale, replica := res["rounds"].(float64), res["stale"].(float64), res["replica"].(float64)
	t.Logf("%s: %.0f write-then-read rounds, %.0f stale reads, %.0f reads on the replica (%.0f%%)",
		what, rounds, stale, replica, 100*replica/rounds)
	if stale != 0 || rounds == 0 {
		t.Errorf("%s: %.0f stale reads in %.0f rounds", what, stale, rounds)
	}
}

// checkAbandoned checks, after a client left in the middle of a
// transaction that set counters.v = 999 for id 3, that the transaction
// was rolled back and the server connection went back to the pool clean.
func (cl *clientLab) checkAbandoned(t *testing.T) {
	t.Helper()
	waitFor(t, "the client's session to end", func() bool { return cl.p.srv.Sessions() == 0 })
	waitFor(t, "no server session left in a transaction", func() bool {
		var n int
		queryNode(t, cl.lab.Primary(), "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state LIKE 'idle in transaction%'", &n)
		return n == 0
	})
	var v int64
	queryNode(t, cl.lab.Primary(), "SELECT v FROM counters WHERE id = 3", &v)
	if v == 999 {
		t.Error("the abandoned transaction's write committed")
	}
	// The server connection it used serves the next client.
	conn := cl.p.connect(t)
	if _, err := conn.Exec(testCtx(t), "UPDATE counters SET v = v + 1 WHERE id = 3"); err != nil {
		t.Errorf("after the abandoned transaction: %v", err)
	}
}

// node returns the engine's node for lab node i (the primary first, as
// the lab started them).
func (r *running) node(i int) *topology.Node {
	port := fmt.Sprintf(":%d", r.lab.Nodes()[i].Port())
	for _, n := range r.engine.Nodes() {
		if strings.HasSuffix(n.Name, port) {
			return n
		}
	}
	panic(fmt.Sprintf("the engine has no node on port %s", port))
}

// TestPsycopg2 drives the proxy with psycopg2.
func TestPsycopg2(t *testing.T) {
	needPsycopg2(t)
	cl := newClientLab(t)
	run := func(t *testing.T, name string) map[string]any {
		return cl.script(t, "testdata", systemPython, "psycopg2_client.py", name)
	}
	t.Run("stale reads, one connection", func(t *testing.T) { checkStale(t, "psycopg2, one connection", run(t, "stale_one")) })
	t.Run("stale reads, two connections", func(t *testing.T) { checkStale(t, "psycopg2, two connections", run(t, "stale_two")) })
	t.Run("stale reads, a connection per request", func(t *testing.T) {
		checkStale(t, "psycopg2, a new connection per request", run(t, "stale_per_request"))
	})
	t.Run("transactions", func(t *testing.T) { run(t, "transaction") })
	t.Run("COPY", func(t *testing.T) {
		if res := run(t, "copy"); res["rows"].(float64) != 1000 {
			t.Errorf("rows after COPY: %v", res["rows"])
		}
	})
	t.Run("LISTEN and NOTIFY", func(t *testing.T) { run(t, "listen") })
	t.Run("cancel", func(t *testing.T) {
		if res := run(t, "cancel"); res["code"] != "57014" || res["seconds"].(float64) > 15 {
			t.Errorf("canceled query: %v", res)
		}
	})
	t.Run("errors", func(t *testing.T) { run(t, "errors") })
	t.Run("TLS and passwords", func(t *testing.T) {
		res := run(t, "tls")
		if res["user"] != cl.role || res["ssl"] != true || !strings.Contains(res["bad"].(string), "password authentication failed") {
			t.Errorf("%v", res)
		}
	})
	t.Run("session state", func(t *testing.T) { run(t, "session_state") })
	t.Run("disconnect in a transaction", func(t *testing.T) {
		run(t, "disconnect")
		cl.checkAbandoned(t)
	})
}

// TestNodePostgres drives the proxy with node-postgres, which uses the
// extended protocol with named prepared statements, and Flush with row
// limits for paged results.
func TestNodePostgres(t *testing.T) {
	needNodePostgres(t)
	cl := newClientLab(t, func(cfg *proxy.Config) { cfg.PoolSize = 2 })
	run := func(t *testing.T, name string) map[string]any {
		return cl.script(t, nodeDir, "node", "client.js", name)
	}
	t.Run("stale reads, one connection", func(t *testing.T) { checkStale(t, "node-postgres, one connection", run(t, "stale_one")) })
	t.Run("stale reads, two connections", func(t *testing.T) { checkStale(t, "node-postgres, two connections", run(t, "stale_two")) })
	t.Run("prepared statements across backends", func(t *testing.T) {
		if res := run(t, "prepared"); res["runs"].(float64) != 1600 {
			t.Errorf("%v", res)
		}
	})
	t.Run("transactions", func(t *testing.T) { run(t, "transaction") })
	t.Run("rows a page at a time", func(t *testing.T) { run(t, "rows") })
	t.Run("LISTEN and NOTIFY", func(t *testing.T) { run(t, "listen") })
	t.Run("cancel", func(t *testing.T) {
		if res := run(t, "cancel"); res["code"] != "57014" || res["seconds"].(float64) > 15 {
			t.Errorf("canceled query: %v", res)
		}
	})
	t.Run("errors", func(t *testing.T) { run(t, "errors") })
	t.Run("TLS and passwords", func(t *testing.T) {
		if res := run(t, "tls"); res["user"] != cl.role || res["bad"] != "28P01" {
			t.Errorf("%v", res)
		}
	})
	t.Run("disconnect in a transaction", func(t *testing.T) {
		run(t, "disconnect")
		cl.checkAbandoned(t)
	})
}
