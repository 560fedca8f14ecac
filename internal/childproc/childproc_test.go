package childproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestStart: a program started with Attr runs in a process group of its
// own, from the thread that outlives every call.
func TestStart(t *testing.T) {
	for range 3 {
		cmd := exec.Command("sh", "-c", "exit 0")
		cmd.SysProcAttr = Attr(nil)
		if err := Start(cmd); err != nil {
			t.Fatal(err)
		}
		pgid, err := syscall.Getpgid(cmd.Process.Pid)
		if err == nil && pgid != cmd.Process.Pid {
			t.Errorf("process group %d, want its own (%d)", pgid, cmd.Process.Pid)
		}
		if err := cmd.Wait(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPostgres: as root, programs run as the postgres user, and Own hands
// it a tree; as anyone else, as ourselves.
func TestPostgres(t *testing.T) {
	a, err := Postgres()
	if os.Geteuid() != 0 {
		if err != nil || a.Cred != nil {
			t.Fatalf("not root: %+v, %v", a, err)
		}
		return
	}
	if err != nil {
		t.Skipf("no postgres user here: %v", err)
	}
	if a.Cred == nil || a.Cred.Uid == 0 {
		t.Fatalf("as root: %+v", a.Cred)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "sub", "file")
	if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := a.Own(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != a.Cred.Uid {
		t.Errorf("owner %d, want %d", st.Uid, a.Cred.Uid)
	}
}
