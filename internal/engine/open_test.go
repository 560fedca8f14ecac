package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// server is a scripted PostgreSQL server that answers Open's probe and the
// monitor's poll.
type server struct {
	*pgscript.Server
	inRecovery atomic.Bool
	system     atomic.Uint64
	pos        atomic.Uint64
	timeline   atomic.Uint32
	started    atomic.Int64 // when the server started (µs): which server it is
	// fail, if set, answers every query.
	fail atomic.Pointer[pgscript.Reply]
}

func newServer(t *testing.T, inRecovery bool, system uint64) *server {
	t.Helper()
	s := &server{}
	s.inRecovery.Store(inRecovery)
	s.system.Store(system)
	s.pos.Store(0x3000000)
	s.timeline.Store(1)
	s.started.Store(serversStarted.Add(1))
	s.Server = scripted(t, s.handle)
	return s
}

// serversStarted numbers the scripted servers' start times.
var serversStarted atomic.Int64

func (s *server) failWith(r pgscript.Reply) { s.fail.Store(&r) }

func (s *server) handle(q pgscript.Query) pgscript.Reply {
	if r := s.fail.Load(); r != nil {
		return *r
	}
	switch q.SQL {
	case probeQuery:
		return pgscript.Row(s.inRecovery.Load(), s.system.Load(), "8192", "10", strconv.FormatInt(s.started.Load(), 10))
	case "SELECT " + startedSQL:
		return pgscript.Row(strconv.FormatInt(s.started.Load(), 10))
	case topology.PollQuery:
		tli := s.timeline.Load()
		if s.inRecovery.Load() {
			tli = 0
		}
		return pgscript.Row(s.inRecovery.Load(), lsn.LSN(s.pos.Load()).String(), tli, "read committed", nil, false)
	}
	return pgscript.Fail("42601", "unexpected: "+q.SQL)
}

func (s *server) spec(t *testing.T) NodeSpec {
	return NodeSpec{Name: s.Addr(), Config: config(t, s.Server), Weight: 1}
}

func specs(t *testing.T, servers ...*server) []NodeSpec {
	var out []NodeSpec
	for _, s := range servers {
		out = append(out, s.spec(t))
	}
	return out
}

// logBuffer is a logger whose lines a test can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func open(t *testing.T, cfg Config) (*Engine, error) {
	t.Helper()
	e, err := Open(ctxT(t), cfg)
	if err == nil {
		t.Cleanup(e.Close)
	}
	return e, err
}

const sys1, sys2 = 7_000_000_000_000_000_001, 7_000_000_000_000_000_002

func TestOpen(t *testing.T) {
	p, r1, r2 := newServer(t, false, sys1), newServer(t, true, sys1), newServer(t, true, sys1)
	logs := &logBuffer{}
	e, err := open(t, Config{
		Clusters: []ClusterSpec{{Name: "main", Nodes: specs(t, p, r1, r2)}},
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := e.Cluster("main")
	if c == nil || e.Cluster("other") != nil || len(e.Clusters()) != 1 || len(e.Nodes()) != 3 {
		t.Fatal("clusters")
	}
	if c.System != sys1 || c.BlockSize != 8192 || c.Primary().Name != p.Addr() || c.Key() != topology.SystemKey(sys1) {
		t.Errorf("cluster %+v", c)
	}
	for i, n := range e.Nodes() {
		if n.Index != i || !n.Healthy() || n.Cluster() != c {
			t.Errorf("node %d: %+v", i, n)
		}
	}
	if e.Classifier() == nil || e.Logger() == nil || e.cfg.MonitorInterval != DefaultMonitorInterval || e.cfg.PrimaryWait != DefaultPrimaryWait {
		t.Error("defaults")
	}
	if logs.String() != "" {
		t.Errorf("logged %q", logs.String())
	}
	// Each probe was one connection, closed: the role query and the first
	// poll, whose positions the nodes have.
	for _, s := range []*server{p, r1, r2} {
		if s.Conns() != 1 || s.Queries() != 2 {
			t.Errorf("%s: %d conns, %d queries", s.Addr(), s.Conns(), s.Queries())
		}
		eventually(t, "the probe's connection to close", func() bool { return s.Open() == 0 })
	}
}

func TestOpenReplicasOutOfRotation(t *testing.T) {
	p := newServer(t, false, sys1)
	dead := newServer(t, true, sys1)
	dead.failWith(pgscript.Reply{Drop: true})
	writable := newServer(t, false, sys1)
	secret := newServer(t, true, sys1)
	secret.failWith(pgscript.Fatal("28P01", `password authentication failed: "hunter2"`))
	logs := &logBuffer{}
	e, err := open(t, Config{
		Clusters: []ClusterSpec{{Name: "main", Nodes: specs(t, p, dead, writable, secret)}},
		Logger:   slog.New(slog.NewTextHandler(logs, nil)),
		Secrets:  []string{"hunter2", ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	nodes := e.Nodes()
	if !nodes[0].Healthy() || nodes[1].Healthy() || nodes[2].Healthy() || nodes[3].Healthy() {
		t.Errorf("health: %v %v %v %v", nodes[0].Healthy(), nodes[1].Healthy(), nodes[2].Healthy(), nodes[3].Healthy())
	}
	out := logs.String()
	if strings.Count(out, "out of rotation at start") != 3 || !strings.Contains(out, "not in recovery") || !strings.Contains(out, "unreachable") {
		t.Errorf("logs: %s", out)
	}
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "xxxxx") {
		t.Errorf("a secret in the logs: %s", out)
	}
	if e.Redact("x hunter2 y") != "x xxxxx y" {
		t.Error("Redact")
	}
	// Reads go to the primary until they come up.
	want(t, read(e, nil), nodes[0], ReasonNoReplica, BeforeNone, AfterNone)
}

func TestOpenDiscover(t *testing.T) {
	r1, p, r2 := newServer(t, true, sys1), newServer(t, false, sys1), newServer(t, true, sys1)
	e, err := open(t, Config{Clusters: []ClusterSpec{{Name: "main", Discover: true, Nodes: specs(t, r1, p, r2)}}})
	if err != nil {
		t.Fatal(err)
	}
	nodes := e.Nodes()
	if nodes[0].Name != p.Addr() || !nodes[0].IsPrimary() || nodes[1].Name != r1.Addr() || nodes[2].Name != r2.Addr() {
		t.Errorf("nodes %s %s %s", nodes[0].Name, nodes[1].Name, nodes[2].Name)
	}
	if e.configs[0][0].Port != p.Port() {
		t.Error("the monitor's configs do not follow the nodes")
	}
	for _, n := range nodes {
		if !n.Healthy() {
			t.Errorf("%s down", n.Name)
		}
	}

	// An unreachable one among them: out of rotation.
	dead := newServer(t, true, sys1)
	dead.failWith(pgscript.Reply{Drop: true})
	e, err = open(t, Config{Clusters: []ClusterSpec{{Name: "main", Discover: true, Nodes: specs(t, dead, p)}}})
	if err != nil {
		t.Fatal(err)
	}
	if e.Nodes()[0].Name != p.Addr() || e.Nodes()[1].Healthy() {
		t.Error("the dead one")
	}
}

func TestOpenDiscoverFailures(t *testing.T) {
	p1, p2, r := newServer(t, false, sys1), newServer(t, false, sys1), newServer(t, true, sys1)
	dead1, dead2 := newServer(t, true, sys1), newServer(t, true, sys1)
	dead1.failWith(pgscript.Reply{Drop: true})
	dead2.failWith(pgscript.Fail("XX000", "secret hunter2 inside"))
	cfg := func(servers ...*server) Config {
		return Config{Clusters: []ClusterSpec{{Name: "main", Discover: true, Nodes: specs(t, servers...)}}, Secrets: []string{"hunter2"}}
	}
	_, err := open(t, cfg(r, p1, p2))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), p1.Addr()) || !strings.Contains(err.Error(), p2.Addr()) {
		t.Errorf("two writable: %v", err)
	}
	_, err = open(t, cfg(dead1, dead2))
	if !errors.Is(err, ErrUnreachable) || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), dead1.Addr()) {
		t.Errorf("none answering: %v", err)
	}
	_, err = open(t, cfg(r, dead1))
	if !errors.Is(err, ErrNoPrimary) || !strings.Contains(err.Error(), dead1.Addr()) {
		t.Errorf("all in recovery: %v", err)
	}
	_, err = open(t, cfg(r))
	if !errors.Is(err, ErrNoPrimary) {
		t.Errorf("one in recovery: %v", err)
	}
}

func TestOpenFailures(t *testing.T) {
	p, r, other := newServer(t, false, sys1), newServer(t, true, sys1), newServer(t, true, sys2)
	one := func(servers ...*server) Config {
		return Config{Clusters: []ClusterSpec{{Name: "main", Nodes: specs(t, servers...)}}, Secrets: []string{"hunter2"}}
	}
	if _, err := open(t, Config{}); !errors.Is(err, ErrConfig) {
		t.Errorf("no cluster: %v", err)
	}
	if _, err := open(t, Config{Clusters: []ClusterSpec{{Name: "empty"}}}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "empty") {
		t.Errorf("no server: %v", err)
	}
	if _, err := open(t, one(r, p)); !errors.Is(err, ErrNoPrimary) || !strings.Contains(err.Error(), r.Addr()) {
		t.Errorf("configured primary in recovery: %v", err)
	}
	_, err := open(t, one(p, r, other))
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), fmt.Sprint(uint64(sys1))) || !strings.Contains(err.Error(), fmt.Sprint(uint64(sys2))) ||
		!strings.Contains(err.Error(), other.Addr()) {
		t.Errorf("another cluster's replica: %v", err)
	}

	bad := newServer(t, false, sys1)
	bad.failWith(pgscript.Fatal("28P01", "password authentication failed for hunter2"))
	_, err = open(t, one(bad, r))
	if !errors.Is(err, ErrUnreachable) || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), bad.Addr()) {
		t.Errorf("primary unreachable: %v", err)
	}
	for name, reply := range map[string]pgscript.Reply{
		"no row":                        pgscript.Rows(pgscript.TextColumns("a", "b", "c")),
		"two columns":                   pgscript.Row("f", "1"),
		"bad system":                    pgscript.Row("f", "x", "8192", "10", "1"),
		"bad block size":                pgscript.Row("f", "1", "x", "10", "1"),
		"bad max_prepared_transactions": pgscript.Row("f", "1", "8192", "x", "1"),
		"bad start time":                pgscript.Row("f", "1", "8192", "10", "x"),
	} {
		bad.failWith(reply)
		if _, err := open(t, one(bad)); !errors.Is(err, ErrUnreachable) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// A canceled context.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Open(ctx, one(p)); !errors.Is(err, ErrUnreachable) {
		t.Errorf("canceled: %v", err)
	}
}

func TestOpenClusters(t *testing.T) {
	p1, r1 := newServer(t, false, sys1), newServer(t, true, sys1)
	p2, r2 := newServer(t, false, sys2), newServer(t, true, sys1)
	_, err := open(t, Config{Clusters: []ClusterSpec{
		{Name: "a", Nodes: specs(t, p1, r1)},
		{Name: "b", Nodes: specs(t, p2, r2)},
	}})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "of cluster b") {
		t.Errorf("a replica of a in b: %v", err)
	}
	r2.system.Store(sys2)
	e, err := open(t, Config{Clusters: []ClusterSpec{
		{Name: "a", Nodes: specs(t, p1, r1)},
		{Name: "b", Nodes: specs(t, p2, r2)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Nodes()) != 4 || e.Cluster("b").Index != 1 || e.Cluster("b").Nodes[0].Index != 2 || e.Cluster("b").Nodes[1].Index != 3 {
		t.Error("indexes")
	}
	if e.clusterByKey(topology.SystemKey(sys2)) != e.Cluster("b") {
		t.Error("keys")
	}
}

func TestStartAndClose(t *testing.T) {
	before := goroutinesIn("topology.(*Monitor)")
	p, r1, r2 := newServer(t, false, sys1), newServer(t, true, sys1), newServer(t, true, sys1)
	r1.pos.Store(0x2000000)
	r2.pos.Store(0x2800000)
	var downs atomic.Int32
	e, err := Open(ctxT(t), Config{
		Clusters:        []ClusterSpec{{Name: "main", Nodes: specs(t, p, r1, r2)}},
		MonitorInterval: 5 * time.Millisecond,
		OnDown:          func(*topology.Node) { downs.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.Start()
	nodes := e.Nodes()
	eventually(t, "the monitor's first polls", func() bool {
		return nodes[0].Position() == 0x3000000 && nodes[1].Position() == 0x2000000 && nodes[2].Position() == 0x2800000
	})
	if nodes[0].Timeline() != 1 || !nodes[1].CheckSafe() {
		t.Error("poll not applied")
	}
	// A replica that stops answering goes out of rotation, and OnDown is
	// told.
	r1.failWith(pgscript.Reply{Drop: true})
	eventually(t, "the replica down", func() bool { return !nodes[1].Healthy() })
	if downs.Load() != 1 {
		t.Errorf("OnDown %d", downs.Load())
	}
	e.Close()
	e.Close()
	eventually(t, "no monitor goroutine after Close", func() bool { return goroutinesIn("topology.(*Monitor)") == before })
	for _, s := range []*server{p, r1, r2} {
		eventually(t, "the monitor's connections to close", func() bool { return s.Open() == 0 })
	}
}

// TestOpenClonesNeedAnIdentity: clusters that share a system identifier
// (clones of one physical backup) must not mix their positions. Two in
// one engine are refused, and so is one whose primary is another server
// than an open engine's cluster with the same identifier, unless Identity
// tells them apart; the same server opened twice is the same cluster, and
// a closed engine's clusters are forgotten.
func TestOpenClonesNeedAnIdentity(t *testing.T) {
	const sys = 7_000_000_000_000_000_077
	a, b := newServer(t, false, sys), newServer(t, false, sys)
	one := func(name string, s *server, identity string) ClusterSpec {
		return ClusterSpec{Name: name, Nodes: specs(t, s), Identity: identity}
	}
	_, err := open(t, Config{Clusters: []ClusterSpec{one("a", a, ""), one("b", b, "")}})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "Identity") || !strings.Contains(err.Error(), "clusters a and b") {
		t.Fatalf("two clones in one engine: %v", err)
	}
	e, err := open(t, Config{Clusters: []ClusterSpec{one("a", a, ""), one("b", b, "green")}})
	if err != nil {
		t.Fatalf("two clones told apart: %v", err)
	}
	if ka, kb := e.Clusters()[0].Key(), e.Clusters()[1].Key(); ka == kb || ka != topology.SystemKey(sys) {
		t.Fatalf("keys %x and %x", ka, kb)
	}
	e.Close()

	first, err := open(t, Config{Clusters: []ClusterSpec{one("default", a, "")}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := open(t, Config{Clusters: []ClusterSpec{one("default", a, "")}})
	if err != nil {
		t.Fatalf("the same server in a second engine: %v", err)
	}
	_, err = open(t, Config{Clusters: []ClusterSpec{one("default", b, "")}})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "different servers") || !strings.Contains(err.Error(), "Identity") {
		t.Errorf("a clone in a second engine: %v", err)
	}
	if _, err := open(t, Config{Clusters: []ClusterSpec{one("default", b, "green")}}); err != nil {
		t.Errorf("a clone with an Identity in a second engine: %v", err)
	}
	first.Close()
	second.Close()
	if _, err := open(t, Config{Clusters: []ClusterSpec{one("default", b, "")}}); err != nil {
		t.Errorf("a clone once the other engine closed: %v", err)
	}
}
