package switchyard

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// DB routes statements to a PostgreSQL primary and its read replicas. Its
// methods have the signatures of pgxpool.Pool's, so code written for a pool
// (sqlc's generated queries among it) takes a *DB unchanged. It is safe for
// concurrent use; make one per process and Close it at the end.
type DB struct {
	cluster    *topology.Cluster
	classifier *classify.Classifier
	monitor    *topology.Monitor
	log        *slog.Logger

	global       *session      // the DB-wide session, for contexts without one
	wait         time.Duration // Config.ReplicaWait
	primaryWait  time.Duration // Config.PrimaryWait
	system       uint32        // the cluster's system identifier, hashed, for tokens
	walBlockSize uint64

	routes    routeCounters
	closed    atomic.Bool
	closeOnce sync.Once
}

type routeCounters struct {
	replica, forced, write, transaction, noHealthyReplica, retried atomic.Uint64
	afterWrite, notFresh, checked, checkFailed, waited             atomic.Uint64
	tokensClamped, tokensForeign, atomicRetries                    atomic.Uint64
	inDoubtCommitted, inDoubtAborted, inDoubtUnknown               atomic.Uint64
}

// The method set that sqlc generates for pgx/v5 (DBTX, with CopyFrom and
// SendBatch for :copyfrom and :batch queries), and pgxpool.Pool's.
var _ interface {
	Exec(context.Context, string, ...interface{}) (pgconn.CommandTag, error)
	Query(context.Context, string, ...interface{}) (pgx.Rows, error)
	QueryRow(context.Context, string, ...interface{}) pgx.Row
	CopyFrom(ctx context.Context, tableName pgx.Identifier, columnNames []string, rowSrc pgx.CopyFromSource) (int64, error)
	SendBatch(context.Context, *pgx.Batch) pgx.BatchResults
	Begin(context.Context) (pgx.Tx, error)
	BeginTx(context.Context, pgx.TxOptions) (pgx.Tx, error)
	Ping(context.Context) error
	Close()
} = (*DB)(nil)

// Open connects to the servers in cfg. The primary must be reachable and
// must not be in recovery; replicas that are down or lagging are fine (they
// join when they come up), and until then reads go to the primary.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	specs, err := cfg.specs()
	if err != nil {
		return nil, err
	}
	return open(ctx, specs, &cfg)
}

// Connect opens a DB from one libpq-style connection string that lists
// every server (postgres://app@h1:5432,h2:5433,h3/app). Each host is asked
// whether it is in recovery: the one that is not is the primary, the others
// are replicas. Hosts that cannot be reached are kept as replicas that are
// down; at least the primary must answer.
func Connect(ctx context.Context, connString string) (*DB, error) {
	if strings.TrimSpace(connString) == "" {
		return nil, fmt.Errorf("%w: empty connection string", ErrConfig)
	}
	base, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrConfig, redactedHosts(connString), redact(err.Error(), connString))
	}
	base.ConnConfig.ValidateConnect = nil
	specs, err := splitHosts(base)
	if err != nil {
		return nil, err
	}

	// Ask every host at once whether it is in recovery.
	type answer struct {
		inRecovery bool
		err        error
	}
	answers := make([]answer, len(specs))
	var wg sync.WaitGroup
	for i, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i].inRecovery, answers[i].err = inRecovery(ctx, s.config.ConnConfig)
		}()
	}
	wg.Wait()
	primary := -1
	var problems []string
	for i, a := range answers {
		switch {
		case a.err != nil:
			problems = append(problems, fmt.Sprintf("%s: %s", specs[i].name, redact(a.err.Error(), connString)))
		case !a.inRecovery && primary >= 0:
			return nil, fmt.Errorf("%w: %s and %s both accept writes (neither is in recovery); list one primary", ErrConfig, specs[primary].name, specs[i].name)
		case !a.inRecovery:
			primary = i
		}
	}
	if primary < 0 {
		if len(problems) == len(specs) {
			return nil, fmt.Errorf("%w: no host answered: %s", ErrUnreachable, strings.Join(problems, "; "))
		}
		return nil, fmt.Errorf("%w: every host that answered is in recovery (%s)", ErrNoPrimary, strings.Join(problems, "; "))
	}
	specs[0], specs[primary] = specs[primary], specs[0]
	return open(ctx, specs, &Config{})
}

// splitHosts turns a multi-host configuration into one per host. pgx
// lists a host once per TLS attempt, one after the other (sslmode=prefer
// tries TLS, then plain), so those attempts stay together as the host's own
// fallbacks; a host named again later is a mistake.
func splitHosts(base *pgxpool.Config) ([]nodeSpec, error) {
	var specs []nodeSpec
	index := map[string]int{}
	cc := base.ConnConfig
	attempts := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
	for _, fb := range attempts {
		cfg := base.Copy()
		cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.TLSConfig = fb.Host, fb.Port, fb.TLSConfig
		cfg.ConnConfig.Fallbacks = nil
		name := nodeName(cfg)
		if i, ok := index[name]; ok {
			if i != len(specs)-1 {
				return nil, fmt.Errorf("%w: host %s is listed twice", ErrConfig, name)
			}
			specs[i].config.ConnConfig.Fallbacks = append(specs[i].config.ConnConfig.Fallbacks, fb)
			continue
		}
		index[name] = len(specs)
		specs = append(specs, nodeSpec{name: name, config: cfg, weight: 1})
	}
	return specs, nil
}

func inRecovery(ctx context.Context, cfg *pgx.ConnConfig) (bool, error) {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, err
	}
	defer conn.Close(context.Background())
	var r bool
	err = conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r)
	return r, err
}

func open(ctx context.Context, specs []nodeSpec, cfg *Config) (*DB, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	interval := cfg.MonitorInterval
	if interval == 0 {
		interval = DefaultMonitorInterval
	}

	nodes := make([]*topology.Node, 0, len(specs))
	configs := map[*topology.Node]*pgx.ConnConfig{}
	closeAll := func() {
		for _, n := range nodes {
			n.Pool.Close()
		}
	}
	for i, s := range specs {
		pool, err := pgxpool.NewWithConfig(ctx, s.config)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: %s: %v", ErrConfig, s.name, err)
		}
		role := topology.RoleReplica
		if i == 0 {
			role = topology.RolePrimary
		}
		n := topology.NewNode(s.name, pool, role, s.weight)
		nodes = append(nodes, n)
		// The monitor's own connection: without the user's tracer, which
		// would see its polls dozens of times a second.
		mc := s.config.ConnConfig.Copy()
		mc.Tracer = nil
		configs[n] = mc
	}

	// The primary must answer and must be a primary; replicas are checked
	// side by side, and the ones that are down or not replicas start out of
	// rotation.
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, err := inRecovery(ctx, configs[n])
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("%w: %s %s: %s", ErrUnreachable, n.Role(), n.Name, redact(err.Error(), specs[i].config.ConnString()))
			case i == 0 && rec:
				errs[i] = fmt.Errorf("%w: the configured primary %s is in recovery (a replica)", ErrNoPrimary, n.Name)
			case i > 0 && !rec:
				errs[i] = fmt.Errorf("replica %s is not in recovery (a primary?); not reading from it", n.Name)
			}
		}()
	}
	wg.Wait()
	if errs[0] != nil {
		closeAll()
		return nil, errs[0]
	}
	now := time.Now()
	for i, err := range errs[1:] {
		if err != nil {
			nodes[i+1].MarkDown(now)
			log.Warn("switchyard: replica out of rotation at start", "node", nodes[i+1].Name, "err", err)
		}
	}

	var system uint64
	var blockSize int64
	if err := nodes[0].Pool.QueryRow(ctx, "SELECT system_identifier, current_setting('wal_block_size')::int8 FROM pg_control_system()").Scan(&system, &blockSize); err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: primary %s: %s", ErrUnreachable, nodes[0].Name, redact(err.Error(), specs[0].config.ConnString()))
	}
	cluster := topology.NewCluster("default", nodes)
	cluster.BlockSize = uint64(blockSize)
	db := &DB{
		cluster:      cluster,
		classifier:   classify.New(cfg.WriteFunctions, 0),
		log:          log,
		global:       &session{},
		wait:         cfg.ReplicaWait,
		primaryWait:  cmp.Or(cfg.PrimaryWait, DefaultPrimaryWait),
		system:       systemHash(system),
		walBlockSize: uint64(blockSize),
	}
	db.monitor = topology.StartMonitor(db.cluster, configs, interval, log)
	return db, nil
}

// Close stops the monitor and closes every pool, waiting for connections in
// use to be returned (as pgxpool.Pool.Close does). It is safe to call more
// than once.
func (db *DB) Close() {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		db.monitor.Close()
		for _, n := range db.cluster.Nodes {
			n.Pool.Close()
		}
	})
}

// Ping checks that the primary answers.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return ErrClosed
	}
	return db.cluster.Primary().Pool.Ping(ctx)
}

// primary returns the primary for a statement that needs it, waiting up to
// Config.PrimaryWait while there is none that answers (a crash and restart,
// or a failover under way), then ErrNoPrimary.
func (db *DB) primary(ctx context.Context) (*topology.Node, error) {
	p := db.cluster.Primary()
	if p.Healthy() {
		return p, nil
	}
	timer := time.NewTimer(db.primaryWait)
	defer timer.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-timer.C:
			return nil, fmt.Errorf("%w: %s has not answered for %v, and no replica was promoted", ErrNoPrimary, p.Name, db.primaryWait)
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if p = db.cluster.Primary(); p.Healthy() {
			return p, nil
		}
	}
}
