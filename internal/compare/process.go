package compare

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard-db/switchyard/internal/childproc"
)

// The proxies comparison starts programs (pgbouncer, pgpool-II, switchyard
// proxy, pgbench) and must leave none behind. Each runs in a process group
// of its own, which is what gets signalled and killed: pgpool-II forks a
// child per client slot, and its children outlive a parent killed with
// SIGKILL. On Linux each leader also gets SIGKILL from the kernel if this
// process dies; what its children leave then is swept at the next start,
// from the work directory's owner.pid and procs files.

const (
	workPrefix = "switchyard-compare-"
	ownerFile  = "owner.pid"
	procsFile  = "procs" // one "pgid leader-pid name" line per process started
)

// account is the operating-system user the tools run as. pgbouncer refuses
// to run as root, and PostgreSQL's tools are meant to run as the postgres
// user, so run as root, the comparison runs them as "postgres" (as
// switchyardtest does the servers).
type account struct{ childproc.Account }

func toolAccount() (account, error) {
	a, err := childproc.Postgres()
	if err != nil {
		return account{}, fmt.Errorf("compare: the comparison runs pgbouncer and pgpool-II as the \"postgres\" user, which is missing (install PostgreSQL's server package, which creates it, or run as another user): %w", err)
	}
	return account{a}, nil
}

// own gives path and everything under it to the account.
func (a account) own(path string) error { return a.Own(path) }

// workDir is a private directory for the tools' configurations, sockets
// and logs, removed by close.
type workDir struct {
	path    string
	proxies int // switchyard proxies started, for their directories' names
}

// newWorkDir sweeps what killed comparisons left, then makes a work
// directory under the system's temporary directory, readable by acct.
func newWorkDir(acct account) (*workDir, error) {
	sweepStale()
	dir, err := os.MkdirTemp("", workPrefix)
	if err != nil {
		return nil, fmt.Errorf("compare: work directory: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("compare: work directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("compare: work directory: %w", err)
	}
	return &workDir{path: dir}, nil
}

// sub makes a subdirectory owned by acct.
func (w *workDir) sub(name string, acct account) (string, error) {
	p := filepath.Join(w.path, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		return "", fmt.Errorf("compare: %w", err)
	}
	if err := acct.own(p); err != nil {
		return "", fmt.Errorf("compare: %w", err)
	}
	return p, nil
}

// record notes a process group for the sweep.
func (w *workDir) record(p *proc) error {
	f, err := os.OpenFile(filepath.Join(w.path, procsFile), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return fmt.Errorf("compare: %w", err)
	}
	_, err = fmt.Fprintf(f, "%d %d %s\n", p.pgid, p.cmd.Process.Pid, filepath.Base(p.cmd.Path))
	return errors.Join(err, f.Close())
}

func (w *workDir) close() error {
	if err := os.RemoveAll(w.path); err != nil {
		return fmt.Errorf("compare: removing %s: %w", w.path, err)
	}
	return nil
}

// sweepStale stops what comparisons killed before they could clean up
// left running, and removes their work directories. Only directories whose
// owning process is gone are touched, and only processes in the groups
// they recorded whose command name is the one recorded.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), workPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being made
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || owner <= 0 || alive(owner) {
			continue
		}
		procs, _ := os.ReadFile(filepath.Join(dir, procsFile))
		for _, line := range strings.Split(string(procs), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 {
				continue
			}
			pgid, err1 := strconv.Atoi(f[0])
			leader, err2 := strconv.Atoi(f[1])
			if err1 != nil || err2 != nil || pgid <= 1 {
				continue
			}
			killGroupNamed(pgid, f[2])
			removeSharedMemoryOf(leader)
		}
		os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// proc is a started program, leader of its own process group.
type proc struct {
	name    string // what messages call it
	cmd     *exec.Cmd
	pgid    int
	stopSig syscall.Signal // asks it to shut down
	logPath string
	done    chan struct{} // closed once Wait returned
	waitErr error
}

// startProc starts cmd in a process group of its own, as acct, with its
// output going to logPath, and records it in w.
func startProc(w *workDir, name string, cmd *exec.Cmd, acct account, stopSig syscall.Signal, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("compare: %s: log: %w", name, err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = childproc.Attr(acct.Cred)
	if err := childproc.Start(cmd); err != nil {
		return nil, fmt.Errorf("compare: starting %s (%s): %w", name, cmd.Path, err)
	}
	p := &proc{name: name, cmd: cmd, pgid: cmd.Process.Pid, stopSig: stopSig, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := w.record(p); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// exited reports whether the leader has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logTail is the last lines of the process's log, for error messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 6 {
		lines = lines[len(lines)-6:]
	}
	return strings.Join(lines, "\n")
}

// stop asks the process to shut down, kills its whole group if it has not
// within a few seconds, and returns once no process of the group is left
// (and, on Linux, the shared memory a killed pgpool-II leaves is gone).
// It is safe to call more than once.
func (p *proc) stop() {
	if !p.exited() {
		syscall.Kill(p.pgid, p.stopSig)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
	}
	// The leader's children may outlive it (pgpool-II's do).
	killGroup(p.pgid)
	<-p.done
	removeSharedMemoryOf(p.cmd.Process.Pid)
}

// cpuTime is the CPU time used so far by the processes of the group (user
// and system, with their waited-for children), or 0 where unknown.
func (p *proc) cpuTime() time.Duration { return groupCPU(p.pgid) }

// statFields returns the fields of /proc/PID/stat after the command name.
func statFields(b []byte) []string {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}
