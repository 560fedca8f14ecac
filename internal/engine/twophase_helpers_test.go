package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/pgscript"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// The statements of two-phase commit and its recovery, as twophase.go
// sends them.
const (
	decisionSQL     = "INSERT INTO switchyard.decisions (gid) VALUES ($1)"
	recordAbortSQL  = "INSERT INTO switchyard.decisions (gid, committed) VALUES ($1, false) ON CONFLICT (gid) DO NOTHING RETURNING committed"
	readDecisionSQL = "SELECT committed FROM switchyard.decisions WHERE gid = $1"
)

// tpc is a scripted primary that keeps what two-phase commit touches as
// PostgreSQL would: each connection's open transaction (the decision row
// it inserted), the prepared transactions by gid (and when they were
// prepared), and the committed rows of switchyard.decisions. A connection
// that drops takes its transaction with it. A test makes it fail where it
// wants with on, asked before anything else; answer runs a statement as
// the server would (so that on can run it and then drop the connection:
// the statement ran, its reply was lost).
type tpc struct {
	*pgscript.Server
	on atomic.Pointer[func(q pgscript.Query) (pgscript.Reply, bool)]

	mu        sync.Mutex
	pending   map[int]string       // connection: the gid its transaction inserted
	decisions map[string]bool      // committed rows: gid, committed
	prepared  map[string]time.Time // gid: when prepared
	finished  []string             // "COMMIT gid", "ROLLBACK gid": prepared transactions ended
	aborts    []string             // gids whose abort recordAbortSQL recorded
	began     int                  // the connection of the last BEGIN
	made      int                  // DecisionsSQL runs
	prunes    []string             // DELETE statements
	xacts     int                  // pg_prepared_xacts queries
}

func newTPC(t *testing.T) *tpc {
	s := &tpc{pending: map[int]string{}, decisions: map[string]bool{}, prepared: map[string]time.Time{}}
	s.Server = pgscript.NewServer(pgscript.Config{Handler: s.handle})
	t.Cleanup(s.Server.Close)
	return s
}

// onQuery makes f answer first (ok false: the server answers).
func (s *tpc) onQuery(f func(q pgscript.Query) (r pgscript.Reply, ok bool)) { s.on.Store(&f) }

func (s *tpc) handle(q pgscript.Query) pgscript.Reply {
	if f := s.on.Load(); f != nil {
		if r, ok := (*f)(q); ok {
			return r
		}
	}
	return s.answer(q)
}

// gidIn is the gid quoted in a PREPARE TRANSACTION, COMMIT PREPARED or
// ROLLBACK PREPARED statement.
func gidIn(sql string) string {
	i, j := strings.IndexByte(sql, '\''), strings.LastIndexByte(sql, '\'')
	if i < 0 || j <= i {
		return ""
	}
	return sql[i+1 : j]
}

var committedColumn = []pgscript.Column{{Name: "committed", OID: pgscript.BoolOID}}

func (s *tpc) answer(q pgscript.Query) pgscript.Reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	sql := q.SQL
	switch {
	case sql == "BEGIN":
		s.began = q.Conn
		return pgscript.Reply{}
	case sql == xidSQL:
		return pgscript.Row(testXid, testStarted)
	case sql == "COMMIT":
		if gid, ok := s.pending[q.Conn]; ok {
			s.decisions[gid] = true
			delete(s.pending, q.Conn)
		}
		return pgscript.Tag("COMMIT")
	case sql == "ROLLBACK":
		delete(s.pending, q.Conn)
		return pgscript.Tag("ROLLBACK")
	case sql == DecisionsSQL:
		s.made++
		return pgscript.Tag("CREATE INDEX")
	case sql == decisionSQL:
		gid := q.Param(0)
		if _, ok := s.decisions[gid]; ok {
			return pgscript.Fail("23505", `duplicate key value violates unique constraint "decisions_pkey"`)
		}
		s.pending[q.Conn] = gid
		return pgscript.Tag("INSERT 0 1")
	case strings.HasPrefix(sql, "PREPARE TRANSACTION '"):
		s.prepared[gidIn(sql)] = time.Now()
		return pgscript.Reply{Tag: "PREPARE TRANSACTION", TxStatus: 'I'}
	case strings.HasPrefix(sql, "COMMIT PREPARED '"), strings.HasPrefix(sql, "ROLLBACK PREPARED '"):
		gid := gidIn(sql)
		if _, ok := s.prepared[gid]; !ok {
			return pgscript.Fail("42704", fmt.Sprintf("prepared transaction with identifier %q does not exist", gid))
		}
		delete(s.prepared, gid)
		word, _, _ := strings.Cut(sql, " ")
		s.finished = append(s.finished, word+" "+gid)
		return pgscript.Tag(word + " PREPARED")
	case sql == recordAbortSQL:
		gid := q.Param(0)
		if _, ok := s.decisions[gid]; ok {
			return pgscript.Reply{Columns: committedColumn, Tag: "INSERT 0 0"}
		}
		s.decisions[gid] = false
		s.aborts = append(s.aborts, gid)
		return pgscript.Reply{Columns: committedColumn, Rows: [][]any{{false}}, Tag: "INSERT 0 1"}
	case sql == readDecisionSQL:
		if committed, ok := s.decisions[q.Param(0)]; ok {
			return pgscript.Rows(committedColumn, []any{committed})
		}
		return pgscript.Rows(committedColumn)
	case strings.Contains(sql, "FROM pg_prepared_xacts"):
		s.xacts++
		gids := make([]string, 0, len(s.prepared))
		for gid := range s.prepared {
			gids = append(gids, gid)
		}
		sort.Slice(gids, func(i, j int) bool {
			a, b := s.prepared[gids[i]], s.prepared[gids[j]]
			return a.Before(b) || a.Equal(b) && gids[i] < gids[j]
		})
		r := pgscript.Reply{Columns: pgscript.TextColumns("gid", "age")}
		for _, gid := range gids {
			age := time.Since(s.prepared[gid]).Seconds()
			r.Rows = append(r.Rows, []any{gid, strconv.FormatFloat(age, 'f', 6, 64)})
		}
		return r
	case strings.HasPrefix(sql, "DELETE FROM switchyard.decisions"):
		s.prunes = append(s.prunes, sql)
		return pgscript.Tag("DELETE 0")
	}
	return pgscript.Fail("42601", "unexpected: "+sql)
}

// prepare leaves gid prepared, as long ago as age.
func (s *tpc) prepare(gid string, age time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prepared[gid] = time.Now().Add(-age)
}

// decide records gid's decision, as a committed coordinator would have.
func (s *tpc) decide(gid string, committed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.decisions[gid] = committed
}

// decision is gid's committed row, if any.
func (s *tpc) decision(gid string) (committed, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	committed, ok = s.decisions[gid]
	return committed, ok
}

// preparedGIDs lists the prepared transactions left, sorted.
func (s *tpc) preparedGIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var gids []string
	for gid := range s.prepared {
		gids = append(gids, gid)
	}
	slices.Sort(gids)
	return gids
}

// ended lists the prepared transactions ended ("COMMIT gid", "ROLLBACK
// gid"), in order.
func (s *tpc) ended() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.finished)
}

// abortsRecorded lists the gids whose abort was recorded, in order.
func (s *tpc) abortsRecorded() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.aborts)
}

func (s *tpc) counts() (made, xacts, prunes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.made, s.xacts, len(s.prunes)
}

// sent reports whether a statement starting with prefix reached the
// server.
func (s *tpc) sent(prefix string) bool {
	return slices.ContainsFunc(s.History(), func(q string) bool { return strings.HasPrefix(q, prefix) })
}

// memLender lends in-memory connections (pgscript.Server.Dial) to each
// node's scripted server, a new one each time, closed on release, so that
// it works inside testing/synctest bubbles. It counts what it lent and
// released.
type memLender struct {
	mu      sync.Mutex
	servers map[*topology.Node]*pgscript.Server
	fail    func(n *topology.Node, call int64) error // asked first: an error instead of a connection

	calls, lent, released atomic.Int64
}

func newMemLender() *memLender {
	return &memLender{servers: map[*topology.Node]*pgscript.Server{}}
}

func (l *memLender) serve(n *topology.Node, s *pgscript.Server) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.servers[n] = s
}

// failWith makes f decide, from now on, whether a loan fails.
func (l *memLender) failWith(f func(n *topology.Node, call int64) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail = f
}

func (l *memLender) lend(ctx context.Context, n *topology.Node) (*pgconn.PgConn, func(), error) {
	call := l.calls.Add(1)
	l.mu.Lock()
	fail, s := l.fail, l.servers[n]
	l.mu.Unlock()
	if fail != nil {
		if err := fail(n, call); err != nil {
			return nil, nil, err
		}
	}
	if s == nil {
		return nil, nil, fmt.Errorf("no server for %s", n.Name)
	}
	conn, err := dialMem(ctx, s)
	if err != nil {
		return nil, nil, err
	}
	l.lent.Add(1)
	var once sync.Once
	return conn, func() {
		once.Do(func() {
			l.released.Add(1)
			conn.Close(context.Background())
		})
	}, nil
}

// dialMem connects to s in memory.
func dialMem(ctx context.Context, s *pgscript.Server) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(s.ConnString())
	if err != nil {
		return nil, err
	}
	cfg.DialFunc = s.Dial
	return pgconn.ConnectConfig(ctx, cfg)
}

// across is an engine of several clusters (named default, b, c...), each a
// scripted primary with max_prepared_transactions = 10, and one session.
type across struct {
	e    *Engine
	srv  []*tpc
	lend *memLender
	s    *Session
	logs *logBuffer
	// partConn numbers, per cluster, the server's connection of the part
	// that begin opened last (pgscript.Query.Conn).
	partConn []int
}

func newAcross(t *testing.T, clusters int, cfg Config) *across {
	t.Helper()
	a := &across{lend: newMemLender(), s: NewSession(), logs: &logBuffer{}}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a.e = newEngine(t, 0, cfg)
	for i := 1; i < clusters; i++ {
		addCluster(a.e, string(rune('a'+i)), testSystem+uint64(i), 0)
	}
	a.e.latests = make([]latestFetch, len(a.e.clusters))
	for _, c := range a.e.clusters {
		c.MaxPrepared = 10
		s := newTPC(t)
		a.srv = append(a.srv, s)
		a.lend.serve(c.Primary(), s.Server)
	}
	a.partConn = make([]int, clusters)
	return a
}

func (a *across) cluster(i int) *topology.Cluster { return a.e.clusters[i] }

// begin opens a transaction on every cluster's primary, as the parts of a
// block across clusters: part i wrote if wrote[i].
func (a *across) begin(t *testing.T, wrote ...bool) []*Part {
	t.Helper()
	if len(wrote) != len(a.srv) {
		t.Fatalf("%d parts for %d clusters", len(wrote), len(a.srv))
	}
	var parts []*Part
	for i, c := range a.e.clusters {
		conn, err := dialMem(context.Background(), a.srv[i].Server)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		if _, err := conn.Exec(context.Background(), "BEGIN").ReadAll(); err != nil {
			t.Fatal(err)
		}
		a.srv[i].mu.Lock()
		a.partConn[i] = a.srv[i].began
		a.srv[i].mu.Unlock()
		p := new(Plan)
		a.e.PlanTx(context.Background(), p, &Options{Session: a.s}, c, false, false)
		if err := a.e.Ready(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		p.Begin()
		parts = append(parts, &Part{Plan: p, Conn: conn, Wrote: wrote[i]})
	}
	return parts
}

// commit runs CommitAcross on parts and ends their plans, as the front
// does.
func (a *across) commit(ctx context.Context, parts []*Part) error {
	err := a.e.CommitAcross(ctx, parts, a.lend.lend)
	for _, p := range parts {
		p.Plan.Finish(err)
	}
	return err
}

// on makes cluster i's primary answer statements of the part's own
// connection that start with prefix with f (which may run the statement
// with answer first).
func (a *across) on(i int, prefix string, f func(q pgscript.Query) pgscript.Reply) {
	conn := a.partConn[i]
	s := a.srv[i]
	s.onQuery(func(q pgscript.Query) (pgscript.Reply, bool) {
		if q.Conn == conn && strings.HasPrefix(q.SQL, prefix) {
			return f(q), true
		}
		return pgscript.Reply{}, false
	})
}

// ranThenDropped runs q on s, then drops the connection: the statement
// ran, its reply was lost.
func ranThenDropped(s *tpc) func(q pgscript.Query) pgscript.Reply {
	return func(q pgscript.Query) pgscript.Reply {
		s.answer(q)
		return pgscript.Reply{Drop: true}
	}
}

func dropped(pgscript.Query) pgscript.Reply { return pgscript.Reply{Drop: true} }

// gid is the gid the block prepared on cluster i (from its PREPARE).
func (a *across) gid(t *testing.T, i int) string {
	t.Helper()
	for _, q := range a.srv[i].History() {
		if strings.HasPrefix(q, "PREPARE TRANSACTION '") {
			return gidIn(q)
		}
	}
	t.Fatalf("nothing prepared on cluster %d", i)
	return ""
}

// idleOrBroken checks CommitAcross's promise: every part's connection is
// outside a transaction afterwards, or broken.
func idleOrBroken(t *testing.T, parts []*Part) {
	t.Helper()
	for i, p := range parts {
		if !p.Conn.IsClosed() && p.Conn.TxStatus() != 'I' {
			t.Errorf("part %d: connection left in status %c", i, p.Conn.TxStatus())
		}
	}
}

// phases records the phases TwoPhaseHook reports until the test ends.
func phases(t *testing.T) func() string {
	var mu sync.Mutex
	var seen []string
	TwoPhaseHook = func(phase string) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, phase)
	}
	t.Cleanup(func() { TwoPhaseHook = nil })
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(seen, " ")
	}
}

// setFor sets *v to x until the test ends.
func setFor[T any](t *testing.T, v *T, x T) {
	old := *v
	*v = x
	t.Cleanup(func() { *v = old })
}
