package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/connstr"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/proxy"
	"github.com/switchyard-db/switchyard/internal/topology"
	"github.com/switchyard-db/switchyard/prom"
	"github.com/switchyard-db/switchyard/stats"
	"github.com/switchyard-db/switchyard/statuspage"
)

const proxyUsage = `Usage: switchyard proxy --primary URL [--replica URL ...] [flags]
       switchyard proxy --connect "postgres://h1,h2,h3/db" [flags]

Serves the PostgreSQL wire protocol: point an application's connection
string at --listen and its writes go to the primary and its reads to
replicas that have replayed everything the application wrote or read
(judged by each replica's WAL replay position), transactions never split.

Clients log in with their own role and password, which the proxy checks by
logging in to the primary; its connections to the servers run as that
role. The --primary, --replica and --connect strings say where the servers
are, and their role is the one that watches them (it needs no privilege).

docs/proxy.md explains authentication, pooling, prepared statements, what
pins a client to one server connection, and the consistency modes.

Every flag is also a key of the --config file (TOML; flags win), e.g.

  listen = "127.0.0.1:6432"
  primary = "postgres://monitor@db1/app"
  replica = ["postgres://monitor@db2/app", "postgres://monitor@db3/app"]
  replica-wait = "50ms"

Flags:
`

// proxySettings are the proxy's settings, from flags and the config file.
type proxySettings struct {
	Config            string   `toml:"-"`
	Listen            string   `toml:"listen"`
	Primary           string   `toml:"primary"`
	Replica           []string `toml:"replica"`
	ReplicaWeight     []int    `toml:"replica-weight"`
	Connect           string   `toml:"connect"`
	Consistency       string   `toml:"consistency"`
	TLSCert           string   `toml:"tls-cert"`
	TLSKey            string   `toml:"tls-key"`
	Admin             string   `toml:"admin"`
	PoolSize          int      `toml:"pool-size"`
	LoopbackPasswords bool     `toml:"loopback-passwords"`
	WriteFunction     []string `toml:"write-function"`
	MonitorInterval   duration `toml:"monitor-interval"`
	ReplicaWait       duration `toml:"replica-wait"`
	PrimaryWait       duration `toml:"primary-wait"`
	ShutdownGrace     duration `toml:"shutdown-grace"`
	Procs             int      `toml:"procs"`
	LogLevel          string   `toml:"log-level"`
	LogFormat         string   `toml:"log-format"`
}

// duration is a time.Duration that flags and TOML read as "50ms".
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	d.Duration = v
	return err
}
func (d *duration) Set(s string) error { return d.UnmarshalText([]byte(s)) }
func (d *duration) String() string     { return d.Duration.String() }

// list is a repeatable string flag.
type list struct{ v *[]string }

func (l list) String() string {
	if l.v == nil {
		return ""
	}
	return strings.Join(*l.v, ",")
}
func (l list) Set(s string) error { *l.v = append(*l.v, s); return nil }

// intList is a repeatable int flag.
type intList struct{ v *[]int }

func (l intList) String() string {
	if l.v == nil {
		return ""
	}
	return fmt.Sprint(*l.v)
}
func (l intList) Set(s string) error {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return fmt.Errorf("not a number: %q", s)
	}
	*l.v = append(*l.v, n)
	return nil
}

func proxyFlags(st *proxySettings) *flag.FlagSet {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	fs.StringVar(&st.Config, "config", "", "read settings from this TOML file (flags win)")
	fs.StringVar(&st.Listen, "listen", "127.0.0.1:6432", "address to serve clients on (host:port, or a Unix socket path)")
	fs.StringVar(&st.Primary, "primary", "", "connection string of the primary")
	fs.Var(list{&st.Replica}, "replica", "connection string of a replica (repeat for each)")
	fs.Var(intList{&st.ReplicaWeight}, "replica-weight", "share of reads of each replica, in --replica order (repeat; default equal)")
	fs.StringVar(&st.Connect, "connect", "", "instead of --primary and --replica: one string listing every server; roles are found with pg_is_in_recovery()")
	fs.StringVar(&st.Consistency, "consistency", "global", "global: a read sees every write made through the proxy before it began; connection: each client connection is a session of its own")
	fs.StringVar(&st.TLSCert, "tls-cert", "", "PEM certificate for clients' TLS (with --tls-key); without it the proxy refuses TLS")
	fs.StringVar(&st.TLSKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&st.Admin, "admin", "", "serve status and metrics over HTTP on this address (e.g. 127.0.0.1:9187)")
	fs.IntVar(&st.PoolSize, "pool-size", 20, "server connections per node for each role and database")
	fs.BoolVar(&st.LoopbackPasswords, "loopback-passwords", false, "let clients on loopback or a Unix socket send passwords without TLS")
	fs.Var(list{&st.WriteFunction}, "write-function", "a function with side effects: reads calling it go to the primary (repeat)")
	st.MonitorInterval.Duration = engine.DefaultMonitorInterval
	fs.Var(&st.MonitorInterval, "monitor-interval", "how often each server's role and position are polled")
	fs.Var(&st.ReplicaWait, "replica-wait", "how long a read may wait for a replica to catch up before it uses the primary")
	st.PrimaryWait.Duration = engine.DefaultPrimaryWait
	fs.Var(&st.PrimaryWait, "primary-wait", "how long a statement that needs the primary waits for one")
	st.ShutdownGrace.Duration = 30 * time.Second
	fs.Var(&st.ShutdownGrace, "shutdown-grace", "on SIGINT or SIGTERM, how long open transactions may take to finish")
	fs.IntVar(&st.Procs, "procs", defaultProcs(), "CPUs the proxy's Go code runs on at once (GOMAXPROCS); it spends most of its time in system calls")
	fs.StringVar(&st.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&st.LogFormat, "log-format", "text", "text or json")
	return fs
}

// loadSettings reads flags and, if named, the config file under them.
func loadSettings(args []string, stdout io.Writer) (*proxySettings, error) {
	st := &proxySettings{}
	fs := proxyFlags(st)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), proxyUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return nil, err
	}
	if st.Config == "" {
		return st, st.check()
	}
	// The file first, then every flag given on the command line again.
	file := &proxySettings{}
	fs2 := proxyFlags(file)
	md, err := toml.DecodeFile(st.Config, file)
	if err != nil {
		return nil, usageErrorf("proxy: --config %s: %v", st.Config, err)
	}
	if un := md.Undecoded(); len(un) > 0 {
		return nil, usageErrorf("proxy: --config %s: unknown setting %q (the settings are the flags' names)", st.Config, un[0].String())
	}
	var setErr error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		if l, ok := f.Value.(list); ok {
			// A repeated flag replaces the file's list.
			target := fs2.Lookup(f.Name).Value.(list)
			*target.v = append([]string(nil), *l.v...)
			return
		}
		if l, ok := f.Value.(intList); ok {
			target := fs2.Lookup(f.Name).Value.(intList)
			*target.v = append([]int(nil), *l.v...)
			return
		}
		if err := fs2.Set(f.Name, f.Value.String()); err != nil && setErr == nil {
			setErr = err
		}
	})
	if setErr != nil {
		return nil, usageErrorf("proxy: %v", setErr)
	}
	file.Config = st.Config
	return file, file.check()
}

// check refuses settings that cannot work, in one line.
func (st *proxySettings) check() error {
	switch {
	case st.Primary == "" && st.Connect == "":
		return usageErrorf("proxy: give --primary (with --replica for each replica) or --connect")
	case st.Primary != "" && st.Connect != "":
		return usageErrorf("proxy: give either --primary and --replica, or --connect, not both")
	case st.Connect != "" && (len(st.Replica) > 0 || len(st.ReplicaWeight) > 0):
		return usageErrorf("proxy: --replica and --replica-weight go with --primary, not --connect")
	case len(st.ReplicaWeight) > 0 && len(st.ReplicaWeight) != len(st.Replica):
		return usageErrorf("proxy: %d --replica-weight for %d --replica", len(st.ReplicaWeight), len(st.Replica))
	case (st.TLSCert == "") != (st.TLSKey == ""):
		return usageErrorf("proxy: --tls-cert and --tls-key go together")
	case st.Procs < 1:
		return usageErrorf("proxy: --procs %d: must be 1 or more", st.Procs)
	case st.PoolSize < 1:
		return usageErrorf("proxy: --pool-size %d: must be 1 or more", st.PoolSize)
	case st.MonitorInterval.Duration <= 0:
		return usageErrorf("proxy: --monitor-interval %v: must be positive", st.MonitorInterval)
	case st.ReplicaWait.Duration < 0 || st.PrimaryWait.Duration < 0 || st.ShutdownGrace.Duration < 0:
		return usageErrorf("proxy: durations must not be negative")
	case st.Listen == "":
		return usageErrorf("proxy: --listen is empty")
	}
	for _, w := range st.ReplicaWeight {
		if w < 1 {
			return usageErrorf("proxy: --replica-weight %d: weights must be 1 or more", w)
		}
	}
	if _, err := proxy.ParseConsistency(st.Consistency); err != nil {
		return usageErrorf("proxy: --%v", err)
	}
	if _, err := logLevel(st.LogLevel); err != nil {
		return usageErrorf("proxy: --log-level: %v", err)
	}
	if st.LogFormat != "text" && st.LogFormat != "json" {
		return usageErrorf("proxy: --log-format %q: want text or json", st.LogFormat)
	}
	return nil
}

func logLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

// nodes parses the servers the settings name.
func (st *proxySettings) nodes() ([]connstr.Node, bool, error) {
	if st.Connect != "" {
		n, err := connstr.ParseHosts(st.Connect, nil)
		return n, true, err
	}
	primary, err := connstr.ParseNode("--primary", st.Primary, nil)
	if err != nil {
		return nil, false, err
	}
	nodes := []connstr.Node{primary}
	for i, r := range st.Replica {
		n, err := connstr.ParseNode(fmt.Sprintf("--replica %d", i+1), r, nil)
		if err != nil {
			return nil, false, err
		}
		if len(st.ReplicaWeight) > 0 {
			n.Weight = st.ReplicaWeight[i]
		}
		nodes = append(nodes, n)
	}
	return nodes, false, connstr.CheckDuplicates(nodes)
}

func proxyCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	st, err := loadSettings(args, stdout)
	if err != nil {
		return err
	}
	runtime.GOMAXPROCS(st.Procs)
	level, _ := logLevel(st.LogLevel)
	var h slog.Handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})
	if st.LogFormat == "json" {
		h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level})
	}
	log := slog.New(h)
	nodes, discover, err := st.nodes()
	if err != nil {
		return usageErrorf("proxy: %v", err)
	}
	var tlsConfig *tls.Config
	if st.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(st.TLSCert, st.TLSKey)
		if err != nil {
			return usageErrorf("proxy: --tls-cert/--tls-key: %v", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	consistency, _ := proxy.ParseConsistency(st.Consistency)

	cluster, secrets := connstr.Cluster("default", nodes, discover)
	var srv *proxy.Server
	e, err := engine.Open(ctx, engine.Config{
		Clusters:        []engine.ClusterSpec{cluster},
		WriteFunctions:  st.WriteFunction,
		MonitorInterval: st.MonitorInterval.Duration,
		ReplicaWait:     st.ReplicaWait.Duration,
		PrimaryWait:     st.PrimaryWait.Duration,
		Logger:          log,
		Secrets:         secrets,
		OnDown: func(n *topology.Node) {
			if srv != nil {
				srv.NodeDown(n)
			}
		},
	})
	if err != nil {
		return err
	}
	defer e.Close()
	byName := map[string]*pgxpool.Config{}
	for _, n := range nodes {
		byName[n.Name] = n.Config
	}
	configs := make([]*pgxpool.Config, len(e.Nodes()))
	for _, n := range e.Nodes() {
		configs[n.Index] = byName[n.Name]
	}
	srv, err = proxy.New(proxy.Config{
		Engine: e, Nodes: configs, TLS: tlsConfig, Consistency: consistency,
		PoolSize: st.PoolSize, LoopbackPasswords: st.LoopbackPasswords, Logger: log,
	})
	if err != nil {
		return err
	}
	e.Start()
	network := "tcp"
	if strings.HasPrefix(st.Listen, "/") {
		network = "unix"
		os.Remove(st.Listen)
	}
	l, err := net.Listen(network, st.Listen)
	if err != nil {
		return fmt.Errorf("proxy: --listen %s: %w", st.Listen, err)
	}
	var admin *http.Server
	if st.Admin != "" {
		al, err := net.Listen("tcp", st.Admin)
		if err != nil {
			l.Close()
			return fmt.Errorf("proxy: --admin %s: %w", st.Admin, err)
		}
		h, closePage := adminHandler(e)
		defer closePage()
		admin = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go admin.Serve(al)
		log.Info("switchyard proxy: admin", "addr", al.Addr().String())
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	log.Info("switchyard proxy: listening", "addr", l.Addr().String(), "consistency", consistency.String(),
		"nodes", len(e.Nodes()), "primary", e.Clusters()[0].Primary().Name)
	select {
	case <-ctx.Done():
	case err := <-served:
		if err != nil {
			return fmt.Errorf("proxy: %w", err)
		}
	}
	log.Info("switchyard proxy: shutting down", "grace", st.ShutdownGrace.Duration.String(), "clients", srv.Sessions())
	gctx, cancel := context.WithTimeout(context.Background(), st.ShutdownGrace.Duration)
	defer cancel()
	err = srv.Shutdown(gctx)
	if admin != nil {
		admin.Close()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		log.Warn("switchyard proxy: grace period over; closed the clients still in a transaction")
	}
	log.Info("switchyard proxy: stopped")
	return nil
}

// defaultProcs is a quarter of the CPUs, at least one, unless GOMAXPROCS
// says otherwise: a relay spends most of its time in system calls, which
// need no P, and on a small machine shared with the servers idle Ps spin
// looking for work. Measured on 2 cores, pgbench -S through the proxy: 31
// µs of proxy CPU per transaction with one P against 45 with two.
func defaultProcs() int {
	if v, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && v > 0 {
		return v
	}
	return max(1, runtime.NumCPU()/4)
}

// engineSource is the proxy engine as the status page and the metrics
// see it.
type engineSource struct{ e *engine.Engine }

func (s engineSource) Stats() stats.Stats { return s.e.Snapshot() }

// adminHandler serves the proxy's status page (at /, its JSON at
// /status.json), its Prometheus metrics at /metrics, /healthz (200 while
// the primary answers) and pprof; close stops the page's sampling.
func adminHandler(e *engine.Engine) (h http.Handler, close func() error) {
	src := engineSource{e}
	page := statuspage.Handler(src, statuspage.Always(), statuspage.Title("switchyard proxy"))
	mux := http.NewServeMux()
	mux.Handle("/", page)
	mux.Handle("/metrics", prom.Handler(src))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		for _, c := range e.Clusters() {
			if !c.Primary().Healthy() {
				http.Error(w, "no primary: "+c.Primary().Name+" is down", http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	return mux, page.Close
}
