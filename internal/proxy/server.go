// Package proxy is switchyard's second front: the engine behind the
// PostgreSQL wire protocol (protocol 3.0), so that applications in any
// language get its routing and guarantees by pointing their connection
// string at it.
//
// Each client connection is a causal session. Its round trips (up to a
// Sync, a Flush or a simple Query) are classified and planned by the
// engine; the proxy relays the protocol messages to a pooled server
// connection of the client's own role, with what the plan says riding
// ahead (a freshness check, a settle) and behind (a position capture) in
// implicit transactions of their own, and swallows their replies. Between
// transactions a client holds no server connection.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Consistency is what a client's reads are promised.
type Consistency uint8

const (
	// Global: a read sees every write committed through the proxy before
	// it began, whichever client connection made it, as well as its own
	// connection's writes and reads (read-your-writes, monotonic reads).
	Global Consistency = iota
	// Connection: each client connection is a session of its own.
	Connection
)

// String is "global" or "connection".
func (c Consistency) String() string {
	if c == Connection {
		return "connection"
	}
	return "global"
}

// ParseConsistency reads "global" or "connection".
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "global", "":
		return Global, nil
	case "connection":
		return Connection, nil
	}
	return 0, fmt.Errorf("consistency %q: want global or connection", s)
}

// Config is what a Server needs.
type Config struct {
	// Engine routes; the Server does not close it.
	Engine *engine.Engine
	// Nodes has, for each of the engine's nodes (by topology.Node.Index),
	// how to reach it: host, port, TLS. The client's role, password,
	// database and startup parameters replace the rest.
	Nodes []*pgxpool.Config
	// TLS, if set, answers clients' SSLRequest; without it the proxy
	// refuses TLS.
	TLS *tls.Config
	// Consistency is what reads are promised (Global by default).
	Consistency Consistency
	// PoolSize bounds the server connections per node for each role and
	// database (default 20).
	PoolSize int
	// IdleTimeout closes server connections idle this long (default 5m).
	IdleTimeout time.Duration
	// LoopbackPasswords lets clients on loopback or a Unix socket send
	// their password without TLS. Elsewhere a password crosses only inside
	// TLS.
	LoopbackPasswords bool
	// Logger receives the proxy's log; default: none.
	Logger *slog.Logger
}

// Server accepts client connections.
type Server struct {
	cfg        Config
	engine     *engine.Engine
	classifier *classify.Classifier
	log        *slog.Logger
	pools      pools
	auth       authCache
	statements statements

	mu        sync.Mutex
	listeners []net.Listener
	sessions  map[*session]struct{}
	byKey     map[cancelKey]*session
	closing   atomic.Bool
	wg        sync.WaitGroup
}

// cancelKey is the BackendKeyData the proxy gives a client.
type cancelKey struct {
	pid    uint32
	secret uint32
}

var errProxyClosed = errors.New("switchyard proxy: shutting down")

// New returns a Server; Serve starts it.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("switchyard proxy: no engine")
	}
	if len(cfg.Nodes) != len(cfg.Engine.Nodes()) {
		return nil, fmt.Errorf("switchyard proxy: %d node configurations for %d nodes", len(cfg.Nodes), len(cfg.Engine.Nodes()))
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 20
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 5 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = cfg.Engine.Logger()
	}
	s := &Server{
		cfg:        cfg,
		engine:     cfg.Engine,
		classifier: cfg.Engine.Classifier(),
		log:        log,
		pools:      pools{base: cfg.Nodes, size: int32(cfg.PoolSize), idle: cfg.IdleTimeout},
		sessions:   map[*session]struct{}{},
		byKey:      map[cancelKey]*session{},
	}
	return s, nil
}

// NodeDown drops node n's idle server connections (the engine's OnDown).
func (s *Server) NodeDown(n *topology.Node) { s.pools.reset(n) }

// Serve accepts clients on l until Shutdown or Close.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return errProxyClosed
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	for {
		conn, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(conn)
		}()
	}
}

func (s *Server) shuttingDown() bool { return s.closing.Load() }

// Shutdown stops accepting clients, ends idle ones at once and the others
// as soon as their transaction ends, and waits for them until ctx ends;
// then it closes what is left. Server connections are closed at the end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for _, l := range s.listeners {
		l.Close()
	}
	idle := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		idle = append(idle, sess)
	}
	s.mu.Unlock()
	for _, sess := range idle {
		sess.endIfIdle()
	}
	var err error
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
		s.mu.Lock()
		for sess := range s.sessions {
			sess.conn.Close()
		}
		s.mu.Unlock()
		<-done
	}
	s.pools.close()
	return err
}

// Close ends every client at once.
func (s *Server) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s.Shutdown(ctx)
	return nil
}

// Sessions is the number of clients connected now.
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

// endIfIdle ends a session waiting for its client with nothing held.
func (sess *session) endIfIdle() {
	if !sess.wmu.TryLock() {
		return // busy: it ends itself after its round trip
	}
	defer sess.wmu.Unlock()
	if sess.idle {
		sess.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "the switchyard proxy is shutting down"})
		sess.flush()
		sess.conn.Close()
	}
}

func (s *Server) register(sess *session) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	for {
		var b [8]byte
		rand.Read(b[:])
		k := cancelKey{binary.BigEndian.Uint32(b[:4]) | 1, binary.BigEndian.Uint32(b[4:])}
		if _, taken := s.byKey[k]; !taken {
			sess.key = k
			s.byKey[k] = sess
			break
		}
	}
	s.sessions[sess] = struct{}{}
	return true
}

func (s *Server) forget(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.sessions, sess)
	delete(s.byKey, sess.key)
}

// cancel delivers a client's CancelRequest to the server running its
// query, if any.
func (s *Server) cancel(m *pgproto3.CancelRequest) {
	if len(m.SecretKey) != 4 {
		return
	}
	s.mu.Lock()
	sess := s.byKey[cancelKey{m.ProcessID, binary.BigEndian.Uint32(m.SecretKey)}]
	s.mu.Unlock()
	if sess == nil {
		return
	}
	sess.cancelMu.Lock()
	defer sess.cancelMu.Unlock()
	if b := sess.busy.Load(); b != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.conn.CancelRequest(ctx); err != nil {
			s.log.Debug("switchyard proxy: cancel request", "node", b.node.Name, "err", err)
		}
	}
}
