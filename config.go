package switchyard

import (
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config says which servers to use and how. Only Primary is required.
type Config struct {
	// Primary is the connection string (a postgres:// URL or libpq's
	// key=value form) of the server that takes writes.
	Primary string

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
	DefaultMonitorInterval = 25 * time.Millisecond
	DefaultPrimaryWait     = 5 * time.Second
)

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

// specs validates the Config and parses every node.
func (c *Config) specs() ([]nodeSpec, error) {
	if strings.TrimSpace(c.Primary) == "" {
		return nil, fmt.Errorf("%w: Primary is empty", ErrConfig)
	}
	if c.ReplicaWeights != nil && len(c.ReplicaWeights) != len(c.Replicas) {
		return nil, fmt.Errorf("%w: %d ReplicaWeights for %d Replicas", ErrConfig, len(c.ReplicaWeights), len(c.Replicas))
	}
	if c.PrimaryWait < 0 {
		return nil, fmt.Errorf("%w: PrimaryWait %v is negative", ErrConfig, c.PrimaryWait)
	}
	if c.ReplicaWait < 0 {
		return nil, fmt.Errorf("%w: ReplicaWait %v is negative", ErrConfig, c.ReplicaWait)
	}
	if c.MonitorInterval < 0 {
		return nil, fmt.Errorf("%w: MonitorInterval %v is negative", ErrConfig, c.MonitorInterval)
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
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
