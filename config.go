package switchyard

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/connstr"
	"github.com/switchyard-db/switchyard/internal/engine"
)

// Config says which servers to use and how: one cluster (Primary and
// Replicas, or ConnString), or several (Clusters, with Tables and Route to
// say which statement goes where).
type Config struct {
	// Primary is the connection string (a postgres:// URL or libpq's
	// key=value form) of the server that takes writes.
	Primary string

	// ConnString, instead of Primary and Replicas, is one libpq-style
	// connection string that lists every server
	// (postgres://app@h1:5432,h2:5433,h3/app), as ParseConfig returns it.
	// Open asks each host whether it is in recovery: the one that is not is
	// the primary, the others are replicas. Hosts that cannot be reached
	// are kept as replicas that are down; at least the primary must answer.
	ConnString string

	// Replicas are the connection strings of its streaming replicas. Reads
	// go to the primary while there are none (or none is healthy).
	Replicas []string

	// ReplicaWeights, if set, gives each replica (same order and length as
	// Replicas) a weight of 1 or more: its share of reads relative to the
	// others. Unset means equal shares.
	ReplicaWeights []int

	// Clusters, instead of Primary, Replicas and ConnString, lists several
	// clusters (each a primary with its replicas) for data that lives in
	// more than one. A statement goes to the cluster OnCluster(ctx) names;
	// else the one Route returns; else the one Tables gives for every table
	// it reads or writes (tables of two clusters in one statement are an
	// error, ErrCrossCluster, and nothing is sent); else DefaultCluster. A
	// transaction goes to the cluster of its first statement (see
	// DB.BeginTx), and Atomic with AcrossClusters may span several.
	Clusters []Cluster

	// Tables maps tables to the names of the clusters that hold them:
	// "users" (that table in any schema) or "billing.invoices" (in that
	// schema only, which wins over a bare name). Names are as PostgreSQL
	// keeps them: lower case unless the table was created with a quoted
	// name (write "\"Mixed\"" for that).
	Tables map[string]string

	// DefaultCluster is where statements that touch no table of Tables go:
	// the first of Clusters if empty.
	DefaultCluster string

	// Route, if set, picks the cluster of each statement that OnCluster
	// does not place: a cluster's name, or "" to let Tables and
	// DefaultCluster decide. It runs for every statement, so it must be
	// fast; it must not keep st.
	Route func(ctx context.Context, st Statement) string

	// ConfigurePool, if set, is called with each node's pool configuration
	// before the pool is made, to set tracers, TLS, pool sizes, hooks. It
	// must not change the host, port or database.
	ConfigurePool func(*pgxpool.Config)

	// WriteFunctions names functions with side effects, besides the built-in
	// ones (nextval, setval, pg_advisory_lock, ...), that make a SELECT that
	// calls them go to the primary. A bare name matches any schema;
	// "schema.name" only that schema.
	WriteFunctions []string

	// MonitorInterval is how often each server is polled for its role,
	// health and WAL position. Default 25ms.
	MonitorInterval time.Duration

	// ReplicaWait, if positive, lets a read wait up to this long for a
	// replica to catch up with its session before it goes to the primary
	// instead. Default 0: straight to the primary, which always has the
	// data.
	ReplicaWait time.Duration

	// Latest makes every read see everything committed anywhere before it
	// began, as Latest(ctx) does, unless its context asks for Primary or
	// MaxStaleness. Default false: reads see what their session (or this
	// process) wrote and read.
	Latest bool

	// PrimaryWait is how long a statement that needs the primary waits
	// while there is none (it is down, or a failover is under way) before
	// it fails with ErrNoPrimary. Reads that replicas can serve go on
	// meanwhile. Default 5s.
	PrimaryWait time.Duration

	// Logger receives node state changes (down, back). Default: no logging.
	Logger *slog.Logger

	// Identity is the one cluster's Identity (see Cluster.Identity): only
	// for a clone of another cluster that this process also uses.
	Identity string
}

// Defaults for Config's durations.
const (
	DefaultMonitorInterval = engine.DefaultMonitorInterval
	DefaultPrimaryWait     = engine.DefaultPrimaryWait
)

// ParseConfig returns a Config for a libpq-style connection string that
// lists every server (postgres://app@h1:5432,h2:5433,h3/app; a single host
// is fine too), so that the other fields can be set before Open:
//
//	cfg, err := switchyard.ParseConfig(os.Getenv("DATABASE_URL"))
//	cfg.Logger, cfg.ReplicaWait = logger, 50*time.Millisecond
//	db, err := switchyard.Open(ctx, cfg)
//
// It checks the string as Open will (every option pgx knows, each host
// once) without connecting. Errors wrap ErrConfig and never show the
// password.
func ParseConfig(connString string) (Config, error) {
	if _, err := connstr.ParseHosts(connString, nil); err != nil {
		return Config{}, err
	}
	return Config{ConnString: connString}, nil
}

// specs validates the Config and parses every node. discover says whether
// the nodes' roles are to be found (ConnString).
func (c *Config) specs() (nodes []connstr.Node, discover bool, err error) {
	if err := c.checkDurations(); err != nil {
		return nil, false, err
	}
	if c.ConnString != "" {
		if c.Primary != "" || len(c.Replicas) > 0 || len(c.ReplicaWeights) > 0 {
			return nil, false, fmt.Errorf("%w: set either ConnString or Primary and Replicas, not both", ErrConfig)
		}
		nodes, err := connstr.ParseHosts(c.ConnString, c.ConfigurePool)
		return nodes, true, err
	}
	if strings.TrimSpace(c.Primary) == "" {
		return nil, false, fmt.Errorf("%w: Primary is empty", ErrConfig)
	}
	if c.ReplicaWeights != nil && len(c.ReplicaWeights) != len(c.Replicas) {
		return nil, false, fmt.Errorf("%w: %d ReplicaWeights for %d Replicas", ErrConfig, len(c.ReplicaWeights), len(c.Replicas))
	}
	primary, err := connstr.ParseNode("primary", c.Primary, c.ConfigurePool)
	if err != nil {
		return nil, false, err
	}
	nodes = []connstr.Node{primary}
	for i, r := range c.Replicas {
		n, err := connstr.ParseNode(fmt.Sprintf("replica %d", i+1), r, c.ConfigurePool)
		if err != nil {
			return nil, false, err
		}
		if c.ReplicaWeights != nil {
			if w := c.ReplicaWeights[i]; w < 1 {
				return nil, false, fmt.Errorf("%w: replica %d (%s): weight %d; weights must be 1 or more", ErrConfig, i+1, n.Name, w)
			}
			n.Weight = c.ReplicaWeights[i]
		}
		nodes = append(nodes, n)
	}
	return nodes, false, connstr.CheckDuplicates(nodes)
}

func (c *Config) checkDurations() error {
	if c.PrimaryWait < 0 {
		return fmt.Errorf("%w: PrimaryWait %v is negative", ErrConfig, c.PrimaryWait)
	}
	if c.ReplicaWait < 0 {
		return fmt.Errorf("%w: ReplicaWait %v is negative", ErrConfig, c.ReplicaWait)
	}
	if c.MonitorInterval < 0 {
		return fmt.Errorf("%w: MonitorInterval %v is negative", ErrConfig, c.MonitorInterval)
	}
	return nil
}

// Cluster is one of several clusters (Config.Clusters): a primary with its
// streaming replicas, given as in a one-cluster Config.
type Cluster struct {
	// Name identifies the cluster in Tables, DefaultCluster, Route,
	// OnCluster, errors and Stats.
	Name string
	// Primary, Replicas and ReplicaWeights are as Config's; or ConnString
	// lists every server of the cluster, whose roles Open finds.
	Primary        string
	Replicas       []string
	ReplicaWeights []int
	ConnString     string
	// Identity tells this cluster apart from another that shares its
	// system identifier: clones of one physical backup (a restored
	// snapshot, a replica promoted into a cluster of its own, the green
	// side of a blue/green switch). Positions, tokens and the process-wide
	// session are kept per system identifier, and two such clusters must
	// not mix theirs, so Open refuses them until one has an Identity. Set
	// it to the same value in every process that uses the cluster; leave
	// it empty for every other cluster.
	Identity string
}

// clusterSpec is a validated cluster: its parsed servers.
type clusterSpec struct {
	name     string
	nodes    []connstr.Node
	discover bool
	identity string
}

// clusterSpecs validates the Config and parses every cluster's servers.
func (c *Config) clusterSpecs() ([]clusterSpec, error) {
	if len(c.Clusters) == 0 {
		if len(c.Tables) > 0 || c.DefaultCluster != "" || c.Route != nil {
			return nil, fmt.Errorf("%w: Tables, DefaultCluster and Route need Clusters", ErrConfig)
		}
		nodes, discover, err := c.specs()
		if err != nil {
			return nil, err
		}
		return []clusterSpec{{name: "default", nodes: nodes, discover: discover, identity: c.Identity}}, nil
	}
	if c.Primary != "" || len(c.Replicas) > 0 || len(c.ReplicaWeights) > 0 || c.ConnString != "" || c.Identity != "" {
		return nil, fmt.Errorf("%w: set either Clusters or Primary, Replicas, ConnString and Identity, not both", ErrConfig)
	}
	if err := c.checkDurations(); err != nil {
		return nil, err
	}
	var specs []clusterSpec
	names := map[string]bool{}
	var all []connstr.Node
	for i, cl := range c.Clusters {
		name := strings.TrimSpace(cl.Name)
		switch {
		case name == "":
			return nil, fmt.Errorf("%w: cluster %d has no Name", ErrConfig, i+1)
		case names[name]:
			return nil, fmt.Errorf("%w: two clusters are named %q", ErrConfig, name)
		}
		names[name] = true
		one := Config{Primary: cl.Primary, Replicas: cl.Replicas, ReplicaWeights: cl.ReplicaWeights, ConnString: cl.ConnString, ConfigurePool: c.ConfigurePool}
		nodes, discover, err := one.specs()
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", name, err)
		}
		specs = append(specs, clusterSpec{name: name, nodes: nodes, discover: discover, identity: cl.Identity})
		all = append(all, nodes...)
	}
	if err := connstr.CheckDuplicates(all); err != nil {
		return nil, fmt.Errorf("%w (a server belongs to one cluster)", err)
	}
	if c.DefaultCluster != "" && !names[c.DefaultCluster] {
		return nil, fmt.Errorf("%w: DefaultCluster %q is not one of Clusters", ErrConfig, c.DefaultCluster)
	}
	for table, cluster := range c.Tables {
		if !names[cluster] {
			return nil, fmt.Errorf("%w: Tables: %q goes to cluster %q, which is not one of Clusters", ErrConfig, table, cluster)
		}
		if _, err := parseTableName(table); err != nil {
			return nil, fmt.Errorf("%w: Tables: %v", ErrConfig, err)
		}
	}
	return specs, nil
}
