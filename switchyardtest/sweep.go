package switchyardtest

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
)

const (
	labPrefix = "switchyard-lab-"
	ownerFile = "owner.pid"
)

// sweepStaleLabs removes what labs left behind when their process was
// killed before it could close them: it kills their servers (which, on
// Linux, the kernel has already done) and deletes their directories. Only
// private lab directories in the temporary directory are swept, and only
// those whose owning process is gone.
func sweepStaleLabs() {
	dirs, _ := filepath.Glob(filepath.Join(labBase(), labPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being created
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || owner <= 0 || alive(owner) {
			continue
		}
		// Orphaned backends may outlive their postmaster for a moment and
		// keep its shared memory attached: kill them first.
		orphans := processesIn(dir)
		for _, p := range orphans {
			syscall.Kill(p, syscall.SIGKILL)
		}
		waitGone(orphans)
		pidFiles, _ := filepath.Glob(filepath.Join(dir, "*", "postmaster.pid"))
		for _, pf := range pidFiles {
			readPIDFile(pf).cleanUp()
		}
		os.RemoveAll(dir)
	}
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// pidFile is what postmaster.pid says: the postmaster's pid (line 1) and
// its System V shared memory key and id (line 7).
type pidFile struct {
	pid, shmKey, shmID int
}

func readPIDFile(path string) pidFile {
	var pf pidFile
	f, err := os.Open(path)
	if err != nil {
		return pf
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for line := 1; s.Scan(); line++ {
		switch line {
		case 1:
			pf.pid, _ = strconv.Atoi(strings.TrimSpace(s.Text()))
		case 7:
			if f := strings.Fields(s.Text()); len(f) == 2 {
				pf.shmKey, _ = strconv.Atoi(f[0])
				pf.shmID, _ = strconv.Atoi(f[1])
			}
		}
	}
	return pf
}

// cleanUp kills what is left of a server from its postmaster.pid and
// removes its shared memory segment.
func (pf pidFile) cleanUp() {
	if pf.pid > 0 && isPostgres(pf.pid) {
		syscall.Kill(pf.pid, syscall.SIGSTOP)
		kids := children(pf.pid)
		for _, k := range kids {
			syscall.Kill(k, syscall.SIGKILL)
		}
		syscall.Kill(pf.pid, syscall.SIGKILL)
		waitGone(append(kids, pf.pid))
	}
	if pf.shmKey != 0 {
		removeSharedMemory(pf.shmKey, pf.shmID)
	}
}

// isPostgres guards against a recycled pid: on Linux it checks that the
// process is a postgres server.
func isPostgres(pid int) bool {
	if !alive(pid) {
		return false
	}
	if runtime.GOOS != "linux" {
		return true
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), "postgres")
}
