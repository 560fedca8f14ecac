package compare

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
)

// A router sends a session's statements to the servers. Each of the three
// is an honest, small implementation of its policy.
type router interface {
	// name is what the results table calls it.
	name() string
	// newSession starts a session (one user, request stream, or job) whose
	// statements run with ctx.
	newSession(ctx context.Context) session
	// poolStats are its connection pools' statistics.
	poolStats() []*pgxpool.Stat
	close()
}

// A session is one session's connection (or connections) to the data:
// the two statements of the workload.
type session interface {
	// write increments the session's counter row and returns its new
	// value.
	write(ctx context.Context, run, id int) (int, error)
	// read returns the counter row's value and whether a replica served
	// it.
	read(ctx context.Context, run, id int) (v int, onReplica bool, err error)
}

// A scanner runs one statement and scans its single row: a router's
// session, with the context it runs in.
type scanner interface {
	scan(sql string, args []any, dest ...any) error
}

// routed runs the workload's statements through a router's session, which
// judges a replica by pg_is_in_recovery().
type routed struct{ scanner }

func (r routed) write(_ context.Context, run, id int) (int, error) {
	var v int
	err := r.scan(writeSQL, []any{run, id}, &v)
	return v, err
}

func (r routed) read(_ context.Context, run, id int) (int, bool, error) {
	var v int
	var inRecovery bool
	err := r.scan(readSQL, []any{run, id}, &v, &inRecovery)
	return v, inRecovery, err
}

// isSelect is how the routers that tutorials recommend classify a
// statement: by its first word.
func isSelect(sql string) bool {
	s := strings.TrimSpace(sql)
	return len(s) >= 6 && strings.EqualFold(s[:6], "SELECT")
}

// pools are one connection pool per server, as a hand-rolled router holds
// them.
type pools struct {
	primary  *pgxpool.Pool
	replicas []*pgxpool.Pool
}

func (p *pools) stats() []*pgxpool.Stat {
	s := []*pgxpool.Stat{p.primary.Stat()}
	for _, r := range p.replicas {
		s = append(s, r.Stat())
	}
	return s
}

func (p *pools) randomReplica() *pgxpool.Pool {
	return p.replicas[rand.IntN(len(p.replicas))]
}

// naive sends every SELECT to a replica picked at random and everything
// else to the primary: the read/write split that router tutorials
// recommend, and what most framework routers do by default.
type naive struct{ p *pools }

// NaiveName is the naive router's name in the results.
const NaiveName = "naive (random replica)"

func (r *naive) name() string { return NaiveName }
func (r *naive) close()       {}

func (r *naive) poolStats() []*pgxpool.Stat { return r.p.stats() }
func (r *naive) newSession(ctx context.Context) session {
	return routed{naiveSession{ctx, r.p}}
}

type naiveSession struct {
	ctx context.Context
	p   *pools
}

func (s naiveSession) scan(sql string, args []any, dest ...any) error {
	pool := s.p.primary
	if isSelect(sql) {
		pool = s.p.randomReplica()
	}
	return pool.QueryRow(s.ctx, sql, args...).Scan(dest...)
}

// sticky sends a session's SELECTs to the primary for a fixed window after
// the session's last write, and to a random replica otherwise: Rails'
// automatic role switching (ActiveRecord::Middleware::DatabaseSelector,
// whose default delay is 2 seconds), and what Django and Laravel users build
// with a "recently wrote" flag in the session.
type sticky struct {
	p      *pools
	window time.Duration
}

// StickyName is the sticky router's name in the results, for a window.
func StickyName(window time.Duration) string { return "sticky " + window.String() + " after write" }

func (r *sticky) name() string { return StickyName(r.window) }
func (r *sticky) close()       {}

func (r *sticky) poolStats() []*pgxpool.Stat { return r.p.stats() }
func (r *sticky) newSession(ctx context.Context) session {
	return routed{&stickySession{ctx: ctx, p: r.p, window: r.window}}
}

type stickySession struct {
	ctx       context.Context
	p         *pools
	window    time.Duration
	lastWrite time.Time // as Rails, when the last write finished
}

func (s *stickySession) scan(sql string, args []any, dest ...any) error {
	if isSelect(sql) {
		pool := s.p.primary
		if time.Since(s.lastWrite) >= s.window {
			pool = s.p.randomReplica()
		}
		return pool.QueryRow(s.ctx, sql, args...).Scan(dest...)
	}
	err := s.p.primary.QueryRow(s.ctx, sql, args...).Scan(dest...)
	s.lastWrite = time.Now()
	return err
}

// sy is switchyard: a DB, with a switchyard.WithSession context per session.
type sy struct{ db *switchyard.DB }

// SwitchyardName is switchyard's name in the results.
const SwitchyardName = "switchyard"

func (r *sy) name() string { return SwitchyardName }
func (r *sy) close()       { r.db.Close() }

func (r *sy) poolStats() []*pgxpool.Stat {
	var s []*pgxpool.Stat
	for _, n := range r.db.Stats().Nodes {
		s = append(s, n.Pool)
	}
	return s
}
func (r *sy) newSession(ctx context.Context) session {
	return routed{sySession{db: r.db, ctx: switchyard.WithSession(ctx)}}
}

type sySession struct {
	db  *switchyard.DB
	ctx context.Context // carries the session
}

func (s sySession) scan(sql string, args []any, dest ...any) error {
	return s.db.QueryRow(s.ctx, sql, args...).Scan(dest...)
}
