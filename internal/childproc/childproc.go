// Package childproc starts the programs that switchyard's lab and its
// comparisons run (PostgreSQL servers, pgbench, pgbouncer, pgpool-II, a
// proxy): as the postgres user when run by root (PostgreSQL and pgbouncer
// refuse root), in a process group of their own (so that a terminal's
// Ctrl-C reaches only their starter, which stops them in order, and the
// whole group can be killed at once), and, on Linux, killed by the kernel
// when the process that started them dies, so that nothing outlives a
// killed test binary.
package childproc

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// Account is the operating-system user programs run as.
type Account struct {
	// Cred is the postgres user's, or nil to run as ourselves.
	Cred *syscall.Credential
}

// ErrNoPostgresUser reports that the process runs as root and there is no
// postgres user to run the programs as.
var ErrNoPostgresUser = errors.New(`running as root, and there is no "postgres" user to run the servers as`)

// Postgres is the account to run PostgreSQL's programs as: ourselves, or,
// as root, the postgres user.
func Postgres() (Account, error) {
	if os.Geteuid() != 0 {
		return Account{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return Account{}, fmt.Errorf("%w: %w", ErrNoPostgresUser, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return Account{}, fmt.Errorf("user postgres has uid %q, gid %q: %w", u.Uid, u.Gid, err)
	}
	return Account{Cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}, nil
}

// Own gives path and everything under it to the account.
func (a Account) Own(path string) error {
	if a.Cred == nil {
		return nil
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.Cred.Uid), int(a.Cred.Gid))
	})
}
