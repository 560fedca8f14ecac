package switchyardtest

import (
	"context"
	"errors"
	"fmt"
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
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", n.Port())
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
	cmd.SysProcAttr = procAttr(n.cluster.acct.cred)
	if err := startProcess(cmd); err != nil {
		n.mu.Unlock()
		logf.Close()
		return fmt.Errorf("switchyardtest: start %s: %w", n.name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()

	err = n.waitAccepting(ctx, done)
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
// does once it reached a consistent state).
func (n *Node) waitAccepting(ctx context.Context, done chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		select {
		case <-done:
			return n.exited()
		default:
		}
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(cctx, n.DSN()+"&connect_timeout=2")
		ccancel()
		if err == nil {
			conn.Close(ctx)
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

// waitStreaming waits until the replica's WAL receiver streams.
func (n *Node) waitStreaming(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := n.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var streaming bool
		err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_stat_wal_receiver WHERE status = 'streaming')").Scan(&streaming)
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
// waits for it to exit.
func (n *Node) Stop(ctx context.Context) error { return n.signalAndWait(ctx, syscall.SIGINT) }

// StopImmediate stops the server as a crash would (pg_ctl's immediate mode:
// SIGQUIT): no shutdown checkpoint, crash recovery at the next start.
func (n *Node) StopImmediate(ctx context.Context) error {
	return n.signalAndWait(ctx, syscall.SIGQUIT)
}

// Kill sends SIGKILL to every process of the server, as a machine losing
// power would, and waits until they are all gone.
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

// Connect opens a new connection to the node as the superuser.
func (n *Node) Connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, n.DSN())
	if err != nil {
		return nil, fmt.Errorf("switchyardtest: connect to %s: %w", n.name, err)
	}
	return conn, nil
}

// Exec runs sql on the node on a new connection.
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

func (n *Node) queryRow(ctx context.Context, sql string, dst ...any) error {
	conn, err := n.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dst...); err != nil {
		return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
	}
	return nil
}

func (n *Node) createSlot(ctx context.Context, name string) error {
	return n.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)
		WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = $1)`, name)
}

// alterSystem sets a server setting with ALTER SYSTEM (value in
// postgresql.conf syntax), reloads the configuration, and waits until new
// sessions see want in pg_settings.setting.
func (n *Node) alterSystem(ctx context.Context, name, value, want string) error {
	if err := n.Exec(ctx, fmt.Sprintf("ALTER SYSTEM SET %s = %s", pgx.Identifier{name}.Sanitize(), value)); err != nil {
		return err
	}
	if err := n.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	// pg_reload_conf only signals the postmaster; new sessions see the
	// value once it has read the file.
	for {
		var got string
		if err := n.queryRow(ctx, "SELECT setting FROM pg_settings WHERE name = '"+name+"'", &got); err == nil && got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("switchyardtest: %s: %s not applied: %w", n.name, name, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// SetApplyDelay changes the replica's replay delay
// (recovery_min_apply_delay) while it runs. Zero removes the delay.
func (n *Node) SetApplyDelay(ctx context.Context, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("switchyardtest: negative apply delay %v", d)
	}
	ms := strconv.FormatInt(d.Milliseconds(), 10)
	return n.alterSystem(ctx, "recovery_min_apply_delay", quote(ms+"ms"), ms)
}

// PauseReplay pauses WAL replay on the replica (pg_wal_replay_pause) and
// waits until it has paused. The replica keeps receiving WAL.
func (n *Node) PauseReplay(ctx context.Context) error {
	if err := n.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		return err
	}
	for {
		var state string
		if err := n.queryRow(ctx, "SELECT pg_get_wal_replay_pause_state()", &state); err != nil {
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
	return n.Exec(ctx, "SELECT pg_wal_replay_resume()")
}

// Promote turns the replica into a primary (pg_promote) and waits until it
// accepts writes. Cluster.Promote also repoints the other replicas.
func (n *Node) Promote(ctx context.Context) error {
	var ok bool
	if err := n.queryRow(ctx, "SELECT pg_promote(true, 60)", &ok); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("switchyardtest: %s: promotion did not finish in 60s", n.name)
	}
	n.mu.Lock()
	n.role = RolePrimary
	n.mu.Unlock()
	return nil
}

// InRecovery asks the server whether it is a standby (pg_is_in_recovery).
func (n *Node) InRecovery(ctx context.Context) (bool, error) {
	var r bool
	err := n.queryRow(ctx, "SELECT pg_is_in_recovery()", &r)
	return r, err
}

// InsertLSN is the primary's current WAL insert position
// (pg_current_wal_insert_lsn).
func (n *Node) InsertLSN(ctx context.Context) (LSN, error) {
	var l LSN
	err := n.queryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text", &l)
	return l, err
}

// ReplayLSN is the position a replica has replayed up to
// (pg_last_wal_replay_lsn).
func (n *Node) ReplayLSN(ctx context.Context) (LSN, error) {
	var l LSN
	var inRecovery bool
	if err := n.queryRow(ctx, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text", &inRecovery, &l); err != nil {
		return 0, err
	}
	if !inRecovery {
		return 0, fmt.Errorf("switchyardtest: %s is not a replica", n.name)
	}
	return l, nil
}

// WaitReplay waits until the replica has replayed target (an insert LSN
// from the primary) or ctx ends.
func (n *Node) WaitReplay(ctx context.Context, target LSN) error {
	conn, err := n.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var got LSN
		var blockSize uint64
		if err := conn.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn()::text, current_setting('wal_block_size')::int8").Scan(&got, &blockSize); err != nil {
			return fmt.Errorf("switchyardtest: %s: %w", n.name, err)
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
