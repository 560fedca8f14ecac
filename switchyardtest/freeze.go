package switchyardtest

import (
	"fmt"
	"syscall"
	"time"
)

// Freeze stops every process of the node's server with SIGSTOP: the
// postmaster first, so that it forks no more, then all it started
// (backends, WAL receiver or senders, startup process, checkpointer, ...).
// It returns once they have all stopped. A frozen server is a hung one: the
// kernel still accepts connections to its port and takes what clients send,
// but nothing answers, so queries wait for their own deadlines. Thaw
// continues it; Stop, StopImmediate, Restart and Cluster.Close thaw it first,
// and Kill works on it as it is.
//
// A replica frozen for longer than the primary's wal_sender_timeout (60s)
// loses its replication connection and makes a new one after Thaw.
func (n *Node) Freeze() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || isClosed(n.done) {
		return fmt.Errorf("switchyardtest: %s is not running", n.name)
	}
	pid := n.cmd.Process.Pid
	n.frozen = true
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("switchyardtest: freeze %s: %w", n.name, err)
	}
	if err := waitStopped(pid); err != nil {
		return fmt.Errorf("switchyardtest: freeze %s: %w", n.name, err)
	}
	// With the postmaster stopped the set of processes is fixed (a child
	// forked while it was being stopped is in it); a child could only
	// have forked a process of its own before it was stopped, so go round
	// until a pass finds nothing new.
	seen := map[int]bool{pid: true}
	for {
		var found []int
		for _, p := range descendants(pid) {
			if !seen[p] {
				seen[p] = true
				found = append(found, p)
				syscall.Kill(p, syscall.SIGSTOP)
			}
		}
		if len(found) == 0 {
			return nil
		}
		for _, p := range found {
			if err := waitStopped(p); err != nil {
				return fmt.Errorf("switchyardtest: freeze %s: %w", n.name, err)
			}
		}
	}
}

// Thaw continues a server stopped by Freeze (SIGCONT to all its processes,
// the postmaster last). It is a no-op for a server that is not frozen.
func (n *Node) Thaw() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.frozen {
		return nil
	}
	n.frozen = false
	if n.cmd == nil || isClosed(n.done) {
		return nil
	}
	pid := n.cmd.Process.Pid
	for _, p := range descendants(pid) {
		syscall.Kill(p, syscall.SIGCONT)
	}
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("switchyardtest: thaw %s: %w", n.name, err)
	}
	return nil
}

// Frozen reports whether Freeze stopped the server and Thaw has not
// continued it yet.
func (n *Node) Frozen() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.frozen && n.cmd != nil && !isClosed(n.done)
}

// waitStopped waits until pid is stopped (or gone); signals are delivered
// asynchronously.
func waitStopped(pid int) error {
	deadline := time.Now().Add(10 * time.Second)
	for !stopped(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop", pid)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}
