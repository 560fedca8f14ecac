package switchyardtest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options says what cluster to start. The zero value is a primary with no
// replicas on free loopback ports in a private temporary directory.
type Options struct {
	// Replicas is the number of streaming replicas (0 or more).
	Replicas int

	// ApplyDelay delays replay on replica i by ApplyDelay[i]
	// (recovery_min_apply_delay): a commit becomes visible there that long
	// after it committed on the primary. Missing entries mean no delay.
	// Change it while running with Node.SetApplyDelay.
	ApplyDelay []time.Duration

	// Port is the primary's TCP port; replica i listens on Port+1+i. Zero
	// picks free ports.
	Port int

	// Dir is where the data directories and logs go. Empty means a private
	// temporary directory that Close removes; a given Dir must be absent or
	// empty and is kept.
	Dir string

	// Settings are extra postgresql.conf settings for every node, such as
	// {"max_connections": "300"}. A value is written as given when it is
	// quoted ('32MB') and quoted otherwise, so "repeatable read" needs no
	// quotes. primary_conninfo, primary_slot_name and
	// recovery_min_apply_delay are the lab's (see ApplyDelay).
	Settings map[string]string

	// NodeSettings are extra settings for single nodes, by node name
	// ("primary", "replica1", "replica2", ...), applied after Settings:
	//
	//	NodeSettings: map[string]map[string]string{
	//		"primary":  {"default_transaction_read_only": "on"},
	//		"replica1": {"default_transaction_isolation": "repeatable read"},
	//		"replica2": {"hot_standby": "off"},
	//	}
	//
	// A name that is not one of the cluster's nodes is an error. The lab's
	// own sessions override the session defaults that could stop it
	// working (default_transaction_read_only, default_transaction_isolation,
	// statement_timeout, lock_timeout, idle_in_transaction_session_timeout),
	// so Start, WaitReplay and the like work whatever they are.
	//
	// PostgreSQL stops replay on a hot standby whose max_connections,
	// max_prepared_transactions, max_worker_processes, max_wal_senders or
	// max_locks_per_transaction is lower than the primary's. So a replica
	// that does not set one of them itself takes the primary's value when
	// higher, and a replica that sets one lower than the primary's is an
	// error.
	//
	// A replica with hot_standby off accepts no connections (PostgreSQL
	// refuses them with SQLSTATE 57P03). Start waits until the primary's
	// pg_stat_replication shows it streaming; ReplayLSN, WaitReplay and
	// Cluster.WaitReplicas watch it there (so they may see its replay up to
	// a second late); SetSetting writes its postgresql.auto.conf; Promote
	// signals it as pg_ctl promote does; Start, Stop, Kill, Freeze and the
	// rest work as for any node. What needs a session on it (Connect, Exec,
	// InRecovery, PauseReplay, ResumeReplay) fails.
	NodeSettings map[string]map[string]string

	// Encoding is the server encoding (initdb --encoding): "" is UTF8;
	// "SQL_ASCII", "LATIN1", "EUC_JP" and the others PostgreSQL knows work
	// with the default locale. A session that names no client_encoding
	// gets the database's, and pgx names none: add client_encoding=UTF8 to
	// a DSN for the server to convert Go's UTF-8 strings (SQL_ASCII never
	// converts).
	Encoding string

	// Locale is the server locale (initdb --locale): "" is C, which works
	// with every encoding. Another locale must be installed on the machine
	// and suit Encoding ("de_DE.ISO-8859-1" for LATIN1, say).
	Locale string

	// Bin is the directory of the PostgreSQL server binaries; empty means
	// FindBinaries.
	Bin string

	// Logf, if set, receives a line for each step of starting and stopping.
	Logf func(format string, args ...any)
}

// Cluster is a running primary with its streaming replicas, each a real
// PostgreSQL server on this machine. Its methods are safe for concurrent use.
//
// Every node starts as a copy of one data directory made by initdb (cached
// per machine), but each cluster has a system identifier of its own
// (pg_control_system().system_identifier, see SystemIdentifier), shared by
// its primary and replicas as in a real cluster: code that tells clusters
// apart, or refuses a replica of another primary, can be tested with two
// labs.
type Cluster struct {
	sysid   uint64
	dir     string
	keepDir bool
	bin     string
	acct    account
	logf    func(string, ...any)

	mu        sync.Mutex
	primary   *Node
	nodes     []*Node
	closed    bool
	closeErr  error
	closeOnce sync.Once
}

// TB is the part of testing.TB that New uses; *testing.T and *testing.B
// satisfy it.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// New starts a cluster for a test and stops it, removing everything, when
// the test and its subtests end (also when they fail or panic). It fails the
// test if the cluster cannot start, except that when no PostgreSQL server
// binaries are found (ErrNoServer) it skips the test instead, if tb has a
// Skipf method (as *testing.T and *testing.B have) and the environment
// variable SWITCHYARD_REQUIRE_SERVER is empty. New returns nil after
// Fatalf or Skipf return (they do not for a *testing.T).
func New(tb TB, opts Options) *Cluster {
	tb.Helper()
	cs := NewClusters(tb, opts)
	if cs == nil {
		return nil
	}
	return cs[0]
}

// NewClusters is New for several clusters side by side, started at once
// (see StartClusters); they stop when the test ends.
func NewClusters(tb TB, opts ...Options) []*Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := StartClusters(ctx, opts...)
	if err != nil {
		if sk, ok := tb.(interface{ Skipf(string, ...any) }); ok && errors.Is(err, ErrNoServer) && !serverRequired() {
			sk.Skipf("%v (set %s=1 to fail instead)", err, RequireServerEnv)
			return nil
		}
		tb.Fatalf("%v", err)
		return nil
	}
	for _, c := range cs {
		tb.Cleanup(func() {
			if err := c.Close(); err != nil {
				tb.Fatalf("switchyardtest: close: %v", err)
			}
		})
	}
	return cs
}

// StartClusters starts one cluster for each of opts, side by side, and
// returns them in the same order once all are ready. It is all or nothing:
// if one cannot start, it closes the others and returns the errors.
func StartClusters(ctx context.Context, opts ...Options) ([]*Cluster, error) {
	if len(opts) == 0 {
		return nil, errors.New("switchyardtest: StartClusters: no options given")
	}
	cs := make([]*Cluster, len(opts))
	errs := make([]error, len(opts))
	var wg sync.WaitGroup
	for i, o := range opts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs[i], errs[i] = Start(ctx, o)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, c := range cs {
			if c != nil {
				c.Close()
			}
		}
		return nil, err
	}
	return cs, nil
}

// Start starts a primary and opts.Replicas streaming replicas and returns
// once every replica accepts queries and streams from the primary. Call
// Close to stop them and remove their files.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.Replicas < 0 {
		return nil, fmt.Errorf("switchyardtest: Replicas is %d; it must be 0 or more", opts.Replicas)
	}
	if len(opts.ApplyDelay) > opts.Replicas {
		return nil, fmt.Errorf("switchyardtest: %d apply delays given for %d replicas", len(opts.ApplyDelay), opts.Replicas)
	}
	for i, d := range opts.ApplyDelay {
		if d < 0 {
			return nil, fmt.Errorf("switchyardtest: ApplyDelay[%d] is negative (%v)", i, d)
		}
	}
	if opts.Port < 0 || opts.Port+opts.Replicas > 65535 {
		return nil, fmt.Errorf("switchyardtest: port %d is out of range", opts.Port)
	}
	names := []string{"primary"}
	for i := range opts.Replicas {
		names = append(names, fmt.Sprintf("replica%d", i+1))
	}
	confs, err := nodeConfs(opts, names)
	if err != nil {
		return nil, err
	}
	encoding, locale := opts.Encoding, opts.Locale
	if encoding == "" {
		encoding = "UTF8"
	}
	if locale == "" {
		locale = "C"
	}
	for what, v := range map[string]string{"Encoding": encoding, "Locale": locale} {
		if strings.ContainsAny(v, "\x00\n\r\t /") || strings.HasPrefix(v, "-") {
			return nil, fmt.Errorf("switchyardtest: %s %q is not an encoding or locale name", what, v)
		}
	}
	bin := opts.Bin
	if bin == "" {
		if bin, err = FindBinaries(); err != nil {
			return nil, err
		}
	} else if !hasServer(bin) {
		return nil, fmt.Errorf("Bin=%s holds no initdb and postgres: %w", bin, ErrNoServer)
	}
	acct, err := currentAccount()
	if err != nil {
		return nil, err
	}
	sweepStaleLabs()

	c := &Cluster{bin: bin, acct: acct, logf: opts.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	if opts.Dir != "" {
		// postgres runs in its data directory, so a relative path would
		// not lead it there.
		dir, err := filepath.Abs(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("switchyardtest: %w", err)
		}
		if err := makeEmptyDir(dir); err != nil {
			return nil, err
		}
		if err := acct.canReach(dir); err != nil {
			return nil, err
		}
		c.dir, c.keepDir = dir, true
	} else if c.dir, err = os.MkdirTemp(labBase(), labPrefix); err != nil {
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if err := os.WriteFile(filepath.Join(c.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}
	if err := acct.own(c.dir); err != nil {
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}

	start := time.Now()
	tmpl, err := templateDir(templateKey{bin: bin, encoding: encoding, locale: locale}, acct)
	if err != nil {
		return nil, err
	}
	c.logf("initdb template ready (%v)", time.Since(start).Round(time.Millisecond))

	port := func(i int) int {
		if opts.Port == 0 {
			return 0
		}
		return opts.Port + i
	}
	// Every node is a copy of the template with the cluster's own system
	// identifier: the replicas are copies of the primary's directory as
	// it is before its first start, and stream from its checkpoint (their
	// slots, made before they start, and wal_keep_size hold the WAL).
	c.sysid = newSystemIdentifier()
	nodes := make([]*Node, len(names))
	for i, name := range names {
		role := RoleReplica
		if i == 0 {
			role = RolePrimary
		}
		nodes[i] = &Node{cluster: c, name: name, role: role, fixedPort: port(i),
			dataDir: filepath.Join(c.dir, name), logPath: filepath.Join(c.dir, name+".log")}
	}
	c.mu.Lock()
	c.primary, c.nodes = nodes[0], nodes
	c.mu.Unlock()
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conf := confs[n.name]
			if n.role == RoleReplica {
				var delay time.Duration
				if i-1 < len(opts.ApplyDelay) {
					delay = opts.ApplyDelay[i-1]
				}
				conf["primary_slot_name"] = quote(n.name)
				conf["recovery_min_apply_delay"] = quote(strconv.FormatInt(delay.Milliseconds(), 10) + "ms")
			}
			errs[i] = n.prepare(tmpl, conf)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	c.logf("data directories ready (%v)", time.Since(start).Round(time.Millisecond))

	primary, replicas := nodes[0], nodes[1:]
	if err := primary.start(ctx); err != nil {
		return nil, err
	}
	c.logf("primary ready on port %d (%v)", primary.Port(), time.Since(start).Round(time.Millisecond))
	if len(replicas) > 0 {
		if err := primary.createSlot(ctx, names[1:]...); err != nil {
			return nil, err
		}
	}
	// The primary's port is known now that it runs.
	for _, r := range replicas {
		if err := r.appendConf(map[string]string{"primary_conninfo": quote(primary.conninfo(r.name))}); err != nil {
			return nil, err
		}
	}
	// Starting the replicas side by side saves most of a second.
	errs = make([]error, len(replicas))
	for i, r := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if errs[i] = r.start(ctx); errs[i] == nil {
				errs[i] = r.waitStreaming(ctx)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, r := range replicas {
		c.logf("%s ready on port %d, streaming (%v)", r.name, r.Port(), time.Since(start).Round(time.Millisecond))
	}
	return c, nil
}

func makeEmptyDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("switchyardtest: directory %s is not empty", dir)
	}
	return nil
}

// prepare makes the node's data directory, a copy of the template with the
// cluster's system identifier, and writes its configuration; the server is
// not started.
func (n *Node) prepare(tmpl string, conf map[string]string) error {
	c := n.cluster
	if err := copyTree(tmpl, n.dataDir, c.acct); err != nil {
		return fmt.Errorf("switchyardtest: copy template for %s: %w", n.name, err)
	}
	if err := setSystemIdentifier(n.dataDir, c.sysid); err != nil {
		return err
	}
	if err := n.appendConf(conf); err != nil {
		return err
	}
	if on, ok := parseBool(conf["hot_standby"]); ok && !on {
		n.hotStandbyOff = true
	}
	if n.role == RoleReplica {
		signal := filepath.Join(n.dataDir, "standby.signal")
		if err := os.WriteFile(signal, nil, 0o600); err != nil {
			return fmt.Errorf("switchyardtest: %w", err)
		}
		if err := c.acct.own(signal); err != nil {
			return fmt.Errorf("switchyardtest: %w", err)
		}
	}
	return nil
}

// appendConf adds settings at the end of the node's postgresql.conf.
func (n *Node) appendConf(conf map[string]string) error {
	var b strings.Builder
	b.WriteString("\n# switchyardtest\n")
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(&b, "%s = %s\n", k, confValue(conf[k]))
	}
	f, err := os.OpenFile(filepath.Join(n.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("switchyardtest: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	return nil
}

// confValue is v as a postgresql.conf value: as given if quoted, else
// quoted.
func confValue(v string) string {
	if len(v) >= 2 && strings.HasPrefix(v, "'") && strings.HasSuffix(v, "'") {
		return v
	}
	return quote(v)
}

// quote makes a postgresql.conf string value.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// freePort asks the kernel for a loopback port nobody holds. Another
// process may take it before postgres binds it; start retries with a new
// port when that happens.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// SystemIdentifier is the cluster's system identifier, which every node
// reports in pg_control_system().system_identifier; no other lab has it.
func (c *Cluster) SystemIdentifier() uint64 { return c.sysid }

// Dir is the directory holding the nodes' data directories and logs.
func (c *Cluster) Dir() string { return c.dir }

// Primary is the node that is currently the primary.
func (c *Cluster) Primary() *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.primary
}

// Replicas are the nodes that are currently replicas, in the order started.
func (c *Cluster) Replicas() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	var rs []*Node
	for _, n := range c.nodes {
		if n != c.primary {
			rs = append(rs, n)
		}
	}
	return rs
}

// Nodes are all nodes, the first primary first, in the order started.
func (c *Cluster) Nodes() []*Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Node(nil), c.nodes...)
}

// DSNs are the connection strings of all nodes, in the order of Nodes.
func (c *Cluster) DSNs() []string {
	var dsns []string
	for _, n := range c.Nodes() {
		dsns = append(dsns, n.DSN())
	}
	return dsns
}

// Promote promotes replica r to primary, as a failover would, and points
// the other replicas at it (they follow its new timeline). The old primary
// is left as it is: stop it first to model a failover, or keep it running
// to model a split brain.
func (c *Cluster) Promote(ctx context.Context, r *Node) error {
	if err := r.Promote(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	c.primary = r
	c.mu.Unlock()
	for _, o := range c.Replicas() {
		if !o.Running() {
			continue
		}
		if err := r.createSlot(ctx, o.name); err != nil {
			return err
		}
		if err := o.SetSetting(ctx, "primary_conninfo", r.conninfo(o.name)); err != nil {
			return err
		}
	}
	return nil
}

// WaitReplicas waits until every running replica has replayed everything
// the primary has written so far.
func (c *Cluster) WaitReplicas(ctx context.Context) error {
	target, err := c.Primary().InsertLSN(ctx)
	if err != nil {
		return err
	}
	for _, r := range c.Replicas() {
		if !r.Running() {
			continue
		}
		if err := r.WaitReplay(ctx, target); err != nil {
			return err
		}
	}
	return nil
}

// Close stops every server and, unless Options.Dir was given, removes the
// cluster's directory. It is safe to call more than once.
func (c *Cluster) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		nodes := append([]*Node(nil), c.nodes...)
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() { defer wg.Done(); n.shutdown() }()
		}
		wg.Wait()
		var errs []error
		if !c.keepDir && c.dir != "" {
			if err := os.RemoveAll(c.dir); err != nil {
				errs = append(errs, fmt.Errorf("switchyardtest: remove %s: %w", c.dir, err))
			}
		}
		c.logf("stopped %d servers", len(nodes))
		c.closeErr = errors.Join(errs...)
	})
	return c.closeErr
}
