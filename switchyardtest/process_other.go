//go:build unix && !linux

package switchyardtest

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// procAttr puts a server in its own process group. Outside Linux there is no
// parent-death signal; the sweep of stale labs at the next start covers a
// lab whose process was killed.
func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

// removeSharedMemory is a no-op outside Linux: a segment a killed server
// leaves there is reclaimed by the system administrator's tools.
func removeSharedMemory(key, id int) {}

func startProcess(cmd *exec.Cmd) error { return cmd.Start() }

// children lists the processes whose parent is pid, with pgrep.
func children(pid int) []int {
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
	var kids []int
	for _, f := range strings.Fields(string(out)) {
		if k, err := strconv.Atoi(f); err == nil {
			kids = append(kids, k)
		}
	}
	return kids
}

// descendants lists the processes below pid, with pgrep.
func descendants(pid int) []int {
	var out []int
	for queue := children(pid); len(queue) > 0; queue = queue[1:] {
		out = append(out, queue[0])
		queue = append(queue, children(queue[0])...)
	}
	return out
}

// stopped reports whether pid is stopped by a signal, or gone, with ps.
func stopped(pid int) bool {
	out, err := exec.Command("ps", "-o", "stat=", "-p", strconv.Itoa(pid)).Output()
	s := strings.TrimSpace(string(out))
	return err != nil || s == "" || s[0] == 'T' || s[0] == 'Z'
}

// exited reports whether pid is gone.
func exited(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// processesIn is not available outside Linux; the postmaster's pid file
// leads to the rest.
func processesIn(dir string) []int { return nil }
