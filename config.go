package switchyard

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// Config says which servers to use and how. Primary (or ConnString) is
// required.
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

	// PrimaryWait is how long a statement that needs the primary waits
	// while there is none (it is down, or a failover is under way) before
	// it fails with ErrNoPrimary. Reads that replicas can serve go on
	// meanwhile. Default 5s.
	PrimaryWait time.Duration

	// Logger receives node state changes (down, back). Default: no logging.
	Logger *slog.Logger
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
	if strings.TrimSpace(connString) == "" {
		return Config{}, fmt.Errorf("%w: empty connection string", ErrConfig)
	}
	if _, err := hostSpecs(connString); err != nil {
		return Config{}, err
	}
	return Config{ConnString: connString}, nil
}

// nodeSpec is one server to open.
type nodeSpec struct {
	name   string // host:port, safe to print
	config *pgxpool.Config
	weight int
}

// parseNode parses one connection string. Errors name the node without its
// password.
func parseNode(what, connString string, configure func(*pgxpool.Config)) (nodeSpec, error) {
	if strings.TrimSpace(connString) == "" {
		return nodeSpec{}, fmt.Errorf("%w: %s: empty connection string", ErrConfig, what)
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nodeSpec{}, fmt.Errorf("%w: %s (%s): %s", ErrConfig, what, redactedHosts(connString), redact(err.Error(), connString))
	}
	if severalHosts(cfg) {
		return nodeSpec{}, fmt.Errorf("%w: %s (%s) names several hosts; list each server once in Config, or use Connect with a multi-host URL",
			ErrConfig, what, redactedHosts(connString))
	}
	// Roles are switchyard's business: a target_session_attrs check would
	// make a node that changed role unreachable instead of re-routed.
	cfg.ConnConfig.ValidateConnect = nil
	if configure != nil {
		configure(cfg)
	}
	return nodeSpec{name: nodeName(cfg), config: cfg, weight: 1}, nil
}

// severalHosts reports whether cfg names more than one server. pgx also
// lists one server twice, with and without TLS, for sslmode=prefer.
func severalHosts(cfg *pgxpool.Config) bool {
	for _, fb := range cfg.ConnConfig.Fallbacks {
		if fb.Host != cfg.ConnConfig.Host || fb.Port != cfg.ConnConfig.Port {
			return true
		}
	}
	return false
}

func nodeName(cfg *pgxpool.Config) string {
	host := cfg.ConnConfig.Host
	if strings.HasPrefix(host, "/") {
		return host + ":" + strconv.Itoa(int(cfg.ConnConfig.Port))
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(cfg.ConnConfig.Port))
}

// specs validates the Config and parses every node. discover says whether
// the nodes' roles are to be found (ConnString).
func (c *Config) specs() (specs []nodeSpec, discover bool, err error) {
	if c.ConnString != "" {
		if c.Primary != "" || len(c.Replicas) > 0 || len(c.ReplicaWeights) > 0 {
			return nil, false, fmt.Errorf("%w: set either ConnString or Primary and Replicas, not both", ErrConfig)
		}
		if err := c.checkDurations(); err != nil {
			return nil, false, err
		}
		specs, err := hostSpecs(c.ConnString)
		if err != nil {
			return nil, false, err
		}
		if c.ConfigurePool != nil {
			for _, s := range specs {
				c.ConfigurePool(s.config)
			}
		}
		return specs, true, nil
	}
	specs, err = c.nodeSpecs()
	return specs, false, err
}

// hostSpecs splits a multi-host connection string into one spec per host.
func hostSpecs(connString string) ([]nodeSpec, error) {
	base, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", ErrConfig, redactedHosts(connString), redact(err.Error(), connString))
	}
	base.ConnConfig.ValidateConnect = nil
	return splitHosts(base)
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

// nodeSpecs parses Primary and Replicas.
func (c *Config) nodeSpecs() ([]nodeSpec, error) {
	if strings.TrimSpace(c.Primary) == "" {
		return nil, fmt.Errorf("%w: Primary is empty", ErrConfig)
	}
	if c.ReplicaWeights != nil && len(c.ReplicaWeights) != len(c.Replicas) {
		return nil, fmt.Errorf("%w: %d ReplicaWeights for %d Replicas", ErrConfig, len(c.ReplicaWeights), len(c.Replicas))
	}
	if err := c.checkDurations(); err != nil {
		return nil, err
	}
	primary, err := parseNode("primary", c.Primary, c.ConfigurePool)
	if err != nil {
		return nil, err
	}
	specs := []nodeSpec{primary}
	for i, r := range c.Replicas {
		s, err := parseNode(fmt.Sprintf("replica %d", i+1), r, c.ConfigurePool)
		if err != nil {
			return nil, err
		}
		if c.ReplicaWeights != nil {
			if w := c.ReplicaWeights[i]; w < 1 {
				return nil, fmt.Errorf("%w: replica %d (%s): weight %d; weights must be 1 or more", ErrConfig, i+1, s.name, w)
			}
			s.weight = c.ReplicaWeights[i]
		}
		specs = append(specs, s)
	}
	return specs, checkDuplicates(specs)
}

func checkDuplicates(specs []nodeSpec) error {
	seen := map[string]int{}
	for i, s := range specs {
		key := s.name + "/" + s.config.ConnConfig.Database
		if j, ok := seen[key]; ok {
			return fmt.Errorf("%w: %s and %s are the same server (%s)", ErrConfig, specName(specs, j), specName(specs, i), key)
		}
		seen[key] = i
	}
	return nil
}

func specName(specs []nodeSpec, i int) string {
	if i == 0 {
		return "the primary"
	}
	return fmt.Sprintf("replica %d", i)
}

// redactedHosts describes a connection string by its hosts only, for
// errors: nothing else of it, so no password, can leak.
func redactedHosts(connString string) string {
	if u, err := url.Parse(connString); err == nil && u.Host != "" {
		return u.Host
	}
	for _, f := range strings.Fields(connString) {
		if k, v, ok := strings.Cut(f, "="); ok && k == "host" {
			return v
		}
	}
	return "unparsable connection string"
}

// redact removes connString's password from msg, whatever the form it took.
func redact(msg, connString string) string {
	for _, s := range secretsIn(connString) {
		msg = strings.ReplaceAll(msg, s, "xxxxx")
	}
	return msg
}

// secretsIn returns the forms connString's password may take in a message.
func secretsIn(connString string) []string {
	var secrets []string
	if u, err := url.Parse(connString); err == nil && u.User != nil {
		if p, ok := u.User.Password(); ok && p != "" {
			secrets = append(secrets, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	for _, f := range strings.Fields(connString) {
		if k, v, ok := strings.Cut(f, "="); ok && k == "password" && v != "" {
			secrets = append(secrets, strings.Trim(v, "'"))
		}
	}
	// A password in a URL that does not parse: take what is between the
	// second colon and the last @ before the host.
	if at := strings.LastIndex(connString, "@"); at > 0 {
		if scheme := strings.Index(connString, "://"); scheme >= 0 && scheme < at {
			userinfo := connString[scheme+3 : at]
			if _, p, ok := strings.Cut(userinfo, ":"); ok && p != "" {
				secrets = append(secrets, p)
			}
		}
	}
	return slices.DeleteFunc(secrets, func(s string) bool { return s == "" })
}
