// Package conntrack keeps track of the connections a front has open to a
// server, so that when the server is judged hung (it stopped answering:
// frozen, partitioned, its disk stalled) the statements waiting on it can
// be interrupted and run elsewhere: each busy connection is sent a cancel
// request, and then every connection gets a deadline in the past, which
// ends whatever read or write it is blocked in... and then it is closed,
// which ends them for sure.
package conntrack

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// ErrOutOfRotation is why a connection to a server out of rotation is not
// made.
var ErrOutOfRotation = errors.New("the server is out of rotation (it stopped answering)")

// cancelTimeout bounds the cancel request sent to a hung server: it
// mostly will not answer.
const cancelTimeout = 100 * time.Millisecond

// Set is the connections to one server, of every pool that reaches it.
// The zero value is ready to use.
type Set struct {
	// Refuse, if set, says whether new connections are to be refused at
	// once (the server is out of rotation): a statement planned a moment
	// before must not start a connection to a hung server.
	Refuse func() bool

	mu    sync.Mutex
	conns map[*conn]struct{}
	pgs   map[*pgconn.PgConn]struct{}
	wg    sync.WaitGroup // cancel requests under way
}

// Dial wraps next (nil: net.Dialer's) so that the connections it makes
// are tracked until they close, from their first byte: a connection stuck
// in its startup is interrupted too.
func (s *Set) Dial(next pgconn.DialFunc) pgconn.DialFunc {
	if next == nil {
		d := &net.Dialer{KeepAlive: 5 * time.Minute}
		next = d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		// A cancel request goes out whatever the rotation says: it is how
		// a statement on a server merely slow is stopped.
		if s.Refuse != nil && ctx.Value(cancelKey{}) == nil && s.Refuse() {
			return nil, &net.OpError{Op: "dial", Net: network, Err: ErrOutOfRotation}
		}
		c, err := next(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := &conn{Conn: c, set: s}
		s.mu.Lock()
		if s.conns == nil {
			s.conns = map[*conn]struct{}{}
		}
		s.conns[tc] = struct{}{}
		s.mu.Unlock()
		return tc, nil
	}
}

// Connected records an established connection, so that a query it runs
// when the server is judged hung is sent a cancel request.
func (s *Set) Connected(pc *pgconn.PgConn) {
	s.mu.Lock()
	if s.pgs == nil {
		s.pgs = map[*pgconn.PgConn]struct{}{}
	}
	s.pgs[pc] = struct{}{}
	s.mu.Unlock()
}

// Closing forgets a connection Connected recorded.
func (s *Set) Closing(pc *pgconn.PgConn) {
	s.mu.Lock()
	delete(s.pgs, pc)
	s.mu.Unlock()
}

// cancelKey marks the context of a cancel request's dial.
type cancelKey struct{}

// Interrupt ends what every connection of the set is blocked in: each is
// sent a cancel request (so that a server that is merely slow stops the
// statement), and all are closed at once (a hung server would not answer
// the cancel; the read must not wait for it). It does not wait for the
// cancel requests.
//
// Every connection gets the cancel request, busy or not: whether one is
// busy cannot be asked from another goroutine (PgConn is not safe for
// concurrent use), and a server ignores a cancel request for a backend
// that is idle.
func (s *Set) Interrupt() {
	s.mu.Lock()
	pcs := make([]*pgconn.PgConn, 0, len(s.pgs))
	for pc := range s.pgs {
		pcs = append(pcs, pc)
	}
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	// Closed, not merely given a deadline: pgx, closing a connection that
	// failed, waits up to 15 s for the server to see the close (under a
	// deadline of its own), which a hung server never does, and the pool
	// keeps the connection's slot until then.
	for c := range conns {
		c.once.Do(func() {})
		c.Conn.Close()
	}
	for _, pc := range pcs {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), cancelKey{}, true), cancelTimeout)
			defer cancel()
			pc.CancelRequest(ctx)
		}()
	}
}

// Wait waits for the cancel requests of earlier Interrupts.
func (s *Set) Wait() { s.wg.Wait() }

// Len is the number of connections open now.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// conn is a tracked connection.
type conn struct {
	net.Conn
	set  *Set
	once sync.Once
}

func (c *conn) Close() error {
	c.once.Do(func() {
		c.set.mu.Lock()
		delete(c.set.conns, c)
		c.set.mu.Unlock()
	})
	return c.Conn.Close()
}
