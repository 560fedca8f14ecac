package switchyardtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"
)

// RequireServerEnv names the environment variable that makes a missing
// PostgreSQL server a failure: when it is set to anything but "", Main
// exits with status 1 and New and NewClusters fail the test, instead of
// skipping what needs the server. Set it in CI, where a skipped suite
// would pass unnoticed.
const RequireServerEnv = "SWITCHYARD_REQUIRE_SERVER"

func serverRequired() bool { return os.Getenv(RequireServerEnv) != "" }

var (
	noServerMu  sync.Mutex
	noServerErr error // why Main started no cluster, when it found no server
)

// Main is a TestMain for a package whose tests share one cluster: it starts
// the cluster, runs setup on it (tables, data; may be nil), stores it in
// *shared, runs the tests, closes the cluster and exits with the tests'
// status. If the cluster cannot start or setup fails, it says why and exits
// with status 1.
//
// When there are no PostgreSQL server binaries (ErrNoServer) and
// SWITCHYARD_REQUIRE_SERVER (RequireServerEnv) is not set, Main instead
// prints one line to standard error saying what is missing and how to
// install it, leaves *shared nil, skips every example (they cannot say that
// they need the server; it adds "^Example" to -test.skip) and runs the
// tests: those that need the cluster skip themselves with Need, and the
// others run as usual.
//
//	var lab *switchyardtest.Cluster
//
//	func TestMain(m *testing.M) {
//		switchyardtest.Main(m, switchyardtest.Options{Replicas: 2}, &lab, nil)
//	}
//
//	func TestRouting(t *testing.T) {
//		lab := switchyardtest.Need(t, lab)
//		...
//	}
func Main(m interface{ Run() int }, opts Options, shared **Cluster, setup func(context.Context, *Cluster) error) {
	os.Exit(runMain(m, opts, shared, setup))
}

func runMain(m interface{ Run() int }, opts Options, shared **Cluster, setup func(context.Context, *Cluster) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	c, err := Start(ctx, opts)
	if err == nil && setup != nil {
		if err = setup(ctx, c); err != nil {
			c.Close()
		}
	}
	cancel()
	if err != nil {
		if !errors.Is(err, ErrNoServer) || serverRequired() {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "%v; skipping what needs it (set %s=1 to fail instead)\n", err, RequireServerEnv)
		noServerMu.Lock()
		noServerErr = err
		noServerMu.Unlock()
		*shared = nil
		skipExamples()
		return m.Run()
	}
	*shared = c
	code := m.Run()
	c.Close()
	return code
}

// skipExamples adds "^Example" to the test binary's -test.skip.
func skipExamples() {
	if !flag.Parsed() {
		flag.Parse()
	}
	f := flag.Lookup("test.skip")
	if f == nil {
		return // not a test binary
	}
	skip := "^Example"
	if v := f.Value.String(); v != "" {
		// -skip splits at top-level '|' into alternatives, so this
		// keeps the user's pattern whole.
		skip = v + "|" + skip
	}
	f.Value.Set(skip)
}

// SkipTB is the part of testing.TB that Need uses.
type SkipTB interface {
	Helper()
	Skipf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Need returns c, a cluster that Main stored, for a test that needs it.
// When c is nil because Main found no PostgreSQL server, it skips the test
// with the reason; when c is nil for another reason (Main was not called,
// say), it fails the test. Need returns nil only if Skipf or Fatalf return
// (they do not for a *testing.T).
func Need(tb SkipTB, c *Cluster) *Cluster {
	tb.Helper()
	if c != nil {
		return c
	}
	noServerMu.Lock()
	err := noServerErr
	noServerMu.Unlock()
	if err != nil {
		tb.Skipf("%v", err)
		return nil
	}
	tb.Fatalf("switchyardtest: no cluster: it is started by Main in TestMain (or use New)")
	return nil
}

// NeedServer skips tb when there are no PostgreSQL server binaries on the
// machine (and SWITCHYARD_REQUIRE_SERVER is not set; then it fails tb),
// for a test that starts servers itself with Start or runs a command that
// does.
func NeedServer(tb SkipTB) {
	tb.Helper()
	if _, err := FindBinaries(); err != nil {
		if serverRequired() {
			tb.Fatalf("%v", err)
		}
		tb.Skipf("%v", err)
	}
}
