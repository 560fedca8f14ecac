// Package connstr turns PostgreSQL connection strings (postgres:// URLs
// and libpq's key=value form) into the servers switchyard uses, for every
// front: one server per string, or one per host of a multi-host string.
// Its errors wrap engine.ErrConfig and never show a password.
package connstr

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// Node is one server to use.
type Node struct {
	// Name is host:port, safe to print.
	Name string
	// Config connects to it.
	Config *pgxpool.Config
	// Weight is its share of replica reads.
	Weight int
}

// ParseNode parses one connection string naming one server; what names it
// in errors ("primary", "replica 2"). configure, if set, adjusts the
// parsed configuration.
func ParseNode(what, connString string, configure func(*pgxpool.Config)) (Node, error) {
	if strings.TrimSpace(connString) == "" {
		return Node{}, fmt.Errorf("%w: %s: empty connection string", engine.ErrConfig, what)
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return Node{}, fmt.Errorf("%w: %s (%s): %s", engine.ErrConfig, what, RedactedHosts(connString), Redact(err.Error(), connString))
	}
	if severalHosts(cfg) {
		return Node{}, fmt.Errorf("%w: %s (%s) names several hosts; list each server once, or give one multi-host string whose roles are found at start",
			engine.ErrConfig, what, RedactedHosts(connString))
	}
	// Roles are switchyard's business: a target_session_attrs check would
	// make a node that changed role unreachable instead of re-routed.
	cfg.ConnConfig.ValidateConnect = nil
	if configure != nil {
		configure(cfg)
	}
	return Node{Name: name(cfg), Config: cfg, Weight: 1}, nil
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

func name(cfg *pgxpool.Config) string {
	host := cfg.ConnConfig.Host
	if !strings.HasPrefix(host, "/") && strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(int(cfg.ConnConfig.Port))
}

// ParseHosts splits a connection string that lists several servers
// (postgres://app@h1:5432,h2:5433,h3/app) into one Node per host.
func ParseHosts(connString string, configure func(*pgxpool.Config)) ([]Node, error) {
	if strings.TrimSpace(connString) == "" {
		return nil, fmt.Errorf("%w: empty connection string", engine.ErrConfig)
	}
	base, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s", engine.ErrConfig, RedactedHosts(connString), Redact(err.Error(), connString))
	}
	base.ConnConfig.ValidateConnect = nil
	nodes, err := splitHosts(base)
	if err != nil {
		return nil, err
	}
	if configure != nil {
		for _, n := range nodes {
			configure(n.Config)
		}
	}
	return nodes, nil
}

// splitHosts turns a multi-host configuration into one per host. pgx
// lists a host once per TLS attempt, one after the other (sslmode=prefer
// tries TLS, then plain), so those attempts stay together as the host's own
// fallbacks; a host named again later is a mistake.
func splitHosts(base *pgxpool.Config) ([]Node, error) {
	var nodes []Node
	index := map[string]int{}
	cc := base.ConnConfig
	attempts := append([]*pgconn.FallbackConfig{{Host: cc.Host, Port: cc.Port, TLSConfig: cc.TLSConfig}}, cc.Fallbacks...)
	for _, fb := range attempts {
		cfg := base.Copy()
		cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.TLSConfig = fb.Host, fb.Port, fb.TLSConfig
		cfg.ConnConfig.Fallbacks = nil
		n := name(cfg)
		if i, ok := index[n]; ok {
			if i != len(nodes)-1 {
				return nil, fmt.Errorf("%w: host %s is listed twice", engine.ErrConfig, n)
			}
			nodes[i].Config.ConnConfig.Fallbacks = append(nodes[i].Config.ConnConfig.Fallbacks, fb)
			continue
		}
		index[n] = len(nodes)
		nodes = append(nodes, Node{Name: n, Config: cfg, Weight: 1})
	}
	return nodes, nil
}

// CheckDuplicates refuses a server listed twice (the primary first).
func CheckDuplicates(nodes []Node) error {
	seen := map[string]int{}
	for i, n := range nodes {
		key := n.Name + "/" + n.Config.ConnConfig.Database
		if j, ok := seen[key]; ok {
			return fmt.Errorf("%w: %s and %s are the same server (%s)", engine.ErrConfig, role(j), role(i), key)
		}
		seen[key] = i
	}
	return nil
}

func role(i int) string {
	if i == 0 {
		return "the primary"
	}
	return fmt.Sprintf("replica %d", i)
}

// Cluster is the engine's description of nodes, and the secrets to scrub
// from its errors and logs.
func Cluster(name string, nodes []Node, discover bool) (engine.ClusterSpec, []string) {
	c := engine.ClusterSpec{Name: name, Discover: discover}
	var secrets []string
	for _, n := range nodes {
		// The engine's own connections go through pgconn: without the
		// user's tracer, which would see the monitor's polls dozens of
		// times a second.
		c.Nodes = append(c.Nodes, engine.NodeSpec{Name: n.Name, Config: n.Config.ConnConfig.Config.Copy(), Weight: n.Weight})
		secrets = append(secrets, Secrets(n.Config)...)
	}
	return c, secrets
}

// Secrets returns the forms a node's password may take in a message.
func Secrets(cfg *pgxpool.Config) []string {
	s := secretsIn(cfg.ConnString())
	if cfg.ConnConfig.Password != "" {
		s = append(s, cfg.ConnConfig.Password)
	}
	return s
}

// RedactedHosts describes a connection string by its hosts only, for
// errors: nothing else of it, so no password, can leak.
func RedactedHosts(connString string) string {
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

// Redact removes connString's password from msg, whatever the form it took.
func Redact(msg, connString string) string {
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
