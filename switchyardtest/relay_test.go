package switchyardtest_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

func itoa(i int) string { return strconv.Itoa(i) }

// connectVia opens a connection to dsn, closed at the end of the test.
func connectVia(t *testing.T, ctx context.Context, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// roundTrip times one simple-protocol query: one request, one reply.
func roundTrip(ctx context.Context, conn *pgx.Conn) (time.Duration, error) {
	start := time.Now()
	_, err := conn.PgConn().Exec(ctx, "SELECT 1").ReadAll()
	return time.Since(start), err
}

// fastest is the quickest of a few round trips, to see through a busy
// machine's noise.
func fastest(t *testing.T, ctx context.Context, conn *pgx.Conn) time.Duration {
	t.Helper()
	best := time.Hour
	for range 3 {
		d, err := roundTrip(ctx, conn)
		if err != nil {
			t.Fatal(err)
		}
		best = min(best, d)
	}
	return best
}

// waitFor polls cond until it holds or the test's deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestRelayForwards(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	r := c.Primary().NewRelay(t)
	if r.Port() == c.Primary().Port() || !strings.Contains(r.DSN(), r.Addr()) || r.Addr() != net.JoinHostPort("127.0.0.1", itoa(r.Port())) {
		t.Fatalf("relay %s, port %d, DSN %s", r.Addr(), r.Port(), r.DSN())
	}
	conn := connectVia(t, ctx, r.DSN())
	var port int
	if err := conn.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil {
		t.Fatal(err)
	}
	if port != c.Primary().Port() {
		t.Errorf("relay reached port %d, want the primary's %d", port, c.Primary().Port())
	}
	if n := r.Connections(); n != 1 {
		t.Errorf("Connections = %d, want 1", n)
	}
	conn.Close(ctx)
	waitFor(t, "the closed connection to leave the relay", func() bool { return r.Connections() == 0 })

	// A relay made by StartRelay has no DSN of its own.
	plain, err := switchyardtest.StartRelay(net.JoinHostPort("127.0.0.1", itoa(c.Primary().Port())))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if plain.DSN() != "" {
		t.Errorf("StartRelay's DSN = %q, want empty", plain.DSN())
	}
	conn2 := connectVia(t, ctx, strings.Replace(c.Primary().DSN(), itoa(c.Primary().Port()), itoa(plain.Port()), 1))
	if _, err := roundTrip(ctx, conn2); err != nil {
		t.Fatal(err)
	}
	if _, err := switchyardtest.StartRelay("no port"); err == nil {
		t.Error("StartRelay with a bad target: no error")
	}
}

func TestRelayLatency(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	r := c.Primary().NewRelay(t)
	conn := connectVia(t, ctx, r.DSN())
	base := fastest(t, ctx, conn)

	const d = 150 * time.Millisecond
	r.SetLatency(d) // on a connection open already
	took := fastest(t, ctx, conn)
	t.Logf("round trip %v without latency, %v with %v", base, took, d)
	if took < d {
		t.Errorf("round trip took %v with a latency of %v", took, d)
	}
	if took > d+time.Second {
		t.Errorf("round trip took %v with a latency of %v: far more than it adds", took, d)
	}
	r.SetLatency(0)
	if took := fastest(t, ctx, conn); took >= d {
		t.Errorf("round trip took %v after the latency was removed", took)
	}
}

func TestRelayBandwidth(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	r := c.Primary().NewRelay(t)
	conn := connectVia(t, ctx, r.DSN())
	const size = 384 << 10
	const rate = 1 << 20 // bytes per second
	download := func() time.Duration {
		start := time.Now()
		var n int
		if err := conn.QueryRow(ctx, "SELECT length(repeat('x', $1))", size).Scan(&n); err != nil {
			t.Fatal(err)
		}
		var s string
		if err := conn.QueryRow(ctx, "SELECT repeat('x', $1)", size).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	upload := func() time.Duration {
		start := time.Now()
		var n int
		if err := conn.QueryRow(ctx, "SELECT length($1::text)", strings.Repeat("y", size)).Scan(&n); err != nil || n != size {
			t.Fatalf("length %d, %v", n, err)
		}
		return time.Since(start)
	}
	fastDown, fastUp := download(), upload()
	r.SetBandwidth(rate)
	slowDown, slowUp := download(), upload()
	t.Logf("%d KiB down: %v, limited to %d KiB/s %v; up: %v, limited %v", size>>10, fastDown, rate>>10, slowDown, fastUp, slowUp)
	want := time.Duration(size) * time.Second / rate * 4 / 5
	if slowDown < want || slowUp < want {
		t.Errorf("%d KiB took %v down and %v up at %d KiB/s, want at least %v", size>>10, slowDown, slowUp, rate>>10, want)
	}
	r.SetBandwidth(0)
	if d := download(); d >= want {
		t.Errorf("download took %v after the limit was removed", d)
	}
}

func TestRelayBlackholeAndHeal(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	r := c.Primary().NewRelay(t)
	timedOut := connectVia(t, ctx, r.DSN())
	held := connectVia(t, ctx, r.DSN())

	r.Blackhole()
	start := time.Now() // before the deadline is set: a busy machine may pause between the two
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := roundTrip(short, timedOut)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("query through a blackhole ended after %v with %v, want its context's deadline", time.Since(start), err)
	}

	// A query sent into the blackhole is held, not lost.
	answer := make(chan error, 1)
	go func() {
		var v int
		err := held.QueryRow(ctx, "SELECT 42").Scan(&v)
		if err == nil && v != 42 {
			err = errors.New("wrong answer")
		}
		answer <- err
	}()
	// New connections are accepted, but get nothing.
	short, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	_, err = pgx.Connect(short, r.DSN())
	cancel()
	if err == nil {
		t.Fatal("connected through a blackhole")
	}
	select {
	case err := <-answer:
		t.Fatalf("held query answered during the blackhole: %v", err)
	default:
	}

	r.Heal()
	if err := <-answer; err != nil {
		t.Fatalf("held query after Heal: %v", err)
	}
	fresh := connectVia(t, ctx, r.DSN())
	if _, err := roundTrip(ctx, fresh); err != nil {
		t.Fatalf("new connection after Heal: %v", err)
	}
}

func TestRelayResetAll(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	r := c.Primary().NewRelay(t)
	conn := connectVia(t, ctx, r.DSN())
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	r.ResetAll()
	_, err := roundTrip(ctx, conn)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("query after ResetAll: %v, want a connection reset", err)
	}
	// The server's side was reset too: its backend goes.
	admin := connectVia(t, ctx, c.Primary().DSN())
	waitFor(t, "the reset connection's backend to exit", func() bool {
		var alive bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE pid = $1)", backend).Scan(&alive); err != nil {
			t.Fatal(err)
		}
		return !alive
	})
	waitFor(t, "the relay to drop the connection", func() bool { return r.Connections() == 0 })
	// It keeps accepting.
	again := connectVia(t, ctx, r.DSN())
	if _, err := roundTrip(ctx, again); err != nil {
		t.Fatalf("new connection after ResetAll: %v", err)
	}
}

func TestRelayRefuseNew(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	r := c.Primary().NewRelay(t)
	open := connectVia(t, ctx, r.DSN())
	r.RefuseNew(true)
	if conn, err := pgx.Connect(ctx, r.DSN()); err == nil {
		conn.Close(ctx)
		t.Fatal("connected through a relay that refuses new connections")
	}
	if _, err := roundTrip(ctx, open); err != nil {
		t.Fatalf("an open connection broke when new ones were refused: %v", err)
	}
	if n := r.Connections(); n != 1 {
		t.Errorf("Connections = %d while refusing, want the 1 open", n)
	}
	r.RefuseNew(false)
	conn := connectVia(t, ctx, r.DSN())
	if _, err := roundTrip(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// relayGoroutines counts the goroutines running the relay's code.
func relayGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	var found []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "switchyardtest.(*Relay)") || strings.Contains(g, "switchyardtest.(*relayConn)") || strings.Contains(g, "switchyardtest.(*pipe)") {
			n++
			found = append(found, g)
		}
	}
	return n, strings.Join(found, "\n\n")
}

// TestRelayCloseLeavesNothing is not parallel, so that no other relay runs.
func TestRelayCloseLeavesNothing(t *testing.T) {
	ctx := ctxFor(t)
	c := switchyardtest.New(t, switchyardtest.Options{})
	before := runtime.NumGoroutine()
	r, err := switchyardtest.StartRelay(net.JoinHostPort("127.0.0.1", itoa(c.Primary().Port())))
	if err != nil {
		t.Fatal(err)
	}
	dsn := strings.Replace(c.Primary().DSN(), itoa(c.Primary().Port()), itoa(r.Port()), 1)
	busy := connectVia(t, ctx, dsn)
	r.SetLatency(20 * time.Millisecond)
	r.SetBandwidth(1 << 20)
	if _, err := roundTrip(ctx, busy); err != nil {
		t.Fatal(err)
	}
	r.Blackhole() // one connection held mid-query, one held before it reaches the server
	held := make(chan error, 1)
	go func() {
		_, err := roundTrip(ctx, busy)
		held <- err
	}()
	pending := make(chan error, 1)
	go func() {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			conn.Close(ctx)
		}
		pending <- err
	}()
	waitFor(t, "the second connection to reach the relay", func() bool { return r.Connections() >= 2 })
	if n, _ := relayGoroutines(); n == 0 {
		t.Fatal("no relay goroutines found while it runs: the leak check would see nothing")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := <-pending; err == nil {
		t.Error("a connection held by the blackhole connected after Close")
	}
	// The query held mid-flight ends with its connection (a pgx.Conn is
	// not for two goroutines at once: busy is closed only after it).
	if err := <-held; err == nil {
		t.Error("a query held by the blackhole succeeded after Close")
	}
	if n := r.Connections(); n != 0 {
		t.Errorf("%d connections after Close", n)
	}
	if n, stacks := relayGoroutines(); n != 0 {
		t.Errorf("%d relay goroutines after Close:\n%s", n, stacks)
	}
	if conn, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		conn.Close()
		t.Error("the relay still accepts after Close")
	}
	busy.Close(ctx)
	waitFor(t, "the goroutine count to return", func() bool { return runtime.NumGoroutine() <= before })
}
