//go:build unix && !linux

package switchyardtest

import (
	"os/exec"
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
