package compare

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	pid, pgrp int
	state     string
	cpuTicks  int64 // utime + stime + cutime + cstime
	comm      string
}

// allProcs reads /proc/*/stat.
func allProcs() []procStat {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := statFields(b)
		// state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
		if len(f) < 15 {
			continue
		}
		ps := procStat{pid: pid, state: f[0]}
		ps.pgrp, _ = strconv.Atoi(f[2])
		for _, s := range f[11:15] {
			n, _ := strconv.ParseInt(s, 10, 64)
			ps.cpuTicks += n
		}
		if i, j := strings.IndexByte(string(b), '('), strings.LastIndexByte(string(b), ')'); i >= 0 && j > i {
			ps.comm = string(b[i+1 : j])
		}
		out = append(out, ps)
	}
	return out
}

// clockTick is the kernel's USER_HZ, the unit of /proc's CPU times: 100
// on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

func groupCPU(pgid int) time.Duration {
	var ticks int64
	for _, p := range allProcs() {
		if p.pgrp == pgid {
			ticks += p.cpuTicks
		}
	}
	return time.Duration(ticks) * clockTick
}

// groupLive lists the processes of group pgid that are not zombies (a
// zombie whose parent died waits for init, which in a container may never
// reap it).
func groupLive(pgid int) []int {
	var pids []int
	for _, p := range allProcs() {
		if p.pgrp == pgid && p.state != "Z" && p.state != "X" {
			pids = append(pids, p.pid)
		}
	}
	return pids
}

// killGroup kills every live process of group pgid and waits (a few
// seconds at most) until none is left.
func killGroup(pgid int) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		live := groupLive(pgid)
		if len(live) == 0 {
			return
		}
		for _, pid := range live {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// killGroupNamed kills the live processes of group pgid whose command name
// is name (a recycled group id is left alone).
func killGroupNamed(pgid int, name string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := 0
		for _, p := range allProcs() {
			if p.pgrp == pgid && p.state != "Z" && p.state != "X" && strings.HasPrefix(name, p.comm) {
				syscall.Kill(p.pid, syscall.SIGKILL)
				n++
			}
		}
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// removeSharedMemoryOf deletes the System V shared memory segments that
// process pid created and that nothing has attached any more: pgpool-II
// killed before its children, or with them, leaves its segments behind
// (it removes them itself only when it shuts down).
func removeSharedMemoryOf(pid int) {
	b, err := os.ReadFile("/proc/sysvipc/shm")
	if err != nil {
		return
	}
	// key shmid perms size cpid lpid nattch ...
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		id, err1 := strconv.Atoi(f[1])
		cpid, err2 := strconv.Atoi(f[4])
		nattch, err3 := strconv.Atoi(f[6])
		if err1 != nil || err2 != nil || err3 != nil || cpid != pid || nattch != 0 {
			continue
		}
		var ds unix.SysvShmDesc
		if _, err := unix.SysvShmCtl(id, unix.IPC_STAT, &ds); err == nil && int(ds.Cpid) == pid && ds.Nattch == 0 {
			unix.SysvShmCtl(id, unix.IPC_RMID, nil)
		}
	}
}
