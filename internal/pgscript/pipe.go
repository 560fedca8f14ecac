package pgscript

import (
	"io"
	"net"
	"os"
	"sync"
	"time"
)

// pipe returns the two ends of an in-memory connection. Unlike net.Pipe,
// writes are buffered (they never wait for the reader), as a socket's are:
// a client and a server that both write before they read (pgconn's
// asyncClose sends a CancelRequest and a Terminate while the server may
// be answering) do not block each other. It blocks only on sync.Cond, so
// that inside a testing/synctest bubble its waits are durable and
// deadlines follow the bubble's clock.
func pipe() (client, server net.Conn) {
	a, b := newPipeBuf(), newPipeBuf()
	return &pipeEnd{rd: a, wr: b}, &pipeEnd{rd: b, wr: a}
}

// pipeBuf is one direction of a pipe.
type pipeBuf struct {
	mu       sync.Mutex
	cond     *sync.Cond
	data     []byte
	eof      bool // the writing end closed
	gone     bool // the reading end closed
	deadline time.Time
	timer    *time.Timer
}

func newPipeBuf() *pipeBuf {
	b := &pipeBuf{}
	b.cond = sync.NewCond(&b.mu)
	return b
}

// setDeadline sets the reading end's deadline.
func (b *pipeBuf) setDeadline(t time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deadline = t
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if !t.IsZero() {
		if d := time.Until(t); d > 0 {
			b.timer = time.AfterFunc(d, func() {
				b.mu.Lock()
				b.cond.Broadcast()
				b.mu.Unlock()
			})
		}
	}
	b.cond.Broadcast()
}

func (b *pipeBuf) expired() bool { return !b.deadline.IsZero() && !time.Now().Before(b.deadline) }

type pipeEnd struct {
	rd, wr *pipeBuf

	mu            sync.Mutex
	closed        bool
	writeDeadline time.Time
}

func (p *pipeEnd) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

func (p *pipeEnd) Read(out []byte) (int, error) {
	b := p.rd
	b.mu.Lock()
	defer b.mu.Unlock()
	for {
		switch {
		case b.gone:
			return 0, net.ErrClosed
		case len(b.data) > 0:
			n := copy(out, b.data)
			b.data = b.data[n:]
			return n, nil
		case b.eof:
			return 0, io.EOF
		case b.expired():
			return 0, os.ErrDeadlineExceeded
		}
		b.cond.Wait()
	}
}

func (p *pipeEnd) Write(in []byte) (int, error) {
	p.mu.Lock()
	closed, dl := p.closed, p.writeDeadline
	p.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	if !dl.IsZero() && !time.Now().Before(dl) {
		return 0, os.ErrDeadlineExceeded
	}
	b := p.wr
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone {
		return 0, io.ErrClosedPipe
	}
	b.data = append(b.data, in...)
	b.cond.Broadcast()
	return len(in), nil
}

func (p *pipeEnd) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	for _, x := range []struct {
		b    *pipeBuf
		mark func(*pipeBuf)
	}{
		{p.rd, func(b *pipeBuf) { b.gone = true }},
		{p.wr, func(b *pipeBuf) { b.eof = true }},
	} {
		x.b.mu.Lock()
		x.mark(x.b)
		if x.b.timer != nil && x.b == p.rd {
			x.b.timer.Stop()
		}
		x.b.cond.Broadcast()
		x.b.mu.Unlock()
	}
	return nil
}

func (p *pipeEnd) LocalAddr() net.Addr  { return pipeAddr{} }
func (p *pipeEnd) RemoteAddr() net.Addr { return pipeAddr{} }

func (p *pipeEnd) SetDeadline(t time.Time) error {
	p.SetWriteDeadline(t)
	return p.SetReadDeadline(t)
}

func (p *pipeEnd) SetReadDeadline(t time.Time) error {
	if p.isClosed() {
		return net.ErrClosed
	}
	p.rd.setDeadline(t)
	return nil
}

func (p *pipeEnd) SetWriteDeadline(t time.Time) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	p.writeDeadline = t
	return nil
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pgscript" }
func (pipeAddr) String() string  { return "pgscript" }
