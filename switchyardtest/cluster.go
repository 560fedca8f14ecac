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
	// {"max_connections": "300"}.
	Settings map[string]string

	// Bin is the directory of the PostgreSQL server binaries; empty means
	// FindBinaries.
	Bin string

	// Logf, if set, receives a line for each step of starting and stopping.
	Logf func(format string, args ...any)
}

// Cluster is a running primary with its streaming replicas, each a real
// PostgreSQL server on this machine. Its methods are safe for concurrent use.
//
// Every node is a copy of one data directory made by initdb, so all labs
// on a machine share a system identifier (pg_control_system()), as copies
// of one initdb do; code that tells clusters apart by it cannot tell two
// labs apart.
type Cluster struct {
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
// test if the cluster cannot start.
func New(tb TB, opts Options) *Cluster {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Fatalf("switchyardtest: close: %v", err)
		}
	})
	return c
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
		if err := makeEmptyDir(opts.Dir); err != nil {
			return nil, err
		}
		if err := acct.canReach(opts.Dir); err != nil {
			return nil, err
		}
		c.dir, c.keepDir = opts.Dir, true
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
	tmpl, err := templateDir(bin, acct)
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
	primary, err := c.newNode(ctx, "primary", RolePrimary, tmpl, port(0), opts.Settings, nil)
	if err != nil {
		return nil, err
	}
	c.primary = primary
	if err := primary.start(ctx); err != nil {
		return nil, err
	}
	c.logf("primary ready on port %d (%v)", primary.Port(), time.Since(start).Round(time.Millisecond))

	replicas := make([]*Node, opts.Replicas)
	for i := range replicas {
		name := fmt.Sprintf("replica%d", i+1)
		var delay time.Duration
		if i < len(opts.ApplyDelay) {
			delay = opts.ApplyDelay[i]
		}
		if err := primary.createSlot(ctx, name); err != nil {
			return nil, err
		}
		settings := map[string]string{
			"primary_conninfo":         quote(primary.conninfo(name)),
			"primary_slot_name":        quote(name),
			"recovery_min_apply_delay": quote(strconv.FormatInt(delay.Milliseconds(), 10) + "ms"),
		}
		if replicas[i], err = c.newNode(ctx, name, RoleReplica, tmpl, port(i+1), opts.Settings, settings); err != nil {
			return nil, err
		}
	}
	// The replicas start from a copy of the same initdb template as the
	// primary, so they need no pg_basebackup: they stream from the
	// template's shutdown checkpoint, which the primary still has (a slot
	// holds it). Starting them side by side saves most of a second.
	errs := make([]error, len(replicas))
	var wg sync.WaitGroup
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

// newNode makes a node's data directory from the template and writes its
// configuration; the server is not started.
func (c *Cluster) newNode(ctx context.Context, name string, role Role, tmpl string, port int, common, own map[string]string) (*Node, error) {
	n := &Node{cluster: c, name: name, role: role, fixedPort: port,
		dataDir: filepath.Join(c.dir, name), logPath: filepath.Join(c.dir, name+".log")}
	if err := copyTree(tmpl, n.dataDir); err != nil {
		return nil, fmt.Errorf("switchyardtest: copy template for %s: %w", name, err)
	}
	conf := map[string]string{
		"listen_addresses":             quote("127.0.0.1"),
		"unix_socket_directories":      quote(""),
		"fsync":                        "off",
		"full_page_writes":             "off",
		"shared_buffers":               quote("32MB"),
		"max_connections":              "200",
		"max_wal_senders":              "10",
		"max_replication_slots":        "10",
		"wal_keep_size":                quote("256MB"),
		"hot_standby":                  "on",
		"hot_standby_feedback":         "on",
		"wal_retrieve_retry_interval":  quote("100ms"),
		"wal_receiver_status_interval": quote("1s"),
		"log_min_messages":             "warning",
		"log_line_prefix":              quote("%m [%p] "),
		"shared_preload_libraries":     quote(""),
		// Dynamic shared memory in the data directory, so that a server
		// killed without a clean shutdown leaves nothing in /dev/shm.
		"dynamic_shared_memory_type": "mmap",
	}
	for k, v := range common {
		conf[k] = v
	}
	for k, v := range own {
		conf[k] = v
	}
	var b strings.Builder
	b.WriteString("\n# switchyardtest\n")
	for _, k := range slices.Sorted(maps.Keys(conf)) {
		fmt.Fprintf(&b, "%s = %s\n", k, conf[k])
	}
	f, err := os.OpenFile(filepath.Join(n.dataDir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}
	if role == RoleReplica {
		if err := os.WriteFile(filepath.Join(n.dataDir, "standby.signal"), nil, 0o600); err != nil {
			return nil, fmt.Errorf("switchyardtest: %w", err)
		}
	}
	if err := c.acct.own(n.dataDir); err != nil {
		return nil, fmt.Errorf("switchyardtest: %w", err)
	}
	c.mu.Lock()
	c.nodes = append(c.nodes, n)
	c.mu.Unlock()
	return n, nil
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
		if err := o.alterSystem(ctx, "primary_conninfo", quote(r.conninfo(o.name)), r.conninfo(o.name)); err != nil {
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
