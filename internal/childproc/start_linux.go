package childproc

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// Attr runs a program as cred in a process group of its own, and has the
// kernel kill it when the process that started it dies.
func Attr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGKILL}
}

// The kernel sends the parent-death signal when the *thread* that started
// the child exits, not the process, and the Go runtime may end threads: so
// every program is started from one goroutine locked to its thread for the
// life of the process.
var (
	startOnce sync.Once
	starts    chan startReq
)

type startReq struct {
	cmd  *exec.Cmd
	done chan error
}

// Start starts cmd (whose SysProcAttr is Attr's) from the thread that
// lives as long as the process.
func Start(cmd *exec.Cmd) error {
	startOnce.Do(func() {
		starts = make(chan startReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for s := range starts {
				s.done <- s.cmd.Start()
			}
		}()
	})
	s := startReq{cmd: cmd, done: make(chan error, 1)}
	starts <- s
	return <-s.done
}
