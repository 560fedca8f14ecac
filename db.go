package switchyard

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/connstr"
	"github.com/switchyard-db/switchyard/internal/conntrack"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// DB routes statements to a PostgreSQL primary and its read replicas. Its
// methods have the signatures of pgxpool.Pool's, so code written for a pool
// (sqlc's generated queries among it) takes a *DB unchanged. It is safe for
// concurrent use; make one per process and Close it at the end.
type DB struct {
	engine  *engine.Engine
	router  router
	pools   []*pgxpool.Pool // by topology.Node.Index
	latest  bool            // Config.Latest
	tracing bool            // a pool has a tracer: contexts carry routes (RouteOf)
	conns   []conntrack.Set // by topology.Node.Index: to interrupt a hung replica's reads

	id       uint64         // tells this DB's query cache entries from other DBs'
	catalogs []catalogState // by cluster
	qcStats  queryCacheStats

	closed    atomic.Bool
	closeOnce sync.Once
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
	Acquire(context.Context) (*Conn, error)
	AcquireFunc(context.Context, func(*Conn) error) error
	Ping(context.Context) error
	Close()
} = (*DB)(nil)

// Open connects to the servers in cfg. The primary must be reachable and
// must not be in recovery; replicas that are down or lagging are fine (they
// join when they come up), and until then reads go to the primary.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	specs, err := cfg.clusterSpecs()
	if err != nil {
		return nil, err
	}
	return open(ctx, specs, &cfg)
}

// Connect opens a DB from one libpq-style connection string that lists
// every server (postgres://app@h1:5432,h2:5433,h3/app). Each host is asked
// whether it is in recovery: the one that is not is the primary, the others
// are replicas. Hosts that cannot be reached are kept as replicas that are
// down; at least the primary must answer. It is Open of ParseConfig's
// Config; use those two to set other options.
func Connect(ctx context.Context, connString string) (*DB, error) {
	cfg, err := ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	return Open(ctx, cfg)
}

func open(ctx context.Context, specs []clusterSpec, cfg *Config) (*DB, error) {
	byName := map[string]*pgxpool.Config{}
	db := &DB{latest: cfg.Latest, id: dbIDs.Add(1)}
	var clusters []engine.ClusterSpec
	var secrets []string
	for _, cs := range specs {
		c, s := connstr.Cluster(cs.name, cs.nodes, cs.discover)
		c.Identity = cs.identity
		clusters, secrets = append(clusters, c), append(secrets, s...)
		for _, n := range cs.nodes {
			byName[n.Name] = n.Config
			if n.Config.ConnConfig.Tracer != nil {
				db.tracing = true
			}
		}
	}
	e, err := engine.Open(ctx, engine.Config{
		Clusters:        clusters,
		WriteFunctions:  cfg.WriteFunctions,
		MonitorInterval: cfg.MonitorInterval,
		ReplicaWait:     cfg.ReplicaWait,
		PrimaryWait:     cfg.PrimaryWait,
		Logger:          cfg.Logger,
		Secrets:         secrets,
		OnDown:          db.nodeDown,
		Dial:            db.dial,
	})
	if err != nil {
		return nil, err
	}
	db.engine, db.router = e, newRouter(cfg, e.Clusters())
	db.catalogs = make([]catalogState, len(e.Clusters()))
	db.conns = make([]conntrack.Set, len(e.Nodes()))
	for _, n := range e.Nodes() {
		pcfg := byName[n.Name]
		// A replica out of rotation gets no new connection: a read planned
		// a moment before it went down must not wait on a hung server.
		db.conns[n.Index].Refuse = func() bool { return !n.Healthy() && !n.IsPrimary() }
		track(pcfg, &db.conns[n.Index])
		pool, err := pgxpool.NewWithConfig(ctx, pcfg)
		if err != nil {
			db.closePools()
			e.Close()
			return nil, fmt.Errorf("%w: %s: %s", ErrConfig, n.Name, e.Redact(err.Error()))
		}
		db.pools = append(db.pools, pool)
	}
	e.Start()
	return db, nil
}

// track makes cfg's connections known to set.
func track(cfg *pgxpool.Config, set *conntrack.Set) {
	cfg.ConnConfig.DialFunc = set.Dial(cfg.ConnConfig.DialFunc)
	after, before := cfg.AfterConnect, cfg.BeforeClose
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		set.Connected(c.PgConn())
		if after != nil {
			return after(ctx, c)
		}
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) {
		set.Closing(c.PgConn())
		if before != nil {
			before(c)
		}
	}
}

// nodeDown drops the idle connections of a node that went out of rotation
// (they are most likely dead too) and, for a replica, interrupts the reads
// waiting on it, which then run elsewhere: a replica that stopped
// answering must not hold them. A primary's statements are left to finish
// when it answers again: a write interrupted would have an unknown
// outcome, and nothing else could run it.
func (db *DB) nodeDown(n *topology.Node) {
	if n.Index < len(db.pools) {
		if !n.IsPrimary() {
			db.conns[n.Index].Interrupt()
		}
		db.pools[n.Index].Reset()
	}
}

func (db *DB) closePools() {
	for _, p := range db.pools {
		p.Close()
	}
}

// Close stops the monitor and closes every pool, waiting for connections in
// use to be returned (as pgxpool.Pool.Close does). It is safe to call more
// than once.
func (db *DB) Close() {
	db.closeOnce.Do(func() {
		db.closed.Store(true)
		db.engine.Close()
		db.closePools()
		for i := range db.conns {
			db.conns[i].Wait()
		}
	})
}

// Ping checks that the primary (every cluster's) answers.
func (db *DB) Ping(ctx context.Context) error {
	if db.closed.Load() {
		return ErrClosed
	}
	for _, c := range db.router.clusters {
		if err := db.pool(c.Primary()).Ping(ctx); err != nil {
			if len(db.router.clusters) > 1 {
				return fmt.Errorf("cluster %s: %w", c.Name, err)
			}
			return err
		}
	}
	return nil
}

// pool is node n's connection pool.
func (db *DB) pool(n *topology.Node) *pgxpool.Pool { return db.pools[n.Index] }

// lend lends the engine a pooled connection to node n.
func (db *DB) lend(ctx context.Context, n *topology.Node) (*pgconn.PgConn, func(), error) {
	c, err := db.pool(n).Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c.Conn().PgConn(), c.Release, nil
}

// dial opens a connection of the engine's own to node n, outside its
// pool: two-phase commit's bookkeeping and recovery run while the block's
// parts hold pooled connections, and must not wait for a pool that those
// parts (or every worker's) may have exhausted.
func (db *DB) dial(ctx context.Context, n *topology.Node) (*pgconn.PgConn, func(), error) {
	c, err := pgconn.ConnectConfig(ctx, db.pool(n).Config().ConnConfig.Config.Copy())
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.Close(context.Background()) }, nil
}

// isRead tells whether sql is a pure read.
func (db *DB) isRead(sql string) bool { return db.engine.Classifier().Classify(sql).ReplicaSafe() }
