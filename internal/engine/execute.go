package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgerr"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Do runs one planned statement with the one retry policy every front
// shares, in the manner of database/sql's db.retry: it calls run with the
// plan, and after a failure decides (Again) whether and where to run it
// again. run does the front's I/O on p.Node, carrying p.Before and p.After,
// and returns nil once something has reached the caller (the first row,
// the end of the result) or the statement is done; from then on nothing is
// retried, and the front calls p.Finish when the statement is over. A run
// that returns an error has handed the caller nothing.
func (e *Engine) Do(ctx context.Context, p *Plan, run func(*Plan) error) error {
	for {
		if err := e.Ready(ctx, p); err != nil {
			return err
		}
		p.Begin()
		err := run(p)
		if err == nil {
			return nil
		}
		if !e.Again(ctx, p, err) {
			return err
		}
	}
}

// Ready makes sure a plan bound for the primary has one that answers,
// waiting up to PrimaryWait while there is none (a crash and restart, or a
// failover under way), then failing with ErrNoPrimary.
func (e *Engine) Ready(ctx context.Context, p *Plan) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if p.Policy == PolicyPinned {
		return nil
	}
	c := p.Cluster
	if p.Node != nil && p.Reason.OnReplica() {
		return nil // a replica, picked healthy a moment ago
	}
	// Bound for the primary: the primary of the moment, which a failover
	// since the plan was made may have changed.
	if p.Node = c.WaitPrimary(ctx, e.done, e.cfg.PrimaryWait); p.Node != nil {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if e.closed.Load() {
		return ErrClosed
	}
	p.Node = c.Primary()
	return fmt.Errorf("%w: %s has not answered for %v, and no replica was promoted", ErrNoPrimary, p.Node.Name, e.cfg.PrimaryWait)
}

// Begin counts the statement as sent to p.Node and, for a write, marks its
// session. A captured write (CaptureWrite) is not marked: its capture will
// say exactly where it ended.
func (p *Plan) Begin() {
	p.running = true
	p.began = time.Now()
	p.floor = p.knownFloor()
	p.Node.Start()
	p.engine.of(p.Cluster).routed(p.Reason)
	if p.Write && p.After != AfterCapture {
		p.markWrite()
	}
}

// CaptureWrite makes a write plan promise a capture: the front runs
// CaptureSQL after the write has committed, in a later implicit
// transaction of the same round trip (after a Sync), and hands the
// position to Captured before it tells its caller the write is done. The
// session then knows exactly where the write ended and needs no marks;
// should the capture not arrive, Finish marks the session as a plain write
// would. Call it before Do.
func (p *Plan) CaptureWrite() {
	if p.Write {
		p.After = AfterCapture
	}
}

func (p *Plan) markWrite() {
	p.pos.mark()
	if p.global != nil {
		p.global.mark()
	}
}

// Finish ends the statement: it counts it done (failed if err is not nil)
// and, for a write, marks its session again: everything it wrote is in.
// It is safe to call more than once; only the first call counts.
func (p *Plan) Finish(err error) {
	if !p.running {
		return
	}
	p.running = false
	p.Node.Done(err != nil)
	p.Node.ObserveLatency(time.Since(p.began))
	switch {
	case !p.Write:
	case p.After != AfterCapture:
		p.markWrite() // the write's end
	case !p.captured:
		p.markWrite() // a captured write whose capture never came: its start
		p.markWrite() // and its end
	}
}

// Served records that a read's first row (or its end) arrived from
// p.Node: its snapshot is taken, and an explicit session pins the node
// until the monitor has polled it since, or until a capture is recorded.
func (p *Plan) Served() {
	if !p.Write {
		p.servedAt = time.Now().UnixNano()
		p.pos.readFrom(p.Node, p.servedAt)
	}
}

// CheckPassed records that the freshness check ahead of a read passed.
func (p *Plan) CheckPassed() { p.engine.of(p.Cluster).add(statCheckPassed) }

// Captured records l, the primary's insert position read after the
// statement in its round trip (AfterCapture), as the session's position.
func (p *Plan) Captured(l lsn.LSN) {
	e := p.engine
	l = lsn.RoundDownPageHeader(l, p.Cluster.BlockSize)
	p.captured = true
	now := time.Now().UnixNano()
	if p.pos.captured(l, p.seen, now) {
		e.of(p.Cluster).add(statTokensClamped)
		e.log.Warn("switchyard: session token was ahead of the primary; clamped", "cluster", p.Cluster.Name, "primary_at", l.String())
	}
	if p.global != nil {
		p.global.captured(l, p.seenGlobal, now)
	}
}

// Again decides, after p's run failed with err, whether to run it again,
// and re-plans it if so: a read goes elsewhere (a node that is down is out
// of rotation by then, so routing it again picks another one; a read that
// turned out to write, or that a standby canceled, goes to the primary); a
// write goes again only if it provably never left this process. It ends
// the failed run (Finish) either way.
func (e *Engine) Again(ctx context.Context, p *Plan, err error) bool {
	if errors.Is(err, ErrNotFresh) {
		// The check ahead of the read failed: nothing ran, the primary has
		// the data.
		p.running = false
		p.Node.Done(false)
		e.of(p.Cluster).add(statCheckFailed)
		e.toPrimary(p, ReasonNotFresh)
		return true
	}
	p.Finish(err)
	if ctx.Err() != nil || e.closed.Load() {
		return false
	}
	if pgerr.StaleStatement(err) && !p.staleRetried && (p.Policy != PolicyPinned || p.staleOK) {
		// The server threw out the prepared statement (a migration changed
		// its result type, or something reset the connection's
		// statements): it did not run. Once more, on the same connection,
		// which prepares it afresh.
		p.staleRetried, p.stale = true, true
		p.reset = pgerr.Code(err) == pgerr.InvalidStatementName
		return true
	}
	if p.Policy == PolicyPinned {
		return false
	}
	down := pgerr.NodeDown(err)
	if down {
		e.NodeDown(p.Node, err)
	}
	if p.attempt+1 >= len(p.Cluster.Nodes)+1 {
		return false // the first node, each other once, and once more for a stale pooled connection
	}
	p.attempt++
	if p.Policy == PolicyWrite {
		// Sent again only if it never left this process (a pooled
		// connection that died while idle, a primary that refused the
		// connection); Ready waits for the primary.
		return pgerr.NotSent(err)
	}
	if p.Node.IsPrimary() {
		return down // Ready waits for it, or for a promoted replica
	}
	if !pgerr.RetryReadElsewhere(err) {
		return false
	}
	e.of(p.Cluster).add(statRetried)
	switch {
	case pgerr.Code(err) == pgerr.ReadOnlySQLTransaction:
		// It writes after all (a function the classifier cannot see
		// into): on the primary, as a write, without a capture (which
		// would run in its own implicit transaction, before its commit).
		p.Policy, p.Write, p.Before, p.After = PolicyWrite, true, BeforeNone, AfterNone
		p.Node, p.Reason = p.Cluster.Primary(), ReasonWrite
	case !down:
		// A recovery conflict: the primary has none. Like any read there,
		// it carries the session's position along.
		e.toPrimary(p, ReasonNotFresh)
	default:
		e.route(ctx, p)
	}
	return true
}

// NodeDown takes n out of rotation after err, logging it once.
func (e *Engine) NodeDown(n *topology.Node, err error) {
	if why := e.redact(err.Error()); n.MarkDownBecause(time.Now(), why) {
		e.log.Warn("switchyard: node down", "cluster", n.Cluster().Name, "node", n.Name, "role", n.Role(), "err", why)
	}
}

// Backoff is the wait before try attempt+1 of a transaction: exponential
// from 10 ms, capped at 1 s, with full jitter (uniform in [d/2, d]) so that
// clients that failed together do not retry together.
func Backoff(attempt int) time.Duration {
	d := min(10*time.Millisecond<<min(max(attempt, 1)-1, 10), time.Second)
	return d/2 + rand.N(d/2+1)
}

// RetryableTx reports whether a transaction that failed with err certainly
// did not commit and may succeed if run again: a serialization failure, a
// deadlock, a primary that turned read-only in a failover, a server
// shutting down or starting, a connection lost before COMMIT was sent, or
// one during COMMIT that the primary confirmed did not commit.
func RetryableTx(err error) bool {
	if errors.Is(err, ErrCommitUnknown) || errors.Is(err, ErrNoPrimary) || errors.Is(err, ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if nc := (*NotCommittedError)(nil); errors.As(err, &nc) {
		return true
	}
	if pgerr.StaleStatement(err) {
		return true
	}
	switch pgerr.Code(err) {
	case pgerr.SerializationFailure, pgerr.DeadlockDetected, pgerr.ReadOnlySQLTransaction,
		pgerr.AdminShutdown, pgerr.CrashShutdown, pgerr.CannotConnectNow:
		return true
	case "":
		// No SQLSTATE: a lost connection (before COMMIT; a loss during
		// COMMIT comes back resolved, as NotCommittedError or
		// ErrCommitUnknown).
		return pgerr.NodeDown(err)
	}
	return false
}

// Atomic runs a transaction with fn, again after a failure that proves
// nothing was committed (RetryableTx), with Backoff between tries, up to
// maxAttempts tries or until ctx ends. fn runs the whole transaction:
// BEGIN, the caller's work, COMMIT.
func (e *Engine) Atomic(ctx context.Context, maxAttempts int, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || ctx.Err() != nil || e.closed.Load() || !RetryableTx(err) {
			return err
		}
		if attempt >= maxAttempts {
			if attempt == 1 {
				return fmt.Errorf("switchyard: gave up after 1 attempt (MaxAttempts): %w", err)
			}
			return fmt.Errorf("switchyard: gave up after %d attempts: %w", attempt, err)
		}
		e.stats.add(statAtomicRetries)
		timer := time.NewTimer(Backoff(attempt))
		select {
		case <-ctx.Done():
			timer.Stop()
			return err
		case <-e.done:
			timer.Stop()
			return err
		case <-timer.C:
		}
	}
}

// MarkWritten records a write that the plan's own accounting did not see
// (a transaction a client ended with COMMIT inside a string of
// statements): the session is dirty until its next capture.
func (p *Plan) MarkWritten() {
	p.markWrite()
	p.markWrite()
}

// WillCapture makes the plan carry a capture that the front runs after the
// statement in a later implicit transaction of its round trip (a pinned
// connection's read or write, say): for a write as CaptureWrite says, for
// a read covering the session's marks as of now.
func (p *Plan) WillCapture() {
	if p.Write {
		p.CaptureWrite()
		return
	}
	p.After = AfterCapture
	p.seen = p.pos.marks.Load()
	if p.global != nil {
		p.seenGlobal = p.global.marks.Load()
	}
}

// SameConnection reports whether this attempt must run on the connection
// of the one before (see Again on stale statements), and forgets it.
func (p *Plan) SameConnection() bool {
	same := p.stale
	p.stale = false
	return same
}

// StatementsReset reports whether the attempt before found the
// connection's prepared statements gone (26000: DEALLOCATE ALL, DISCARD
// ALL, a pooler's reset) rather than one of them outdated: the front
// forgets them all (pgx's DeallocateAll) before this attempt, so that the
// connection's next statements do not each fail once more. It forgets it.
func (p *Plan) StatementsReset() bool {
	r := p.reset
	p.reset = false
	return r
}

// RetryStale lets a pinned statement that the server refused as stale
// run once more on its connection, as other statements do. Call it after
// PlanPinned when the connection is outside a transaction: there the
// failed statement left nothing behind; inside one, the transaction has
// failed and the error is the caller's.
func (p *Plan) RetryStale() { p.staleOK = true }
