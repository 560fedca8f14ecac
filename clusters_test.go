package switchyard_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// twoClusters starts the "accounts" and "compute" clusters, each a primary
// with a replica (compute's replaying 50 ms late), with their tables.
func twoClusters(t testing.TB, settings map[string]string) (accounts, compute *switchyardtest.Cluster) {
	t.Helper()
	switchyardtest.NeedServer(t)
	cs := switchyardtest.NewClusters(t,
		switchyardtest.Options{Replicas: 1, Settings: settings},
		switchyardtest.Options{Replicas: 1, ApplyDelay: []time.Duration{50 * time.Millisecond}, Settings: settings})
	ctx := testCtx(t)
	if err := cs[0].Primary().Exec(ctx, `CREATE TABLE users (id int PRIMARY KEY, name text NOT NULL);
		CREATE SCHEMA billing; CREATE TABLE billing.invoices (id int PRIMARY KEY, amount int NOT NULL);
		CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL);
		INSERT INTO accounts SELECT g, 1000 FROM generate_series(1, 10) g`); err != nil {
		t.Fatal(err)
	}
	if err := cs[1].Primary().Exec(ctx, `CREATE TABLE vms (id int PRIMARY KEY, owner int NOT NULL);
		CREATE TABLE ledger (id bigserial PRIMARY KEY, account int NOT NULL, amount bigint NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if err := c.WaitReplicas(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return cs[0], cs[1]
}

func clustersConfig(accounts, compute *switchyardtest.Cluster) switchyard.Config {
	return switchyard.Config{
		Clusters: []switchyard.Cluster{
			{Name: "accounts", Primary: accounts.Primary().DSN(), Replicas: []string{accounts.Replicas()[0].DSN()}},
			{Name: "compute", Primary: compute.Primary().DSN(), Replicas: []string{compute.Replicas()[0].DSN()}},
		},
		Tables:         map[string]string{"users": "accounts", "billing.invoices": "accounts", "accounts": "accounts", "vms": "compute", "ledger": "compute"},
		DefaultCluster: "accounts",
	}
}

func openClusters(t testing.TB, cfg switchyard.Config) *switchyard.DB {
	t.Helper()
	db, err := switchyard.Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// where says which server answered: its port, and whether it is a replica.
const whereCols = "inet_server_port(), pg_is_in_recovery()"

func TestClustersRouting(t *testing.T) {
	accounts, compute := twoClusters(t, nil)
	ctx := testCtx(t)
	cfg := clustersConfig(accounts, compute)
	db := openClusters(t, cfg)
	port := func(n *switchyardtest.Node) int32 { return int32(n.Port()) }
	answered := func(ctx context.Context, sql string, args ...any) (int32, bool) {
		t.Helper()
		var p int32
		var replica bool
		if err := db.QueryRow(ctx, sql, args...).Scan(&p, &replica); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return p, replica
	}
	for _, tc := range []struct {
		sql     string
		want    *switchyardtest.Node
		replica bool
	}{
		{"INSERT INTO users VALUES (1, 'ada') RETURNING " + whereCols, accounts.Primary(), false},
		{"INSERT INTO billing.invoices VALUES (1, 10) RETURNING " + whereCols, accounts.Primary(), false},
		{"INSERT INTO vms VALUES (1, 1) RETURNING " + whereCols, compute.Primary(), false},
		{"UPDATE vms SET owner = 2 FROM (SELECT 1) s WHERE id = 1 RETURNING " + whereCols, compute.Primary(), false},
		{"WITH v AS (SELECT * FROM vms) SELECT " + whereCols + " FROM v LIMIT 1", compute.Replicas()[0], true},
		{"SELECT " + whereCols + " FROM (SELECT count(*) FROM ledger) l", compute.Replicas()[0], true},
		{"SELECT " + whereCols + " FROM users JOIN billing.invoices i USING (id)", accounts.Replicas()[0], true},
		{"SELECT " + whereCols, accounts.Replicas()[0], true}, // no table: the default cluster
	} {
		waitClusterCaughtUp(t, db, accounts, compute)
		p, replica := answered(switchyard.WithSession(ctx), tc.sql)
		if p != port(tc.want) || replica != tc.replica {
			t.Errorf("%s\nanswered by port %d (replica %v), want %d (replica %v)", tc.sql, p, replica, port(tc.want), tc.replica)
		}
	}

	// Tables of two clusters in one statement: nothing is sent.
	before := db.Stats().Routes
	for _, sql := range []string{
		"INSERT INTO vms SELECT id, id FROM users",
		"SELECT * FROM users, vms",
		"WITH x AS (DELETE FROM ledger RETURNING account) UPDATE accounts SET balance = 0 FROM x WHERE accounts.id = x.account",
	} {
		if _, err := db.Exec(ctx, sql); !errors.Is(err, switchyard.ErrCrossCluster) {
			t.Errorf("%s: %v, want ErrCrossCluster", sql, err)
		} else if !strings.Contains(err.Error(), "accounts") || !strings.Contains(err.Error(), "compute") {
			t.Errorf("%s: the error does not name both clusters: %v", sql, err)
		}
	}
	if after := db.Stats().Routes; after.Write != before.Write || after.Replica != before.Replica {
		t.Errorf("statements across clusters were sent: routes %+v then %+v", before, after)
	}
	var n int
	if queryNode(t, compute.Primary(), "SELECT count(*) FROM vms", &n); n != 1 {
		t.Errorf("vms has %d rows, want 1", n)
	}

	// OnCluster wins; Route wins over Tables.
	if p, _ := answered(switchyard.OnCluster(ctx, "compute"), "SELECT "+whereCols); p != port(compute.Primary()) && p != port(compute.Replicas()[0]) {
		t.Errorf("OnCluster(compute) answered by %d", p)
	}
	if _, err := db.Exec(switchyard.OnCluster(ctx, "nowhere"), "SELECT 1"); !errors.Is(err, switchyard.ErrConfig) || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("OnCluster of an unknown cluster: %v", err)
	}
	routed := cfg
	routed.Route = func(ctx context.Context, st switchyard.Statement) string {
		if strings.Contains(st.SQL, "/* compute */") {
			return "compute"
		}
		if len(st.Reads) > 0 && st.Reads[0] == "billing.invoices" && st.Write == false {
			return "accounts"
		}
		return ""
	}
	rdb := openClusters(t, routed)
	var p int32
	var rep bool
	if err := rdb.QueryRow(ctx, "/* compute */ SELECT "+whereCols).Scan(&p, &rep); err != nil || (p != port(compute.Primary()) && p != port(compute.Replicas()[0])) {
		t.Errorf("Route(compute): port %d, %v", p, err)
	}
	if err := rdb.QueryRow(ctx, "SELECT "+whereCols+" FROM vms /* compute */ LIMIT 1").Scan(&p, &rep); err != nil {
		t.Errorf("Route decided a read of vms: %v", err)
	}

	// CopyFrom and batches go by their tables too.
	if _, err := db.CopyFrom(ctx, pgx.Identifier{"ledger"}, []string{"account", "amount"}, pgx.CopyFromRows([][]any{{1, 5}})); err != nil {
		t.Fatal(err)
	}
	if queryNode(t, compute.Primary(), "SELECT count(*) FROM ledger", &n); n != 1 {
		t.Errorf("ledger has %d rows after CopyFrom", n)
	}
	b := &pgx.Batch{}
	b.Queue("INSERT INTO users VALUES (2, 'bob')")
	b.Queue("INSERT INTO vms VALUES (2, 2)")
	if err := db.SendBatch(ctx, b).Close(); !errors.Is(err, switchyard.ErrCrossCluster) {
		t.Errorf("a batch across clusters: %v", err)
	}

	// Stats name each node's cluster.
	clusters := map[string]int{}
	for _, n := range db.Stats().Nodes {
		clusters[n.Cluster]++
	}
	if clusters["accounts"] != 2 || clusters["compute"] != 2 {
		t.Errorf("nodes by cluster: %v", clusters)
	}
	// And count each cluster's routing apart: the parts add up to the
	// whole, and each cluster wrote.
	st := db.Stats()
	if len(st.Clusters) != 2 || st.Clusters[0].Name != "accounts" || st.Clusters[1].Name != "compute" {
		t.Fatalf("Stats.Clusters: %+v", st.Clusters)
	}
	for reason, n := range st.Routes.ByReason {
		if sum := st.Clusters[0].Routes.ByReason[reason] + st.Clusters[1].Routes.ByReason[reason]; sum != n {
			t.Errorf("routed for %s: %d in all, %d over the clusters", reason, n, sum)
		}
	}
	if st.Clusters[0].Routes.Write == 0 || st.Clusters[1].Routes.Write == 0 {
		t.Errorf("writes by cluster: accounts %d, compute %d", st.Clusters[0].Routes.Write, st.Clusters[1].Routes.Write)
	}
}

// waitClusterCaughtUp waits until the monitor sees every replica of both
// clusters caught up with its primary.
func waitClusterCaughtUp(t *testing.T, db *switchyard.DB, cs ...*switchyardtest.Cluster) {
	t.Helper()
	for _, c := range cs {
		waitCaughtUp(t, c, db)
	}
}

func TestClustersTransactions(t *testing.T) {
	accounts, compute := twoClusters(t, nil)
	ctx := testCtx(t)
	var mu sync.Mutex
	var begins, batches int
	cfg := clustersConfig(accounts, compute)
	cfg.ConfigurePool = func(pc *pgxpool.Config) {
		pc.ConnConfig.Tracer = &countingTracer{mu: &mu, begins: &begins, batches: &batches}
	}
	db := openClusters(t, cfg)

	// Bound by its first statement, whose BEGIN rides with it.
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if tx.Conn() != nil {
		t.Error("an unbound transaction has a connection")
	}
	mu.Lock()
	begins, batches = 0, 0
	mu.Unlock()
	var p int32
	var rep bool
	if err := tx.QueryRow(ctx, "INSERT INTO vms VALUES (10, 1) RETURNING "+whereCols).Scan(&p, &rep); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if begins != 0 || batches != 1 {
		t.Errorf("the first statement took %d BEGINs of their own and %d batches; want BEGIN in its batch", begins, batches)
	}
	mu.Unlock()
	if p != int32(compute.Primary().Port()) {
		t.Errorf("the transaction's first statement ran on port %d, want compute's primary", p)
	}
	// A statement for the other cluster: refused, nothing sent, the
	// transaction still usable.
	if _, err := tx.Exec(ctx, "INSERT INTO users VALUES (10, 'x')"); !errors.Is(err, switchyard.ErrCrossCluster) {
		t.Errorf("a statement for accounts in a compute transaction: %v", err)
	}
	if err := tx.QueryRow(ctx, "SELECT "+whereCols).Scan(&p, &rep); err != nil || p != int32(compute.Primary().Port()) {
		t.Errorf("a statement with no table after the refusal: port %d, %v", p, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO ledger (account, amount) VALUES (1, 1)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	queryNode(t, compute.Primary(), "SELECT count(*) FROM vms WHERE id = 10", &n)
	var u int
	queryNode(t, accounts.Primary(), "SELECT count(*) FROM users WHERE id = 10", &u)
	if n != 1 || u != 0 {
		t.Errorf("after commit: vms %d, users %d; want 1 and 0", n, u)
	}

	// Read-only: a replica of the first statement's cluster.
	waitClusterCaughtUp(t, db, accounts, compute)
	ro, err := db.BeginTx(switchyard.WithSession(ctx), pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	var iso string
	if err := ro.QueryRow(ctx, "SELECT "+whereCols+", current_setting('transaction_isolation') FROM users LIMIT 1").Scan(&p, &rep, &iso); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	rows, _ := ro.Query(ctx, "SELECT "+whereCols+", current_setting('transaction_isolation')")
	for rows.Next() {
		rows.Scan(&p, &rep, &iso)
	}
	if rows.Err() != nil || p != int32(accounts.Replicas()[0].Port()) || !rep || iso != "repeatable read" {
		t.Errorf("read-only transaction: port %d replica %v %q (%v); want accounts' replica, repeatable read", p, rep, iso, rows.Err())
	}
	ro.Rollback(ctx)

	// OnCluster binds at once; an empty transaction commits.
	otx, err := db.Begin(switchyard.OnCluster(ctx, "compute"))
	if err != nil {
		t.Fatal(err)
	}
	if otx.Conn() == nil {
		t.Error("a transaction placed by OnCluster has no connection")
	}
	if _, err := otx.Exec(ctx, "UPDATE users SET name = name"); !errors.Is(err, switchyard.ErrCrossCluster) {
		t.Errorf("users in an OnCluster(compute) transaction: %v", err)
	}
	otx.Rollback(ctx)
	empty, _ := db.Begin(ctx)
	if err := empty.Commit(ctx); err != nil {
		t.Errorf("an empty transaction: %v", err)
	}

	// Atomic binds each try afresh.
	tries := 0
	err = db.Atomic(ctx, func(tx pgx.Tx) error {
		tries++
		if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance + 1 WHERE id = 1"); err != nil {
			return err
		}
		if tries == 1 {
			return &pgconn.PgError{Code: "40001", Message: "could not serialize access (a test)"}
		}
		return nil
	})
	if err != nil || tries != 2 {
		t.Errorf("Atomic: %v after %d tries", err, tries)
	}

	// Session state and savepoints in a bound transaction.
	stx, _ := db.Begin(ctx)
	if _, err := stx.Exec(ctx, "INSERT INTO users VALUES (20, 'sp')"); err != nil {
		t.Fatal(err)
	}
	sp, err := stx.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Exec(ctx, "INSERT INTO users VALUES (21, 'rolled back')"); err != nil {
		t.Fatal(err)
	}
	sp.Rollback(ctx)
	if err := stx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	queryNode(t, accounts.Primary(), "SELECT count(*) FROM users WHERE id IN (20, 21)", &n)
	if n != 1 {
		t.Errorf("savepoint: %d rows, want 1", n)
	}
}

// TestClustersSessions: a session that writes to both clusters reads its
// writes on both (one replica replays 50 ms late), and so does a token
// carried to another DB.
func TestClustersSessions(t *testing.T) {
	accounts, compute := twoClusters(t, nil)
	ctx := testCtx(t)
	cfg := clustersConfig(accounts, compute)
	db, other := openClusters(t, cfg), openClusters(t, cfg)
	for i := range 50 {
		sctx := switchyard.WithSession(ctx)
		if _, err := db.Exec(sctx, "INSERT INTO users VALUES ($1, 'u')", 1000+i); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Exec(sctx, "INSERT INTO vms VALUES ($1, $1)", 1000+i); err != nil {
			t.Fatal(err)
		}
		tok, err := db.Token(sctx)
		if err != nil {
			t.Fatal(err)
		}
		tctx, err := switchyard.WithToken(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			db  *switchyard.DB
			ctx context.Context
		}{{db, sctx}, {other, tctx}} {
			var u, v int
			if err := c.db.QueryRow(c.ctx, "SELECT count(*) FROM users WHERE id = $1", 1000+i).Scan(&u); err != nil {
				t.Fatal(err)
			}
			if err := c.db.QueryRow(c.ctx, "SELECT count(*) FROM vms WHERE id = $1", 1000+i).Scan(&v); err != nil {
				t.Fatal(err)
			}
			if u != 1 || v != 1 {
				t.Errorf("round %d: users %d, vms %d after writing both (same DB: %v)", i, u, v, c.db == db)
			}
		}
	}
	if r := db.Stats().Routes; r.Replica == 0 {
		t.Logf("no read reached a replica: routes %+v", r)
	}
}

func TestClustersConfigErrors(t *testing.T) {
	ok := []switchyard.Cluster{{Name: "a", Primary: "postgres://h1/db"}, {Name: "b", Primary: "postgres://h2/db"}}
	for _, tc := range []struct {
		cfg  switchyard.Config
		want string
	}{
		{switchyard.Config{Clusters: ok, Primary: "postgres://h3/db"}, "either Clusters or Primary"},
		{switchyard.Config{Clusters: []switchyard.Cluster{{Primary: "postgres://h1/db"}}}, "cluster 1 has no Name"},
		{switchyard.Config{Clusters: []switchyard.Cluster{{Name: "a", Primary: "postgres://h1/db"}, {Name: "a", Primary: "postgres://h2/db"}}}, `two clusters are named "a"`},
		{switchyard.Config{Clusters: []switchyard.Cluster{{Name: "a", Primary: "postgres://h1/db"}, {Name: "b", Primary: "postgres://h1/db"}}}, "a server belongs to one cluster"},
		{switchyard.Config{Clusters: ok, DefaultCluster: "c"}, `DefaultCluster "c" is not one of Clusters`},
		{switchyard.Config{Clusters: ok, Tables: map[string]string{"t": "c"}}, `"t" goes to cluster "c"`},
		{switchyard.Config{Clusters: ok, Tables: map[string]string{"a.b.c": "a"}}, "want table or schema.table"},
		{switchyard.Config{Clusters: ok, Tables: map[string]string{`"unterminated`: "a"}}, "unterminated"},
		{switchyard.Config{Clusters: []switchyard.Cluster{{Name: "a"}}}, "cluster a: "},
		{switchyard.Config{Primary: "postgres://h1/db", Tables: map[string]string{"t": "a"}}, "need Clusters"},
	} {
		_, err := switchyard.Open(context.Background(), tc.cfg)
		if !errors.Is(err, switchyard.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want ErrConfig with %q", tc.cfg, err, tc.want)
		}
	}
}

// countingTracer counts BEGINs sent as statements of their own and
// batches.
type countingTracer struct {
	mu              *sync.Mutex
	begins, batches *int
}

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.HasPrefix(strings.ToLower(d.SQL), "begin") {
		c.mu.Lock()
		*c.begins++
		c.mu.Unlock()
	}
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (c *countingTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.mu.Lock()
	*c.batches++
	c.mu.Unlock()
	return ctx
}
func (c *countingTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (c *countingTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}
