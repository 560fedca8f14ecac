package switchyardtest

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/switchyard-db/switchyard/internal/childproc"
)

// account is the operating-system user the servers run as. initdb and
// postgres refuse to run as root, so a lab started by root runs them as the
// "postgres" user and hands its directories to it.
type account struct{ childproc.Account }

func currentAccount() (account, error) {
	a, err := childproc.Postgres()
	if err != nil {
		return account{}, fmt.Errorf("switchyardtest: PostgreSQL refuses to run as root, and the lab runs the servers as the \"postgres\" user, which is missing (create it, or run as another user): %w", err)
	}
	return account{a}, nil
}

// own gives path and everything under it to the account.
func (a account) own(path string) error { return a.Own(path) }

// canReach checks that the account can traverse every directory above dir,
// which a server running as "postgres" needs to open its data directory.
func (a account) canReach(dir string) error {
	if a.Cred == nil {
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
			ok && st.Uid == a.Cred.Uid && mode&0o100 != 0 ||
			ok && st.Gid == a.Cred.Gid && mode&0o010 != 0
		if !reach {
			return fmt.Errorf("switchyardtest: the servers run as the postgres user (PostgreSQL refuses root), "+
				"which cannot reach %s through %s (mode %v); choose a directory it can reach, such as one under %s", abs, p, mode, labBase())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}
