package switchyard_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// settingsLab starts a primary with two replicas (the second 20 ms behind)
// and a counters table, with opts' encoding and settings.
func settingsLab(t *testing.T, opts switchyardtest.Options) *switchyardtest.Cluster {
	t.Helper()
	ctx := testCtx(t)
	opts.Replicas = 2
	opts.ApplyDelay = []time.Duration{0, 20 * time.Millisecond}
	c := switchyardtest.New(t, opts)
	if err := c.Primary().Exec(ctx, `CREATE TABLE counters (id int PRIMARY KEY, v bigint NOT NULL);
		INSERT INTO counters SELECT g, 0 FROM generate_series(0, 15) g;
		CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// logTo returns a Logger writing to buf.
func logTo(buf *syncBuffer) *slog.Logger { return slog.New(slog.NewTextHandler(buf, nil)) }

// TestServerEncodings: on a SQL_ASCII and on a LATIN1 cluster, routing,
// consistency and a replica's death behave as on UTF8, and users' bytes
// pass through untouched.
func TestServerEncodings(t *testing.T) {
	for _, enc := range []string{"SQL_ASCII", "LATIN1"} {
		t.Run(enc, func(t *testing.T) {
			ctx := testCtx(t)
			c := settingsLab(t, switchyardtest.Options{Encoding: enc})
			db := openDB(t, c)
			waitCaughtUp(t, c, db)
			var serverEnc string
			var rec bool
			if err := db.QueryRow(ctx, "SELECT current_setting('server_encoding'), pg_is_in_recovery()").Scan(&serverEnc, &rec); err != nil || serverEnc != enc || !rec {
				t.Fatalf("a read: encoding %q, on a replica %v, %v", serverEnc, rec, err)
			}
			// Latin-1 'é' and SQL_ASCII bytes: not UTF-8, stored and read
			// back as they were.
			body := "caf\xe9 \xa9 2026"
			s := switchyard.WithSession(ctx)
			if _, err := db.Exec(s, "INSERT INTO notes VALUES (1, $1)", body); err != nil {
				t.Fatal(err)
			}
			var got string
			if err := db.QueryRow(s, "SELECT body FROM notes WHERE id = 1").Scan(&got); err != nil || got != body {
				t.Errorf("read back %q, %v, want %q", got, err, body)
			}
			torture(t, db, 8, 16, 3000, nil).check(t, db)
			// A replica killed under reads.
			var fails atomic.Int64
			stop := load(8, func(call int) {
				var v int64
				if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = $1", call%16).Scan(&v); err != nil {
					fails.Add(1)
				}
			})
			time.Sleep(200 * time.Millisecond) // reads under way
			if err := c.Replicas()[0].Kill(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // reads with the replica dead
			stop()
			if n := fails.Load(); n != 0 {
				t.Errorf("%d reads failed with a replica killed", n)
			}
		})
	}
}

// TestSerializableReplicas: a hot standby cannot run serializable
// transactions, so with default_transaction_isolation = serializable every
// statement there would fail: such replicas are kept out, with a log line
// naming the setting and the remedy, and reads go to the primary, without
// an error.
func TestSerializableReplicas(t *testing.T) {
	ctx := testCtx(t)
	serializable := map[string]string{"default_transaction_isolation": "serializable"}
	c := settingsLab(t, switchyardtest.Options{NodeSettings: map[string]map[string]string{"replica1": serializable, "replica2": serializable}})
	var logs syncBuffer
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.Logger = logTo(&logs) })
	for i := 0; i < 20; i++ {
		var rec bool
		if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
			t.Fatalf("read %d: on a replica %v, %v", i, rec, err)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "default_transaction_isolation is serializable") || !strings.Contains(out, "read committed") {
		t.Errorf("the log does not name the setting and its remedy:\n%s", out)
	}
	for _, n := range db.Stats().Nodes[1:] {
		if n.Healthy {
			t.Errorf("replica %s is in rotation", n.Name)
		}
	}
	// A serializable read-only transaction runs, on the primary.
	err := db.Atomic(ctx, func(tx pgx.Tx) error {
		var rec bool
		if err := tx.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if rec {
			return errors.New("on a replica")
		}
		return nil
	}, switchyard.ReadOnly(), switchyard.Isolation(pgx.Serializable))
	if err != nil {
		t.Error(err)
	}
}

// TestRepeatableReadReplicas: under REPEATABLE READ, a freshness check sent
// ahead of a read in its implicit transaction takes the transaction's
// snapshot before it reads the replay position, so it proves nothing about
// the read: on such replicas switchyard sends no check, and reads stay
// fresh.
func TestRepeatableReadReplicas(t *testing.T) {
	rr := map[string]string{"default_transaction_isolation": "repeatable read"}
	c := settingsLab(t, switchyardtest.Options{NodeSettings: map[string]map[string]string{"replica1": rr, "replica2": rr}})
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	torture(t, db, 8, 16, 5000, nil).check(t, db)
	if r := db.Stats().Routes; r.Checked != 0 {
		t.Errorf("%d freshness checks on repeatable-read replicas", r.Checked)
	}
}

// TestReadOnlyPrimary: a primary whose default_transaction_read_only is on
// refuses writes (25006, passed on); the log names the setting.
func TestReadOnlyPrimary(t *testing.T) {
	ctx := testCtx(t)
	c := settingsLab(t, switchyardtest.Options{})
	if err := c.Primary().SetSetting(ctx, "default_transaction_read_only", "on"); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.Logger = logTo(&logs) })
	_, err := db.Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0")
	if pgCode(err) != "25006" {
		t.Errorf("a write: %v, want 25006", err)
	}
	waitFor(t, "the log line", func() bool { return strings.Contains(logs.String(), "default_transaction_read_only") })
	var v int64
	if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&v); err != nil {
		t.Errorf("a read: %v", err)
	}
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestTinyTimeouts: statement_timeout = 30ms (shorter than the settle
// wait's usual bound) and idle_in_transaction_session_timeout = 100ms
// everywhere break nothing of switchyard's own: polls, freshness checks,
// settles, captures, COMMIT's protocol.
func TestTinyTimeouts(t *testing.T) {
	ctx := testCtx(t)
	c := settingsLab(t, switchyardtest.Options{Settings: map[string]string{"statement_timeout": "30ms", "idle_in_transaction_session_timeout": "100ms"}})
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	torture(t, db, 4, 16, 3000, nil).check(t, db)
	for i := 0; i < 20; i++ {
		err := db.Atomic(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "UPDATE counters SET v = v + 1 WHERE id = 1")
			return err
		})
		if err != nil {
			t.Fatalf("Atomic %d: %v", i, err)
		}
	}
	for _, n := range db.Stats().Nodes {
		if !n.Healthy {
			t.Errorf("%s out of rotation", n.Name)
		}
	}
}

// TestRecoveryConflicts: with hot_standby_feedback off and a small
// max_standby_streaming_delay, a vacuuming writer makes the replicas
// cancel reads (recovery conflicts); those reads run again on the primary,
// and the caller sees no error.
func TestRecoveryConflicts(t *testing.T) {
	ctx := testCtx(t)
	conflicts := map[string]string{"hot_standby_feedback": "off", "max_standby_streaming_delay": "10ms"}
	c := settingsLab(t, switchyardtest.Options{NodeSettings: map[string]map[string]string{"replica1": conflicts, "replica2": conflicts}})
	if err := c.Primary().Exec(ctx, "CREATE TABLE churn (id int PRIMARY KEY, v int); INSERT INTO churn SELECT g, 0 FROM generate_series(1, 2000) g"); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, c)
	waitCaughtUp(t, c, db) // the table was made behind the DB's back
	stopWriter := load(1, func(int) {
		c.Primary().Exec(ctx, "UPDATE churn SET v = v + 1; VACUUM churn")
	})
	var reads, fails atomic.Int64
	var firstErr atomic.Value
	stopReaders := load(4, func(int) {
		var n int64
		err := db.QueryRow(ctx, "SELECT count(*) FROM churn, pg_sleep(0.02)").Scan(&n)
		reads.Add(1)
		if err != nil {
			fails.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
	})
	waitFor(t, "reads canceled by recovery conflicts", func() bool { return db.Stats().Routes.Retried >= 5 })
	stopReaders()
	stopWriter()
	t.Logf("%d reads, %d retried after a recovery conflict, %d failed", reads.Load(), db.Stats().Routes.Retried, fails.Load())
	if n := fails.Load(); n != 0 {
		t.Errorf("%d reads failed; first: %v", n, firstErr.Load())
	}
}

// TestReplicaOfAnotherCluster: a replica of another primary (another
// system identifier) listed by mistake is refused at Open, with both
// identifiers named.
func TestReplicaOfAnotherCluster(t *testing.T) {
	ctx := testCtx(t)
	labs := switchyardtest.NewClusters(t, switchyardtest.Options{Replicas: 1}, switchyardtest.Options{Replicas: 1})
	_, err := switchyard.Open(ctx, switchyard.Config{Primary: labs[0].Primary().DSN(), Replicas: []string{labs[1].Replicas()[0].DSN()}})
	if !errors.Is(err, switchyard.ErrConfig) || !strings.Contains(err.Error(), "another cluster") ||
		!strings.Contains(err.Error(), fmt.Sprint(labs[0].SystemIdentifier())) || !strings.Contains(err.Error(), fmt.Sprint(labs[1].SystemIdentifier())) {
		t.Errorf("Open with a replica of another cluster: %v", err)
	}
}

// TestHotStandbyOff: a standby with hot_standby = off refuses connections;
// it starts out of rotation with a log line naming the setting, and reads
// go to the other replica.
func TestHotStandbyOff(t *testing.T) {
	ctx := testCtx(t)
	c := settingsLab(t, switchyardtest.Options{NodeSettings: map[string]map[string]string{"replica1": {"hot_standby": "off"}}})
	var logs syncBuffer
	db := openDB(t, c, func(cfg *switchyard.Config) { cfg.Logger = logTo(&logs) })
	if !strings.Contains(logs.String(), "hot_standby = on") {
		t.Errorf("the log does not name the setting:\n%s", logs.String())
	}
	waitFor(t, "a read on the other replica", func() bool {
		var port int
		if err := db.QueryRow(ctx, "SELECT inet_server_port()").Scan(&port); err != nil {
			t.Fatal(err)
		}
		return port == c.Replicas()[1].Port()
	})
}

// TestManyGoroutines: 500 goroutines against servers that take 100
// connections: they wait for the pools, none gets a connection error, and
// reads are not sent to the primary because a replica's pool is busy.
func TestManyGoroutines(t *testing.T) {
	ctx := testCtx(t)
	c := settingsLab(t, switchyardtest.Options{Settings: map[string]string{"max_connections": "100"}})
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	before := db.Stats().Routes
	var fails atomic.Int64
	var firstErr atomic.Value
	stop := load(500, func(call int) {
		var v int64
		if err := db.QueryRow(ctx, "SELECT v FROM counters WHERE id = $1", call%16).Scan(&v); err != nil {
			fails.Add(1)
			firstErr.CompareAndSwap(nil, err)
		}
	})
	time.Sleep(2 * time.Second) // two seconds of 500 readers
	stop()
	r := db.Stats().Routes
	t.Logf("%d reads on replicas, %d on the primary for want of a replica", r.Replica-before.Replica, r.NoHealthyReplica+r.NotFresh-before.NoHealthyReplica-before.NotFresh)
	if n := fails.Load(); n != 0 {
		t.Errorf("%d reads failed; first: %v", n, firstErr.Load())
	}
	if r.NoHealthyReplica != before.NoHealthyReplica || r.NotFresh != before.NotFresh {
		t.Errorf("reads went to the primary: %+v", r)
	}
}

// TestOpenCloseBurst: DBs opened and closed in a burst leave no goroutine
// and no server connection behind.
func TestOpenCloseBurst(t *testing.T) {
	ctx := testCtx(t)
	c := settingsLab(t, switchyardtest.Options{})
	before := runtime.NumGoroutine()
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			db, err := openQuiet(ctx, c)
			if err == nil {
				var v int64
				err = db.QueryRow(ctx, "SELECT v FROM counters WHERE id = 0").Scan(&v)
				db.Close()
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	db, err := openQuiet(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	closeAndCheckLeaks(t, c, db, before)
}

func openQuiet(ctx context.Context, c *switchyardtest.Cluster) (*switchyard.DB, error) {
	cfg := switchyard.Config{Primary: c.Primary().DSN()}
	for _, r := range c.Replicas() {
		cfg.Replicas = append(cfg.Replicas, r.DSN())
	}
	return switchyard.Open(ctx, cfg)
}
