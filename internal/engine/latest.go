package engine

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// latestCheckLag is how far behind a replica may have been at its last
// poll for a Latest read to try it with a freshness check: one that lags
// more would most likely fail the check.
const latestCheckLag = 20 * time.Millisecond

// latestFetch is a cluster's latest primary position query for Latest
// reads, under way or answered: reads that began before it was sent share
// it.
type latestFetch struct {
	mu  sync.Mutex
	cur *fetch
}

type fetch struct {
	sent time.Time
	done chan struct{}
	pos  lsn.LSN
	err  error
}

// PlanLatest plans a read that sees every transaction committed anywhere
// (any process, any client) before it began: it takes the primary's
// insert position (one small query on a pooled connection, shared by the
// Latest reads that began before it was sent), then plans the read as
// PlanRead does, needing that position too: a replica that has replayed
// it, or one that proves so in the read's round trip, or (after
// ReplicaWait) the primary.
//
// With no replica in rotation and none to wait for, the read goes to the
// primary without the position query: the primary has everything, and the
// query would only cost a round trip.
func (e *Engine) PlanLatest(ctx context.Context, p *Plan, o *Options, c *topology.Cluster, lend Lender) error {
	began := time.Now()
	l := primaryOnly
	if e.replicaMayServe(c) {
		var err error
		if l, err = e.latestPosition(ctx, c, began, lend); err != nil {
			return err
		}
	}
	e.bind(p, o, c)
	p.Policy = PolicyRead
	p.atLeast, p.atLeastAt = l, began.UnixNano()
	e.route(ctx, p)
	return nil
}

// primaryOnly is the position of a Latest read that did not ask the
// primary for one: only the primary serves it, even if a replica comes
// back before it is routed.
const primaryOnly = lsn.LSN(math.MaxUint64)

// replicaMayServe reports whether a Latest read on c could run on a
// replica: one is in rotation, or reads may wait (ReplicaWait) for one to
// come back.
func (e *Engine) replicaMayServe(c *topology.Cluster) bool {
	_, healthy := c.Replicas()
	return healthy > 0 || e.cfg.ReplicaWait > 0
}

// PlanTxLatest plans the BEGIN of a read-only transaction that sees every
// transaction committed anywhere before it began, as PlanLatest does for a
// read: the primary's position first, then PlanTx's read-only plan, which
// needs that position too (a replica that has replayed it, else the
// primary). With no replica in rotation and none to wait for, it skips the
// position query as PlanLatest does.
func (e *Engine) PlanTxLatest(ctx context.Context, p *Plan, o *Options, c *topology.Cluster, lend Lender) error {
	began := time.Now()
	l := primaryOnly
	if e.replicaMayServe(c) {
		var err error
		if l, err = e.latestPosition(ctx, c, began, lend); err != nil {
			return err
		}
	}
	e.planTx(ctx, p, o, c, true, false, l, began.UnixNano())
	return nil
}

// latestPosition returns the primary's insert position as read by a query
// sent at or after began.
func (e *Engine) latestPosition(ctx context.Context, c *topology.Cluster, began time.Time, lend Lender) (lsn.LSN, error) {
	lf := &e.latests[c.Index]
	lf.mu.Lock()
	for f := lf.cur; f != nil && !f.sent.Before(began); f = lf.cur {
		lf.mu.Unlock()
		select {
		case <-f.done:
			if f.err == nil {
				return f.pos, nil
			}
			// The query failed: share the next one, which another read
			// that shared this one may have sent already, or send it.
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		lf.mu.Lock()
	}
	f := &fetch{sent: time.Now(), done: make(chan struct{})}
	lf.cur = f
	lf.mu.Unlock()
	f.pos, f.err = e.primaryPosition(ctx, c, lend)
	if f.err != nil {
		// Forgotten before the reads that share it wake: they share (or
		// send) the next one. An answer stays for the reads that began
		// before it was sent but come late.
		lf.mu.Lock()
		if lf.cur == f {
			lf.cur = nil
		}
		lf.mu.Unlock()
	}
	close(f.done)
	return f.pos, f.err
}

// primaryPosition asks c's primary for its insert position, as a read
// there (waiting for a primary as reads that need one do).
func (e *Engine) primaryPosition(ctx context.Context, c *topology.Cluster, lend Lender) (lsn.LSN, error) {
	var plan Plan
	e.bind(&plan, nil, c)
	plan.Policy, plan.Node, plan.Reason = PolicyRead, c.Primary(), ReasonLatest
	var l lsn.LSN
	err := e.Do(ctx, &plan, func(p *Plan) (err error) {
		l, err = e.queryLSN(ctx, p.Node, CaptureSQL, lend)
		return err
	})
	plan.Finish(err)
	return lsn.RoundDownPageHeader(l, c.BlockSize), err
}
