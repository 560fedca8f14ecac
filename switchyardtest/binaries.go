package switchyardtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ErrNoServer reports that no PostgreSQL server binaries were found.
var ErrNoServer = errors.New("switchyardtest: PostgreSQL server binaries (initdb, postgres) not found; " +
	"install them (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql) " +
	"or set SWITCHYARD_PG_BIN to the directory that holds them")

// FindBinaries returns the directory holding the PostgreSQL server binaries
// (initdb and postgres). It looks, in order, at $SWITCHYARD_PG_BIN, at
// `pg_config --bindir`, at PATH, and at the newest /usr/lib/postgresql/*/bin
// (where Debian and Ubuntu keep them, off PATH).
func FindBinaries() (string, error) {
	if dir := os.Getenv("SWITCHYARD_PG_BIN"); dir != "" {
		if !hasServer(dir) {
			return "", fmt.Errorf("SWITCHYARD_PG_BIN=%s holds no initdb and postgres: %w", dir, ErrNoServer)
		}
		return dir, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServer(dir) {
			return dir, nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if dir := filepath.Dir(p); hasServer(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return majorOf(dirs[i]) > majorOf(dirs[j]) })
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", ErrNoServer
}

func hasServer(dir string) bool {
	for _, name := range []string{"initdb", "postgres"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return false
		}
	}
	return true
}

// majorOf reads the version out of /usr/lib/postgresql/<major>/bin.
func majorOf(dir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	return v
}
