package switchyardtest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"

	"github.com/switchyard-db/switchyard/internal/childproc"
)

// templateFormat changes whenever the initdb options below change, so that a
// template cached by an older version of this package is not reused.
const templateFormat = "3"

var templates sync.Map // templateKey -> *templateOnce

type templateKey struct{ bin, encoding, locale string }

type templateOnce struct {
	once sync.Once
	dir  string
	err  error
}

// templateDir returns a data directory made by initdb, to be copied for every
// node. initdb costs about a second, so its result is kept in the temporary
// directory and shared by every process on the machine that uses the same
// server binaries (keyed by their path and version); building it is atomic
// (a rename), so concurrent test binaries never see half of one. There is
// one template for each server encoding and locale.
func templateDir(key templateKey, acct account) (string, error) {
	v, _ := templates.LoadOrStore(key, &templateOnce{})
	t := v.(*templateOnce)
	t.once.Do(func() { t.dir, t.err = buildTemplate(key, acct) })
	return t.dir, t.err
}

func buildTemplate(key templateKey, acct account) (string, error) {
	bin := key.bin
	version, err := exec.Command(filepath.Join(bin, "postgres"), "--version").Output()
	if err != nil {
		return "", fmt.Errorf("switchyardtest: %s --version: %w", filepath.Join(bin, "postgres"), err)
	}
	sum := sha256.Sum256([]byte(bin + "\x00" + string(bytes.TrimSpace(version)) + "\x00" + templateFormat +
		"\x00" + key.encoding + "\x00" + key.locale))
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
		"--encoding", key.encoding, "--locale", key.locale, "--no-sync", "--no-instructions", "--wal-segsize", "1")
	cmd.SysProcAttr = childproc.Attr(acct.Cred)
	cmd.Dir = build
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("switchyardtest: initdb --encoding %s --locale %s: %w\n%s", key.encoding, key.locale, err, out)
	}
	if err := pruneRecycledWAL(data); err != nil {
		return "", fmt.Errorf("switchyardtest: %w", err)
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

// pruneRecycledWAL removes the WAL segment files that initdb's checkpoints
// recycled for later use: their first page is not the start of their own
// segment (or not a page at all). They hold nothing the server needs, and
// every node would copy them.
func pruneRecycledWAL(data string) error {
	segs, err := filepath.Glob(filepath.Join(data, "pg_wal", "[0-9A-F]*"))
	if err != nil {
		return err
	}
	var live int
	var recycled []string
	for _, seg := range segs {
		name := filepath.Base(seg)
		if len(name) != 24 {
			continue
		}
		var tli, log, num uint64
		if _, err := fmt.Sscanf(name, "%08X%08X%08X", &tli, &log, &num); err != nil {
			continue
		}
		f, err := os.Open(seg)
		if err != nil {
			return err
		}
		var h [40]byte
		_, err = f.ReadAt(h[:], 0)
		f.Close()
		if err != nil {
			return err
		}
		magic, info := binary.LittleEndian.Uint16(h[0:]), binary.LittleEndian.Uint16(h[2:])
		pageAddr, segSize := binary.LittleEndian.Uint64(h[8:]), uint64(binary.LittleEndian.Uint32(h[32:]))
		if magic >= walPageMagicMin && info&xlpLongHeader != 0 && segSize > 0 &&
			pageAddr == (log*(0x100000000/segSize)+num)*segSize {
			live++
			continue
		}
		recycled = append(recycled, seg)
	}
	if live == 0 {
		return nil // not what we expect: leave the files alone
	}
	for _, seg := range recycled {
		if err := os.Remove(seg); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the directory src to dst (which must not exist),
// keeping file modes (postgres wants its data directory mode 0700) and
// giving every file to acct.
func copyTree(src, dst string, acct account) error {
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
			err = os.Mkdir(target, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
			var link string
			if link, err = os.Readlink(p); err == nil {
				err = os.Symlink(link, target)
			}
		case d.Type().IsRegular():
			err = copyFile(p, target)
		default:
			return errors.New("switchyardtest: unexpected file type in template: " + p)
		}
		if err == nil && acct.Cred != nil {
			err = os.Lchown(target, int(acct.Cred.Uid), int(acct.Cred.Gid))
		}
		return err
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
