package engine

import (
	"context"
	"time"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Before is what runs ahead of a statement in its round trip.
type Before uint8

const (
	// BeforeNone: nothing.
	BeforeNone Before = iota
	// BeforeCheck: on a replica whose polled position predates the
	// session's, CheckSQL proves it has replayed Plan.Check; if it has
	// not, the front's run returns ErrNotFresh and the executor runs the
	// statement on the primary instead.
	BeforeCheck
	// BeforeSettle: on the primary, SettleSQL waits (briefly, server-side)
	// until no transaction whose commit a replica may already show is still
	// invisible there.
	BeforeSettle
)

// After is what runs after a statement in its round trip.
type After uint8

const (
	// AfterNone: nothing.
	AfterNone After = iota
	// AfterCapture: on the primary, CaptureSQL reads the insert position,
	// which the front hands to Plan.Captured: it covers the session's
	// writes and everything the statement saw. Never in a write's own
	// implicit transaction: it is planned only for reads.
	AfterCapture
)

// Policy says what the executor may do again after a failure.
type Policy uint8

const (
	// PolicyRead: a pure read outside a transaction. It is run again
	// elsewhere after a failure that reached the caller with nothing.
	PolicyRead Policy = iota
	// PolicyWrite: a statement (or a transaction's BEGIN) that may write.
	// It is sent again only if it provably never left the process.
	PolicyWrite
	// PolicyPinned: a statement on a connection the caller holds. It is
	// never run elsewhere.
	PolicyPinned
)

// Plan is where one statement runs and what rides with it. Plans are
// values: a front embeds one in whatever it allocates anyway (its rows,
// its transaction), so planning allocates nothing.
type Plan struct {
	// Node runs the statement.
	Node *topology.Node
	// Cluster is Node's cluster.
	Cluster *topology.Cluster
	Before  Before
	After   After
	// Check is the position BeforeCheck proves.
	Check lsn.LSN
	// Reason is why the statement went to Node.
	Reason Reason
	// Write: the statement may write; the session is marked when it starts
	// and when it ends.
	Write bool
	// Policy decides what may be run again.
	Policy Policy

	// ReadOnlyTx: the plan is a read-only transaction's (see PlanTx).
	ReadOnlyTx bool

	engine       *Engine
	opts         *Options
	pos          *Position // the session's (the DB-wide one's without a session)
	global       *Position // the DB-wide position, when pos is an explicit session's
	seen         uint64    // pos.marks when the capture was planned
	seenGlobal   uint64
	plain        bool // no Before or After may ride with it
	attempt      int
	running      bool // Start was counted, Finish not yet
	captured     bool // Captured was called
	stale        bool // the next attempt runs on the same connection (SameConnection)
	staleRetried bool
	staleOK      bool    // a pinned statement may be run again when stale (RetryStale)
	reset        bool    // the last attempt found the statements reset (StatementsReset)
	atLeast      lsn.LSN // a Latest read's primary position, and when it was taken
	atLeastAt    int64
	began        time.Time // when Begin sent it, for the node's latency
	need         lsn.LSN   // the session's position when the plan was bound
	floor        lsn.LSN   // what the read's snapshot is known to include (Begin)
	servedAt     int64     // unix nanoseconds its first row arrived (Served)
}

// Options are what a caller asks of routing (the root package keeps them
// in a context). A nil *Options asks for nothing.
type Options struct {
	// Primary sends everything to the primary.
	Primary bool
	// Session is the session to read and advance; nil means the DB-wide
	// one.
	Session *Session
	// MaxStaleness, if positive, lets reads use any replica that was at
	// most this far behind.
	MaxStaleness time.Duration
	// Latest makes reads see every transaction committed anywhere before
	// they began (PlanLatest).
	Latest bool
	// Global makes a read of an explicit session also see every write
	// made through the engine before it began (the DB-wide position), as
	// well as its session's own.
	Global bool
}

var noOptions Options

// session returns the session a statement with options o belongs to.
func (e *Engine) session(o *Options) *Session {
	if o != nil && o.Session != nil {
		return o.Session
	}
	return e.global
}

// bind points p at cluster c and at the positions of o's session there.
func (e *Engine) bind(p *Plan, o *Options, c *topology.Cluster) {
	if o == nil {
		o = &noOptions
	}
	s := e.session(o)
	e.adopt(s)
	*p = Plan{engine: e, opts: o, Cluster: c, plain: p.plain, pos: s.position(c.Key())}
	verify(p.pos, c)
	p.need = p.pos.LSN()
	if s != e.global {
		p.global = e.global.position(c.Key())
		if o.Global {
			p.need = max(p.need, p.global.LSN())
		}
	}
}

// Plain makes p carry no Before or After, for a statement that cannot have
// them ride along (a batch, a statement with pgx's per-query options, a
// transaction's BEGIN): a read that would have needed a check goes to the
// primary, and a read on the primary goes without a capture (the session
// stays dirty, or pinned, until the next one). Call it before planning.
func (p *Plan) Plain() { p.plain = true }

// PlanRead plans a pure read outside a transaction (DESIGN.md section 1):
// the primary if o forces it; with MaxStaleness, a replica no more than
// that far behind; if the session wrote since its position was last taken,
// the primary with a capture of that position; else a healthy replica that
// has replayed the session's position, or (if its polled position is
// merely older than the session's) one that will prove it has, in the same
// round trip; else, after an optional bounded wait, the primary.
func (e *Engine) PlanRead(ctx context.Context, p *Plan, o *Options, c *topology.Cluster) {
	e.bind(p, o, c)
	p.Policy = PolicyRead
	e.route(ctx, p)
}

// route fills in a read's node and extras.
func (e *Engine) route(ctx context.Context, p *Plan) {
	o, pos := p.opts, p.pos
	c := p.Cluster
	switch {
	case o.Primary:
		e.toPrimary(p, ReasonForced)
		return
	case o.MaxStaleness > 0:
		// With no poll of the primary since then (it does not answer),
		// nothing bounds a replica's staleness: the primary reads.
		if min, ok := c.PrimaryPositionSince(time.Now().Add(-o.MaxStaleness)); ok {
			if n := c.PickReplica(min); n != nil {
				p.toReplica(n, ReasonStaleOK)
				return
			}
		}
		p.Node = c.Primary()
		p.Reason = e.noReplicaReason(c)
		return
	case p.atLeast == primaryOnly:
		e.toPrimary(p, e.noReplicaReason(c))
		return
	case (pos.dirty() || o.Global && p.global != nil && p.global.dirty()) && !latestCovers(p):
		e.toPrimary(p, ReasonAfterWrite)
		return
	}
	now := time.Now().UnixNano()
	if pin, foreign := pos.pinned(c, now); (pin != nil || foreign) && p.atLeast == 0 {
		// The pinned replica may have shown the session more than its
		// polled position: only it (or the primary) keeps the session's
		// reads monotonic. But the pin does not make it fresh for the
		// process's position (Global): past what it is known to have, it
		// must prove it has that, or the primary reads.
		if pin != nil && pin != c.Primary() && pin.Healthy() {
			g := lsn.LSN(0)
			if o.Global && p.global != nil {
				g = p.global.LSN()
			}
			switch {
			case g <= pin.Position():
				p.toReplica(pin, ReasonReplica)
				return
			case !p.plain && pin.CheckSafe():
				p.toReplica(pin, ReasonChecked)
				p.Before, p.Check = BeforeCheck, g
				return
			}
		}
		e.toPrimary(p, ReasonNotFresh)
		return
	}
	need, since := pos.LSN(), pos.lsnAt.Load()
	if o.Global && p.global != nil {
		if g := p.global.LSN(); g > need {
			need, since = g, p.global.lsnAt.Load()
		}
	}
	lagOK := time.Duration(now - since)
	if p.atLeast > need {
		// A Latest read: everything committed anywhere before it began is
		// at or before atLeast, just taken from the primary. A replica that
		// lags little has probably replayed it: worth a check.
		need, since, lagOK = p.atLeast, p.atLeastAt, max(time.Duration(now-p.atLeastAt), latestCheckLag)
	}
	if n := c.PickReplica(need); n != nil {
		p.toReplica(n, ReasonReplica)
		return
	}
	if e.cfg.ReplicaWait > 0 {
		// Waiting sees the monitor's next polls, which a freshness check
		// would only anticipate.
		if n := c.WaitReplica(ctx, e.done, e.cfg.ReplicaWait, need); n != nil {
			p.toReplica(n, ReasonWaited)
			return
		}
		e.toPrimary(p, e.noReplicaReason(c))
		return
	}
	// A replica whose last poll predates the session's position, and which
	// lags less than that position's age, has probably replayed it: prove
	// it in the read's own round trip.
	if n := c.PickReplicaWithin(lagOK); n != nil && n.CheckSafe() && n.PolledAt() < since && !p.plain {
		p.toReplica(n, ReasonChecked)
		p.Before, p.Check = BeforeCheck, need
		return
	}
	e.toPrimary(p, e.noReplicaReason(c))
}

// latestCovers reports whether p is a Latest read whose position, taken
// from the primary after the read began, covers every write its session
// (and the process) finished before: those writes give it no reason to
// go to the primary. A position from a token not yet checked against the
// primary still sends it there, to be clamped.
func latestCovers(p *Plan) bool {
	return p.atLeast != 0 && !p.pos.unverified.Load()
}

func (p *Plan) toReplica(n *topology.Node, r Reason) {
	p.Node, p.Reason, p.Before, p.After = n, r, BeforeNone, AfterNone
}

// noReplicaReason tells why a read that could have gone to a replica did
// not.
func (e *Engine) noReplicaReason(c *topology.Cluster) Reason {
	if _, healthy := c.Replicas(); healthy == 0 {
		return ReasonNoReplica
	}
	return ReasonNotFresh
}

// toPrimary sends a read to the primary. It sees the newest data, so an
// explicit session (which promises monotonic reads) and a dirty one take
// the primary's position along; one that read from a replica since it last
// read from the primary settles first (see BeforeSettle).
func (e *Engine) toPrimary(p *Plan, r Reason) {
	p.Node, p.Reason, p.Before, p.After = p.Cluster.Primary(), r, BeforeNone, AfterNone
	pos := p.pos
	globalDirty := p.opts.Global && p.global != nil && p.global.dirty()
	if p.plain || !(pos.explicit || pos.dirty() || globalDirty) {
		return
	}
	p.After = AfterCapture
	p.seen = pos.marks.Load()
	if p.global != nil {
		p.seenGlobal = p.global.marks.Load()
	}
	if pos.explicit && pos.sawReplica.Load() {
		p.Before = BeforeSettle
	}
}

// PlanWrite plans a statement that is not a pure read: the primary.
func (e *Engine) PlanWrite(p *Plan, o *Options, c *topology.Cluster) {
	e.bind(p, o, c)
	p.Policy, p.Write, p.Node = PolicyWrite, true, c.Primary()
	p.Reason = ReasonWrite
	if p.opts.Primary {
		p.Reason = ReasonForced
	}
}

// PlanTx plans a transaction's BEGIN. A read-write transaction begins on
// the primary and counts as a write once it commits. A read-only one
// begins where a read of its session would go (a fresh replica, as
// REPEATABLE READ READ ONLY), unless serializable, which standbys do not
// offer: then on the primary.
func (e *Engine) PlanTx(ctx context.Context, p *Plan, o *Options, c *topology.Cluster, readOnly, serializable bool) {
	e.planTx(ctx, p, o, c, readOnly, serializable, 0, 0)
}

// planTx is PlanTx for a transaction that needs the positions atLeast
// (taken at atLeastAt) too: a Latest one's.
func (e *Engine) planTx(ctx context.Context, p *Plan, o *Options, c *topology.Cluster, readOnly, serializable bool, atLeast lsn.LSN, atLeastAt int64) {
	e.bind(p, o, c)
	p.atLeast, p.atLeastAt = atLeast, atLeastAt
	p.ReadOnlyTx = readOnly
	switch {
	case !readOnly:
		p.Policy, p.Node, p.Reason = PolicyWrite, c.Primary(), ReasonTransaction
	case serializable:
		p.Policy, p.Node, p.Reason = PolicyRead, c.Primary(), ReasonTransaction
	default:
		// The plan may carry a capture (a dirty session beginning on the
		// primary): the front runs it as the transaction's first
		// statement, whose snapshot covers the session's writes; and a
		// settle (the session read from a replica since), which the front
		// runs ahead of BEGIN, before the snapshot is taken.
		p.Policy = PolicyRead
		p.plain = true
		e.route(ctx, p)
		// On the primary, a session that read from a replica settles
		// first, as a read there does, whether it wrote or not (pinned to
		// a replica that is not fresh enough, or none healthy).
		if p.Node.IsPrimary() && (p.pos.dirty() || p.pos.explicit && p.pos.sawReplica.Load()) {
			p.plain = false
			e.toPrimary(p, p.Reason)
		}
	}
}

// PlanPinned plans a statement on a connection the caller holds to node n
// (DB.Acquire's, a transaction's): it runs there whatever happens, and
// marks the session written unless it is a pure read.
func (e *Engine) PlanPinned(p *Plan, o *Options, n *topology.Node, write bool) {
	e.bind(p, o, n.Cluster())
	p.Policy, p.Node, p.Write = PolicyPinned, n, write
	p.Reason = ReasonPinned
}

// Session is the session the plan advances.
func (p *Plan) Session() *Session { return p.engine.session(p.opts) }

// Attempt counts the plan's tries so far (0 on the first).
func (p *Plan) Attempt() int { return p.attempt }
