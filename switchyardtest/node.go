package switchyardtest

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
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/childproc"
	"github.com/switchyard-db/switchyard/internal/lsn"
)

// LSN is a position in the write-ahead log. It orders like the integer it
// is, and String formats it as PostgreSQL does ("0/3000060").
type LSN = lsn.LSN

// Role is what a node currently is in its cluster.
type Role string

// The roles a node can have.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// Node is one PostgreSQL server of a Cluster.
type Node struct {
	cluster   *Cluster
	name      string
	dataDir   string
	logPath   string
	fixedPort int // 0: pick a free port

	mu   sync.Mutex
	role Role
	port int
	cmd  *exec.Cmd
	done chan struct{} // closed when the postmaster has exited
	pids pidFile       // as the running server wrote it

	frozen bool // Freeze stopped the server's processes
	// hotStandbyOff: hot_standby is off in the node's configuration, so as
	// a replica it accepts no connections from its next start on.
	hotStandbyOff bool
	// noQueries: the running server is a standby with hot_standby off; it
	// accepts no connections, and what the lab needs to know about it is
	// asked of the primary.
	noQueries bool
}

// Name is the node's name: "primary", "replica1", "replica2", ...
func (n *Node) Name() string { return n.name }

// Role is what the node is now: a replica becomes the primary when promoted.
func (n *Node) Role() Role {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.role
}

// Port is the node's TCP port on 127.0.0.1.
func (n *Node) Port() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.port
}

// DSN is a postgres:// URL for the node's "postgres" database as the
// superuser "postgres" (no password: the lab trusts loopback connections).
// psql and pgx accept it.
func (n *Node) DSN() string {
	return dsnFor(net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port())))
}

// dsnFor is the lab's DSN for a server at addr (host:port).
func dsnFor(addr string) string {
	return "postgres://postgres@" + addr + "/postgres?sslmode=disable"
}

// DataDir is the node's data directory.
func (n *Node) DataDir() string { return n.dataDir }

// LogFile is the path of the server's log.
func (n *Node) LogFile() string { return n.logPath }

// PID is the postmaster's process id, or 0 when the server is not running.
// The server's other processes are in the process group of that id.
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || isClosed(n.done) {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the server process is alive.
func (n *Node) Running() bool { return n.PID() != 0 }

func (n *Node) String() string { return n.name }

// conninfo is what a replica named app puts in primary_conninfo to stream
// from n.
func (n *Node) conninfo(app string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=%s", n.Port(), app)
}

func isClosed(ch chan struct{}) bool {
	if ch == nil {
		return true
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Start starts a stopped server again with its data directory and port,
// and waits until it accepts connections.
func (n *Node) Start(ctx context.Context) error {
	if n.Running() {
		return fmt.Errorf("switchyardtest: %s is already running", n.name)
	}
	n.cluster.mu.Lock()
	closed := n.cluster.closed
	n.cluster.mu.Unlock()
	if closed {
		return fmt.Errorf("switchyardtest: %s: cluster is closed", n.name)
	}
	return n.start(ctx)
}

// Restart stops the server (fast shutdown) and starts it again.
func (n *Node) Restart(ctx context.Context) error {
	if err := n.Stop(ctx); err != nil {
		return err
	}
	return n.Start(ctx)
}

func (n *Node) start(ctx context.Context) error {
	for attempt := 1; ; attempt++ {
		err := n.launch(ctx)
		if err == nil {
			return nil
		}
		// A free port picked by the kernel can be taken by another process
		// before postgres binds it; pick another one.
		if n.fixedPort == 0 && attempt < 5 && errors.Is(err, errPortInUse) {
			n.mu.Lock()
			n.port = 0
			n.mu.Unlock()
			continue
		}
		return err
	}
}

var errPortInUse = errors.New("port in use")

func (n *Node) launch(ctx context.Context) error {
	n.mu.Lock()
	port := n.port
	if port == 0 {
		port = n.fixedPort
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			n.mu.Unlock()
			return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
		}
		port = p
	}
	n.port = port
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.mu.Unlock()
		return fmt.Errorf("switchyardtest: %w", err)
	}
	logStart, _ := logf.Seek(0, 2)
	cmd := exec.Command(filepath.Join(n.cluster.bin, "postgres"), "-D", n.dataDir, "-p", strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = n.dataDir
	cmd.SysProcAttr = childproc.Attr(n.cluster.acct.Cred)
	if err := childproc.Start(cmd); err != nil {
		n.mu.Unlock()
		logf.Close()
		return fmt.Errorf("switchyardtest: start %s: %w", n.name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	n.frozen = false
	n.noQueries = n.role == RoleReplica && n.hotStandbyOff
	noQueries := n.noQueries
	n.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()

	err = n.waitAccepting(ctx, done, noQueries)
	n.mu.Lock()
	n.pids = readPIDFile(filepath.Join(n.dataDir, "postmaster.pid"))
	n.mu.Unlock()
	if err != nil {
		n.kill()
		tail := n.logSince(logStart)
		if strings.Contains(tail, "could not bind") || strings.Contains(tail, "Address already in use") {
			return fmt.Errorf("switchyardtest: %s: port %d: %w", n.name, port, errPortInUse)
		}
		return fmt.Errorf("switchyardtest: %s did not start: %w\n%s", n.name, err, tail)
	}
	return nil
}

// waitAccepting polls until the server accepts a connection (a standby
// does once it reached a consistent state). A standby with hot_standby off
// never does: for it (noQueries), a refusal because it cannot accept
// connections now (SQLSTATE 57P03) shows that it is up.
func (n *Node) waitAccepting(ctx context.Context, done chan struct{}, noQueries bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		select {
		case <-done:
			return n.exited()
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		ours, err := n.answers(cctx)
		ccancel()
		if err == nil && ours {
			return nil
		}
		if noQueries && sqlState(err) == "57P03" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-done:
			return n.exited()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// answers connects to the node's port and reports whether the server
// there is this node: the port was free when picked, but another process
// (another lab's server, a relay) may have taken it before this server
// could, and would answer in its place until this one gives up.
func (n *Node) answers(ctx context.Context) (bool, error) {
	cfg, err := pgconn.ParseConfig(n.DSN() + "&connect_timeout=2")
	if err != nil {
		return false, err
	}
	for k, v := range adminParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "SHOW data_directory").ReadAll()
	if err != nil {
		return false, err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) != 1 {
		return false, errors.New("SHOW data_directory: no answer")
	}
	return filepath.Clean(string(res[0].Rows[0][0])) == filepath.Clean(n.dataDir), nil
}

// exited describes how the server process ended.
func (n *Node) exited() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Errorf("the server exited (%v)", n.cmd.ProcessState)
}

// logSince returns the server log written after offset, for error messages.
func (n *Node) logSince(offset int64) string {
	b, err := os.ReadFile(n.logPath)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	b = b[offset:]
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitStreaming waits until the replica's WAL receiver streams; for a
// replica that accepts no connections, until the primary's
// pg_stat_replication shows it streaming.
func (n *Node) waitStreaming(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	via, query := n, "SELECT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')"
	if n.acceptsNoQueries() {
		via, query = n.cluster.Primary(), "SELECT EXISTS (SELECT FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming')"
	}
	conn, err := via.adminConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var streaming bool
		var args []any
		if via != n {
			args = []any{n.name}
		}
		err := conn.QueryRow(ctx, query, args...).Scan(&streaming)
		if err != nil {
			return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
		}
		if streaming {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switchyardtest: %s is not streaming from the primary: %w", n.name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Stop shuts the server down cleanly (pg_ctl's fast mode: SIGINT) and
// waits for it to exit. A frozen server is thawed first.
func (n *Node) Stop(ctx context.Context) error { return n.signalAndWait(ctx, syscall.SIGINT) }

// StopImmediate stops the server as a crash would (pg_ctl's immediate mode:
// SIGQUIT): no shutdown checkpoint, crash recovery at the next start. A
// frozen server is thawed first.
func (n *Node) StopImmediate(ctx context.Context) error {
	return n.signalAndWait(ctx, syscall.SIGQUIT)
}

// Kill sends SIGKILL to every process of the server, as a machine losing
// power would, and waits until they are all gone. It works on a frozen
// server too.
func (n *Node) Kill() error {
	n.kill()
	return nil
}

func (n *Node) signalAndWait(ctx context.Context, sig syscall.Signal) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if isClosed(done) {
		return fmt.Errorf("switchyardtest: %s is not running", n.name)
	}
	// A stopped process handles no signal but SIGKILL until it continues.
	n.Thaw()
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("switchyardtest: signal %s: %w", n.name, err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("switchyardtest: %s did not stop: %w", n.name, ctx.Err())
	}
}

// kill SIGKILLs every process of the server at once and waits until they
// are all gone. PostgreSQL's children each lead a process group of their own
// (setsid), so the postmaster is stopped first, to fork no more, and its
// children are found by parent.
func (n *Node) kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	pid := cmd.Process.Pid
	syscall.Kill(pid, syscall.SIGSTOP)
	kids := children(pid)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
	syscall.Kill(-pid, syscall.SIGKILL)
	<-done
	waitGone(append(kids, pid))
	n.mu.Lock()
	n.frozen = false
	n.mu.Unlock()
}

// waitGone waits until none of pids is alive, so that a restart finds no
// old backend attached to the shared memory.
func waitGone(pids []int) {
	deadline := time.Now().Add(10 * time.Second)
	for _, p := range pids {
		for !exited(p) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
}

// shutdown stops the server for Close: immediately, since its files are
// about to go (cleanly when the user keeps them), and by SIGKILL if it does
// not go within a few seconds; then it removes the shared memory that a
// server stopped without a clean shutdown leaves.
func (n *Node) shutdown() {
	if n.Running() {
		sig := syscall.SIGQUIT
		if n.cluster.keepDir {
			sig = syscall.SIGINT
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.signalAndWait(ctx, sig); err != nil {
			n.kill()
		}
	}
	n.mu.Lock()
	pids := n.pids
	n.mu.Unlock()
	pids.cleanUp()
}

// Connect opens a new connection to the node as the superuser, with the
// node's settings as they are (a default_transaction_read_only or
// statement_timeout set on the node applies).
func (n *Node) Connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, n.DSN())
	if err != nil {
		return nil, fmt.Errorf("switchyardtest: connect to %s: %w", n.name, err)
	}
	return conn, nil
}

// adminParams are session settings for the lab's own connections, so that
// the settings a test gives a node (Options.NodeSettings, SetSetting) do not
// break the lab's work on it.
var adminParams = map[string]string{
	"application_name":                    "switchyardtest",
	"default_transaction_read_only":       "off",
	"default_transaction_isolation":       "read committed",
	"statement_timeout":                   "0",
	"lock_timeout":                        "0",
	"idle_in_transaction_session_timeout": "0",
}

// adminConnect opens a connection for the lab's own queries.
func (n *Node) adminConnect(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(n.DSN())
	if err != nil {
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}
	for k, v := range adminParams {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		if n.acceptsNoQueries() {
			return nil, fmt.Errorf("switchyardtest: connect to %s, a standby with hot_standby off, which accepts no connections: %w", n.name, err)
		}
		return nil, fmt.Errorf("switchyardtest: connect to %s: %w", n.name, err)
	}
	return conn, nil
}

// Exec runs sql on the node on a new connection (as Connect makes).
func (n *Node) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := n.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
	}
	return nil
}

// exec is Exec on a lab connection.
func (n *Node) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := n.adminConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
	}
	return nil
}

func (n *Node) queryRow(ctx context.Context, sql string, args []any, dst ...any) error {
	conn, err := n.adminConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql, args...).Scan(dst...); err != nil {
		return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
	}
	return nil
}

func (n *Node) createSlot(ctx context.Context, names ...string) error {
	return n.exec(ctx, `SELECT pg_create_physical_replication_slot(name, true)
		FROM unnest($1::text[]) name
		WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = name)`, names)
}

// acceptsNoQueries reports whether the running server is a standby with
// hot_standby off.
func (n *Node) acceptsNoQueries() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.noQueries
}

// SetApplyDelay changes the replica's replay delay
// (recovery_min_apply_delay) while it runs. Zero removes the delay.
func (n *Node) SetApplyDelay(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("switchyardtest: negative apply delay %v", d)
	}
	return n.SetSetting(ctx, "recovery_min_apply_delay", strconv.FormatInt(d.Milliseconds(), 10)+"ms")
}

// PauseReplay pauses WAL replay on the replica (pg_wal_replay_pause) and
// waits until it has paused. The replica keeps receiving WAL.
func (n *Node) PauseReplay(ctx context.Context) error {
	if err := n.exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		return err
	}
	for {
		var state string
		if err := n.queryRow(ctx, "SELECT pg_get_wal_replay_pause_state()", nil, &state); err != nil {
			return err
		}
		if state == "paused" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switchyardtest: %s: replay did not pause: %w", n.name, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// ResumeReplay resumes WAL replay paused by PauseReplay.
func (n *Node) ResumeReplay(ctx context.Context) error {
	return n.exec(ctx, "SELECT pg_wal_replay_resume()")
}

// Promote turns the replica into a primary (pg_promote) and waits until it
// accepts writes. Cluster.Promote also repoints the other replicas. A
// replica with hot_standby off, which accepts no connections, is promoted
// as pg_ctl promote does it (a promote file and SIGUSR1).
func (n *Node) Promote(ctx context.Context) error {
	if n.acceptsNoQueries() {
		if err := n.promoteBySignal(ctx); err != nil {
			return err
		}
	} else {
		var ok bool
		if err := n.queryRow(ctx, "SELECT pg_promote(true, 60)", nil, &ok); err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("switchyardtest: %s: promotion did not finish in 60s", n.name)
		}
	}
	n.mu.Lock()
	n.role = RolePrimary
	n.noQueries = false
	n.mu.Unlock()
	return nil
}

func (n *Node) promoteBySignal(ctx context.Context) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if isClosed(done) {
		return fmt.Errorf("switchyardtest: %s is not running", n.name)
	}
	path := filepath.Join(n.dataDir, "promote")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	if err := n.cluster.acct.own(path); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		return fmt.Errorf("switchyardtest: signal %s: %w", n.name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		var inRecovery bool
		err := n.queryRow(ctx, "SELECT pg_is_in_recovery()", nil, &inRecovery)
		if err == nil && !inRecovery {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switchyardtest: %s: promotion did not finish: %w (last: %v)", n.name, ctx.Err(), err)
		case <-done:
			return fmt.Errorf("switchyardtest: %s: %w", n.name, n.exited())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// InRecovery asks the server whether it is a standby (pg_is_in_recovery).
func (n *Node) InRecovery(ctx context.Context) (bool, error) {
	var r bool
	err := n.queryRow(ctx, "SELECT pg_is_in_recovery()", nil, &r)
	return r, err
}

// InsertLSN is the primary's current WAL insert position
// (pg_current_wal_insert_lsn).
func (n *Node) InsertLSN(ctx context.Context) (LSN, error) {
	var l LSN
	err := n.queryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text", nil, &l)
	return l, err
}

// ReplayLSN is the position a replica has replayed up to
// (pg_last_wal_replay_lsn). For a replica with hot_standby off, which
// accepts no connections, it is the replay_lsn the primary's
// pg_stat_replication shows for it, which the replica reports when it
// receives WAL and at least every wal_receiver_status_interval (1s in the
// lab): it may be that much behind.
func (n *Node) ReplayLSN(ctx context.Context) (LSN, error) {
	if n.acceptsNoQueries() {
		return n.replayLSNFromPrimary(ctx)
	}
	var l LSN
	var inRecovery bool
	if err := n.queryRow(ctx, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text", nil, &inRecovery, &l); err != nil {
		return 0, err
	}
	if !inRecovery {
		return 0, fmt.Errorf("switchyardtest: %s is not a replica", n.name)
	}
	return l, nil
}

func (n *Node) replayLSNFromPrimary(ctx context.Context) (LSN, error) {
	var l LSN
	p := n.cluster.Primary()
	err := p.queryRow(ctx, `SELECT coalesce((SELECT replay_lsn FROM pg_stat_replication WHERE application_name = $1
		ORDER BY replay_lsn DESC NULLS LAST LIMIT 1), '0/0')::text`, []any{n.name}, &l)
	return l, err
}

// WaitReplay waits until the replica has replayed target (an insert LSN
// from the primary) or ctx ends. For a replica with hot_standby off it
// watches the primary's pg_stat_replication (see ReplayLSN), and may see
// the replay up to a second late.
func (n *Node) WaitReplay(ctx context.Context, target LSN) error {
	via, query := n, "SELECT pg_last_wal_replay_lsn()::text, current_setting('wal_block_size')::int8"
	var args []any
	if n.acceptsNoQueries() {
		via = n.cluster.Primary()
		query = `SELECT coalesce((SELECT replay_lsn FROM pg_stat_replication WHERE application_name = $1
			ORDER BY replay_lsn DESC NULLS LAST LIMIT 1), '0/0')::text, current_setting('wal_block_size')::int8`
		args = []any{n.name}
	}
	conn, err := via.adminConnect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var got LSN
		var blockSize uint64
		if err := conn.QueryRow(ctx, query, args...).Scan(&got, &blockSize); err != nil {
			return fmt.Errorf("switchyardtest: %s: %w", via.name, err)
		}
		// An insert position can sit inside a page header, which replay
		// only passes with the next record.
		if got >= lsn.RoundDownPageHeader(target, blockSize) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switchyardtest: %s replayed %s, waiting for %s: %w", n.name, got, target, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// sqlState is the SQLSTATE of a server error in err's chain, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
