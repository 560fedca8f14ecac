package switchyardtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Relay is a TCP relay for tests of failures that do not announce
// themselves: a slow link, a hung server, a network partition, a reset. It
// listens on a loopback port and forwards each connection it accepts to its
// target; its faults apply at once, to open connections as well as new ones.
// Its methods are safe for concurrent use.
//
// A relay made by Node.NewRelay sits in front of a lab node; DSN connects
// through it:
//
//	r := lab.Primary().NewRelay(t)
//	db := openDB(r.DSN())
//	r.Blackhole() // the primary seems to hang: queries wait for their deadline
//	r.Heal()      // held data flows again
type Relay struct {
	ln     net.Listener
	target func() string // where to dial, asked at each connection
	dsn    func(addr string) string

	mu      sync.Mutex
	faults  relayFaults
	changed chan struct{} // closed, and replaced, at each change of faults
	conns   map[*relayConn]struct{}
	closed  bool

	wg        sync.WaitGroup // every goroutine of the relay
	closeOnce sync.Once
	closeErr  error
}

type relayFaults struct {
	latency   time.Duration
	bandwidth int // bytes per second per direction; 0: unlimited
	blackhole bool
	refuse    bool
}

// StartRelay starts a relay on a free port of 127.0.0.1 that forwards each
// connection it accepts to target (host:port). Close stops it.
func StartRelay(target string) (*Relay, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("switchyardtest: relay target %q: %w", target, err)
	}
	return startRelay(func() string { return target }, nil)
}

// NewRelay starts a relay in front of node n for a test and closes it when
// the test ends; it fails the test if the relay cannot start. The relay
// dials the node's port at each new connection, so it follows the node
// across restarts.
func (n *Node) NewRelay(tb TB) *Relay {
	tb.Helper()
	r, err := startRelay(func() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.Port())) }, dsnFor)
	if err != nil {
		tb.Fatalf("%v", err)
		return nil
	}
	tb.Cleanup(func() { r.Close() })
	return r
}

func startRelay(target func() string, dsn func(string) string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("switchyardtest: relay: %w", err)
	}
	r := &Relay{ln: ln, target: target, dsn: dsn, changed: make(chan struct{}), conns: map[*relayConn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the relay's address, 127.0.0.1:port.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Port is the relay's TCP port on 127.0.0.1.
func (r *Relay) Port() int { return r.ln.Addr().(*net.TCPAddr).Port }

// DSN is, for a relay made by Node.NewRelay, the node's DSN with the
// relay's address in place of the node's; for a relay made by StartRelay,
// which knows nothing of what it forwards, it is "".
func (r *Relay) DSN() string {
	if r.dsn == nil {
		return ""
	}
	return r.dsn(r.Addr())
}

// SetLatency delays what the server sends: each chunk reaches the client d
// after the relay read it, so each request and reply round trip takes d
// longer. It applies to open connections too (data already on its way is
// delivered d after it was read); 0 removes the delay.
func (r *Relay) SetLatency(d time.Duration) {
	if d < 0 {
		d = 0
	}
	r.update(func(f *relayFaults) { f.latency = d })
}

// SetBandwidth limits each connection to bytesPerSecond in each direction;
// 0 (or less) removes the limit.
func (r *Relay) SetBandwidth(bytesPerSecond int) {
	if bytesPerSecond < 0 {
		bytesPerSecond = 0
	}
	r.update(func(f *relayFaults) { f.bandwidth = bytesPerSecond })
}

// Blackhole makes the relay a partition or a frozen peer: open connections
// stop moving data both ways, and new connections are accepted but get
// nothing. Nothing is dropped or closed: the relay stops reading, so the
// kernel's buffers fill and the senders block, and what it holds flows
// again at Heal. A client notices only through its own timeouts.
func (r *Relay) Blackhole() { r.update(func(f *relayFaults) { f.blackhole = true }) }

// RefuseNew, while on, closes each new connection as soon as it is
// accepted, with a reset; open connections are left alone.
func (r *Relay) RefuseNew(on bool) { r.update(func(f *relayFaults) { f.refuse = on }) }

// Heal removes every fault (latency, bandwidth, blackhole, refusal): what
// was held flows again and new connections are forwarded.
func (r *Relay) Heal() { r.update(func(f *relayFaults) { *f = relayFaults{} }) }

// ResetAll resets every open connection, on both sides: the client and the
// server each see a TCP reset (SO_LINGER 0), as when a middlebox or a
// restarted peer drops the connection. The relay keeps accepting.
func (r *Relay) ResetAll() {
	for _, c := range r.openConns() {
		c.abort(true)
	}
}

// Connections is the number of connections open through the relay now,
// including those a blackhole holds before they reach the server.
func (r *Relay) Connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Close stops listening, closes every connection, and returns once every
// goroutine of the relay has ended. It is safe to call more than once.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		close(r.changed) // wakes every waiter; they see closed connections
		r.changed = make(chan struct{})
		r.mu.Unlock()
		if err := r.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			r.closeErr = fmt.Errorf("switchyardtest: relay: %w", err)
		}
		for _, c := range r.openConns() {
			c.abort(false)
		}
		r.wg.Wait()
	})
	return r.closeErr
}

func (r *Relay) update(change func(*relayFaults)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	change(&r.faults)
	close(r.changed)
	r.changed = make(chan struct{})
}

// state is the faults now and a channel closed when they next change.
func (r *Relay) state() (relayFaults, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.faults, r.changed
}

func (r *Relay) openConns() []*relayConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := make([]*relayConn, 0, len(r.conns))
	for c := range r.conns {
		cs = append(cs, c)
	}
	return cs
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		conn, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors or the like: try again shortly,
			// unless the relay closes meanwhile.
			r.mu.Lock()
			closed, changed := r.closed, r.changed
			r.mu.Unlock()
			if closed {
				return
			}
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-t.C:
			case <-changed:
			}
			t.Stop()
			continue
		}
		r.mu.Lock()
		if r.closed || r.faults.refuse {
			r.mu.Unlock()
			resetConn(conn)
			continue
		}
		c := &relayConn{relay: r, client: conn, done: make(chan struct{})}
		r.conns[c] = struct{}{}
		r.wg.Add(1)
		r.mu.Unlock()
		go c.serve()
	}
}

// resetConn closes conn with a reset (SO_LINGER 0) rather than a FIN.
func resetConn(conn net.Conn) {
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

// relayConn is one client connection and, once dialled, its server
// connection.
type relayConn struct {
	relay  *Relay
	client net.Conn

	mu         sync.Mutex
	server     net.Conn
	aborted    bool
	done       chan struct{} // closed by abort
	cancelDial context.CancelFunc
}

// abort closes both sides, with a reset if reset is set, and wakes every
// goroutine of the connection.
func (c *relayConn) abort(reset bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.aborted {
		return
	}
	c.aborted = true
	close(c.done)
	if c.cancelDial != nil {
		c.cancelDial()
	}
	for _, conn := range []net.Conn{c.client, c.server} {
		if conn == nil {
			continue
		}
		if reset {
			resetConn(conn)
		} else {
			conn.Close()
		}
	}
}

func (c *relayConn) serve() {
	r := c.relay
	defer func() {
		c.abort(false)
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
		r.wg.Done()
	}()
	// A connection accepted during a blackhole reaches nothing until Heal.
	if !c.waitFlowing() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.cancelDial = cancel // abort stops the dial
	c.mu.Unlock()
	var d net.Dialer
	server, err := d.DialContext(ctx, "tcp", r.target())
	cancel()
	if err != nil {
		c.abort(true) // the client sees what a refused connection would do
		return
	}
	c.mu.Lock()
	if c.aborted {
		c.mu.Unlock()
		server.Close()
		return
	}
	c.server = server
	c.mu.Unlock()

	up := &pipe{conn: c, src: c.client, dst: server, chunks: make(chan chunk, pipeChunks)}
	down := &pipe{conn: c, src: server, dst: c.client, delayed: true, chunks: make(chan chunk, pipeChunks)}
	var wg sync.WaitGroup
	for _, p := range []*pipe{up, down} {
		wg.Add(2)
		go func() { defer wg.Done(); p.read() }()
		go func() { defer wg.Done(); p.write() }()
	}
	wg.Wait()
}

// waitFlowing waits while the relay is blackholed; false if the connection
// was closed meanwhile.
func (c *relayConn) waitFlowing() bool {
	for {
		f, changed := c.relay.state()
		if !f.blackhole {
			select {
			case <-c.done:
				return false
			default:
				return true
			}
		}
		select {
		case <-changed:
		case <-c.done:
			return false
		}
	}
}

const (
	pipeChunk  = 32 << 10 // bytes read at once
	pipeChunks = 8        // chunks a pipe holds between reading and writing
)

var chunkPool = sync.Pool{New: func() any { return new([pipeChunk]byte) }}

// pipe moves one direction of a connection: a reader goroutine reads
// chunks from src into a small queue, and a writer goroutine delivers them
// to dst when latency, bandwidth and blackhole allow.
type pipe struct {
	conn     *relayConn
	src, dst net.Conn
	delayed  bool // latency applies (server to client)
	chunks   chan chunk
	next     time.Time // bandwidth: when the next byte may go
}

type chunk struct {
	buf  *[pipeChunk]byte
	n    int
	read time.Time
	err  error // the read ended with err (io.EOF: the sender closed)
}

func (p *pipe) read() {
	for {
		if !p.conn.waitFlowing() {
			return
		}
		buf := chunkPool.Get().(*[pipeChunk]byte)
		n, err := p.src.Read(buf[:])
		if n > 0 {
			if !p.send(chunk{buf: buf, n: n, read: time.Now()}) {
				return
			}
		} else {
			chunkPool.Put(buf)
		}
		if err != nil {
			p.send(chunk{err: err, read: time.Now()})
			return
		}
	}
}

func (p *pipe) send(c chunk) bool {
	select {
	case p.chunks <- c:
		return true
	case <-p.conn.done:
		return false
	}
}

func (p *pipe) write() {
	for {
		var c chunk
		select {
		case c = <-p.chunks:
		case <-p.conn.done:
			return
		}
		if c.err != nil {
			if !p.wait(c) {
				return
			}
			if errors.Is(c.err, io.EOF) {
				// The sender closed its side: pass the FIN on, and let
				// the other direction finish.
				if cw, ok := p.dst.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
					return
				}
			}
			// A reset or another failure: the other side sees a reset.
			p.conn.abort(true)
			return
		}
		ok := p.deliver(c)
		chunkPool.Put(c.buf)
		if !ok {
			return
		}
	}
}

// wait waits until c may be delivered as far as latency and blackhole
// go; false if the connection closed.
func (p *pipe) wait(c chunk) bool {
	for {
		f, changed := p.conn.relay.state()
		var until time.Time
		switch {
		case f.blackhole:
			until = time.Time{} // until the faults change
		case p.delayed && f.latency > 0 && time.Until(c.read.Add(f.latency)) > 0:
			until = c.read.Add(f.latency)
		default:
			return true
		}
		if !p.sleep(until, changed) {
			return false
		}
	}
}

// deliver writes the chunk to dst once its latency has passed, at most at
// the bandwidth limit, holding it while the relay is blackholed.
func (p *pipe) deliver(c chunk) bool {
	data := c.buf[:c.n]
	for len(data) > 0 {
		if !p.wait(c) {
			return false
		}
		f, changed := p.conn.relay.state()
		if f.blackhole {
			continue
		}
		n := len(data)
		if f.bandwidth > 0 {
			now := time.Now()
			if now.Before(p.next) {
				if !p.sleep(p.next, changed) {
					return false
				}
				continue
			}
			// Send a fiftieth of a second's worth at a time, so that a
			// limit changed meanwhile applies soon.
			n = min(n, max(1, f.bandwidth/50))
			p.next = now.Add(time.Duration(n) * time.Second / time.Duration(f.bandwidth))
		}
		if _, err := p.dst.Write(data[:n]); err != nil {
			p.conn.abort(true)
			return false
		}
		data = data[n:]
	}
	return true
}

// sleep waits until until (zero: indefinitely), a change of the faults, or
// the end of the connection; false for the last.
func (p *pipe) sleep(until time.Time, changed <-chan struct{}) bool {
	var timeout <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
		return true
	case <-changed:
		return true
	case <-p.conn.done:
		return false
	}
}
