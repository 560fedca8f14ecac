package switchyard_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
)

// TestAcquire: a Conn keeps session state across statements, and what is
// written on it counts as the session's write, so the session's next read
// through the DB sees it although the replica is 300 ms behind.
func TestAcquire(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 300*time.Millisecond)
	db := openDB(t, c)
	waitCaughtUp(t, c, db)
	s := switchyard.WithSession(ctx)

	conn, err := db.Acquire(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(s, "CREATE TEMP TABLE scratch AS SELECT 41 AS v"); err != nil {
		t.Fatal(err)
	}
	var v int64
	if err := conn.QueryRow(s, "UPDATE counters SET v = (SELECT v + 1 FROM scratch) WHERE id = 0 RETURNING v").Scan(&v); err != nil {
		t.Fatal(err)
	}
	// Not released yet: the session's read must see the write already.
	var got int64
	if err := db.QueryRow(s, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil || got != v {
		t.Errorf("read %d, %v after writing %d on an acquired connection", got, err, v)
	}
	tx, err := conn.Begin(s)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(s, "UPDATE counters SET v = v + 1 WHERE id = 0"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(s); err != nil {
		t.Fatal(err)
	}
	conn.Release()
	conn.Release() // twice is fine
	if err := db.QueryRow(s, "SELECT v FROM counters WHERE id = 0").Scan(&got); err != nil || got != v+1 {
		t.Errorf("read %d, %v after committing %d on an acquired connection", got, err, v+1)
	}

	// AcquireFunc: LISTEN and NOTIFY on one server session.
	err = db.AcquireFunc(ctx, func(conn *switchyard.Conn) error {
		if _, err := conn.Exec(ctx, "LISTEN wake"); err != nil {
			return err
		}
		if _, err := db.Exec(ctx, "NOTIFY wake, 'up'"); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.Conn().WaitForNotification(wctx)
		if err != nil {
			return err
		}
		if n.Payload != "up" {
			return fmt.Errorf("payload %q", n.Payload)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if p := db.Stats().Routes.Pinned; p < 5 {
		t.Errorf("Pinned = %d, want the acquires and their statements", p)
	}
	if n := db.Stats().Nodes[0].InFlight; n != 0 {
		t.Errorf("%d statements still in flight on the primary after Release", n)
	}
	db.Close()
	if _, err := db.Acquire(ctx); !errors.Is(err, switchyard.ErrClosed) {
		t.Errorf("Acquire after Close: %v", err)
	}
}

// TestLeakedWriteRows: rows of a write that the caller never closes do not
// keep every later read without a session on the primary.
func TestLeakedWriteRows(t *testing.T) {
	ctx := testCtx(t)
	c := laggingLab(t, 1, 0)
	db := openDB(t, c)
	rows, err := db.Query(ctx, "UPDATE counters SET v = v + 1 WHERE id = 0 RETURNING v")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close() // at the end of the test only
	if !rows.Next() {
		t.Fatal(rows.Err())
	}
	waitFor(t, "a read without a session to reach the replica", func() bool {
		var rec bool
		if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			t.Fatal(err)
		}
		return rec
	})
}

// TestParseConfig: a multi-host string gets every Config option.
func TestParseConfig(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	const secret = "pw-9x"
	hosts := func(ports ...int) string {
		var hs []string
		for _, p := range ports {
			hs = append(hs, fmt.Sprintf("127.0.0.1:%d", p))
		}
		return "postgres://postgres:" + secret + "@" + strings.Join(hs, ",") + "/postgres?sslmode=disable&connect_timeout=2"
	}
	dead := deadPort(t)
	cfg, err := switchyard.ParseConfig(hosts(sharedLab(t).Replicas()[0].Port(), sharedLab(t).Primary().Port(), dead))
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	cfg.WriteFunctions = []string{"nextval_like"}
	db, err := switchyard.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if s := db.Stats(); s.Nodes[0].Role != switchyard.RolePrimary || s.Nodes[0].Name != fmt.Sprintf("127.0.0.1:%d", sharedLab(t).Primary().Port()) {
		t.Errorf("the primary was not found: %+v", s.Nodes[0])
	}
	if out := logs.String(); !strings.Contains(out, fmt.Sprint(dead)) || strings.Contains(out, secret) {
		t.Errorf("the Logger should hear of the dead host, without its password:\n%s", out)
	}
	// WriteFunctions came along: a read calling one goes to the primary.
	if err := sharedLab(t).Primary().Exec(ctx, "CREATE OR REPLACE FUNCTION nextval_like() RETURNS int LANGUAGE sql AS 'SELECT 1'"); err != nil {
		t.Fatal(err)
	}
	if err := sharedLab(t).WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	var rec bool
	if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery(), nextval_like()").Scan(&rec, new(int)); err != nil || rec {
		t.Errorf("a read calling a configured write function: on a replica %v, %v", rec, err)
	}

	for _, tc := range []struct {
		name string
		cfg  func() (switchyard.Config, error)
	}{
		{"empty", func() (switchyard.Config, error) { return switchyard.ParseConfig(" ") }},
		{"malformed", func() (switchyard.Config, error) {
			return switchyard.ParseConfig("postgres://postgres:" + secret + "@127.0.0.1:x/postgres")
		}},
		{"host twice", func() (switchyard.Config, error) { return switchyard.ParseConfig(hosts(dead, dead+1, dead)) }},
		{"both forms", func() (switchyard.Config, error) {
			cfg, err := switchyard.ParseConfig(hosts(dead))
			cfg.Primary = sharedLab(t).Primary().DSN()
			if err != nil {
				return cfg, err
			}
			db, err := switchyard.Open(ctx, cfg)
			if err == nil {
				db.Close()
			}
			return cfg, err
		}},
	} {
		_, err := tc.cfg()
		if !errors.Is(err, switchyard.ErrConfig) || strings.Contains(fmt.Sprint(err), secret) {
			t.Errorf("%s: %v, want ErrConfig without the password", tc.name, err)
		}
	}
}

// ExampleDB_Acquire keeps a temporary table across statements on one
// connection to the primary.
func ExampleDB_Acquire() {
	ctx := context.Background()
	db, err := switchyard.Open(ctx, switchyard.Config{Primary: lab().Primary().DSN(), Replicas: replicaDSNs(lab())})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	err = db.AcquireFunc(ctx, func(conn *switchyard.Conn) error {
		if _, err := conn.Exec(ctx, "CREATE TEMP TABLE picks AS SELECT g AS n FROM generate_series(1, 3) g"); err != nil {
			return err
		}
		var sum int
		if err := conn.QueryRow(ctx, "SELECT sum(n) FROM picks").Scan(&sum); err != nil {
			return err
		}
		fmt.Println("sum:", sum)
		return nil
	})
	if err != nil {
		fmt.Println(err)
	}
	// Output: sum: 6
}

// ExampleParseConfig opens a DB from one connection string that lists
// every server, with other options set.
func ExampleParseConfig() {
	ctx := context.Background()
	c := lab()
	url := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable",
		c.Replicas()[0].Port(), c.Primary().Port(), c.Replicas()[1].Port())
	cfg, err := switchyard.ParseConfig(url)
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg.ReplicaWait = 50 * time.Millisecond // let reads right after a write wait for a replica
	db, err := switchyard.Open(ctx, cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()
	for _, n := range db.Stats().Nodes {
		fmt.Println(n.Role)
	}
	var one int
	err = db.QueryRow(ctx, "SELECT 1").Scan(&one)
	fmt.Println(one, err)
	// Output:
	// primary
	// replica
	// replica
	// 1 <nil>
}
