package switchyardtest

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// account is the operating-system user the servers run as. initdb and
// postgres refuse to run as root, so a lab started by root runs them as the
// "postgres" user and hands its directories to it.
type account struct {
	cred *syscall.Credential // nil: run as ourselves
}

func currentAccount() (account, error) {
	if os.Geteuid() != 0 {
		return account{}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return account{}, fmt.Errorf("switchyardtest: running as root, and PostgreSQL refuses to run as root; "+
			"the lab runs the servers as the \"postgres\" user, which does not exist here (create it, or run as another user): %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return account{}, fmt.Errorf("switchyardtest: user postgres has uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return account{}, fmt.Errorf("switchyardtest: user postgres has gid %q: %w", u.Gid, err)
	}
	return account{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}}, nil
}

// own gives path and everything under it to the account.
func (a account) own(path string) error {
	if a.cred == nil {
		return nil
	}
	return filepath.WalkDir(path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(a.cred.Uid), int(a.cred.Gid))
	})
}

// canReach checks that the account can traverse every directory above dir,
// which a server running as "postgres" needs to open its data directory.
func (a account) canReach(dir string) error {
	if a.cred == nil {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("switchyardtest: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		mode := fi.Mode().Perm()
		reach := mode&0o001 != 0 ||
			ok && st.Uid == a.cred.Uid && mode&0o100 != 0 ||
			ok && st.Gid == a.cred.Gid && mode&0o010 != 0
		if !reach {
			return fmt.Errorf("switchyardtest: the servers run as the postgres user (PostgreSQL refuses root), "+
				"which cannot reach %s through %s (mode %v); choose a directory it can reach, such as one under %s", abs, p, mode, labBase())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
