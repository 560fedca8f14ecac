// Package engine is switchyard's one routing engine. Every front (the pgx
// API in the root package, database/sql through it, the wire-protocol
// proxy) drives it the same way:
//
//  1. classify the statement (Engine.Classifier);
//  2. plan it (PlanRead, PlanWrite, PlanTx, PlanPinned): which node, and
//     what rides ahead of it (a freshness check, a settle wait) and after
//     it (a position capture) in the same round trip;
//  3. run it with Do, which calls the front's I/O and decides, after a
//     failure, whether and where to run it again;
//  4. report the outcome on the plan (Served, Captured, Finish), which
//     advances the session's position and keeps the node's health.
//
// It owns the clusters and their monitors, sessions and their per-cluster
// positions, tokens, the COMMIT protocol with in-doubt resolution, and the
// counters. It holds no connection pools: fronts keep their own, per
// topology.Node.Index, and hand the engine a Lender for its few queries of
// its own.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Defaults for Config's durations.
const (
	DefaultMonitorInterval = 25 * time.Millisecond
	DefaultPrimaryWait     = 5 * time.Second
)

// NodeSpec is one server to use.
type NodeSpec struct {
	// Name identifies it in errors, logs and stats (host:port).
	Name string
	// Config connects to it, for the monitor and the checks at Open. It
	// must come from pgconn.ParseConfig (or a copy of one).
	Config *pgconn.Config
	// Weight is its share of replica reads (1 or more).
	Weight int
}

// ClusterSpec is one primary with its replicas.
type ClusterSpec struct {
	// Name identifies the cluster.
	Name string
	// Nodes are its servers: the primary first, then the replicas; or,
	// with Discover, every server in any order.
	Nodes []NodeSpec
	// Discover: ask each server whether it is in recovery; the one that is
	// not is the primary.
	Discover bool
	// Identity tells the cluster from others that share its system
	// identifier (see topology.Cluster.Identity).
	Identity string
}

// Config is what Open needs.
type Config struct {
	Clusters        []ClusterSpec
	WriteFunctions  []string
	MonitorInterval time.Duration
	ReplicaWait     time.Duration
	PrimaryWait     time.Duration
	Logger          *slog.Logger
	// Secrets are scrubbed from every error and log line (passwords).
	Secrets []string
	// OnDown is called when a node goes out of rotation, so that the front
	// drops its connections to it.
	OnDown func(*topology.Node)
	// Dial opens connections of the engine's own, outside the front's
	// pools, for the recovery of commits across clusters (see Recover);
	// without it there is none in the background.
	Dial Lender
}

// Engine routes statements over clusters of PostgreSQL servers.
type Engine struct {
	clusters   []*topology.Cluster
	nodes      []*topology.Node // every cluster's, by Index
	classifier *classify.Classifier
	log        *slog.Logger
	cfg        Config
	secrets    []string
	global     *Session           // the DB-wide session, for statements without one
	configs    [][]*pgconn.Config // per cluster, per node: the monitor's
	monitors   []*topology.Monitor
	latests    []latestFetch // per cluster
	stats      counters      // what belongs to no one cluster (Atomic's retries, foreign tokens)
	cstats     []*counters   // per cluster
	decisions  decisionsReady
	started    []int64        // per cluster: when its primary started, as Open found it
	wg         sync.WaitGroup // the recovery goroutine

	done      chan struct{} // closed by Close
	closed    atomic.Bool
	closeOnce sync.Once
}

// processSession is the DB-wide session of every engine in the process:
// its positions are per cluster (by system identifier), so that a write
// through one DB is seen by a later read through another DB on the same
// cluster (a second handle for a component, for migrations, for an ORM),
// and closing one DB takes nothing from the others.
var processSession = newGlobalSession()

// Open checks the servers of every cluster; Start then monitors them. Each
// cluster's primary must be reachable and must not be in recovery; replicas
// that are down or lagging are fine (they join when they come up), and
// until then reads go to the primary. A replica of another cluster (a
// different system identifier) is refused.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	if len(cfg.Clusters) == 0 {
		return nil, fmt.Errorf("%w: no cluster", ErrConfig)
	}
	cfg.MonitorInterval = cmp.Or(cfg.MonitorInterval, DefaultMonitorInterval)
	cfg.PrimaryWait = cmp.Or(cfg.PrimaryWait, DefaultPrimaryWait)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Engine{
		classifier: classify.New(cfg.WriteFunctions, 0),
		log:        log,
		cfg:        cfg,
		secrets:    cfg.Secrets,
		global:     processSession,
		done:       make(chan struct{}),
	}
	for i, cs := range cfg.Clusters {
		c, cc, err := e.openCluster(ctx, i, cs)
		if err != nil {
			return nil, err
		}
		e.clusters = append(e.clusters, c)
		e.configs = append(e.configs, cc)
	}
	if err := e.checkIdentity(ctx); err != nil {
		return nil, err
	}
	e.latests = make([]latestFetch, len(e.clusters))
	for range e.clusters {
		e.cstats = append(e.cstats, new(counters))
	}
	return e, nil
}

// Start starts monitoring every node, once the front has made its
// connection pools (the monitor's OnDown calls reach them).
func (e *Engine) Start() {
	for i, c := range e.clusters {
		e.monitors = append(e.monitors, topology.StartMonitor(c, e.configs[i], e.cfg.MonitorInterval, e.log, e.redact))
	}
	e.startRecovery()
}

// probe is what Open learns of one server.
type probe struct {
	inRecovery  bool
	system      uint64
	blockSize   uint64
	maxPrepared int
	started     int64 // when the server started, µs since the epoch
	err         error
	// poll, if polled, is the monitor's first poll, taken at Open so that
	// a DB knows its replicas' positions from the start (the process-wide
	// position may already be ahead of zero).
	poll       topology.Poll
	polled     bool
	sent, recv time.Time
}

// probeSQL is what Open asks each server first, in a read-committed
// read-only transaction of its own so that it runs whatever the server's
// defaults (a hot standby refuses every statement whose default isolation
// is serializable).
const probeSQL = "SELECT pg_is_in_recovery(), system_identifier, current_setting('wal_block_size'), current_setting('max_prepared_transactions'), " + startedSQL + " FROM pg_control_system()"

// startedSQL is when the server started, in microseconds: which server a
// connection reached (see checkIdentity).
const startedSQL = "(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::int8::text"

const probeQuery = "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; " + probeSQL + "; COMMIT"

func (e *Engine) probe(ctx context.Context, cfg *pgconn.Config) (p probe) {
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return probe{err: err}
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, probeQuery).ReadAll()
	if err != nil {
		return probe{err: err}
	}
	var row [][]byte
	for _, r := range res {
		if len(r.Rows) == 1 && len(r.Rows[0]) == 5 {
			row = r.Rows[0]
		}
	}
	if row == nil {
		return probe{err: errors.New("unexpected answer to the role query")}
	}
	p.inRecovery = string(row[0]) == "t"
	if p.system, err = strconv.ParseUint(string(row[1]), 10, 64); err == nil {
		p.blockSize, err = strconv.ParseUint(string(row[2]), 10, 64)
	}
	if err == nil {
		p.maxPrepared, err = strconv.Atoi(string(row[3]))
	}
	if err == nil {
		p.started, err = strconv.ParseInt(string(row[4]), 10, 64)
	}
	p.err = err
	if err != nil {
		return p
	}
	p.sent = time.Now()
	if res, err := conn.Exec(ctx, topology.PollQuery).ReadAll(); err == nil {
		if row, err := topology.PollRow(res); err == nil {
			if poll, err := topology.ParsePoll(row); err == nil {
				p.poll, p.polled, p.recv = poll, true, time.Now()
			}
		}
	}
	return p
}

func (e *Engine) openCluster(ctx context.Context, index int, cs ClusterSpec) (*topology.Cluster, []*pgconn.Config, error) {
	if len(cs.Nodes) == 0 {
		return nil, nil, fmt.Errorf("%w: cluster %s has no server", ErrConfig, cs.Name)
	}
	probes := make([]probe, len(cs.Nodes))
	var wg sync.WaitGroup
	for i, ns := range cs.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			probes[i] = e.probe(ctx, ns.Config)
		}()
	}
	wg.Wait()
	specs := append([]NodeSpec(nil), cs.Nodes...)
	where := ""
	if len(e.cfg.Clusters) > 1 {
		where = " of cluster " + cs.Name
	}
	if cs.Discover {
		primary := -1
		var problems []string
		for i, p := range probes {
			switch {
			case p.err != nil:
				problems = append(problems, fmt.Sprintf("%s: %s", specs[i].Name, e.redact(p.err.Error())))
			case !p.inRecovery && primary >= 0:
				return nil, nil, fmt.Errorf("%w: %s and %s%s both accept writes (neither is in recovery); list one primary", ErrConfig, specs[primary].Name, specs[i].Name, where)
			case !p.inRecovery:
				primary = i
			}
		}
		if primary < 0 {
			if len(problems) == len(specs) {
				return nil, nil, fmt.Errorf("%w: no host%s answered: %s", ErrUnreachable, where, strings.Join(problems, "; "))
			}
			return nil, nil, fmt.Errorf("%w: every host%s that answered is in recovery (%s)", ErrNoPrimary, where, strings.Join(problems, "; "))
		}
		specs[0], specs[primary] = specs[primary], specs[0]
		probes[0], probes[primary] = probes[primary], probes[0]
	}
	switch p := probes[0]; {
	case p.err != nil:
		return nil, nil, fmt.Errorf("%w: primary %s%s: %s", ErrUnreachable, specs[0].Name, where, e.redact(p.err.Error()))
	case p.inRecovery:
		return nil, nil, fmt.Errorf("%w: the configured primary %s%s is in recovery (a replica)", ErrNoPrimary, specs[0].Name, where)
	}
	system := probes[0].system
	nodes := make([]*topology.Node, len(specs))
	configs := make([]*pgconn.Config, len(specs))
	for i, s := range specs {
		nodes[i] = topology.NewNode(s.Name, len(e.nodes)+i, s.Weight)
		configs[i] = s.Config
	}
	c := topology.NewCluster(cs.Name, index, nodes)
	c.System, c.BlockSize, c.MaxPrepared = system, probes[0].blockSize, probes[0].maxPrepared
	c.Identity = cs.Identity
	e.started = append(e.started, probes[0].started)
	now := time.Now()
	for i, p := range probes[1:] {
		n := nodes[i+1]
		var why string
		var pgErr *pgconn.PgError
		switch {
		case errors.As(p.err, &pgErr) && pgErr.Code == "57P03":
			// A server that refuses connections: starting, or a standby
			// with hot_standby off, which serves no reads at all.
			why = fmt.Sprintf("refuses connections (57P03: %s %s); a standby serves reads only with hot_standby = on", pgErr.Message, pgErr.Detail)
		case p.err != nil:
			why = "unreachable: " + e.redact(p.err.Error())
		case p.system != system:
			return nil, nil, fmt.Errorf("%w: replica %s%s belongs to another cluster: its system identifier is %d, the primary %s's is %d; list the replicas of this primary only",
				ErrConfig, n.Name, where, p.system, specs[0].Name, system)
		case !p.inRecovery:
			why = "not in recovery (a primary?)"
		default:
			continue
		}
		n.MarkDown(now)
		e.log.Warn("switchyard: replica out of rotation at start", "cluster", cs.Name, "node", n.Name, "why", why)
	}
	for i, p := range probes {
		if p.polled && nodes[i].Healthy() {
			c.Observe(nodes[i], p.poll, p.sent, p.recv, e.log)
		}
	}
	c.OnDown = e.cfg.OnDown // after the front has connections: see Start
	e.nodes = append(e.nodes, nodes...)
	return c, configs, nil
}

// Close stops the monitors. The front closes its own connections.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		close(e.done)
		e.unregister()
		for _, m := range e.monitors {
			m.Close()
		}
		e.wg.Wait()
	})
}

// Closed reports whether Close was called.
func (e *Engine) Closed() bool { return e.closed.Load() }

// Clusters are the engine's clusters, by Index.
func (e *Engine) Clusters() []*topology.Cluster { return e.clusters }

// Nodes are every cluster's nodes, by Index.
func (e *Engine) Nodes() []*topology.Node { return e.nodes }

// Cluster returns the cluster named name, or nil.
func (e *Engine) Cluster(name string) *topology.Cluster {
	for _, c := range e.clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Classifier is the engine's statement classifier (it knows the configured
// write functions).
func (e *Engine) Classifier() *classify.Classifier { return e.classifier }

// Logger is where the engine logs.
func (e *Engine) Logger() *slog.Logger { return e.log }

// redact removes the configured secrets from msg.
func (e *Engine) redact(msg string) string {
	for _, s := range e.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

// Redact removes the configured secrets (passwords) from msg.
func (e *Engine) Redact(msg string) string { return e.redact(msg) }

// PrimaryWait is how long a statement that needs the primary waits for
// one.
func (e *Engine) PrimaryWait() time.Duration { return e.cfg.PrimaryWait }
