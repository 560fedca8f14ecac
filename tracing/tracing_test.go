package tracing_test

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/switchyardtest"
	"github.com/switchyard-db/switchyard/tracing"
)

var shared *switchyardtest.Cluster

func TestMain(m *testing.M) {
	switchyardtest.Main(m, switchyardtest.Options{Replicas: 1}, &shared, func(ctx context.Context, c *switchyardtest.Cluster) error {
		if err := c.Primary().Exec(ctx, "CREATE TABLE t (id int PRIMARY KEY, v int)"); err != nil {
			return err
		}
		return c.WaitReplicas(ctx)
	})
}

func TestAttributes(t *testing.T) {
	for _, c := range []struct {
		node string
		want []tracing.Attribute
	}{
		{"127.0.0.1:5433", []tracing.Attribute{{"server.address", "127.0.0.1"}, {"server.port", int64(5433)}}},
		{"[::1]:5432", []tracing.Attribute{{"server.address", "::1"}, {"server.port", int64(5432)}}},
		{"db2.internal:6432", []tracing.Attribute{{"server.address", "db2.internal"}, {"server.port", int64(6432)}}},
		{"/var/run/postgresql", []tracing.Attribute{{"server.address", "/var/run/postgresql"}}},
	} {
		got := tracing.Attributes(switchyard.Route{Cluster: "c1", Node: c.node, Role: switchyard.RoleReplica, Reason: "checked"})
		want := append([]tracing.Attribute{{"db.system", "postgresql"}, {"db.system.name", "postgresql"}}, c.want...)
		want = append(want,
			tracing.Attribute{Key: "switchyard.cluster", Value: "c1"}, tracing.Attribute{Key: "switchyard.node", Value: c.node},
			tracing.Attribute{Key: "switchyard.role", Value: "replica"}, tracing.Attribute{Key: "switchyard.reason", Value: "checked"})
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %v\nwant %v", c.node, got, want)
		}
	}
}

// recorder is the application's tracer: it counts every callback, and
// puts a value in the contexts it returns, as a tracer's span would be.
type recorder struct {
	mu    sync.Mutex
	calls map[string]int
}

type spanKey struct{}

func (r *recorder) call(name string) {
	r.mu.Lock()
	r.calls[name]++
	r.mu.Unlock()
}

func (r *recorder) count(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls[name]
}

func (r *recorder) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	r.call("QueryStart")
	return context.WithValue(ctx, spanKey{}, d.SQL)
}
func (r *recorder) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {
	r.call("QueryEnd")
}
func (r *recorder) TraceBatchStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceBatchStartData) context.Context {
	r.call("BatchStart")
	var sqls []string
	for _, q := range d.Batch.QueuedQueries {
		sqls = append(sqls, q.SQL)
	}
	return context.WithValue(ctx, spanKey{}, "batch: "+strings.Join(sqls, "; "))
}
func (r *recorder) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {
	r.call("BatchQuery")
}
func (r *recorder) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {
	r.call("BatchEnd")
}
func (r *recorder) TraceCopyFromStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceCopyFromStartData) context.Context {
	r.call("CopyFromStart")
	return context.WithValue(ctx, spanKey{}, "copy "+d.TableName.Sanitize())
}
func (r *recorder) TraceCopyFromEnd(context.Context, *pgx.Conn, pgx.TraceCopyFromEndData) {
	r.call("CopyFromEnd")
}
func (r *recorder) TracePrepareStart(ctx context.Context, _ *pgx.Conn, _ pgx.TracePrepareStartData) context.Context {
	r.call("PrepareStart")
	return ctx
}
func (r *recorder) TracePrepareEnd(context.Context, *pgx.Conn, pgx.TracePrepareEndData) {
	r.call("PrepareEnd")
}
func (r *recorder) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	r.call("ConnectStart")
	return ctx
}
func (r *recorder) TraceConnectEnd(context.Context, pgx.TraceConnectEndData) { r.call("ConnectEnd") }
func (r *recorder) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	r.call("AcquireStart")
	return ctx
}
func (r *recorder) TraceAcquireEnd(context.Context, *pgxpool.Pool, pgxpool.TraceAcquireEndData) {
	r.call("AcquireEnd")
}
func (r *recorder) TraceRelease(*pgxpool.Pool, pgxpool.TraceReleaseData) { r.call("Release") }

// seen is what the hook got for one span: the attributes as a map.
type seen map[string]any

// TestTracer: through a DB whose pools have the wrapping tracer, a read on
// the replica, a write, a read after it (a batch with the position's
// capture), a batch and a transaction's BEGIN each reach the hook with
// their route, after the application's tracer started its span (the hook's
// context has it); every callback of the application's tracer still runs;
// and a nil tracer to wrap works too.
func TestTracer(t *testing.T) {
	lab := switchyardtest.Need(t, shared)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	app := &recorder{calls: map[string]int{}}
	var mu sync.Mutex
	spans := map[string]seen{}
	tr := tracing.New(app, func(ctx context.Context, attrs []tracing.Attribute) {
		span, _ := ctx.Value(spanKey{}).(string)
		m := seen{}
		for _, a := range attrs {
			m[a.Key] = a.Value
		}
		mu.Lock()
		spans[span] = m
		mu.Unlock()
	})
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:         lab.Primary().DSN(),
		Replicas:        []string{lab.Replicas()[0].DSN()},
		MonitorInterval: 20 * time.Millisecond,
		ConfigurePool:   func(c *pgxpool.Config) { c.ConnConfig.Tracer = tr },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	caughtUp(t, ctx, lab, db)

	var n int
	if err := db.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO t VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET v = t.v + 1"); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRow(ctx, "SELECT v FROM t WHERE id = 1").Scan(&n); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("UPDATE t SET v = v + 1 WHERE id = 1")
	b.Queue("UPDATE t SET v = v + 1 WHERE id = 1")
	if err := db.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CopyFrom(ctx, pgx.Identifier{"t"}, []string{"id", "v"}, pgx.CopyFromRows([][]any{{100, 0}})); err != nil {
		t.Fatal(err)
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM t WHERE id = 100"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}

	primary := fmt.Sprint(lab.Primary().Port())
	replica := fmt.Sprint(lab.Replicas()[0].Port())
	mu.Lock()
	defer mu.Unlock()
	check := func(span, role, reason string) {
		t.Helper()
		got, ok := spans[span]
		if !ok {
			t.Errorf("%s: the hook was not called; it was for %q", span, keys(spans))
			return
		}
		port := primary
		if role == "replica" {
			port = replica
		}
		if got["switchyard.role"] != role || got["switchyard.reason"] != reason ||
			got["switchyard.cluster"] != "default" || got["db.system"] != "postgresql" ||
			got["server.address"] != "127.0.0.1" || fmt.Sprint(got["server.port"]) != port ||
			got["switchyard.node"] != "127.0.0.1:"+port {
			t.Errorf("%s: %v, want role %s, reason %s, port %s", span, got, role, reason, port)
		}
	}
	check("SELECT count(*) FROM t", "replica", "replica")
	check("INSERT INTO t VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET v = t.v + 1", "primary", "write")
	// The read after the write goes with the capture of the position.
	check("batch: SELECT v FROM t WHERE id = 1; "+engine.CaptureSQL, "primary", "after_write")
	check("batch: UPDATE t SET v = v + 1 WHERE id = 1; UPDATE t SET v = v + 1 WHERE id = 1", "primary", "write")
	check("begin", "primary", "transaction")
	check(`copy "t"`, "primary", "write")
	check("DELETE FROM t WHERE id = 100", "primary", "transaction")
	for _, cb := range []string{"QueryStart", "QueryEnd", "BatchStart", "BatchQuery", "BatchEnd", "CopyFromStart", "CopyFromEnd", "ConnectStart", "ConnectEnd", "AcquireStart", "AcquireEnd", "Release"} {
		if app.count(cb) == 0 {
			t.Errorf("the application's tracer's %s was never called", cb)
		}
	}
	if app.count("QueryStart") != app.count("QueryEnd") || app.count("BatchStart") != app.count("BatchEnd") {
		t.Errorf("starts and ends: %v", app.calls)
	}

	// Nothing to wrap.
	var calls int
	nilTr := tracing.New(nil, func(context.Context, []tracing.Attribute) { calls++ })
	db2, err := switchyard.Open(ctx, switchyard.Config{
		Primary:       lab.Primary().DSN(),
		ConfigurePool: func(c *pgxpool.Config) { c.ConnConfig.Tracer = nilTr },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db2.Close()
	b = &pgx.Batch{}
	b.Queue("SELECT 1")
	if err := db2.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db2.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Errorf("with nothing wrapped, the hook ran %d times for a batch and a statement", calls)
	}
}

func keys(m map[string]seen) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// caughtUp waits until db's monitor has seen the replica replay everything
// the primary has, so that the first read goes to it.
func caughtUp(t *testing.T, ctx context.Context, lab *switchyardtest.Cluster, db *switchyard.DB) {
	t.Helper()
	if err := lab.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	target, err := lab.Primary().InsertLSN(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		s := db.Stats()
		ok := true
		for _, n := range s.Nodes {
			if n.Role == switchyard.RoleReplica {
				var hi, lo uint64
				fmt.Sscanf(n.Position, "%X/%X", &hi, &lo)
				ok = ok && n.Healthy && hi<<32|lo >= uint64(target)&^8191
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the monitor did not see the replica catch up")
		}
	}
}
