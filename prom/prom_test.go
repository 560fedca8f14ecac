package prom_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/prom"
	"github.com/switchyard-db/switchyard/stats"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// shared is a primary with two replicas for the tests that need servers.
var shared *switchyardtest.Cluster

func TestMain(m *testing.M) {
	switchyardtest.Main(m, switchyardtest.Options{Replicas: 2}, &shared, nil)
}

// fixed is a Source that returns one snapshot.
type fixed stats.Stats

func (f fixed) Stats() stats.Stats { return stats.Stats(f) }

func fixture() stats.Stats {
	return stats.Stats{
		Nodes: []stats.NodeStats{
			{
				Name: "db1:5432", Cluster: "default", Role: stats.RolePrimary, Healthy: true, Weight: 1,
				Routed: 7, InFlight: 1, Errors: 2, Position: "0/3000000", Timeline: 3,
				Latency: stats.Histogram{Bounds: []float64{0.001, 0.01}, Counts: []uint64{4, 2, 1}, Count: 7, Sum: 0.5},
			},
			{
				Name: "db2:5432", Cluster: "default", Role: stats.RoleReplica, Healthy: false, Weight: 2,
				Routed: 11, Position: "0/2000000", Lag: 1500 * time.Millisecond, LagBytes: 1 << 24,
				DownSince: time.Unix(1700000000, 500e6),
			},
		},
		Routes: stats.RouteStats{
			Replica: 10, Write: 4, Checked: 3, CheckFailed: 1, Waited: 2, Retried: 5, AtomicRetries: 6,
			InDoubtCommitted: 7, InDoubtAborted: 8, InDoubtUnknown: 9, TokensClamped: 10, TokensForeign: 11,
			ByReason: map[string]uint64{"replica": 5, "write": 4, "checked": 3, "waited": 2},
		},
		Clusters: []stats.ClusterStats{
			{Name: "default", Routes: stats.RouteStats{ByReason: map[string]uint64{"replica": 5, "write": 4, "checked": 3, "waited": 2}}},
		},
	}
}

// TestCollectorFixture: each field of a snapshot becomes the metric the
// docs name, with the right type, labels and value; the histogram's
// buckets are cumulative; a down replica with no pool has no pool
// metrics; and the output passes client_golang's linter.
func TestCollectorFixture(t *testing.T) {
	c := prom.NewCollector(fixed(fixture()), prom.ConstLabels(prometheus.Labels{"db": "app"}))
	want := `
# HELP switchyard_node_up Whether the server takes traffic (1) or is out of rotation (0).
# TYPE switchyard_node_up gauge
switchyard_node_up{cluster="default",db="app",node="db1:5432",role="primary"} 1
switchyard_node_up{cluster="default",db="app",node="db2:5432",role="replica"} 0
# HELP switchyard_node_replay_lag_seconds How far the replica's replay was behind the primary, in time, at its last poll.
# TYPE switchyard_node_replay_lag_seconds gauge
switchyard_node_replay_lag_seconds{cluster="default",db="app",node="db2:5432",role="replica"} 1.5
# HELP switchyard_node_replay_lag_bytes The primary's WAL position less the replica's replay position, both as last polled.
# TYPE switchyard_node_replay_lag_bytes gauge
switchyard_node_replay_lag_bytes{cluster="default",db="app",node="db2:5432",role="replica"} 1.6777216e+07
# HELP switchyard_node_wal_position_bytes The server's last polled WAL position as a byte offset: a replica's replay LSN, a primary's insert LSN.
# TYPE switchyard_node_wal_position_bytes gauge
switchyard_node_wal_position_bytes{cluster="default",db="app",node="db1:5432",role="primary"} 5.0331648e+07
switchyard_node_wal_position_bytes{cluster="default",db="app",node="db2:5432",role="replica"} 3.3554432e+07
# HELP switchyard_node_last_down_timestamp_seconds When the server last went out of rotation, in seconds since the Unix epoch (absent if never).
# TYPE switchyard_node_last_down_timestamp_seconds gauge
switchyard_node_last_down_timestamp_seconds{cluster="default",db="app",node="db2:5432",role="replica"} 1.7000000005e+09
# HELP switchyard_node_timeline The primary's timeline (a promotion starts a new one).
# TYPE switchyard_node_timeline gauge
switchyard_node_timeline{cluster="default",db="app",node="db1:5432",role="primary"} 3
# HELP switchyard_node_routed_total Statements and transactions sent to the server.
# TYPE switchyard_node_routed_total counter
switchyard_node_routed_total{cluster="default",db="app",node="db1:5432",role="primary"} 7
switchyard_node_routed_total{cluster="default",db="app",node="db2:5432",role="replica"} 11
# HELP switchyard_node_statement_duration_seconds How long the server's statements took, from sending to done.
# TYPE switchyard_node_statement_duration_seconds histogram
switchyard_node_statement_duration_seconds_bucket{cluster="default",db="app",node="db1:5432",role="primary",le="0.001"} 4
switchyard_node_statement_duration_seconds_bucket{cluster="default",db="app",node="db1:5432",role="primary",le="0.01"} 6
switchyard_node_statement_duration_seconds_bucket{cluster="default",db="app",node="db1:5432",role="primary",le="+Inf"} 7
switchyard_node_statement_duration_seconds_sum{cluster="default",db="app",node="db1:5432",role="primary"} 0.5
switchyard_node_statement_duration_seconds_count{cluster="default",db="app",node="db1:5432",role="primary"} 7
# HELP switchyard_in_doubt_commits_total Commits whose connection failed during COMMIT, by the outcome the primary then told: committed, aborted, or unknown (ErrCommitUnknown).
# TYPE switchyard_in_doubt_commits_total counter
switchyard_in_doubt_commits_total{db="app",outcome="aborted"} 8
switchyard_in_doubt_commits_total{db="app",outcome="committed"} 7
switchyard_in_doubt_commits_total{db="app",outcome="unknown"} 9
# HELP switchyard_routed_total Routing decisions by reason: replica, checked, waited, stale_ok (reads sent to a replica), after_write, not_fresh, no_replica (reads sent to the primary), forced, write, transaction, pinned, latest; per cluster.
# TYPE switchyard_routed_total counter
switchyard_routed_total{cluster="default",db="app",reason="checked"} 3
switchyard_routed_total{cluster="default",db="app",reason="replica"} 5
switchyard_routed_total{cluster="default",db="app",reason="waited"} 2
switchyard_routed_total{cluster="default",db="app",reason="write"} 4
`
	names := []string{
		"switchyard_node_up", "switchyard_node_replay_lag_seconds", "switchyard_node_replay_lag_bytes",
		"switchyard_node_wal_position_bytes", "switchyard_node_last_down_timestamp_seconds", "switchyard_node_timeline",
		"switchyard_node_routed_total", "switchyard_node_statement_duration_seconds",
		"switchyard_in_doubt_commits_total", "switchyard_routed_total",
	}
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	for name, v := range map[string]float64{
		"switchyard_replica_reads_total":            10,
		"switchyard_writes_total":                   4,
		"switchyard_freshness_checks_total":         3,
		"switchyard_freshness_check_failures_total": 1,
		"switchyard_replica_waits_total":            2,
		"switchyard_read_retries_total":             5,
		"switchyard_atomic_retries_total":           6,
		"switchyard_tokens_clamped_total":           10,
		"switchyard_tokens_foreign_total":           11,
	} {
		if got := testutil.ToFloat64(onlyMetric{c, name}); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if n := testutil.CollectAndCount(c, "switchyard_pool_max_connections"); n != 0 {
		t.Errorf("%d pool metrics for nodes without a pool", n)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if _, err := reg.Gather(); err != nil {
		t.Errorf("the pedantic registry: %v", err)
	}
}

// onlyMetric is the one metric of c named name, for testutil.ToFloat64.
type onlyMetric struct {
	c    prometheus.Collector
	name string
}

func (o onlyMetric) Describe(ch chan<- *prometheus.Desc) { o.c.Describe(ch) }
func (o onlyMetric) Collect(ch chan<- prometheus.Metric) {
	all := make(chan prometheus.Metric)
	go func() { o.c.Collect(all); close(all) }()
	for m := range all {
		if strings.Contains(m.Desc().String(), `"`+o.name+`"`) {
			ch <- m
		}
	}
}

// sample is one scrape: each sample's value by "name{k=v,...}", labels
// sorted, const labels left out; a histogram gives name_count and name_sum.
type sample map[string]float64

func scrape(t *testing.T, g prometheus.Gatherer) sample {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	s := sample{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			key := func(suffix string) string {
				var ls []string
				for _, l := range m.GetLabel() {
					ls = append(ls, l.GetName()+"="+l.GetValue())
				}
				sort.Strings(ls)
				return f.GetName() + suffix + "{" + strings.Join(ls, ",") + "}"
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s[key("")] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s[key("")] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				s[key("_count")] = float64(m.GetHistogram().GetSampleCount())
				s[key("_sum")] = m.GetHistogram().GetSampleSum()
			}
		}
	}
	return s
}

// node is the key of a per-node metric.
func node(name string, n *switchyardtest.Node, role string) string {
	return fmt.Sprintf("%s{cluster=default,node=127.0.0.1:%d,role=%s}", name, n.Port(), role)
}

// get returns a sample's value, failing the test if it is absent.
func (s sample) get(t *testing.T, key string) float64 {
	t.Helper()
	v, ok := s[key]
	if !ok {
		t.Fatalf("no sample %s", key)
	}
	return v
}

// moved checks that key rose from before to after by at least min.
func moved(t *testing.T, before, after sample, key string, min float64) {
	t.Helper()
	d := after.get(t, key) - before[key]
	t.Logf("%s: %v -> %v", key, before[key], after[key])
	if d < min {
		t.Errorf("%s rose by %v, want at least %v", key, d, min)
	}
}

// waitMetric scrapes g until cond holds of a scrape, failing after 30 s.
func waitMetric(t *testing.T, g prometheus.Gatherer, what string, cond func(sample) bool) sample {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := scrape(t, g)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCollectorOnALab runs a workload on a primary and two replicas and
// checks that every metric moved as the workload says: reads on replicas,
// a primary read after a write, a write, an Atomic retry, clamped and
// foreign tokens, latency histograms and pool gauges, a replica that lags
// (replay delay under a write load), a killed replica shown down and then,
// once started again, up. Then the whole exposition passes client_golang's
// linter and promtool check metrics.
func TestCollectorOnALab(t *testing.T) {
	lab := switchyardtest.Need(t, shared)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, r1, r2 := lab.Primary(), lab.Replicas()[0], lab.Replicas()[1]
	if err := primary.Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, v int)"); err != nil {
		t.Fatal(err)
	}
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:         primary.DSN(),
		Replicas:        []string{r1.DSN(), r2.DSN()},
		MonitorInterval: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := prom.NewRegistry(db)

	// Every replica has replayed the table.
	target, err := primary.InsertLSN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := waitMetric(t, reg, "the replicas to replay the table", func(s sample) bool {
		for _, r := range lab.Replicas() {
			if s[node("switchyard_node_wal_position_bytes", r, "replica")] < float64(target) {
				return false
			}
		}
		return true
	})
	for _, n := range lab.Nodes() {
		role := string(n.Role())
		if v := before.get(t, node("switchyard_node_up", n, role)); v != 1 {
			t.Errorf("%s: node_up = %v", n, v)
		}
		if v := before.get(t, node("switchyard_pool_max_connections", n, role)); v < 1 {
			t.Errorf("%s: pool_max_connections = %v", n, v)
		}
		before.get(t, node("switchyard_pool_connections", n, role))
		before.get(t, node("switchyard_pool_idle_connections", n, role))
		before.get(t, node("switchyard_pool_acquired_connections", n, role))
		before.get(t, node("switchyard_pool_acquires_total", n, role))
		before.get(t, node("switchyard_pool_acquire_seconds_total", n, role))
	}
	if v := before.get(t, node("switchyard_node_timeline", primary, "primary")); v != 1 {
		t.Errorf("the primary's timeline: %v", v)
	}
	if _, ok := before[node("switchyard_node_replay_lag_seconds", primary, "primary")]; ok {
		t.Error("a replay lag for the primary")
	}

	// 20 reads, all on replicas.
	const reads = 20
	for range reads {
		var one int
		if err := db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	}
	// A write, and a read after it: on the primary.
	if _, err := db.Exec(ctx, "INSERT INTO items VALUES (1, 1)"); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRow(ctx, "SELECT v FROM items WHERE id = 1").Scan(&v); err != nil {
		t.Fatal(err)
	}
	// An Atomic block that fails once with a serialization failure.
	attempts := 0
	err = db.Atomic(ctx, func(tx pgx.Tx) error {
		attempts++
		if attempts == 1 {
			_, err := tx.Exec(ctx, "DO $$ BEGIN RAISE EXCEPTION 'try again' USING ERRCODE = 'serialization_failure'; END $$")
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE items SET v = v + 1 WHERE id = 1")
		return err
	})
	if err != nil || attempts != 2 {
		t.Fatalf("Atomic: %v after %d attempts", err, attempts)
	}
	// A forged token (far ahead of the primary) and a foreign one.
	forgeTokens(t, ctx, db)

	after := scrape(t, reg)
	moved(t, before, after, "switchyard_routed_total{cluster=default,reason=replica}", reads)
	moved(t, before, after, "switchyard_replica_reads_total{}", reads)
	moved(t, before, after, "switchyard_routed_total{cluster=default,reason=after_write}", 1)
	moved(t, before, after, "switchyard_routed_total{cluster=default,reason=write}", 1)
	moved(t, before, after, "switchyard_writes_total{}", 1)
	moved(t, before, after, "switchyard_routed_total{cluster=default,reason=transaction}", 2)
	moved(t, before, after, "switchyard_atomic_retries_total{}", 1)
	moved(t, before, after, "switchyard_tokens_clamped_total{}", 1)
	moved(t, before, after, "switchyard_tokens_foreign_total{}", 1)
	onReplicas := after.get(t, node("switchyard_node_routed_total", r1, "replica")) - before[node("switchyard_node_routed_total", r1, "replica")] +
		after.get(t, node("switchyard_node_routed_total", r2, "replica")) - before[node("switchyard_node_routed_total", r2, "replica")]
	if onReplicas < reads {
		t.Errorf("node_routed_total of the replicas rose by %v, want at least %d", onReplicas, reads)
	}
	moved(t, before, after, node("switchyard_node_routed_total", primary, "primary"), 4) // write, read, 2 transactions
	after.get(t, node("switchyard_node_errors_total", primary, "primary"))
	moved(t, before, after, node("switchyard_node_statement_duration_seconds_count", primary, "primary"), 2)
	for _, r := range lab.Replicas() {
		k := node("switchyard_node_statement_duration_seconds_count", r, "replica")
		if after.get(t, k) == before[k] {
			t.Logf("%s: no statement timed (balancer chose the other one)", r)
		}
	}
	moved(t, before, after, node("switchyard_pool_acquires_total", primary, "primary"), 1)
	for _, k := range []string{
		"switchyard_freshness_checks_total{}", "switchyard_freshness_check_failures_total{}",
		"switchyard_replica_waits_total{}", "switchyard_read_retries_total{}",
		"switchyard_in_doubt_commits_total{outcome=committed}", "switchyard_in_doubt_commits_total{outcome=aborted}",
		"switchyard_in_doubt_commits_total{outcome=unknown}",
	} {
		after.get(t, k) // present; this workload gives them no reason to move
	}

	// Lag: the second replica replays a second behind a write load.
	if err := r2.SetApplyDelay(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	stop := writeLoad(t, ctx, primary)
	lagging := waitMetric(t, reg, "the delayed replica's lag", func(s sample) bool {
		return s[node("switchyard_node_replay_lag_seconds", r2, "replica")] >= 0.5 &&
			s[node("switchyard_node_replay_lag_bytes", r2, "replica")] > 0
	})
	t.Logf("lagging: %v s, %v bytes; the other replica: %v s",
		lagging[node("switchyard_node_replay_lag_seconds", r2, "replica")],
		lagging[node("switchyard_node_replay_lag_bytes", r2, "replica")],
		lagging[node("switchyard_node_replay_lag_seconds", r1, "replica")])
	stop()
	if err := r2.SetApplyDelay(ctx, 0); err != nil {
		t.Fatal(err)
	}

	// A killed replica is shown down, then up once started again.
	if err := r1.Kill(); err != nil {
		t.Fatal(err)
	}
	for range 5 { // reads find out too, as users' would
		var one int
		if err := db.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatalf("a read while a replica died: %v", err)
		}
	}
	down := waitMetric(t, reg, "the killed replica down", func(s sample) bool {
		return s[node("switchyard_node_up", r1, "replica")] == 0
	})
	if ts := down.get(t, node("switchyard_node_last_down_timestamp_seconds", r1, "replica")); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last down at %v", time.Unix(int64(ts), 0))
	}
	t.Logf("after the kill: read_retries_total %v, the dead replica's errors_total %v",
		down["switchyard_read_retries_total{}"], down[node("switchyard_node_errors_total", r1, "replica")])
	if v := down.get(t, node("switchyard_node_up", r2, "replica")); v != 1 {
		t.Errorf("the other replica's node_up: %v", v)
	}
	if err := r1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, reg, "the restarted replica up", func(s sample) bool {
		return s[node("switchyard_node_up", r1, "replica")] == 1
	})

	// The whole exposition, Go and process collectors included.
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	promtool(t, prom.Handler(db))
}

// forgeTokens reads once with a token far ahead of the primary (clamped)
// and once with a token of a cluster db does not have (ignored).
func forgeTokens(t *testing.T, ctx context.Context, db *switchyard.DB) {
	t.Helper()
	real, err := db.Token(switchyard.WithSession(ctx))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := engine.DecodeToken(real)
	if err != nil {
		t.Fatal(err)
	}
	e := entries[0]
	for _, tok := range []string{
		engine.EncodeToken([]engine.TokenEntry{{Key: e.Key, Timeline: e.Timeline, Pos: e.Pos + 1<<40}}),
		engine.EncodeToken([]engine.TokenEntry{{Key: e.Key ^ 0x5a5a, Timeline: 1, Pos: e.Pos + 1<<40}}),
	} {
		tctx, err := switchyard.WithToken(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		var one int
		if err := db.QueryRow(tctx, "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
	}
}

// writeLoad inserts rows on the primary every 10 ms until the returned
// function is called.
func writeLoad(t *testing.T, ctx context.Context, primary *switchyardtest.Node) (stop func()) {
	t.Helper()
	conn, err := primary.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer conn.Close(context.Background())
		for i := 1000; ctx.Err() == nil; i++ {
			if _, err := conn.Exec(ctx, "INSERT INTO items VALUES ($1, 0)", i); err != nil && ctx.Err() == nil {
				t.Errorf("write load: %v", err)
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Millisecond):
			}
		}
	})
	return func() { cancel(); wg.Wait() }
}

// promtool runs "promtool check metrics" on what h serves. Without
// promtool it skips, unless SWITCHYARD_REQUIRE_SERVER is set (as in CI,
// which installs it).
func promtool(t *testing.T, h http.Handler) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv(switchyardtest.RequireServerEnv) != "" {
			t.Fatalf("promtool is not installed (apt-get install prometheus) and %s is set", switchyardtest.RequireServerEnv)
		}
		t.Log("promtool not found (apt-get install prometheus); skipping promtool check metrics")
		return
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %v %v", resp.Status, err)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("promtool check metrics passed on %d lines (%d of them switchyard_ samples)",
		bytes.Count(body, []byte("\n")), countSamples(body, "switchyard_"))
}

func countSamples(body []byte, prefix string) int {
	n := 0
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}
