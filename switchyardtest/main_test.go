package switchyardtest_test

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// mainChild makes TestMain behave as a package using Main, for
// TestMainWithoutServer's child processes.
const mainChild = "SWITCHYARDTEST_MAIN_CHILD"

var mainLab *switchyardtest.Cluster

func TestMain(m *testing.M) {
	if os.Getenv(mainChild) == "1" {
		switchyardtest.Main(m, switchyardtest.Options{}, &mainLab, nil)
	}
	// Without a server, the examples (which need one) do not run: the
	// tests that need one skip themselves (NeedServer).
	if _, err := switchyardtest.FindBinaries(); err != nil && os.Getenv(switchyardtest.RequireServerEnv) == "" {
		flag.Parse()
		flag.Set("test.skip", "^Example")
	}
	os.Exit(m.Run())
}

func onlyInChild(t *testing.T) {
	if os.Getenv(mainChild) != "1" {
		t.Skip("runs in TestMainWithoutServer's child process")
	}
}

func TestMainChildNeedsLab(t *testing.T) {
	onlyInChild(t)
	lab := switchyardtest.Need(t, mainLab)
	fmt.Printf("had a lab on port %d\n", lab.Primary().Port())
}

func TestMainChildNeedsNoLab(t *testing.T) {
	onlyInChild(t)
	fmt.Println("ran without needing a lab")
}

func TestMainChildUserSkipped(t *testing.T) {
	onlyInChild(t)
	t.Error("ran despite -test.skip")
}

// runChild runs this test binary as a package using Main, with env added.
func runChild(t *testing.T, env ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.v", "-test.count=1",
		"-test.run=^(TestMainChild.*|ExampleNode_NewRelay)$", "-test.skip=^TestMainChildUserSkipped$")
	cmd.Env = append(os.Environ(), append([]string{mainChild + "=1"}, env...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestMainWithoutServer(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	stdout, stderr, code := runChild(t, "SWITCHYARD_PG_BIN="+empty, switchyardtest.RequireServerEnv+"=")
	if code != 0 {
		t.Errorf("exit status %d without a server, want 0\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "apt-get install postgresql") || !strings.Contains(lines[0], empty) {
		t.Errorf("stderr should be one line saying what is missing and how to install it; it is:\n%s", stderr)
	}
	for _, want := range []string{"--- SKIP: TestMainChildNeedsLab", "PostgreSQL server binaries", "ran without needing a lab", "--- PASS: TestMainChildNeedsNoLab"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	for _, unwanted := range []string{"ExampleNode_NewRelay", "TestMainChildUserSkipped", "had a lab"} {
		if strings.Contains(stdout, unwanted) {
			t.Errorf("stdout has %q: an example ran, or -test.skip was lost:\n%s", unwanted, stdout)
		}
	}

	stdout, stderr, code = runChild(t, "SWITCHYARD_PG_BIN="+empty, switchyardtest.RequireServerEnv+"=1")
	if code != 1 {
		t.Errorf("exit status %d without a server when one is required, want 1", code)
	}
	if !strings.Contains(stderr, "PostgreSQL server binaries") {
		t.Errorf("stderr does not say why:\n%s", stderr)
	}
	if strings.Contains(stdout, "=== RUN") {
		t.Errorf("tests ran although the required server is missing:\n%s", stdout)
	}
}

func TestMainWithServer(t *testing.T) {
	switchyardtest.NeedServer(t)
	t.Parallel()
	stdout, stderr, code := runChild(t, switchyardtest.RequireServerEnv+"=1")
	if code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"had a lab on port", "--- PASS: ExampleNode_NewRelay"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "TestMainChildUserSkipped") {
		t.Errorf("-test.skip was lost:\n%s", stdout)
	}
}

// fakeTB records what New and Need do to a test.
type fakeTB struct{ skipped, failed string }

func (f *fakeTB) Helper()                           {}
func (f *fakeTB) Cleanup(func())                    {}
func (f *fakeTB) Fatalf(format string, args ...any) { f.failed = fmt.Sprintf(format, args...) }
func (f *fakeTB) Skipf(format string, args ...any)  { f.skipped = fmt.Sprintf(format, args...) }

// noSkip is a TB that cannot skip.
type noSkip struct{ f *fakeTB }

func (n noSkip) Helper()                           {}
func (n noSkip) Cleanup(fn func())                 {}
func (n noSkip) Fatalf(format string, args ...any) { n.f.Fatalf(format, args...) }

// TestNewSkipsWithoutServer is not parallel: it changes the environment.
func TestNewSkipsWithoutServer(t *testing.T) {
	t.Setenv("SWITCHYARD_PG_BIN", t.TempDir())
	t.Setenv(switchyardtest.RequireServerEnv, "")
	var f fakeTB
	if c := switchyardtest.New(&f, switchyardtest.Options{}); c != nil || f.failed != "" || !strings.Contains(f.skipped, "apt-get install postgresql") {
		t.Errorf("New without a server: %v, skipped %q, failed %q", c, f.skipped, f.failed)
	}
	f = fakeTB{}
	if c := switchyardtest.New(noSkip{&f}, switchyardtest.Options{}); c != nil || !strings.Contains(f.failed, "apt-get") {
		t.Errorf("New without a server, on a TB that cannot skip: %v, failed %q", c, f.failed)
	}
	t.Setenv(switchyardtest.RequireServerEnv, "1")
	f = fakeTB{}
	if cs := switchyardtest.NewClusters(&f, switchyardtest.Options{}, switchyardtest.Options{}); cs != nil || f.skipped != "" || !strings.Contains(f.failed, "apt-get") {
		t.Errorf("NewClusters without a required server: %v, skipped %q, failed %q", cs, f.skipped, f.failed)
	}
	// Need without Main is a mistake, not a missing server.
	f = fakeTB{}
	if c := switchyardtest.Need(&f, nil); c != nil || f.skipped != "" || !strings.Contains(f.failed, "Main") {
		t.Errorf("Need(nil) without Main: skipped %q, failed %q", f.skipped, f.failed)
	}
}
