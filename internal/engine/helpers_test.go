package engine

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// testSystem is the system identifier of the clusters tests make by hand.
const testSystem = 7_300_000_000_000_000_001

// newEngine builds an engine without Open over one cluster of a primary
// and the given number of replicas: every node healthy, at position 0,
// never polled. cfg's durations default as Open's do (PrimaryWait to 1 s).
func newEngine(t *testing.T, replicas int, cfg Config) *Engine {
	t.Helper()
	cfg.MonitorInterval = cmp.Or(cfg.MonitorInterval, DefaultMonitorInterval)
	cfg.PrimaryWait = cmp.Or(cfg.PrimaryWait, time.Second)
	e := &Engine{
		classifier: classify.New(cfg.WriteFunctions, 0),
		log:        cmp.Or(cfg.Logger, discard),
		cfg:        cfg,
		secrets:    cfg.Secrets,
		global:     newGlobalSession(),
		done:       make(chan struct{}),
	}
	addCluster(e, "default", testSystem, replicas)
	t.Cleanup(e.Close)
	return e
}

// addCluster adds a cluster of a primary and replicas to e.
func addCluster(e *Engine, name string, system uint64, replicas int) *topology.Cluster {
	nodes := []*topology.Node{topology.NewNode(name+"-primary", len(e.nodes), 1)}
	for i := range replicas {
		nodes = append(nodes, topology.NewNode(fmt.Sprintf("%s-r%d", name, i+1), len(e.nodes)+i+1, 1))
	}
	c := topology.NewCluster(name, len(e.clusters), nodes)
	c.System = system
	c.OnDown = e.cfg.OnDown
	e.clusters = append(e.clusters, c)
	e.cstats = append(e.cstats, new(counters))
	e.nodes = append(e.nodes, nodes...)
	return c
}

// primary and replica are e's first cluster's nodes.
func primary(e *Engine) *topology.Node { return e.clusters[0].Nodes[0] }

func replica(e *Engine, i int) *topology.Node { return e.clusters[0].Nodes[i] }

func cluster(e *Engine) *topology.Cluster { return e.clusters[0] }

// at sets node n's polled position, as a poll sent at sent.
func at(n *topology.Node, l lsn.LSN, sent time.Time) { n.SetPosition(l, sent) }

// setPos puts session s at l in cluster c, as of when.
func setPos(s *Session, c *topology.Cluster, l lsn.LSN, when time.Time) *Position {
	p := s.position(c.Key())
	p.lsn.Store(uint64(l))
	p.lsnAt.Store(when.UnixNano())
	return p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or 5 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// blockedIn waits until some goroutine is blocked in a function whose name
// contains fn (so that what the test does next happens while it waits).
func blockedIn(t *testing.T, fn string) {
	t.Helper()
	eventually(t, "a goroutine blocked in "+fn, func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, fn) && (strings.Contains(g, "[select") || strings.Contains(g, "[chan receive")) {
				return true
			}
		}
		return false
	})
}

// stackedIn waits until some goroutine is in state (as runtime.Stack shows
// it, "[IO wait") with a function whose name contains fn on its stack.
func stackedIn(t *testing.T, fn, state string) {
	t.Helper()
	eventually(t, "a goroutine in "+fn, func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, fn) && strings.Contains(g, state) {
				return true
			}
		}
		return false
	})
}

// goroutinesIn counts goroutines running a function whose name contains
// any of fns.
func goroutinesIn(fns ...string) int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, fn := range fns {
			if strings.Contains(g, fn) {
				n++
				break
			}
		}
	}
	return n
}

// safeErr is an error that provably never left the process (as pgconn
// reports a connection that failed before sending).
type safeErr struct{}

func (safeErr) Error() string     { return "conn closed" }
func (safeErr) SafeToRetry() bool { return true }

func pgErr(code string) error {
	return &pgconn.PgError{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: "sqlstate " + code}
}

// scripted starts a scripted server that t closes.
func scripted(t *testing.T, h pgscript.Handler) *pgscript.Server {
	t.Helper()
	s, err := pgscript.Start(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func config(t *testing.T, s *pgscript.Server) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(s.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func dial(t *testing.T, s *pgscript.Server) *pgconn.PgConn {
	t.Helper()
	conn, err := pgconn.ConnectConfig(ctxT(t), config(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// lender lends connections to the scripted server of each node, a new one
// each time, closed on release. It counts what it lent.
type lender struct {
	t       *testing.T
	mu      sync.Mutex
	servers map[*topology.Node]*pgscript.Server
	lent    atomic.Int64
	// fail, if set, is asked first: a non-nil error is returned instead of
	// a connection.
	fail  func(n *topology.Node, call int64) error
	calls atomic.Int64
}

func newLender(t *testing.T) *lender {
	return &lender{t: t, servers: map[*topology.Node]*pgscript.Server{}}
}

func (l *lender) serve(n *topology.Node, s *pgscript.Server) {
	l.mu.Lock()
	l.servers[n] = s
	l.mu.Unlock()
}

func (l *lender) lend(ctx context.Context, n *topology.Node) (*pgconn.PgConn, func(), error) {
	call := l.calls.Add(1)
	if l.fail != nil {
		if err := l.fail(n, call); err != nil {
			return nil, nil, err
		}
	}
	l.mu.Lock()
	s := l.servers[n]
	l.mu.Unlock()
	if s == nil {
		return nil, nil, fmt.Errorf("no server for %s", n.Name)
	}
	cfg, err := pgconn.ParseConfig(s.ConnString())
	if err != nil {
		return nil, nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	l.lent.Add(1)
	return conn, func() { conn.Close(context.Background()) }, nil
}
