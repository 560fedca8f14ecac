package switchyardtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
)

// templateFormat changes whenever the initdb options below change, so that a
// template cached by an older version of this package is not reused.
const templateFormat = "2"

var templates sync.Map // bin dir -> *templateOnce

type templateOnce struct {
	once sync.Once
	dir  string
	err  error
}

// templateDir returns a data directory made by initdb, to be copied for every
// node. initdb costs about a second, so its result is kept in the temporary
// directory and shared by every process on the machine that uses the same
// server binaries (keyed by their path and version); building it is atomic
// (a rename), so concurrent test binaries never see half of one.
func templateDir(bin string, acct account) (string, error) {
	v, _ := templates.LoadOrStore(bin, &templateOnce{})
	t := v.(*templateOnce)
	t.once.Do(func() { t.dir, t.err = buildTemplate(bin, acct) })
	return t.dir, t.err
}

func buildTemplate(bin string, acct account) (string, error) {
	version, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("switchyardtest: %s --version: %w", filepath.Join(bin, "postgres"), err)
	}
	sum := sha256.Sum256([]byte(bin + "\x00" + string(bytes.TrimSpace(version)) + "\x00" + templateFormat))
	final := filepath.Join(labBase(), fmt.Sprintf("switchyard-template-%d-%s", os.Geteuid(), hex.EncodeToString(sum[:8])))
	if _, err := os.Stat(filepath.Join(final, "data", "PG_VERSION")); err == nil {
		return filepath.Join(final, "data"), nil
	}

	build, err := os.MkdirTemp(labBase(), "switchyard-template-build-")
	if err != nil {
		return "", fmt.Errorf("switchyardtest: %w", err)
	}
	defer os.RemoveAll(build) // a no-op once renamed
	if err := acct.own(build); err != nil {
		return "", fmt.Errorf("switchyardtest: %w", err)
	}
	data := filepath.Join(build, "data")
	cmd := exec.Command(filepath.Join(bin, "initdb"),
		"--pgdata", data, "--username", "postgres", "--auth", "trust",
		"--encoding", "UTF8", "--locale", "C", "--no-sync", "--no-instructions", "--wal-segsize", "1")
	cmd.SysProcAttr = procAttr(acct.cred)
	cmd.Dir = build
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("switchyardtest: initdb: %w\n%s", err, out)
	}
	if err := os.Rename(build, final); err != nil {
		// Another process built the same template first: use that one.
		if _, statErr := os.Stat(filepath.Join(final, "data", "PG_VERSION")); statErr == nil {
			return filepath.Join(final, "data"), nil
		}
		return "", fmt.Errorf("switchyardtest: %w", err)
	}
	return filepath.Join(final, "data"), nil
}

// copyTree copies the directory src to dst (which must not exist),
// keeping file modes; postgres wants its data directory mode 0700.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return errors.New("switchyardtest: unexpected file type in template: " + p)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
