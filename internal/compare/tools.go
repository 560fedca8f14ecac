package compare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrMissingTool reports that a program the proxies comparison runs is not
// installed.
var ErrMissingTool = errors.New("not installed")

// Tools are the programs the proxies comparison runs.
type Tools struct {
	// PgBench is pgbench's path (required).
	PgBench string
	// PgBouncer and Pgpool are the paths of pgbouncer and pgpool-II; an
	// empty one skips its arm.
	PgBouncer, Pgpool string
	// Switchyard is the command line that runs "switchyard proxy", to
	// which the proxy's flags are added: {"/path/to/switchyard", "proxy"}.
	Switchyard []string
}

// sbinDirs are where Debian, Ubuntu and Homebrew put daemons, which are
// often off an ordinary user's PATH.
var sbinDirs = []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/opt/homebrew/bin", "/opt/homebrew/sbin"}

// lookTool finds a program on PATH, then in dirs and sbinDirs.
func lookTool(name string, dirs ...string) (string, bool) {
	for _, d := range dirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, true
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, true
	}
	for _, d := range sbinDirs {
		if p := filepath.Join(d, name); isExecutable(p) {
			return p, true
		}
	}
	return "", false
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// FindTools looks for pgbench (first in pgBin, the PostgreSQL server's
// binaries, so that it matches the server), pgbouncer and pgpool-II (on
// PATH, then in /usr/sbin and the other usual places). Each error in
// missing wraps ErrMissingTool and says how to install what is missing;
// without pgbench the comparison cannot run, without the others it skips
// their arms.
func FindTools(pgBin string) (t Tools, missing []error) {
	var ok bool
	if t.PgBench, ok = lookTool("pgbench", pgBin); !ok {
		missing = append(missing, fmt.Errorf("pgbench: %w (looked in %s, on PATH and in %s); it comes with PostgreSQL "+
			"(Debian/Ubuntu: apt-get install postgresql-client; macOS: brew install postgresql)", ErrMissingTool, pgBin, strings.Join(sbinDirs, ", ")))
	}
	if t.PgBouncer, ok = lookTool("pgbouncer"); !ok {
		missing = append(missing, fmt.Errorf("pgbouncer: %w (looked on PATH and in %s); install it "+
			"(Debian/Ubuntu: apt-get install pgbouncer; macOS: brew install pgbouncer)", ErrMissingTool, strings.Join(sbinDirs, ", ")))
	}
	if t.Pgpool, ok = lookTool("pgpool"); !ok {
		missing = append(missing, fmt.Errorf("pgpool-II: %w (looked for pgpool on PATH and in %s); install it "+
			"(Debian/Ubuntu: apt-get install pgpool2; macOS: brew install pgpool-ii)", ErrMissingTool, strings.Join(sbinDirs, ", ")))
	}
	return t, missing
}

// server is a PostgreSQL server as the comparison needs it: where it
// listens.
type server struct {
	host string
	port int
}

func (s server) addr() string { return net.JoinHostPort(s.host, strconv.Itoa(s.port)) }

// parseServer reads host and port from a connection string.
func parseServer(dsn string) (server, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return server{}, fmt.Errorf("compare: %w", err)
	}
	return server{host: cfg.Host, port: int(cfg.Port)}, nil
}

// freePort asks the kernel for a port of 127.0.0.1 that is free now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("compare: finding a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// A proxy is pgbouncer, pgpool-II or switchyard proxy, running.
type proxy struct {
	*proc
	server        // where clients connect
	admin  string // switchyard proxy's --admin address, if it has one
}

// waitReady waits until a client can log in through the proxy and run a
// query, for up to 30 seconds, and fails at once if the process exits.
func (p *proxy) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable connect_timeout=2", p.host, p.port)
	var last error
	for {
		if p.exited() {
			return fmt.Errorf("compare: %s exited at start (%v); its log ends:\n%s", p.name, p.waitErr, p.logTail())
		}
		c, err := pgconn.Connect(ctx, dsn)
		if err == nil {
			_, err = c.Exec(ctx, "SELECT 1").ReadAll()
			c.Close(ctx)
			if err == nil {
				return nil
			}
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("compare: %s does not answer on %s after 30s: %w; its log ends:\n%s", p.name, p.addr(), last, p.logTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// startWithPort starts a proxy on a free port, and tries again on another
// if it exits at once (another program took the port in between).
func startWithPort(ctx context.Context, start func(port int) (*proxy, error)) (*proxy, error) {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			return nil, err
		}
		var p *proxy
		if p, err = start(port); err != nil {
			return nil, err
		}
		if err = p.waitReady(ctx); err == nil {
			return p, nil
		}
		p.stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return nil, err
}

// PgBouncerConfig is the pgbouncer.ini the comparison runs pgbouncer with
// (ANCHORS.md's): transaction pooling to the primary.
func pgbouncerConfig(dir string, port int, primary server) string {
	return fmt.Sprintf(`[databases]
postgres = host=%s port=%d

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = 20
max_client_conn = 200
pidfile = %s
`, primary.host, primary.port, port, filepath.Join(dir, "userlist.txt"), filepath.Join(dir, "pgbouncer.pid"))
}

// startPgBouncer starts pgbouncer in transaction mode in front of primary.
func startPgBouncer(ctx context.Context, w *workDir, acct account, bin string, primary server) (*proxy, error) {
	dir, err := w.sub("pgbouncer", acct)
	if err != nil {
		return nil, err
	}
	n := 0
	return startWithPort(ctx, func(port int) (*proxy, error) {
		n++
		ini := filepath.Join(dir, fmt.Sprintf("pgbouncer-%d.ini", n))
		if err := writeOwned(acct, filepath.Join(dir, "userlist.txt"), `"postgres" ""`+"\n"); err != nil {
			return nil, err
		}
		if err := writeOwned(acct, ini, pgbouncerConfig(dir, port, primary)); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, ini)
		cmd.Dir = dir
		// SIGTERM: immediate shutdown (SIGINT waits for clients).
		p, err := startProc(w, "pgbouncer", cmd, acct, syscall.SIGTERM, filepath.Join(dir, "pgbouncer.log"))
		if err != nil {
			return nil, err
		}
		return &proxy{proc: p, server: server{"127.0.0.1", port}}, nil
	})
}

// pgpoolModes are the values of pgpool-II's disable_load_balance_on_write,
// its default first.
var pgpoolModes = []string{"transaction", "trans_transaction", "dml_adaptive", "always"}

// pgpoolConfig is the pgpool.conf the comparison runs pgpool-II with
// (ANCHORS.md's): streaming-replication mode, load balancing over the
// primary and the replicas with equal weights, and inet_server_port and
// pg_is_in_recovery declared read-only (pgpool-II sends a query calling a
// volatile function to the primary unless told it does not write).
func pgpoolConfig(dir string, port, children int, mode string, nodes []server) string {
	var b strings.Builder
	fmt.Fprintf(&b, `backend_clustering_mode = 'streaming_replication'
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%[2]s'
pcp_listen_addresses = ''
pcp_port = %d
pcp_socket_dir = '%[2]s'
wd_ipc_socket_dir = '%[2]s'
pid_file_name = '%[2]s/pgpool.pid'
logdir = '%[2]s'
memqcache_oiddir = '%[2]s/oiddir'
`, port, dir, port+1)
	for i, n := range nodes {
		fmt.Fprintf(&b, "backend_hostname%d = '%s'\nbackend_port%d = %d\nbackend_weight%d = 1\n", i, n.host, i, n.port, i)
	}
	fmt.Fprintf(&b, `load_balance_mode = on
disable_load_balance_on_write = '%s'
connection_cache = on
num_init_children = %d
max_pool = 4
sr_check_period = 10
sr_check_user = 'postgres'
health_check_period = 0
use_watchdog = off
enable_pool_hba = off
pool_passwd = ''
read_only_function_list = 'pg_is_in_recovery,inet_server_port'
`, mode, children)
	return b.String()
}

// startPgpool starts pgpool-II with load balancing over nodes (the
// primary first) in disable_load_balance_on_write mode, with children
// client slots.
func startPgpool(ctx context.Context, w *workDir, acct account, bin, mode string, children int, nodes []server) (*proxy, error) {
	dir, err := w.sub("pgpool-"+mode, acct)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{"pcp.conf", "pool_hba.conf"} {
		if err := writeOwned(acct, filepath.Join(dir, f), ""); err != nil {
			return nil, err
		}
	}
	n := 0
	return startWithPort(ctx, func(port int) (*proxy, error) {
		n++
		conf := filepath.Join(dir, fmt.Sprintf("pgpool-%d.conf", n))
		os.Remove(filepath.Join(dir, "pgpool_status")) // a failed start's view of the nodes
		if err := writeOwned(acct, conf, pgpoolConfig(dir, port, children, mode, nodes)); err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "-n", "-D", "-f", conf, "-F", filepath.Join(dir, "pcp.conf"), "-a", filepath.Join(dir, "pool_hba.conf"))
		cmd.Dir = dir
		// SIGINT: fast shutdown (SIGTERM waits for clients).
		p, err := startProc(w, "pgpool-II ("+mode+")", cmd, acct, syscall.SIGINT, filepath.Join(dir, "pgpool.log"))
		if err != nil {
			return nil, err
		}
		return &proxy{proc: p, server: server{"127.0.0.1", port}}, nil
	})
}

// startSwitchyard starts switchyard proxy (argv, then its flags) in front
// of the primary and replicas, with its defaults and extra flags, logging
// warnings only; with admin, it also serves its status and pprof on a free
// port.
func startSwitchyard(ctx context.Context, w *workDir, argv []string, primary string, replicas []string, admin bool, extra ...string) (*proxy, error) {
	if len(argv) == 0 {
		return nil, errors.New("compare: no command line for switchyard proxy")
	}
	w.proxies++
	dir, err := w.sub(fmt.Sprintf("switchyard-%d", w.proxies), account{})
	if err != nil {
		return nil, err
	}
	return startWithPort(ctx, func(port int) (*proxy, error) {
		args := append(argv[1:len(argv):len(argv)], "--primary", primary)
		for _, r := range replicas {
			args = append(args, "--replica", r)
		}
		listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args = append(args, "--listen", listen, "--log-level", "warn", "--shutdown-grace", "2s")
		args = append(args, extra...)
		var adminAddr string
		if admin {
			ap, err := freePort()
			if err != nil {
				return nil, err
			}
			adminAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(ap))
			args = append(args, "--admin", adminAddr)
		}
		cmd := exec.Command(argv[0], args...)
		cmd.Dir = dir
		// Runs as ourselves: it does not mind root, and the binary may
		// be where the postgres user cannot reach it.
		name := strings.TrimSpace("switchyard proxy " + strings.Join(extra, " "))
		p, err := startProc(w, name, cmd, account{}, syscall.SIGTERM, filepath.Join(dir, "proxy.log"))
		if err != nil {
			return nil, err
		}
		return &proxy{proc: p, server: server{"127.0.0.1", port}, admin: adminAddr}, nil
	})
}

// writeOwned writes a file and gives it to acct.
func writeOwned(acct account, path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	if err := acct.own(path); err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	return nil
}
