package switchyardtest

import (
	"os"
	"runtime"
	"syscall"
)

// minShmFree is how much room /dev/shm must have before labs go there.
const minShmFree = 1 << 30

// labBase is the directory in which labs and the initdb template are made:
// $SWITCHYARD_LAB_TMPDIR if set, else /dev/shm on Linux when it is a
// writable memory file system with room to spare, else os.TempDir().
//
// Memory matters: a data directory is about a thousand small files, and
// creating them costs nearly a second per node on a virtual machine's disk
// but a few tens of milliseconds in memory. The lab sets fsync off anyway;
// its data is worthless after a crash.
func labBase() string {
	if dir := os.Getenv("SWITCHYARD_LAB_TMPDIR"); dir != "" {
		return dir
	}
	if runtime.GOOS == "linux" {
		var st syscall.Statfs_t
		const tmpfsMagic = 0x01021994
		if syscall.Statfs("/dev/shm", &st) == nil && st.Type == tmpfsMagic &&
			uint64(st.Bavail)*uint64(st.Bsize) >= minShmFree && syscall.Access("/dev/shm", 2 /* W_OK */) == nil {
			return "/dev/shm"
		}
	}
	return os.TempDir()
}
