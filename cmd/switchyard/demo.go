package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/internal/compare"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

const demoUsage = `Usage: switchyard demo [--lag DURATION]

Starts a throwaway PostgreSQL primary with two streaming replicas on
127.0.0.1, runs a short mixed workload through a switchyard.DB, and shows
which server served each kind of statement, how reads spread over the
replicas, and the DB's statistics. It ends with a short run of "switchyard
compare": one workload through a naive router, a sticky one and switchyard,
with the replicas lagging. Everything it started is stopped and removed at
the end (also on Ctrl-C). It takes about ten seconds.

Flags:
`

// demoBalanceReads is how many plain reads show the balancing.
const demoBalanceReads = 200

// The comparison at the end of the demo: small, to keep the demo short.
const (
	demoCompareSessions = 8
	demoCompareDuration = 2 * time.Second
	demoCompareLag1     = 20 * time.Millisecond
	demoCompareLag2     = 50 * time.Millisecond
)

func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	lag := fs.Duration("lag", 0, "replay delay of replica2, such as 200ms (recovery_min_apply_delay)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), demoUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *lag < 0 {
		return usageErrorf("demo: --lag %v: must not be negative", *lag)
	}
	defer func() {
		if err != nil && ctx.Err() != nil {
			err = errors.New("demo: interrupted")
		}
	}()

	started := time.Now()
	opts := switchyardtest.Options{
		Replicas: 2,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(stderr, "lab: "+format+"\n", args...)
		},
	}
	if *lag > 0 {
		opts.ApplyDelay = []time.Duration{0, *lag}
	}
	fmt.Fprintln(stderr, "lab: starting a primary and 2 replicas")
	c, err := switchyardtest.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := c.Close(); cerr != nil {
			fmt.Fprintln(stderr, "lab:", cerr)
		}
	}()

	var replicas []string
	for _, r := range c.Replicas() {
		replicas = append(replicas, r.DSN())
	}
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: c.Primary().DSN(), Replicas: replicas})
	if err != nil {
		return err
	}
	defer db.Close()

	// The tour runs in one session, as one request or job would: its reads
	// see its own writes, and nothing older than it already read.
	d := &demo{ctx: switchyard.WithSession(ctx), db: db, names: map[int]string{}}
	fmt.Fprintf(stdout, "switchyard demo: a throwaway primary and %d streaming replicas on 127.0.0.1\n\n", len(replicas))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, n := range c.Nodes() {
		d.names[n.Port()] = n.Name()
		note := "streaming replica"
		switch {
		case n.Role() == switchyardtest.RolePrimary:
			note = "takes the writes"
		case *lag > 0 && n.Name() == "replica2":
			note = fmt.Sprintf("streaming replica, replays %v behind", *lag)
		}
		fmt.Fprintf(tw, "  %s\t127.0.0.1:%d\t%s\n", n.Name(), n.Port(), note)
	}
	tw.Flush()

	if err := d.setup(ctx); err != nil {
		return err
	}
	// The setup ran outside the tour's session, which therefore need not
	// see it: a new session may read any replica. Wait until they all
	// have it, so that the tour's first reads find the table everywhere.
	if err := c.WaitReplicas(ctx); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nCreated demo_items (%d rows) and demo_seq on the primary; both replicas replayed them.\n", demoSeedRows)

	steps := []func() error{
		d.plainSelect, d.lockWordsInText, d.batch, d.readOnlyTx, d.forcedRead,
		d.selectForUpdate, d.insertReturning, d.updateExec, d.nextval, d.writingCTE, d.atomic, d.copyFrom,
		d.readAfterWrites,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, "\nWhere each statement ran, all in one session (switchyard.WithSession). Pure")
	fmt.Fprintln(stdout, "reads go to a replica; anything that writes, locks, or might, goes to the")
	fmt.Fprintln(stdout, "primary; and a read right after the session wrote goes to the primary too, as")
	fmt.Fprintln(stdout, "no replica can have the write yet. (Each query also returned inet_server_port()")
	fmt.Fprintln(stdout, "and pg_is_in_recovery(), which name the server that ran it.)")
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STATEMENT\tSQL (shortened)\tNODE\tROLE\tNOTE")
	for _, r := range d.rows {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", r.kind, r.sql, r.node, r.role, r.note)
	}
	tw.Flush()

	if err := d.balance(stdout); err != nil {
		return err
	}
	d.printStats(stdout)

	fmt.Fprintln(stdout, "\nA session's reads see its own writes (read-your-writes) and never older data")
	fmt.Fprintln(stdout, "than it already read, in this process or, carried in a token (db.Token,")
	fmt.Fprintln(stdout, "switchyard.WithToken, package httpsession), in another.")

	if err := demoCompare(ctx, c, *lag, stdout, stderr); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "demo: done in %v; stopping the lab\n", time.Since(started).Round(time.Millisecond))
	return nil
}

// demoCompare ends the demo with a short run of "switchyard compare" on the
// demo's lab, its replicas made to lag first.
func demoCompare(ctx context.Context, c *switchyardtest.Cluster, lag time.Duration, stdout, stderr io.Writer) error {
	r := c.Replicas()
	lag2 := max(lag, demoCompareLag2)
	if err := r[0].SetApplyDelay(ctx, demoCompareLag1); err != nil {
		return err
	}
	if err := r[1].SetApplyDelay(ctx, lag2); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe same workload through three routers, replica1 now replaying %v and replica2\n", demoCompareLag1)
	fmt.Fprintf(stdout, "%v behind: %d sessions, each writing its own counter in 15%% of its operations,\n", lag2, demoCompareSessions)
	fmt.Fprintf(stdout, "reading it back at once, and pausing 0-50ms in between; %v per router\n", demoCompareDuration)
	fmt.Fprintln(stdout, "(\"switchyard compare\" runs it longer). naive sends every SELECT to a random")
	fmt.Fprintln(stdout, "replica; sticky sends a session's SELECTs to the primary for 2s after it wrote")
	fmt.Fprintln(stdout, "(Rails' default); switchyard goes by the replicas' replay positions. A stale")
	fmt.Fprintln(stdout, "read returned less than its session had already written or read.")
	fmt.Fprintln(stdout)
	return runComparison(ctx, c, compare.Options{
		Sessions: demoCompareSessions,
		Duration: demoCompareDuration,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(stderr, "compare: "+format+"\n", args...)
		},
	}, stdout)
}

const demoSeedRows = 100

// demo runs the workload and collects what it saw.
type demo struct {
	ctx   context.Context
	db    *switchyard.DB
	names map[int]string // lab node name by port
	rows  []demoRow
}

type demoRow struct{ kind, sql, node, role, note string }

// add records that the statement of the given kind ran on the server
// listening on port, which was (or was not) in recovery.
func (d *demo) add(kind, sql string, port int, inRecovery bool, note string) {
	role := "primary"
	if inRecovery {
		role = "replica"
	}
	d.rows = append(d.rows, demoRow{kind, sql, d.name(port), role, note})
}

func (d *demo) name(port int) string {
	if n, ok := d.names[port]; ok {
		return n
	}
	return "port " + strconv.Itoa(port)
}

// nodeName names a node of db.Stats() (host:port) by its lab name.
func (d *demo) nodeName(addr string) string {
	if _, p, err := net.SplitHostPort(addr); err == nil {
		if port, err := strconv.Atoi(p); err == nil {
			return d.name(port)
		}
	}
	return addr
}

// routedTo names the one node whose routed count grew since before: the
// node that served a statement that cannot say where it ran (Exec,
// CopyFrom). The demo runs one statement at a time, so there is one.
func (d *demo) routedTo(before switchyard.Stats) (name, role string) {
	after := d.db.Stats()
	var names, roles []string
	for i, n := range after.Nodes {
		if i < len(before.Nodes) && n.Routed > before.Nodes[i].Routed {
			names = append(names, d.nodeName(n.Name))
			roles = append(roles, string(n.Role))
		}
	}
	if len(names) == 0 {
		return "?", "?"
	}
	return strings.Join(names, ","), strings.Join(roles, ",")
}

func (d *demo) setup(ctx context.Context) error {
	_, err := d.db.Exec(ctx, `
		CREATE TABLE demo_items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, qty int NOT NULL DEFAULT 0);
		CREATE SEQUENCE demo_seq;
		INSERT INTO demo_items (name, qty) SELECT 'item ' || g, g FROM generate_series(1, `+strconv.Itoa(demoSeedRows)+`) g`)
	if err != nil {
		return fmt.Errorf("demo: setup: %w", err)
	}
	return nil
}

func (d *demo) plainSelect() error {
	var count, port int
	var rec bool
	err := d.db.QueryRow(d.ctx, "SELECT count(*), inet_server_port(), pg_is_in_recovery() FROM demo_items").Scan(&count, &port, &rec)
	if err != nil {
		return fmt.Errorf("demo: plain SELECT: %w", err)
	}
	d.add("plain SELECT", "SELECT count(*) FROM demo_items", port, rec, fmt.Sprintf("%d rows", count))
	return nil
}

func (d *demo) lockWordsInText() error {
	var label string
	var port int
	var rec bool
	err := d.db.QueryRow(d.ctx, `SELECT 'FOR UPDATE' /* FOR UPDATE */, inet_server_port(), pg_is_in_recovery()
		FROM demo_items WHERE id = 1 -- FOR UPDATE`).Scan(&label, &port, &rec)
	if err != nil {
		return fmt.Errorf("demo: SELECT with FOR UPDATE in text: %w", err)
	}
	d.add("FOR UPDATE in text", "SELECT 'FOR UPDATE' /* FOR UPDATE */ ...", port, rec, "a string and comments are not a lock")
	return nil
}

func (d *demo) batch() error {
	b := &pgx.Batch{}
	b.Queue("SELECT count(*), inet_server_port(), pg_is_in_recovery() FROM demo_items")
	b.Queue("SELECT max(qty), inet_server_port(), pg_is_in_recovery() FROM demo_items")
	br := d.db.SendBatch(d.ctx, b)
	var v, port1, port2 int
	var rec1, rec2 bool
	err := br.QueryRow().Scan(&v, &port1, &rec1)
	if err == nil {
		err = br.QueryRow().Scan(&v, &port2, &rec2)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("demo: batch: %w", err)
	}
	note := "2 queries, one round trip"
	if port1 != port2 {
		note = fmt.Sprintf("split across %s and %s!", d.name(port1), d.name(port2))
	}
	d.add("batch of reads", "SendBatch: 2 SELECTs", port1, rec1, note)
	return nil
}

func (d *demo) readOnlyTx() error {
	tx, err := d.db.BeginTx(d.ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("demo: read-only transaction: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(d.ctx))
	var iso string
	var count, pid1, pid2, port int
	var rec bool
	err = tx.QueryRow(d.ctx, "SELECT current_setting('transaction_isolation'), pg_backend_pid(), inet_server_port(), pg_is_in_recovery()").Scan(&iso, &pid1, &port, &rec)
	if err == nil {
		err = tx.QueryRow(d.ctx, "SELECT count(*), pg_backend_pid() FROM demo_items").Scan(&count, &pid2)
	}
	if err == nil {
		err = tx.Commit(d.ctx)
	}
	if err != nil {
		return fmt.Errorf("demo: read-only transaction: %w", err)
	}
	note := fmt.Sprintf("%s, 2 reads on one backend (pid %d)", iso, pid1)
	if pid1 != pid2 {
		note = fmt.Sprintf("%s, reads on pids %d and %d!", iso, pid1, pid2)
	}
	d.add("read-only transaction", "BeginTx(ReadOnly): 2 SELECTs", port, rec, note)
	return nil
}

func (d *demo) forcedRead() error {
	var count, port int
	var rec bool
	err := d.db.QueryRow(switchyard.Primary(d.ctx), "SELECT count(*), inet_server_port(), pg_is_in_recovery() FROM demo_items").Scan(&count, &port, &rec)
	if err != nil {
		return fmt.Errorf("demo: read under Primary(ctx): %w", err)
	}
	d.add("read with Primary(ctx)", "SELECT count(*) FROM demo_items", port, rec, "forced by switchyard.Primary(ctx)")
	return nil
}

func (d *demo) selectForUpdate() error {
	var qty, port int
	var rec bool
	err := d.db.QueryRow(d.ctx, "SELECT qty, inet_server_port(), pg_is_in_recovery() FROM demo_items WHERE id = 1 FOR UPDATE").Scan(&qty, &port, &rec)
	if err != nil {
		return fmt.Errorf("demo: SELECT ... FOR UPDATE: %w", err)
	}
	d.add("SELECT ... FOR UPDATE", "SELECT qty FROM demo_items WHERE id = 1 FOR UPDATE", port, rec, "takes a row lock")
	return nil
}

func (d *demo) insertReturning() error {
	rows, err := d.db.Query(d.ctx, "INSERT INTO demo_items (name, qty) VALUES ('new', 1), ('newer', 2) RETURNING id, inet_server_port(), pg_is_in_recovery()")
	if err != nil {
		return fmt.Errorf("demo: INSERT ... RETURNING: %w", err)
	}
	var ids []string
	var port int
	var rec bool
	for rows.Next() {
		var id int
		if err := rows.Scan(&id, &port, &rec); err != nil {
			rows.Close()
			return fmt.Errorf("demo: INSERT ... RETURNING: %w", err)
		}
		ids = append(ids, strconv.Itoa(id))
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("demo: INSERT ... RETURNING: %w", err)
	}
	d.add("INSERT ... RETURNING", "INSERT INTO demo_items ... RETURNING id", port, rec, "via Query; new ids "+strings.Join(ids, ", "))
	return nil
}

func (d *demo) updateExec() error {
	before := d.db.Stats()
	tag, err := d.db.Exec(d.ctx, "UPDATE demo_items SET qty = qty + 1 WHERE id = 1")
	if err != nil {
		return fmt.Errorf("demo: UPDATE: %w", err)
	}
	node, role := d.routedTo(before)
	d.rows = append(d.rows, demoRow{"UPDATE via Exec", "UPDATE demo_items SET qty = qty + 1 WHERE id = 1", node, role,
		"tag " + tag.String() + "; node from db.Stats()"})
	return nil
}

func (d *demo) nextval() error {
	var v int64
	var port int
	var rec bool
	err := d.db.QueryRow(d.ctx, "SELECT nextval('demo_seq'), inet_server_port(), pg_is_in_recovery()").Scan(&v, &port, &rec)
	if err != nil {
		return fmt.Errorf("demo: nextval: %w", err)
	}
	d.add("SELECT nextval()", "SELECT nextval('demo_seq')", port, rec, fmt.Sprintf("a SELECT that writes; got %d", v))
	return nil
}

func (d *demo) writingCTE() error {
	var n, port int
	var rec bool
	err := d.db.QueryRow(d.ctx, `WITH d AS (DELETE FROM demo_items WHERE name = 'newer' RETURNING *)
		SELECT count(*), inet_server_port(), pg_is_in_recovery() FROM d`).Scan(&n, &port, &rec)
	if err != nil {
		return fmt.Errorf("demo: data-modifying CTE: %w", err)
	}
	d.add("data-modifying CTE", "WITH d AS (DELETE ... RETURNING *) SELECT ...", port, rec, fmt.Sprintf("deleted %d row", n))
	return nil
}

func (d *demo) atomic() error {
	var port int
	var rec bool
	var pids []int
	err := d.db.Atomic(d.ctx, func(tx pgx.Tx) error {
		var pid int
		if err := tx.QueryRow(d.ctx, "UPDATE demo_items SET qty = qty - 1 WHERE id = 2 RETURNING pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		pids = append(pids, pid)
		var qty int
		if err := tx.QueryRow(d.ctx, "SELECT qty, pg_backend_pid(), inet_server_port(), pg_is_in_recovery() FROM demo_items WHERE id = 2").Scan(&qty, &pid, &port, &rec); err != nil {
			return err
		}
		pids = append(pids, pid)
		if err := tx.QueryRow(d.ctx, "INSERT INTO demo_items (name, qty) VALUES ('restock', $1) RETURNING pg_backend_pid()", qty).Scan(&pid); err != nil {
			return err
		}
		pids = append(pids, pid)
		return nil
	})
	if err != nil {
		return fmt.Errorf("demo: db.Atomic: %w", err)
	}
	note := fmt.Sprintf("%d statements, one backend (pid %d)", len(pids), pids[0])
	for _, p := range pids[1:] {
		if p != pids[0] {
			note = fmt.Sprintf("statements on pids %v!", pids)
			break
		}
	}
	d.add("db.Atomic (read-write)", "UPDATE; SELECT; INSERT in one transaction", port, rec, note)
	return nil
}

func (d *demo) copyFrom() error {
	before := d.db.Stats()
	n, err := d.db.CopyFrom(d.ctx, pgx.Identifier{"demo_items"}, []string{"name", "qty"},
		pgx.CopyFromRows([][]any{{"copied 1", 1}, {"copied 2", 2}, {"copied 3", 3}}))
	if err != nil {
		return fmt.Errorf("demo: CopyFrom: %w", err)
	}
	node, role := d.routedTo(before)
	d.rows = append(d.rows, demoRow{"CopyFrom", "COPY demo_items (name, qty) FROM STDIN", node, role,
		fmt.Sprintf("%d rows; always the primary; node from db.Stats()", n)})
	return nil
}

// readAfterWrites reads right after the session's writes.
func (d *demo) readAfterWrites() error {
	var count, port int
	var rec bool
	err := d.db.QueryRow(d.ctx, "SELECT count(*), inet_server_port(), pg_is_in_recovery() FROM demo_items").Scan(&count, &port, &rec)
	if err != nil {
		return fmt.Errorf("demo: SELECT after the writes: %w", err)
	}
	d.add("SELECT after writing", "SELECT count(*) FROM demo_items", port, rec, fmt.Sprintf("%d rows: sees the session's writes", count))
	return nil
}

// balance runs plain reads one after another, each in a new session (as
// many users' first reads would be), and counts where they ran.
func (d *demo) balance(w io.Writer) error {
	counts := map[string]int{}
	for range demoBalanceReads {
		var port int
		if err := d.db.QueryRow(switchyard.WithSession(d.ctx), "SELECT inet_server_port()").Scan(&port); err != nil {
			return fmt.Errorf("demo: balancing reads: %w", err)
		}
		counts[d.name(port)]++
	}
	fmt.Fprintf(w, "\n%d more plain SELECTs, each in a new session, spread over the healthy replicas:\n\n", demoBalanceReads)
	for _, s := range d.db.Stats().Nodes {
		name := d.nodeName(s.Name)
		if n := counts[name]; n > 0 || s.Role == switchyard.RoleReplica {
			fmt.Fprintf(w, "  %-8s  %3d\n", name, n)
			delete(counts, name)
		}
	}
	for name, n := range counts { // a port the lab does not know; should not happen
		fmt.Fprintf(w, "  %-8s  %3d\n", name, n)
	}
	return nil
}

func (d *demo) printStats(w io.Writer) {
	s := d.db.Stats()
	fmt.Fprintln(w, "\ndb.Stats() (every statement above, the setup included):")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tADDRESS\tROLE\tHEALTHY\tROUTED\tERRORS")
	for _, n := range s.Nodes {
		healthy := "yes"
		if !n.Healthy {
			healthy = "no"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\n", d.nodeName(n.Name), n.Name, n.Role, healthy, n.Routed, n.Errors)
	}
	tw.Flush()
	r := s.Routes
	fmt.Fprintf(w, "\n  Routes: Replica %d, Checked %d (CheckFailed %d), AfterWrite %d, NotFresh %d, Forced %d,\n",
		r.Replica, r.Checked, r.CheckFailed, r.AfterWrite, r.NotFresh, r.Forced)
	fmt.Fprintf(w, "          Write %d, Transaction %d, NoHealthyReplica %d, Retried %d\n",
		r.Write, r.Transaction, r.NoHealthyReplica, r.Retried)
}
