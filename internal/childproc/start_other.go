//go:build unix && !linux

package childproc

import (
	"os/exec"
	"syscall"
)

// Attr runs a program as cred in a process group of its own. Outside
// Linux there is no parent-death signal: its starter sweeps what a killed
// run left at its next start.
func Attr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

// Start starts cmd.
func Start(cmd *exec.Cmd) error { return cmd.Start() }
