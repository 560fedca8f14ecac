package switchyardtest

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSetSystemIdentifier(t *testing.T) {
	t.Parallel()
	bin, err := FindBinaries()
	if err != nil {
		t.Skip(err)
	}
	acct, err := currentAccount()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := templateDir(templateKey{bin: bin, encoding: "UTF8", locale: "C"}, acct)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := copyTree(tmpl, dir, account{}); err != nil {
		t.Fatal(err)
	}
	old, err := systemIdentifier(dir)
	if err != nil {
		t.Fatal(err)
	}
	id := newSystemIdentifier()
	if id == old || int64(id) <= 0 {
		t.Fatalf("new identifier %d (old %d)", id, old)
	}
	if err := setSystemIdentifier(dir, id); err != nil {
		t.Fatal(err)
	}
	if got, _ := systemIdentifier(dir); got != id {
		t.Fatalf("identifier %d after setting %d", got, id)
	}
	// pg_controldata checks the CRC; pg_waldump reads the WAL from the
	// checkpoint on (the servers of the lab tests check its identifier).
	out, err := exec.Command(filepath.Join(bin, "pg_controldata"), dir).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_controldata: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "CRC") || !strings.Contains(string(out), "Database system identifier:           "+strconv.FormatUint(id, 10)) {
		t.Errorf("pg_controldata after the change:\n%s", out)
	}
	var redo string
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == "Latest checkpoint's REDO WAL file" {
			redo = strings.TrimSpace(v)
		}
	}
	if redo == "" {
		t.Fatalf("no REDO WAL file in:\n%s", out)
	}
	if out, err := exec.Command(filepath.Join(bin, "pg_waldump"), "-p", filepath.Join(dir, "pg_wal"), "-n", "1", redo).CombinedOutput(); err != nil {
		t.Errorf("pg_waldump of %s: %v\n%s", redo, err, out)
	}

	b := make([]byte, controlFileSize)
	if _, err := controlCRCOffset(b[:100]); err == nil {
		t.Error("a short control file: no error")
	}
	for i := range b {
		b[i] = byte(i)
	}
	if _, err := controlCRCOffset(b); err == nil {
		t.Error("a control file without a CRC: no error")
	}
}
