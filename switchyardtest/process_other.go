//go:build unix && !linux

package switchyardtest

import (
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// removeSharedMemory is a no-op outside Linux: a segment a killed server
// leaves there is reclaimed by the system administrator's tools.
func removeSharedMemory(key, id int) {}

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
