//go:build unix && !linux

package compare

import (
	"errors"
	"syscall"
	"time"
)

// groupCPU is unknown outside Linux.
func groupCPU(pgid int) time.Duration { return 0 }

// killGroup kills group pgid and waits (a few seconds at most) until it
// is gone.
func killGroup(pgid int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// killGroupNamed cannot check names outside Linux: it leaves the group
// alone rather than risk a recycled id.
func killGroupNamed(pgid int, name string) {}

// removeSharedMemoryOf is a no-op outside Linux.
func removeSharedMemoryOf(pid int) {}
