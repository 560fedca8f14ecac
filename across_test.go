package switchyard_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

var twoPhase = map[string]string{"max_prepared_transactions": "20"}

// prepared lists the prepared transactions left on a cluster.
func prepared(t *testing.T, c *switchyardtest.Cluster) []string {
	t.Helper()
	conn, err := c.Primary().Connect(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(testCtx(t), "SELECT gid FROM pg_prepared_xacts ORDER BY gid")
	gids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return gids
}

func balances(t *testing.T, accounts, compute *switchyardtest.Cluster) (sum, ledger int64) {
	t.Helper()
	queryNode(t, accounts.Primary(), "SELECT coalesce(sum(balance), 0)::int8 FROM accounts", &sum)
	queryNode(t, compute.Primary(), "SELECT coalesce(sum(amount), 0)::int8 FROM ledger", &ledger)
	return sum, ledger
}

// move takes amount from account id on accounts and books it in the
// ledger on compute, in one block.
func move(ctx context.Context, db *switchyard.DB, id int, amount int64, then func(pgx.Tx) error) error {
	return db.Atomic(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance - $2 WHERE id = $1", id, amount); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO ledger (account, amount) VALUES ($1, $2)", id, amount); err != nil {
			return err
		}
		if then != nil {
			return then(tx)
		}
		return nil
	}, switchyard.AcrossClusters())
}

func TestAcrossClusters(t *testing.T) {
	accounts, compute := twoClusters(t, twoPhase)
	ctx := testCtx(t)
	db := openClusters(t, clustersConfig(accounts, compute))
	var phases []string
	var mu sync.Mutex
	engine.TwoPhaseHook = func(p string) {
		mu.Lock()
		phases = append(phases, p)
		mu.Unlock()
	}
	t.Cleanup(func() { engine.TwoPhaseHook = nil })

	sum0, _ := balances(t, accounts, compute)
	if err := move(ctx, db, 1, 10, nil); err != nil {
		t.Fatal(err)
	}
	if sum, ledger := balances(t, accounts, compute); sum+ledger != sum0 || ledger != 10 {
		t.Errorf("after a block: accounts %d, ledger %d; want the sum %d", sum, ledger, sum0)
	}
	if got := strings.Join(phases, " "); got != "preparing prepared decided committed" {
		t.Errorf("phases %q", got)
	}
	var decisions int
	queryNode(t, accounts.Primary(), "SELECT count(*) FROM switchyard.decisions WHERE committed", &decisions)
	if decisions != 1 {
		t.Errorf("%d committed decisions on the coordinator", decisions)
	}
	if p := append(prepared(t, accounts), prepared(t, compute)...); len(p) != 0 {
		t.Errorf("prepared transactions left: %v", p)
	}
	// The session reads its writes on both clusters.
	var bal, n int64
	if err := db.QueryRow(ctx, "SELECT balance FROM accounts WHERE id = 1").Scan(&bal); err != nil || bal != 990 {
		t.Errorf("the block's write on accounts: %d, %v", bal, err)
	}
	if err := db.QueryRow(ctx, "SELECT count(*) FROM ledger").Scan(&n); err != nil || n != 1 {
		t.Errorf("the block's write on compute: %d rows, %v", n, err)
	}

	// An error of fn: nothing anywhere.
	phases = nil
	boom := errors.New("boom")
	if err := move(ctx, db, 2, 5, func(pgx.Tx) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("fn's error: %v", err)
	}
	if sum, ledger := balances(t, accounts, compute); sum+ledger != sum0 || ledger != 10 || len(phases) != 0 {
		t.Errorf("after a failed block: accounts %d, ledger %d, phases %v", sum, ledger, phases)
	}

	// A part whose PREPARE the server refuses (a temporary table): both
	// rolled back, not run again.
	tries := 0
	err := move(ctx, db, 3, 7, func(tx pgx.Tx) error {
		tries++
		_, err := tx.Exec(switchyard.OnCluster(ctx, "compute"), "CREATE TEMP TABLE scratch (x int)")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "temporary") || tries != 1 {
		t.Errorf("a refused PREPARE: %v after %d tries", err, tries)
	}
	if sum, ledger := balances(t, accounts, compute); sum+ledger != sum0 || ledger != 10 {
		t.Errorf("after a refused PREPARE: accounts %d, ledger %d", sum, ledger)
	}
	if p := append(prepared(t, accounts), prepared(t, compute)...); len(p) != 0 {
		t.Errorf("prepared transactions left: %v", p)
	}

	// One cluster written, the other read: no two-phase commit.
	phases = nil
	err = db.Atomic(ctx, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, "SELECT count(*) FROM ledger").Scan(&n); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance WHERE id = 1")
		return err
	}, switchyard.AcrossClusters())
	if err != nil || len(phases) != 0 {
		t.Errorf("a block that wrote one cluster: %v, phases %v", err, phases)
	}

	// A statement that straddles clusters is still refused.
	err = db.Atomic(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO ledger (account, amount) SELECT id, 0 FROM accounts")
		return err
	}, switchyard.AcrossClusters())
	if !errors.Is(err, switchyard.ErrCrossCluster) {
		t.Errorf("a statement across clusters in a block: %v", err)
	}
}

func TestAcrossClustersNeedsPreparedTransactions(t *testing.T) {
	accounts, compute := twoClusters(t, nil)
	db := openClusters(t, clustersConfig(accounts, compute))
	ran := false
	err := db.Atomic(testCtx(t), func(pgx.Tx) error { ran = true; return nil }, switchyard.AcrossClusters())
	if err == nil || ran || !strings.Contains(err.Error(), "max_prepared_transactions") {
		t.Errorf("without max_prepared_transactions: %v (fn ran: %v)", err, ran)
	}
}

// TestAcrossClustersRecovery leaves prepared transactions as a crashed
// process would and checks that recovery finishes them from the
// decisions: committed where the decision says so, rolled back (with the
// abort recorded) where there is none.
func TestAcrossClustersRecovery(t *testing.T) {
	accounts, compute := twoClusters(t, twoPhase)
	ctx := testCtx(t)
	grace, interval := engine.RecoveryGrace, engine.RecoveryInterval
	engine.RecoveryGrace, engine.RecoveryInterval = 0, 100*time.Millisecond
	t.Cleanup(func() { engine.RecoveryGrace, engine.RecoveryInterval = grace, interval })

	var sys uint64
	queryNode(t, accounts.Primary(), "SELECT system_identifier FROM pg_control_system()", &sys)
	decided := engine.GID(sys, "accounts", "00decided00")
	orphan := engine.GID(sys, "accounts", "00orphan000")
	foreign := "switchyard:12345:00foreign00"
	if err := accounts.Primary().Exec(ctx, engine.DecisionsSQL+"; INSERT INTO switchyard.decisions (gid) VALUES ('"+decided+"')"); err != nil {
		t.Fatal(err)
	}
	for i, gid := range []string{decided, orphan, foreign} {
		if err := compute.Primary().Exec(ctx, fmt.Sprintf("BEGIN; INSERT INTO ledger (account, amount) VALUES (%d, 1); PREPARE TRANSACTION '%s'", 100+i, gid)); err != nil {
			t.Fatal(err)
		}
	}
	openClusters(t, clustersConfig(accounts, compute)) // recovers in the background
	waitFor(t, "recovery of the prepared transactions", func() bool { return len(prepared(t, compute)) == 1 })
	if p := prepared(t, compute); p[0] != foreign {
		t.Errorf("left: %v; want only the one whose coordinator this DB does not know", p)
	}
	var rows []int
	conn, _ := compute.Primary().Connect(ctx)
	r, _ := conn.Query(ctx, "SELECT account FROM ledger WHERE account >= 100 ORDER BY account")
	rows, err := pgx.CollectRows(r, pgx.RowTo[int])
	conn.Close(ctx)
	if err != nil || fmt.Sprint(rows) != "[100]" {
		t.Errorf("ledger rows of the prepared parts: %v (%v); want the decided one's only", rows, err)
	}
	var aborted bool
	queryNode(t, accounts.Primary(), "SELECT NOT committed FROM switchyard.decisions WHERE gid = '"+orphan+"'", &aborted)
	if !aborted {
		t.Error("the orphan's abort was not recorded")
	}
	compute.Primary().Exec(ctx, "ROLLBACK PREPARED '"+foreign+"'")
}

// TestAcrossClustersCrash: 4 workers move amounts between an account table
// on one cluster and a ledger on the other while the primaries are killed
// (SIGKILL, as a power loss) at random phases of the commits, and started
// again. After recovery the sum over both clusters is what it was, no
// prepared transaction is left, every block whose Atomic returned nil is
// on both clusters, every block that failed is on neither, and each in
// doubt is on both or neither. SWITCHYARD_CRASHES sets the number of
// crashes (default 100).
func TestAcrossClustersCrash(t *testing.T) {
	crashes := envInt(t, "SWITCHYARD_CRASHES", 100)
	accounts, compute := twoClusters(t, twoPhase)
	ctx := testCtx(t)
	if err := accounts.Primary().Exec(ctx, "CREATE TABLE moves (op text PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	if err := compute.Primary().Exec(ctx, "ALTER TABLE ledger ADD COLUMN op text UNIQUE"); err != nil {
		t.Fatal(err)
	}
	grace, interval := engine.RecoveryGrace, engine.RecoveryInterval
	engine.RecoveryGrace, engine.RecoveryInterval = 300*time.Millisecond, 200*time.Millisecond
	t.Cleanup(func() { engine.RecoveryGrace, engine.RecoveryInterval = grace, interval })
	cfg := clustersConfig(accounts, compute)
	cfg.Tables["moves"] = "accounts"
	cfg.PrimaryWait = 20 * time.Second
	db := openClusters(t, cfg)
	sum0, ledger0 := balances(t, accounts, compute)
	total := sum0 + ledger0

	// The killer: at a random phase, now and then, one of the primaries
	// dies; it is started again a moment later.
	primaries := []*switchyardtest.Node{accounts.Primary(), compute.Primary()}
	var crashed, kills, restarting int
	var killMu sync.Mutex
	down := make(chan *switchyardtest.Node, 1)
	phaseKills := map[string]int{}
	var stopKilling = make(chan struct{})
	engine.TwoPhaseHook = func(phase string) {
		select {
		case <-stopKilling:
			return
		default:
		}
		killMu.Lock()
		defer killMu.Unlock()
		if kills >= crashes || restarting > 0 || randIntN(6) != 0 {
			return
		}
		n := primaries[randIntN(2)]
		if err := n.Kill(); err != nil {
			t.Error(err)
			return
		}
		kills++
		restarting++
		phaseKills[phase]++
		down <- n
	}
	t.Cleanup(func() { engine.TwoPhaseHook = nil })
	restarted := make(chan struct{})
	go func() {
		defer close(restarted)
		for n := range down {
			time.Sleep(time.Duration(50+randIntN(200)) * time.Millisecond)
			if err := n.Start(ctx); err != nil {
				t.Errorf("restart %s: %v", n, err)
			}
			killMu.Lock()
			crashed++
			restarting--
			killMu.Unlock()
		}
	}()

	type outcome struct {
		op  string
		err error
	}
	var omu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	deadline := time.Now().Add(10 * time.Minute)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				killMu.Lock()
				done := crashed >= crashes
				killMu.Unlock()
				if done || time.Now().After(deadline) {
					return
				}
				op := fmt.Sprintf("w%d-%d", w, i)
				id, amount := 1+randIntN(10), int64(1+randIntN(50))
				err := db.Atomic(ctx, func(tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance - $2 WHERE id = $1", id, amount); err != nil {
						return err
					}
					if _, err := tx.Exec(ctx, "INSERT INTO moves (op) VALUES ($1)", op); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "INSERT INTO ledger (account, amount, op) VALUES ($1, $2, $3)", id, amount, op)
					return err
				}, switchyard.AcrossClusters(), switchyard.MaxAttempts(3))
				omu.Lock()
				outcomes = append(outcomes, outcome{op, err})
				omu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stopKilling)
	close(down)
	<-restarted
	if crashed < crashes {
		t.Fatalf("only %d crashes before the deadline", crashed)
	}

	// Recovery finishes whatever the crashes left.
	waitFor(t, "recovery to finish every prepared transaction", func() bool {
		return len(prepared(t, accounts))+len(prepared(t, compute)) == 0
	})
	sum, ledger := balances(t, accounts, compute)
	if sum+ledger != total {
		t.Errorf("accounts %d + ledger %d = %d, want %d", sum, ledger, sum+ledger, total)
	}
	ops := func(n *switchyardtest.Node, sql string) map[string]bool {
		conn, err := n.Connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		rows, _ := conn.Query(ctx, sql)
		list, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]bool{}
		for _, op := range list {
			m[op] = true
		}
		return m
	}
	moved, booked := ops(accounts.Primary(), "SELECT op FROM moves"), ops(compute.Primary(), "SELECT op FROM ledger WHERE op IS NOT NULL")
	var ok, failed, doubt int
	for _, o := range outcomes {
		a, b := moved[o.op], booked[o.op]
		switch {
		case o.err == nil:
			ok++
			if !a || !b {
				t.Errorf("block %s returned nil but is on accounts %v, compute %v", o.op, a, b)
			}
		case errors.Is(o.err, switchyard.ErrCommitUnknown):
			doubt++
			if doubt <= 3 {
				t.Logf("in doubt: %s: %v", o.op, o.err)
			}
			if a != b {
				t.Errorf("block %s in doubt (%v) is on accounts %v, compute %v", o.op, o.err, a, b)
			}
		default:
			failed++
			if failed <= 3 {
				t.Logf("failed: %s: %v", o.op, o.err)
			}
			if a || b {
				t.Errorf("block %s failed (%v) but is on accounts %v, compute %v", o.op, o.err, a, b)
			}
		}
	}
	t.Logf("%d crashes (by phase %v): %d blocks committed, %d failed, %d in doubt; sum %d held; %d prepared transactions left",
		crashed, phaseKills, ok, failed, doubt, total, len(prepared(t, accounts))+len(prepared(t, compute)))
	if ok == 0 {
		t.Error("no block committed")
	}
}

// envInt reads a positive integer from the environment, or def.
func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func randIntN(n int) int { return rand.IntN(n) }
