package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgerr"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// session is one client connection: a causal session of the engine, the
// client's prepared statements, and the server connection it holds while a
// transaction is open or session state ties it to one.
type session struct {
	srv  *Server
	conn net.Conn
	fe   *pgproto3.Backend // decodes the client's startup messages
	in   *clientReader     // the client's messages
	sock *sockIO           // conn's socket, if it is one (not TLS)
	out  []byte            // encoded messages for the client, written by flush
	log  *slog.Logger

	login login
	pools *loginPools // the login's
	key   cancelKey

	sess *engine.Session
	opts engine.Options
	plan engine.Plan // the open transaction's, or the pinned connection's

	stmts   map[string]*statement // the client's named prepared statements
	unnamed *statement            // the client's unnamed statement
	portals map[string]*statement // portals bound in the open transaction (or round trip)

	bound         *backend                // held across round trips: an open transaction, or session state
	pinned        bool                    // bound for session state, until DISCARD ALL or the end
	listening     bool                    // the pinned session LISTENs
	txWrites      bool                    // the open transaction is a read-write one on the primary
	deferred      string                  // a BEGIN the proxy answered and holds back until the next statement
	inTx          bool                    // the client was in a transaction block when the round trip under way began (or it begins one)
	failed        bool                    // the client's transaction block lost its server connection: refused until it ends (answerFailed)
	flushes       int                     // how often the client's output was written
	checkPassed   bool                    // the round trip's freshness check said yes
	captured      lsn.LSN                 // the round trip's capture
	capturedFirst bool                    // the capture ran as the transaction's first statement
	round         round                   // the round trip under way (reused)
	items         []item                  // its items (reused)
	busy          atomic.Pointer[backend] // the backend running the client's query; set and cleared under cancelMu
	cancelMu      sync.Mutex              // held while a cancel request is delivered to busy
	wmu           sync.Mutex              // held while the session writes to the client or is not idle
	idle          bool                    // waiting for the client, holding no server connection
	lastState     byte                    // the client's transaction status, as last told

	decoded      map[string]decodedMsg    // messages decoded before, by their bytes
	decodedBytes int                      // the size of their keys
	binds        []*pgproto3.Bind         // the round trip's Binds (reused)
	query        pgproto3.Query           // the round trip's Query (reused)
	rawOut       rawMsg                   // a message passed on unchanged (reused)
	slot         backend                  // the server connection acquired (at most one at a time)
	call         tripCall                 // the round trip the executor runs
	runUnbound   func(*engine.Plan) error // s.tripUnbound, made once
	runBound     func(*engine.Plan) error // s.tripBound, made once
	onCapture    func([][]byte)           // s.takeCapture, made once
	onCheck      func([][]byte)           // s.takeCheck, made once
	parseOut     pgproto3.Parse           // a Parse the proxy sends (reused)
	planBuf      engine.Plan              // the round trip's plan (reused; s.plan keeps a copy)
	dataRow      pgproto3.DataRow         // a row of the proxy's own statements (reused)
}

// statement is a client's prepared statement.
type statement struct {
	sql     string
	oids    []uint32
	key     string // statementKey
	name    string // on servers, for a named one
	unnamed bool   // the client's unnamed statement: the servers' unnamed one
	info    *classify.Statement
	token   bool // SHOW or SET of switchyard.token, which the proxy answers
}

// define records a Parse of the client's: statement st under name.
func (s *session) define(name string, st *statement) {
	if name == "" {
		s.unnamed = st
	} else {
		s.stmts[name] = st
	}
}

// statements are the prepared statements of every client, by text and
// parameter types: immutable and shared, so that a client's Parse costs
// no allocation once its text has been seen.
type statements struct {
	mu    sync.RWMutex
	named map[string]*statement
	anon  map[string]*statement // as a client's unnamed statement
}

// maxStatements bounds each map of statements; when one fills up it is
// emptied (clients keep the statements they hold).
const maxStatements = 10_000

func (c *statements) get(sql string, oids []uint32, unnamed bool, cl *classify.Classifier) *statement {
	k := statementKey(sql, oids)
	c.mu.RLock()
	m := c.named
	if unnamed {
		m = c.anon
	}
	st := m[k]
	c.mu.RUnlock()
	if st != nil {
		return st
	}
	st = &statement{sql: sql, oids: append([]uint32(nil), oids...), key: k, name: serverName(k), unnamed: unnamed, info: cl.Analyze(sql), token: isToken(sql)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.named == nil {
		c.named, c.anon = map[string]*statement{}, map[string]*statement{}
	}
	m = c.named
	if unnamed {
		m = c.anon
	}
	if len(m) >= maxStatements {
		clear(m)
	}
	m[k] = st
	return st
}

func (s *session) statement(name string) *statement {
	if name == "" {
		return s.unnamed
	}
	return s.stmts[name]
}

// send encodes msg for the client.
func (s *session) send(msg pgproto3.BackendMessage) {
	s.out, _ = msg.Encode(s.out)
	if len(s.out) > maxBufferedOutput {
		s.flush()
	}
}

// maxBufferedOutput bounds what the proxy keeps for the client before
// writing it: a read retried elsewhere must not have sent anything yet, so
// larger results cannot be retried.
const maxBufferedOutput = 256 << 10

// flush writes the client's output.
func (s *session) flush() error {
	if len(s.out) == 0 {
		return nil
	}
	s.flushes++
	var err error
	if s.sock != nil {
		_, err = s.sock.Write(s.out)
	} else {
		_, err = s.conn.Write(s.out)
	}
	if cap(s.out) > 64<<10 {
		s.out = nil
	} else {
		s.out = s.out[:0]
	}
	return err
}

// run serves the client until it goes away.
func (s *session) run(ctx context.Context) {
	defer s.end()
	for {
		msgs, err := s.readRound()
		if err != nil {
			if !errors.Is(err, errTerminate) && !isClosed(err) {
				s.log.Debug("switchyard proxy: client", "err", err)
			}
			return
		}
		if err := s.serve(ctx, msgs); err != nil {
			s.log.Debug("switchyard proxy: session ended", "err", err)
			return
		}
		if err := s.flush(); err != nil {
			return
		}
		if s.srv.shuttingDown() && s.bound == nil && s.deferred == "" {
			s.sendFatal("57P01", "the switchyard proxy is shutting down")
			return
		}
	}
}

var errTerminate = errors.New("client terminated")

// readRound reads the client's messages up to and including a Sync, a
// Flush or a simple Query: a round trip's worth. The messages (and their
// bytes as sent, r.raw) stay valid until the next readRound: what the
// proxy understands is decoded by pgproto3 (a Parse, a Describe, an
// Execute or a Close the session has seen before is not decoded again);
// what it passes on unchanged is sent as the client sent it.
func (s *session) readRound() ([]pgproto3.FrontendMessage, error) {
	s.in.release()
	r := &s.round
	msgs, raws, psts := r.msgs[:0], r.raw[:0], r.pst[:0]
	nbind := 0
	for {
		if len(msgs) == 0 {
			if s.in.buffered() == 0 {
				// Idle: nothing held, no transaction begun (not even one
				// whose BEGIN the proxy holds back), so Shutdown may end
				// it at once.
				s.setIdle(s.bound == nil && s.deferred == "")
				stopWatch := s.watchNotifications()
				err := s.in.fill(1)
				stopWatch()
				s.setIdle(false)
				if err != nil {
					return nil, err
				}
			}
		}
		typ, body, raw, err := s.in.next()
		if err != nil {
			return nil, err
		}
		var msg pgproto3.FrontendMessage
		var st *statement
		switch typ {
		case 'X':
			return nil, errTerminate
		case 'Q':
			if len(msgs) > 0 {
				return nil, s.protocolError("a simple Query in the middle of an extended query (send Sync first)")
			}
			q := &s.query
			if err := q.Decode(body); err != nil {
				return nil, s.protocolError(err.Error())
			}
			msg = q
		case 'P', 'D', 'E', 'C':
			if msg, st, err = s.decodeCached(typ, body, raw); err != nil {
				return nil, s.protocolError(err.Error())
			}
		case 'B':
			if nbind == len(s.binds) {
				s.binds = append(s.binds, &pgproto3.Bind{})
			}
			b := s.binds[nbind]
			nbind++
			// Its parameters stay in the client's buffer until the next
			// round trip: nothing to copy.
			if err := b.Decode(body); err != nil {
				return nil, s.protocolError(err.Error())
			}
			msg = b
		case 'S':
			msg = syncMsg
		case 'H':
			msg = flushMsg
		case 'F':
			return nil, s.protocolError("the fast-path function call interface is not supported (call the function in a query)")
		case 'd', 'c', 'f':
			// Outside COPY the server ignores these; so does the proxy.
			continue
		default:
			return nil, s.protocolError(fmt.Sprintf("unexpected message type %q", typ))
		}
		msgs, raws, psts = append(msgs, msg), append(raws, raw), append(psts, st)
		r.msgs, r.raw, r.pst = msgs, raws, psts
		if typ == 'Q' || typ == 'S' || typ == 'H' {
			return msgs, nil
		}
		if len(msgs) > maxRoundMessages {
			return nil, s.protocolError(fmt.Sprintf("more than %d messages without a Sync", maxRoundMessages))
		}
	}
}

var (
	syncMsg  = &pgproto3.Sync{}
	flushMsg = &pgproto3.Flush{}
)

// decodeCached decodes a Parse, Describe, Execute or Close, or finds it
// among those the session decoded before (by its bytes): decoded messages
// are shared and never changed. A Parse comes with its statement.
func (s *session) decodeCached(typ byte, body, raw []byte) (pgproto3.FrontendMessage, *statement, error) {
	if e, ok := s.decoded[string(raw)]; ok {
		return e.msg, e.st, nil
	}
	var msg pgproto3.FrontendMessage
	var st *statement
	switch typ {
	case 'P':
		m := &pgproto3.Parse{}
		if err := m.Decode(body); err != nil {
			return nil, nil, err
		}
		st = s.srv.statements.get(m.Query, m.ParameterOIDs, m.Name == "", s.srv.classifier)
		msg = m
	case 'D':
		m := &pgproto3.Describe{}
		if err := m.Decode(body); err != nil {
			return nil, nil, err
		}
		msg = m
	case 'E':
		m := &pgproto3.Execute{}
		if err := m.Decode(body); err != nil {
			return nil, nil, err
		}
		msg = m
	case 'C':
		m := &pgproto3.Close{}
		if err := m.Decode(body); err != nil {
			return nil, nil, err
		}
		msg = m
	}
	if len(raw) <= maxDecodedSize {
		if s.decoded == nil || s.decodedBytes+len(raw) > maxDecodedBytes {
			s.decoded, s.decodedBytes = map[string]decodedMsg{}, 0
		}
		s.decoded[string(raw)] = decodedMsg{msg, st}
		s.decodedBytes += len(raw)
	}
	return msg, st, nil
}

// decodedMsg is a message a session decoded, kept by its bytes.
type decodedMsg struct {
	msg pgproto3.FrontendMessage
	st  *statement // a Parse's
}

// A session keeps the messages it decoded up to this size, and this many
// bytes of them.
const (
	maxDecodedSize  = 4 << 10
	maxDecodedBytes = 64 << 10
)

// watchNotifications, for a client that listens (LISTEN) and waits
// between round trips, passes what its server session sends meanwhile
// (notifications, notices, setting changes) on to the client, until the
// returned stop is called.
func (s *session) watchNotifications() (stop func()) {
	b := s.bound
	if !s.listening || b == nil || b.conn.TxStatus() != 'I' {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var out []byte
		for {
			msg, err := b.conn.ReceiveMessage(ctx)
			if err != nil {
				return // stopped (a timeout: the connection stays), or the server went away
			}
			switch msg.(type) {
			case *pgproto3.NotificationResponse, *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
				out, _ = msg.(pgproto3.BackendMessage).Encode(out[:0])
				if _, err := s.conn.Write(out); err != nil {
					return
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// maxRoundMessages bounds the messages of one round trip the proxy keeps.
const maxRoundMessages = 100_000

// setIdle records whether the session is waiting for the client with no
// server connection: only then may Shutdown write to its client. The
// session holds wmu whenever it is not idle.
func (s *session) setIdle(idle bool) {
	switch {
	case idle && !s.idle:
		s.idle = true
		s.wmu.Unlock()
	case !idle && s.idle:
		s.wmu.Lock()
		s.idle = false
	}
}

// round is what the proxy makes of one round trip of the client's.
type round struct {
	msgs    []pgproto3.FrontendMessage
	raw     [][]byte              // each message as the client sent it
	pst     []*statement          // each Parse's statement (nil for other messages)
	tokens  int                   // texts that are SHOW or SET of switchyard.token
	texts   int                   // texts it parses, describes or runs
	text0   string                // the first of them
	query   *pgproto3.Query       // a simple query, alone
	runs    []*classify.Statement // what it executes, in order
	runSQL  []string              // their texts
	write   bool                  // not provably a pure read
	state   bool                  // leaves session state on the server
	begins  bool                  // transaction control that may open a transaction
	discard bool                  // DISCARD ALL
	dealloc bool                  // DEALLOCATE ALL
	listen  bool
	copyIn  bool    // COPY FROM STDIN
	portals []named // the portals (and statements) it binds (parses)
}

// study classifies what a round trip executes.
func (s *session) study(msgs []pgproto3.FrontendMessage) *round {
	r := &s.round
	*r = round{msgs: msgs, raw: r.raw, pst: r.pst, runs: r.runs[:0], runSQL: r.runSQL[:0], portals: r.portals[:0]}
	add := func(st *classify.Statement, sql string) {
		r.runs = append(r.runs, st)
		r.runSQL = append(r.runSQL, sql)
		if !st.Kind.ReplicaSafe() {
			r.write = true
		}
		e := st.Effects
		r.state = r.state || e&(classify.EffectSessionState|classify.EffectSessionDependent) != 0
		r.begins = r.begins || e&(classify.EffectBegin|classify.EffectChain) != 0
		r.discard = r.discard || e&classify.EffectDiscardAll != 0
		r.dealloc = r.dealloc || e&classify.EffectSessionDependent != 0 && deallocateAll.MatchString(sql)
		r.listen = r.listen || e&classify.EffectListen != 0
		r.copyIn = r.copyIn || e&classify.EffectCopyFrom != 0
	}
	text := func(st *statement) {
		if st != nil {
			if r.texts == 0 {
				r.text0 = st.sql
			}
			r.texts++
			if st.token {
				r.tokens++
			}
		}
	}
	if _, ok := msgs[len(msgs)-1].(*pgproto3.Flush); ok {
		// The round trip's implicit transaction goes on after it, on the
		// same server: route it by what it prepares too.
		for i := range msgs {
			if st := r.pst[i]; st != nil && !st.info.Kind.ReplicaSafe() {
				r.write = true
			}
		}
	}
	for i, m := range msgs {
		switch m := m.(type) {
		case *pgproto3.Query:
			r.query = m
			add(s.srv.classifier.Analyze(m.String), m.String)
			r.texts, r.text0 = 1, m.String
			if isToken(m.String) {
				r.tokens++
			}
		case *pgproto3.Parse:
			// Defined here (build records it); a Bind below finds it.
			st := r.pst[i]
			r.portals = append(r.portals, named{m.Name, true, st})
			text(st)
		case *pgproto3.Bind:
			st := r.find(m.PreparedStatement, true)
			if st == nil {
				st = s.statement(m.PreparedStatement)
			}
			r.portals = append(r.portals, named{m.DestinationPortal, false, st})
			text(s.statement(m.PreparedStatement))
		case *pgproto3.Describe:
			if m.ObjectType == 'S' {
				text(s.statement(m.Name))
			}
		case *pgproto3.Execute:
			st := r.find(m.Portal, false)
			if st == nil {
				st = s.portals[m.Portal]
			}
			if st != nil {
				add(st.info, st.sql)
			} else {
				// A portal the proxy does not know: let the server say so,
				// on the primary.
				r.write = true
			}
		}
	}
	return r
}

// deallocateAll matches a text that may run DEALLOCATE ALL.
var deallocateAll = regexp.MustCompile(`(?is)\bdeallocate\s+(?:prepare\s+)?all\b`)

// named is a portal or a statement of a round trip.
type named struct {
	name string
	stmt bool // a statement (Parse), not a portal (Bind)
	st   *statement
}

// find returns the last statement (stmt) or portal of r under name.
func (r *round) find(name string, stmt bool) *statement {
	for i := len(r.portals) - 1; i >= 0; i-- {
		if p := &r.portals[i]; p.stmt == stmt && p.name == name {
			return p.st
		}
	}
	return nil
}

// serve runs one round trip of the client's.
func (s *session) serve(ctx context.Context, msgs []pgproto3.FrontendMessage) error {
	r := s.study(msgs)
	if done, err := s.answerLocally(ctx, r); done || err != nil {
		return err
	}
	s.inTx = s.deferred != "" || r.begins || s.bound != nil && s.bound.conn.TxStatus() != 'I'
	if s.bound != nil {
		return s.serveBound(ctx, r)
	}
	return s.serveUnbound(ctx, r)
}

// serveUnbound routes a round trip that holds no server connection yet.
func (s *session) serveUnbound(ctx context.Context, r *round) error {
	e := s.srv.engine
	c := e.Clusters()[0]
	p := &s.planBuf
	*p = engine.Plan{}
	deferred := s.deferred
	switch {
	case deferred != "":
		info := s.srv.classifier.Analyze(deferred)
		readOnly := info.TxAccess == classify.AccessReadOnly && !r.state
		e.PlanTx(ctx, p, &s.opts, c, readOnly, info.TxIsolation == classify.Serializable)
		s.txWrites = !readOnly
	case r.state:
		// Session state: the primary, on a connection that stays with the
		// client. The pin itself marks nothing (in global mode a mark would
		// send every client's reads to the primary for as long as it
		// lasts); each round trip on it captures the position instead.
		e.PlanWrite(p, &s.opts, c)
		p.Write, p.Reason = false, engine.ReasonPinned
		p.WillCapture()
		s.txWrites = true
	case r.begins:
		// A transaction begun inside the round trip (BEGIN with other
		// statements): on the primary.
		e.PlanTx(ctx, p, &s.opts, c, false, false)
		s.txWrites = true
	case r.write:
		e.PlanWrite(p, &s.opts, c)
		p.CaptureWrite()
	default:
		e.PlanRead(ctx, p, &s.opts, c)
	}
	s.call = tripCall{ctx: ctx, r: r, begin: deferred}
	if s.runUnbound == nil {
		s.runUnbound = s.tripUnbound
	}
	err := e.Do(ctx, p, s.runUnbound)
	done := s.call.res
	s.call = tripCall{}
	if err != nil {
		p.Finish(err)
		s.failTransaction()
		s.answerError(err, r)
		return nil
	}
	s.deferred = ""
	return s.settle(p, r, &done)
}

// settle decides, after a round trip on done.b, whether the client keeps
// the connection (an open transaction, session state) and ends the plan
// otherwise.
func (s *session) settle(p *engine.Plan, r *round, t *tripResult) error {
	b := t.b
	if r.state {
		s.pinned = true
	}
	if r.listen {
		s.pinned, s.listening = true, true
	}
	if r.discard || r.dealloc {
		// The server's prepared statements may be gone (the proxy's
		// included); the proxy prepares again what it needs. The client's
		// own statements stay usable through the proxy.
		b.forgetPrepared()
	}
	if r.discard && t.res.err == nil && t.res.status == 'I' {
		s.pinned, s.listening = false, false
	}
	// A round trip that ended with a Flush leaves its implicit
	// transaction (and its portals) open until the client's Sync.
	keep := s.pinned || t.res.status != 'I' || !endsRound(r)
	if keep {
		if s.bound == nil {
			s.bound, s.plan = b, *p
		}
		return nil
	}
	if s.bound == b {
		s.bound = nil
		if s.txWrites && r.commits() {
			// The transaction ended some other way than by the proxy's
			// COMMIT (inside a string of statements, say): what it wrote
			// is in, as far as anyone knows.
			s.plan.MarkWritten()
		}
		s.plan.Finish(t.res.err)
	} else {
		p.Finish(t.res.err)
	}
	s.txWrites = false
	clear(s.portals)
	b.release()
	return nil
}

// serveBound runs a round trip on the connection the client holds.
func (s *session) serveBound(ctx context.Context, r *round) error {
	b := s.bound
	if (s.txWrites || s.pinned) && b.conn.TxStatus() == 'T' && isCommit(r) {
		return s.commit(ctx, r)
	}
	p := &s.planBuf
	*p = engine.Plan{}
	inTx := b.conn.TxStatus() != 'I'
	// Inside a transaction nothing is written until it commits, which
	// captures (or marks) then.
	s.srv.engine.PlanPinned(p, &s.opts, b.node, r.write && !inTx)
	if !inTx {
		// A pinned connection outside a transaction: take the position
		// along, as a round trip of its own would.
		p.WillCapture()
	}
	s.call = tripCall{r: r, b: b}
	if s.runBound == nil {
		s.runBound = s.tripBound
	}
	err := s.srv.engine.Do(ctx, p, s.runBound)
	t := s.call.res
	s.call = tripCall{}
	p.Finish(err)
	if h := (*handled)(nil); errors.As(err, &h) && h.end {
		return h.err
	}
	if err != nil {
		pinned := s.pinned
		s.lost(b, err)
		if pinned {
			return s.stateLost(err)
		}
		s.failTransaction()
		s.answerError(err, r)
		return nil
	}
	return s.settle(p, r, &t)
}

// failTransaction puts a client whose round trip failed on the proxy's side
// (its server connection lost, no server to run it) inside a transaction
// block into the failed state PostgreSQL would leave it in: what it sends
// next is refused until it ends the transaction (answerFailed). Were the
// rest of its transaction run, it would run outside any transaction, on
// whichever server, while the first part was lost with the connection.
func (s *session) failTransaction() {
	if s.inTx {
		s.failed, s.deferred, s.txWrites = true, "", false
	}
}

// stateLost ends a client session whose server connection held session
// state (SET, temporary tables, LISTEN, prepared statements of its own,
// advisory locks, cursors WITH HOLD) and was lost: that state is gone, and
// the client's next statements must not run without it, as they would on
// another connection. The client sees what it would have seen connected to
// the server directly: its connection closed.
func (s *session) stateLost(err error) error {
	s.sendFatal("08006", "switchyard proxy: the server connection that held this session's state (SET, temporary tables, LISTEN, advisory locks, cursors) was lost: "+s.srv.engine.Redact(err.Error()))
	return fmt.Errorf("session state lost: %w", err)
}

// lost forgets a held connection that failed.
func (s *session) lost(b *backend, err error) {
	if s.bound == b {
		s.bound, s.pinned = nil, false
		s.plan.Finish(err)
	}
	clear(s.portals)
	s.srv.engine.NodeDown(b.node, err)
	b.destroy()
}

// commits reports whether r runs a COMMIT.
func (r *round) commits() bool {
	for _, st := range r.runs {
		if st.Effects&classify.EffectCommit != 0 {
			return true
		}
	}
	return false
}

// isCommit reports whether r is exactly one COMMIT (not AND CHAIN).
func isCommit(r *round) bool {
	if len(r.runs) != 1 {
		return false
	}
	st := r.runs[0]
	return st.Statements == 1 && st.Effects&(classify.EffectCommit|classify.EffectChain) == classify.EffectCommit
}

// acquire takes a connection to node n from the login's pool.
func (s *session) acquire(ctx context.Context, n *topology.Node) (*backend, error) {
	c, err := s.pools.nodes[n.Index].Acquire(ctx)
	if err != nil {
		return nil, err
	}
	b := &s.slot
	b.init(c, n)
	return b, nil
}

// lend lends the engine a connection of the login's for a query of its own.
func (s *session) lend(ctx context.Context, n *topology.Node) (*pgconn.PgConn, func(), error) {
	c, err := s.pools.nodes[n.Index].Acquire(ctx)
	if err != nil {
		return nil, nil, err
	}
	return c.Conn().PgConn(), c.Release, nil
}

// tripCall is what the executor's run of a round trip (tripUnbound,
// tripBound) needs and what it found: set up around engine.Do, whose
// function is made once per session.
type tripCall struct {
	ctx   context.Context
	r     *round
	b     *backend // tripBound's
	begin string
	res   tripResult
}

// tripUnbound runs s.call's round trip on a connection to p.Node.
func (s *session) tripUnbound(p *engine.Plan) error {
	c := &s.call
	b, err := s.acquire(c.ctx, p.Node)
	if err != nil {
		return err
	}
	c.res, err = s.trip(b, c.r, p, c.begin)
	return err
}

// tripBound runs s.call's round trip on the connection the client holds.
func (s *session) tripBound(p *engine.Plan) (err error) {
	c := &s.call
	c.res, err = s.trip(c.b, c.r, p, "")
	return err
}

// tripResult is how a round trip on a server went.
type tripResult struct {
	b         *backend
	res       relayResult
	committed bool // the proxy committed the transaction itself
}

// trip sends round r to backend b as plan p says and relays the replies.
// A failure that has left nothing in the client's hands is returned, with
// the backend given up, so that the executor may run the round trip again
// elsewhere; once something has been written to the client, the failure
// is the client's.
func (s *session) trip(b *backend, r *round, p *engine.Plan, begin string) (tripResult, error) {
	mark, flushes := len(s.out), s.flushes
	items := s.build(b, r, p, begin)
	answered := false
	for i := range items {
		if items[i].mode != synthesize {
			answered = true
			break
		}
	}
	// A cancel goes to b from now on: the write below may wait for the
	// server's answer.
	s.setBusy(b)
	if answered {
		// Every message sent has its answer coming: wait for it before
		// the first read.
		armWrite(b.conn.Conn())
	}
	err := b.fe().Flush()
	if answered {
		disarmWrite(b.conn.Conn())
	}
	if err != nil {
		s.setBusy(nil)
		b.destroy()
		return tripResult{}, &notSent{err}
	}
	res, err := s.relay(b, items)
	s.setBusy(nil)
	retryable := s.flushes == flushes && p.Policy == engine.PolicyRead
	if err != nil {
		if retryable {
			s.out = s.out[:mark]
			b.destroy()
			return tripResult{}, err
		}
		return tripResult{}, s.fail(b, p, err)
	}
	if p.Before == engine.BeforeCheck && !s.checkPassed {
		s.out = s.out[:mark]
		b.release()
		return tripResult{}, engine.ErrNotFresh
	}
	if res.err != nil && retryable && !p.Write && pgerr.RetryReadElsewhere(res.err) && pgerr.Code(res.err) != "" && res.status == 'I' {
		// The replica refused it (it writes after all, or a recovery
		// conflict canceled it): nothing ran there.
		s.out = s.out[:mark]
		b.release()
		return tripResult{}, res.err
	}
	if (p.After == engine.AfterCapture || s.capturedFirst) && s.captured != 0 {
		p.Captured(s.captured)
	}
	if res.held != nil {
		s.send(res.held)
	}
	if p.Before == engine.BeforeCheck {
		p.CheckPassed()
	}
	if res.err == nil || res.status == 'I' {
		p.Served()
	}
	s.lastState = res.status
	return tripResult{b: b, res: res}, nil
}

// setBusy records the backend that runs the client's query (nil: none).
// Clearing it waits for a cancel request being delivered to it, so that a
// late cancel never reaches a backend that went back to the pool and runs
// another client's query.
func (s *session) setBusy(b *backend) {
	s.cancelMu.Lock()
	s.busy.Store(b)
	s.cancelMu.Unlock()
}

// fail answers the client after its server connection failed with
// something of the round trip already in its hands, or after a write was
// sent: the connection is given up, and the client is told the statement
// may or may not have run.
func (s *session) fail(b *backend, p *engine.Plan, err error) error {
	s.srv.engine.NodeDown(b.node, err)
	pinned := s.bound == b && s.pinned
	if s.bound == b {
		s.bound, s.pinned = nil, false
	}
	b.destroy()
	if pinned {
		return &handled{err: s.stateLost(err), end: true}
	}
	s.failTransaction()
	s.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "08007",
		Message: "switchyard proxy: the connection to the server was lost during the statement; it may or may not have run",
		Detail:  s.srv.engine.Redact(err.Error())})
	s.send(&pgproto3.ReadyForQuery{TxStatus: s.status()})
	return &handled{err: err}
}

// handled is a failure already answered to the client: the executor must
// not run the round trip again. With end, the client's session is over.
type handled struct {
	err error
	end bool
}

func (h *handled) Error() string { return h.err.Error() }

// notSent is a failure before anything left the proxy: safe to send again.
type notSent struct{ err error }

func (e *notSent) Error() string     { return "switchyard proxy: " + e.err.Error() }
func (e *notSent) Unwrap() error     { return e.err }
func (e *notSent) SafeToRetry() bool { return true }

// answerError tells the client that its round trip failed before any of it
// was answered.
func (s *session) answerError(err error, r *round) {
	if errors.As(err, new(*handled)) {
		return
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		s.send(errorResponse(pgErr))
	case errors.Is(err, engine.ErrNoPrimary):
		s.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "57P03", Message: s.srv.engine.Redact(err.Error())})
	default:
		s.send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "08006",
			Message: "switchyard proxy: " + s.srv.engine.Redact(err.Error())})
	}
	if !endsRound(r) {
		return // a Flush: the error is all the client gets until its Sync
	}
	s.send(&pgproto3.ReadyForQuery{TxStatus: s.status()})
}

func endsRound(r *round) bool {
	if r.query != nil {
		return true
	}
	_, ok := r.msgs[len(r.msgs)-1].(*pgproto3.Sync)
	return ok
}

// end lets go of the session's server connection, cleaned, when the client
// goes away.
func (s *session) end() {
	defer s.srv.forget(s)
	if b := s.bound; b != nil {
		s.bound = nil
		if err := s.clean(b); err != nil {
			b.destroy()
		} else {
			b.release()
		}
		s.plan.Finish(nil)
	}
	s.setIdle(false)
	s.wmu.Unlock()
	s.conn.Close()
}

// clean rolls back an open transaction and, for session state, discards
// it (DISCARD ALL), so that the connection goes back to the pool as a new
// one would be.
func (s *session) clean(b *backend) error {
	var sql string
	switch {
	case b.conn.TxStatus() != 'I' && s.pinned:
		sql = "ROLLBACK; DISCARD ALL"
	case b.conn.TxStatus() != 'I':
		sql = "ROLLBACK"
	case s.pinned:
		sql = "DISCARD ALL"
	default:
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanTimeout)
	defer cancel()
	if _, err := b.conn.Exec(ctx, sql).ReadAll(); err != nil {
		return err
	}
	if s.pinned {
		b.forgetPrepared()
	}
	return nil
}

func (s *session) protocolError(msg string) error {
	s.sendFatal("08P01", "switchyard proxy: protocol violation: "+msg)
	return errors.New(msg)
}

func (s *session) sendFatal(code, msg string) {
	s.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	s.flush()
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
