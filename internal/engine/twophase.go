package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/pgerr"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// A block that writes to several clusters commits with two-phase commit,
// presumed abort, and the coordinator's own commit as the decision:
//
//  1. Every part but the coordinator's runs PREPARE TRANSACTION 'gid',
//     and, at the same time, the coordinator's part inserts the decision
//     row (gid) into switchyard.decisions on its cluster.
//  2. The coordinator's part commits (with the in-doubt resolution every
//     COMMIT has): that commit is the decision.
//  3. Every prepared part runs COMMIT PREPARED.
//
// A failure before 2 rolls every part back. After it, every part is
// committed, by recovery if need be: prepared transactions that switchyard
// left (gid "switchyard:<system identifier>:<name tag>:<id>", naming the
// coordinator's cluster, see GID) are
// looked up in the coordinator's decisions. Recovery records an abort by
// inserting the row itself (committed = false): if the coordinator's part
// is still running, the insert waits for it on the row's unique key, and
// either finds its committed row or, once it aborted, makes the abort
// durable; a coordinator that comes after fails on the key. So recovery
// never needs to guess, and never waits for a timeout.
//
// Two round trips more than a single commit, each in parallel over the
// clusters; none when at most one part wrote.

// Part is one cluster's transaction of a block that spans clusters.
type Part struct {
	// Plan is the transaction's (PlanTx), on its cluster's primary.
	Plan *Plan
	// Conn is its connection, in the transaction.
	Conn *pgconn.PgConn
	// Wrote reports a statement that was not a pure read: only parts that
	// wrote take part in the two-phase commit.
	Wrote bool
}

// TwoPhaseHook, if set (by tests only), is called at each phase of a
// two-phase commit with the phase's name: "preparing" (before the
// prepares), "prepared" (all prepared, the decision not yet committed),
// "decided" (the decision committed, no part committed yet), "committed"
// (every part committed).
var TwoPhaseHook func(phase string)

func hook(phase string) {
	if h := TwoPhaseHook; h != nil {
		h(phase)
	}
}

// ErrNoPreparedTransactions reports a cluster whose primary cannot prepare
// transactions (max_prepared_transactions = 0), for a block across
// clusters.
var ErrNoPreparedTransactions = errors.New("switchyard: the primary does not allow prepared transactions")

// CheckTwoPhase reports whether every cluster's primary allows prepared
// transactions, naming the setting if not.
func (e *Engine) CheckTwoPhase() error {
	for _, c := range e.clusters {
		if c.MaxPrepared <= 0 {
			return fmt.Errorf("%w: cluster %s (%s) has max_prepared_transactions = 0; set it above 0 (as many as blocks may commit at once), which needs a restart, on every server of each cluster",
				ErrNoPreparedTransactions, c.Name, c.Primary().Name)
		}
	}
	return nil
}

// DecisionsSQL makes the table of decisions (run on a coordinator cluster
// before its first commit across clusters).
const DecisionsSQL = `CREATE SCHEMA IF NOT EXISTS switchyard;
CREATE TABLE IF NOT EXISTS switchyard.decisions (
	gid text PRIMARY KEY,
	committed bool NOT NULL DEFAULT true,
	at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS decisions_at ON switchyard.decisions (at)`

// gidPrefix starts every prepared transaction's name that switchyard makes.
const gidPrefix = "switchyard:"

// decisionsReady holds, per cluster index, whether its decisions table is
// known to exist.
type decisionsReady struct {
	mu     sync.Mutex
	ready  map[int]bool
	pruned time.Time // when recovery last pruned old decisions
}

// PruneInterval is how often recovery deletes decisions older than
// DecisionRetention.
var PruneInterval = 10 * time.Minute

// pruneDue reports whether old decisions are to be pruned now, and if so
// counts them pruned.
func (d *decisionsReady) pruneDue(now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.pruned.IsZero() && now.Sub(d.pruned) < PruneInterval {
		return false
	}
	d.pruned = now
	return true
}

// ensureDecisions makes the decisions table on cluster c unless it is
// known to exist. The lock is not held while the table is made, so that a
// primary that hangs holds up no other cluster's blocks; callers that race
// to make it all run DecisionsSQL, which makes it once (see created).
func (e *Engine) ensureDecisions(ctx context.Context, c *topology.Cluster, lend Lender) error {
	d := &e.decisions
	d.mu.Lock()
	ready := d.ready[c.Index]
	d.mu.Unlock()
	if ready {
		return nil
	}
	conn, release, err := lend(ctx, c.Primary())
	if err != nil {
		return err
	}
	defer release()
	if err := conn.Exec(ctx, DecisionsSQL).Close(); err != nil && !created(err) {
		return fmt.Errorf("switchyard: making switchyard.decisions on cluster %s (for commits across clusters): %w", c.Name, err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ready == nil {
		d.ready = map[int]bool{}
	}
	d.ready[c.Index] = true
	return nil
}

// created reports the error of a concurrent CREATE ... IF NOT EXISTS that
// lost the race: the object exists.
func created(err error) bool {
	code := pgerr.Code(err)
	return code == "23505" || code == "42P06" || code == "42P07"
}

func newGID(coordinator *topology.Cluster) string {
	var b [12]byte
	rand.Read(b[:])
	return GID(coordinator.System, coordinator.Name, hex.EncodeToString(b[:]))
}

// GID is the name of a prepared part of the block id whose decision is
// kept on the cluster with that system identifier and name. Both are in
// it because clusters can share a system identifier (clones of one
// physical backup, a replica promoted to a cluster of its own): recovery
// must read the decision on the very cluster that holds it, or it would
// record an abort where there is no row and roll back a committed part.
// The name is hashed (FNV-1a, 8 hex digits) to keep the gid short; give a
// cluster the same name in every process that uses it.
func GID(system uint64, cluster, id string) string {
	return gidPrefix + strconv.FormatUint(system, 10) + ":" + nameTag(cluster) + ":" + id
}

func nameTag(name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%08x", h.Sum32())
}

// CommitAcross commits parts, each open on its own cluster's primary, as
// one: all or nothing. Parts that only read are committed first (their
// outcome changes nothing); if at most one part wrote, it commits as any
// transaction does. It returns nil once the decision to commit is durable
// (parts that could not be committed then are committed by recovery), a
// *NotCommittedError or the server's error when nothing was committed, and
// an error wrapping ErrCommitUnknown when the coordinator's commit was
// lost in a way that could not be resolved. Every part's connection is
// outside a transaction afterwards, or broken.
func (e *Engine) CommitAcross(ctx context.Context, parts []*Part, lend Lender) error {
	var writers []*Part
	for _, p := range parts {
		if p.Wrote {
			writers = append(writers, p)
			continue
		}
		if err := p.Conn.Exec(ctx, "COMMIT").Close(); err != nil {
			rollbackAll(ctx, parts)
			return err
		}
	}
	switch len(writers) {
	case 0:
		return nil
	case 1:
		tag, err := e.Commit(ctx, writers[0].Plan, writers[0].Conn, lend)
		if err == nil && tag.String() == "ROLLBACK" {
			return errRolledBack
		}
		return err
	}
	coord, others := writers[0], writers[1:]
	if err := e.CheckTwoPhase(); err != nil {
		rollbackAll(ctx, writers)
		return err
	}
	if err := e.ensureDecisions(ctx, coord.Plan.Cluster, lend); err != nil {
		rollbackAll(ctx, writers)
		return acrossNotCommitted(err)
	}
	gid := newGID(coord.Plan.Cluster)
	for _, p := range others {
		p.Plan.markWrite() // the write's start: its end is COMMIT PREPARED's
	}

	// Phase 1: prepare the others and record the decision, at once.
	hook("preparing")
	errs := make([]error, len(writers))
	var wg sync.WaitGroup
	for i, p := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i == 0 {
				errs[i] = execParams(ctx, p.Conn, "INSERT INTO switchyard.decisions (gid) VALUES ($1)", gid)
				return
			}
			errs[i] = p.Conn.Exec(ctx, "PREPARE TRANSACTION '"+gid+"'").Close()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.abortPrepared(ctx, writers, errs, gid, lend)
		if pgerr.Code(errs[0]) == "23505" {
			// The decision's row exists already: recovery recorded an
			// abort for gid (a part prepared longer ago than
			// RecoveryGrace). Nothing committed; the block may run again.
			return &NotCommittedError{err}
		}
		return acrossNotCommitted(err)
	}
	hook("prepared")

	// Phase 2: the decision.
	tag, err := e.Commit(ctx, coord.Plan, coord.Conn, lend)
	if err == nil && tag.String() == "ROLLBACK" {
		err = errRolledBack
	}
	if errors.Is(err, ErrCommitUnknown) {
		// The decision's own commit was lost: its row says what became of
		// it, once the coordinator's primary answers (read by decide, which
		// records an abort if there is no row, so that the answer stands).
		commit, derr := e.decideInDoubt(ctx, coord.Plan.Cluster, gid, lend)
		if derr != nil {
			e.log.Warn("switchyard: commit across clusters in doubt; recovery will finish it", "gid", gid, "err", e.redact(err.Error()), "decision", e.redact(derr.Error()))
			for _, p := range others {
				p.Plan.markWrite()
			}
			return err
		}
		if commit {
			err = nil
		} else {
			// Known now: not wrapped, so that it is not ErrCommitUnknown.
			err = &NotCommittedError{fmt.Errorf("the decision was to abort (the coordinator's COMMIT was lost: %s)", err)}
		}
	}
	if err != nil {
		e.abortPrepared(ctx, writers, make([]error, len(writers)), gid, lend)
		return acrossNotCommitted(err)
	}
	hook("decided")

	// Phase 3: commit the prepared parts.
	for _, p := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.finishPrepared(ctx, p, gid, true, lend)
		}()
	}
	wg.Wait()
	hook("committed")
	return nil
}

// decideInDoubt reads gid's decision after the coordinator's COMMIT was
// lost, waiting up to PrimaryWait for the coordinator's cluster to have a
// primary that answers.
func (e *Engine) decideInDoubt(ctx context.Context, coord *topology.Cluster, gid string, lend Lender) (commit bool, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.PrimaryWait)
	defer cancel()
	for {
		n := coord.WaitPrimary(ctx, e.done, e.cfg.PrimaryWait)
		if n == nil {
			return false, fmt.Errorf("%w: cluster %s has no primary", ErrNoPrimary, coord.Name)
		}
		commit, err = e.decide(ctx, coord, gid, lend)
		if err == nil || ctx.Err() != nil || !pgerr.NodeDown(err) {
			return commit, err
		}
		// Out of rotation until the monitor reaches it again, which
		// WaitPrimary waits for.
		e.NodeDown(n, err)
	}
}

// errRolledBack is a COMMIT the server turned into ROLLBACK (the
// transaction had failed).
var errRolledBack = errors.New("switchyard: the transaction had failed: COMMIT rolled it back")

// acrossNotCommitted wraps an error of a block that certainly did not commit so
// that Atomic runs it again, unless the server's error says why it cannot
// work (which running it again would not change: a deferred constraint
// that PREPARE TRANSACTION or COMMIT checked, say), as for a transaction
// on one cluster.
func acrossNotCommitted(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && !RetryableTx(err) {
		return err
	}
	var nc *NotCommittedError
	if errors.As(err, &nc) {
		return err
	}
	return &NotCommittedError{err}
}

func execParams(ctx context.Context, conn *pgconn.PgConn, sql string, args ...string) error {
	params := make([][]byte, len(args))
	for i, a := range args {
		params[i] = []byte(a)
	}
	return conn.ExecParams(ctx, sql, params, nil, nil, nil).Read().Err
}

// rollbackAll rolls back every part's open transaction.
func rollbackAll(ctx context.Context, parts []*Part) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, p := range parts {
		if p.Conn.TxStatus() != 'I' && !p.Conn.IsClosed() {
			p.Conn.Exec(ctx, "ROLLBACK").Close()
		}
	}
}

// abortPrepared undoes phase 1 after a failure: the coordinator's
// transaction is rolled back (or was lost), so no decision can be
// committed; prepared parts are rolled back now, and any left (their
// server unreachable) by recovery, which finds no decision.
func (e *Engine) abortPrepared(ctx context.Context, writers []*Part, errs []error, gid string, lend Lender) {
	rollbackAll(ctx, writers[:1])
	for i, p := range writers[1:] {
		p.Plan.markWrite() // the end of a write that never was
		var pgErr *pgconn.PgError
		switch err := errs[i+1]; {
		case err == nil || pgerr.NodeDown(err):
			e.finishPrepared(ctx, p, gid, false, lend)
		case errors.As(err, &pgErr):
			// The server refused PREPARE: it rolled the transaction back.
		default:
			// PREPARE was cut short (the caller's context ended, and pgconn
			// closed the connection): it may have run.
			e.rollbackPrepared(ctx, p, gid, lend)
		}
	}
}

// rollbackPrepared rolls back a part that may be prepared as gid on a new
// connection to its cluster's primary (its own was closed under it, by no
// fault of the node); what it cannot do recovery will.
func (e *Engine) rollbackPrepared(ctx context.Context, p *Part, gid string, lend Lender) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.PrimaryWait)
	defer cancel()
	conn, release, err := lend(ctx, p.Plan.Cluster.Primary())
	if err == nil {
		err = conn.Exec(ctx, "ROLLBACK PREPARED '"+gid+"'").Close()
		release()
	}
	if err != nil && !missing(err) {
		e.log.Warn("switchyard: a part whose PREPARE was cut short could not be rolled back now; recovery will", "cluster", p.Plan.Cluster.Name, "gid", gid, "err", e.redact(err.Error()))
	}
}

// finishPrepared commits (or rolls back) a part prepared as gid, on its
// connection or, if that broke, on new ones to its cluster's primary,
// waiting for one up to PrimaryWait; what it cannot do recovery will.
func (e *Engine) finishPrepared(ctx context.Context, p *Part, gid string, commit bool, lend Lender) {
	sql := "ROLLBACK PREPARED '" + gid + "'"
	if commit {
		sql = "COMMIT PREPARED '" + gid + "'"
		defer p.Plan.markWrite() // the write's end, once it is in (or handed to recovery)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.PrimaryWait)
	defer cancel()
	node := p.Plan.Node
	err := p.Conn.Exec(ctx, sql).Close()
	for err != nil && !missing(err) && pgerr.NodeDown(err) && ctx.Err() == nil {
		// Out of rotation until the monitor reaches it again, which
		// WaitPrimary waits for (or for a promoted replica).
		e.NodeDown(node, err)
		if node = p.Plan.Cluster.WaitPrimary(ctx, e.done, e.cfg.PrimaryWait); node == nil {
			break
		}
		conn, release, lerr := lend(ctx, node)
		if lerr != nil {
			err = lerr
			continue
		}
		err = conn.Exec(ctx, sql).Close()
		release()
	}
	if err != nil && !missing(err) {
		e.log.Warn("switchyard: a prepared part could not be finished now; recovery will", "cluster", p.Plan.Cluster.Name, "gid", gid, "commit", commit, "err", e.redact(err.Error()))
	}
}

// missing reports that the prepared transaction is not there: finished
// already (by recovery, or by an earlier try whose reply was lost).
func missing(err error) bool { return pgerr.Code(err) == "42704" }

// Recovery's timing (variables for tests).
var (
	// RecoveryGrace is how old a prepared transaction must be before
	// recovery touches it: younger ones are most likely being committed by
	// a live process. (Touching one early is safe, only rude: its block
	// fails and is run again.)
	RecoveryGrace = 5 * time.Second

	// DecisionRetention is how long decision rows are kept. A prepared
	// part whose cluster is unreachable for longer than this, then comes
	// back, would be rolled back.
	DecisionRetention = 24 * time.Hour

	// RecoveryInterval is how often the engine looks for prepared
	// transactions left by blocks across clusters.
	RecoveryInterval = 10 * time.Second
)

// Recover finishes the prepared transactions that blocks across clusters
// left behind (a process that died between the phases, a primary that
// was down during them): each is committed if its coordinator's decision
// row says so, else an abort is recorded and it is rolled back. Then, if
// every cluster answered, decisions older than DecisionRetention are
// pruned. It returns how many it finished.
func (e *Engine) Recover(ctx context.Context, lend Lender) (int, error) {
	lend, closeAll := reuse(lend)
	defer closeAll()
	var errs []error
	done, complete := 0, true
	for _, c := range e.clusters {
		if c.MaxPrepared <= 0 {
			continue // it cannot have prepared transactions
		}
		n, ok, err := e.recoverCluster(ctx, c, lend)
		done += n
		complete = complete && ok
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", c.Name, err))
		}
	}
	if complete && len(errs) == 0 && e.decisions.pruneDue(time.Now()) {
		for _, c := range e.clusters {
			if c.MaxPrepared <= 0 {
				continue
			}
			if err := e.prune(ctx, c, lend); err != nil {
				errs = append(errs, fmt.Errorf("cluster %s: pruning decisions: %w", c.Name, err))
			}
		}
	}
	return done, errors.Join(errs...)
}

// reuse wraps lend so that a round of recovery opens at most one
// connection per node, kept until closeAll.
func reuse(lend Lender) (l Lender, closeAll func()) {
	type held struct {
		conn    *pgconn.PgConn
		release func()
	}
	var mu sync.Mutex
	conns := map[*topology.Node]held{}
	l = func(ctx context.Context, n *topology.Node) (*pgconn.PgConn, func(), error) {
		mu.Lock()
		defer mu.Unlock()
		if h, ok := conns[n]; ok {
			if !h.conn.IsClosed() {
				return h.conn, func() {}, nil
			}
			// Broken: given back before another is lent.
			delete(conns, n)
			h.release()
		}
		conn, release, err := lend(ctx, n)
		if err != nil {
			return nil, nil, err
		}
		conns[n] = held{conn, release}
		return conn, func() {}, nil
	}
	return l, func() {
		mu.Lock()
		defer mu.Unlock()
		for _, h := range conns {
			h.release()
		}
	}
}

// recoverCluster finishes cluster c's old prepared transactions; ok
// reports that none is left that recovery should have finished.
func (e *Engine) recoverCluster(ctx context.Context, c *topology.Cluster, lend Lender) (done int, ok bool, err error) {
	conn, release, err := lend(ctx, c.Primary())
	if err != nil {
		return 0, false, err
	}
	defer release()
	res := conn.ExecParams(ctx, `SELECT gid, extract(epoch FROM now() - prepared) FROM pg_prepared_xacts
		WHERE gid LIKE 'switchyard:%' AND database = current_database() ORDER BY prepared`, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, false, res.Err
	}
	ok = true
	for _, row := range res.Rows {
		gid := string(row[0])
		age, _ := strconv.ParseFloat(string(row[1]), 64)
		if time.Duration(age*float64(time.Second)) < RecoveryGrace {
			continue
		}
		coord := e.coordinatorOf(gid)
		if coord == nil {
			ok = false
			e.log.Warn("switchyard: a prepared transaction names a coordinator cluster this DB does not have; left alone", "cluster", c.Name, "gid", gid)
			continue
		}
		commit, err := e.decide(ctx, coord, gid, lend)
		if err != nil {
			ok = false
			e.log.Warn("switchyard: cannot read the decision of a prepared transaction yet", "cluster", c.Name, "gid", gid, "err", e.redact(err.Error()))
			continue
		}
		sql := "ROLLBACK PREPARED '" + gid + "'"
		if commit {
			sql = "COMMIT PREPARED '" + gid + "'"
		}
		if err := conn.Exec(ctx, sql).Close(); err != nil && !missing(err) {
			ok = false
			e.log.Warn("switchyard: finishing a prepared transaction failed", "cluster", c.Name, "gid", gid, "err", e.redact(err.Error()))
			continue
		}
		done++
		e.log.Info("switchyard: finished a prepared transaction left by a commit across clusters", "cluster", c.Name, "gid", gid, "committed", commit)
	}
	return done, ok, nil
}

// coordinatorOf finds the cluster whose system identifier gid names.
func (e *Engine) coordinatorOf(gid string) *topology.Cluster {
	rest, ok := strings.CutPrefix(gid, gidPrefix)
	if !ok {
		return nil
	}
	sys, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return nil
	}
	tag, _, ok := strings.Cut(rest, ":")
	if !ok {
		return nil
	}
	id, err := strconv.ParseUint(sys, 10, 64)
	if err != nil {
		return nil
	}
	for _, c := range e.clusters {
		if c.System == id && nameTag(c.Name) == tag {
			return c
		}
	}
	return nil
}

// decide returns gid's decision, recording an abort if there is none: the
// insert waits for a coordinator still running, and then finds its row or
// makes the abort the decision.
func (e *Engine) decide(ctx context.Context, coord *topology.Cluster, gid string, lend Lender) (commit bool, err error) {
	if err := e.ensureDecisions(ctx, coord, lend); err != nil {
		return false, err
	}
	conn, release, err := lend(ctx, coord.Primary())
	if err != nil {
		return false, err
	}
	defer release()
	p := [][]byte{[]byte(gid)}
	res := conn.ExecParams(ctx, "INSERT INTO switchyard.decisions (gid, committed) VALUES ($1, false) ON CONFLICT (gid) DO NOTHING RETURNING committed", p, nil, nil, nil).Read()
	if res.Err != nil {
		return false, res.Err
	}
	if len(res.Rows) == 1 {
		return false, nil // the abort is recorded
	}
	res = conn.ExecParams(ctx, "SELECT committed FROM switchyard.decisions WHERE gid = $1", p, nil, nil, nil).Read()
	if res.Err != nil {
		return false, res.Err
	}
	if len(res.Rows) != 1 {
		return false, fmt.Errorf("the decision row of %s vanished", gid)
	}
	return string(res.Rows[0][0]) == "t", nil
}

// prune deletes cluster c's old decisions.
func (e *Engine) prune(ctx context.Context, c *topology.Cluster, lend Lender) error {
	conn, release, err := lend(ctx, c.Primary())
	if err != nil {
		return err
	}
	defer release()
	err = conn.Exec(ctx, fmt.Sprintf("DELETE FROM switchyard.decisions WHERE at < now() - interval '%d seconds'", int(DecisionRetention/time.Second))).Close()
	if pgerr.Code(err) == "42P01" || pgerr.Code(err) == "3F000" {
		return nil // never coordinated anything
	}
	return err
}

// startRecovery runs Recover at once and every RecoveryInterval until
// Close, with several clusters and a lender.
func (e *Engine) startRecovery() {
	if len(e.clusters) < 2 || e.cfg.Dial == nil {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		t := time.NewTicker(RecoveryInterval)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), RecoveryInterval)
			go func() {
				select {
				case <-e.done:
					cancel()
				case <-ctx.Done():
				}
			}()
			if _, err := e.Recover(ctx, e.cfg.Dial); err != nil && !e.closed.Load() {
				e.log.Debug("switchyard: recovery of commits across clusters", "err", e.redact(err.Error()))
			}
			cancel()
			select {
			case <-e.done:
				return
			case <-t.C:
			}
		}
	}()
}
