package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// clientReader frames the client's byte stream into protocol messages. It
// reads from the connection into a buffer of its own and hands out each
// message's bytes, as the client sent them, without decoding them (the
// proxy decodes, with pgproto3, only what it must understand, and passes
// the rest on unchanged). What it handed out stays valid until release,
// at the start of the next round trip.
//
// During startup pgproto3.Backend reads through it (Read), and is never
// given more than the message it is reading, so that whatever the client
// sent after it stays here for the session.
type clientReader struct {
	conn io.Reader
	buf  []byte
	r, w int // read and write positions in buf
	// held: buf[held:r] was handed out since release and must not move.
	held int
	// untyped: Read frames startup packets (no type byte).
	untyped bool
	// frameLeft is what Read has yet to give of the message it is in.
	frameLeft int
}

const (
	clientBufSize = 8 << 10
	// clientBufKeep: a buffer that grew past this for a large message is
	// let go once it is empty.
	clientBufKeep = 256 << 10
)

func newClientReader(conn io.Reader) *clientReader {
	return &clientReader{conn: conn, untyped: true}
}

// buffered is how many bytes the client sent that were not handed out yet.
func (c *clientReader) buffered() int { return c.w - c.r }

// release lets go of what was handed out so far.
func (c *clientReader) release() {
	c.held = c.r
	if c.r == c.w {
		if cap(c.buf) > clientBufKeep {
			c.buf = nil
		}
		c.r, c.w, c.held = 0, 0, 0
	}
}

// fill makes sure n bytes are buffered at c.r.
func (c *clientReader) fill(n int) error {
	for c.w-c.r < n {
		if len(c.buf)-c.r < n || len(c.buf)-c.w < 512 {
			c.grow(n)
		}
		m, err := c.conn.Read(c.buf[c.w:])
		c.w += m
		if err != nil {
			if c.w-c.r >= n {
				return nil
			}
			if err == io.EOF && c.w > c.r {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// grow makes room for n bytes at c.r: in place when nothing is held,
// else in a new buffer (what was handed out stays where it is).
func (c *clientReader) grow(n int) {
	unread := c.w - c.r
	need := max(n, unread) + 512
	if c.held == c.r && len(c.buf) >= need {
		copy(c.buf, c.buf[c.r:c.w])
		c.r, c.w, c.held = 0, unread, 0
		return
	}
	nb := make([]byte, max(clientBufSize, need, 2*len(c.buf)))
	copy(nb, c.buf[c.r:c.w])
	c.buf, c.r, c.w, c.held = nb, 0, unread, 0
}

// next returns the client's next message (after startup): its type, its
// body, and the whole message as sent.
func (c *clientReader) next() (typ byte, body, raw []byte, err error) {
	if err := c.fill(5); err != nil {
		return 0, nil, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(c.buf[c.r+1:])))
	if n < 4 {
		return 0, nil, nil, fmt.Errorf("invalid message length: %d", n)
	}
	if n > maxClientMessage {
		return 0, nil, nil, fmt.Errorf("message of %d bytes: more than %d", n, maxClientMessage)
	}
	if err := c.fill(1 + n); err != nil {
		return 0, nil, nil, err
	}
	start := c.r
	c.r += 1 + n
	raw = c.buf[start:c.r:c.r]
	return raw[0], raw[5:], raw, nil
}

// maxClientMessage bounds a client's message (PostgreSQL's own bound on
// what it reads is 1 GB).
const maxClientMessage = 1 << 30

// Read gives pgproto3.Backend the bytes of the message it is reading, and
// no more.
func (c *clientReader) Read(p []byte) (int, error) {
	if c.frameLeft == 0 {
		hdr := 5
		if c.untyped {
			hdr = 4
		}
		if err := c.fill(hdr); err != nil {
			return 0, err
		}
		n := int(int32(binary.BigEndian.Uint32(c.buf[c.r+hdr-4:])))
		c.frameLeft = hdr - 4 + max(n, 4) // a bad length: the Backend reports it
	}
	if c.r == c.w {
		if err := c.fill(1); err != nil {
			return 0, err
		}
	}
	n := copy(p[:min(len(p), c.frameLeft)], c.buf[c.r:c.w])
	c.r += n
	c.frameLeft -= n
	c.release()
	return n, nil
}

// rawMsg is a message passed on as the client sent it: pgproto3.Frontend
// sends it unchanged.
type rawMsg struct{ b []byte }

func (*rawMsg) Frontend() {}

func (m *rawMsg) Encode(dst []byte) ([]byte, error) { return append(dst, m.b...), nil }

func (m *rawMsg) Decode([]byte) error {
	return errors.New("switchyard proxy: a raw message is not decoded")
}

var _ pgproto3.FrontendMessage = (*rawMsg)(nil)

// serverConn is a server connection's socket as pgconn uses it. A write
// the proxy arms (the round trip it sends) waits, once written, until the
// server's answer can be read: the read that follows then finds it,
// instead of trying once before the answer came and trying again after
// the poller said it had (one system call fewer per round trip). It is
// what pgbouncer's event loop does.
type serverConn struct {
	net.Conn
	sock    *sockIO       // nil: TLS, or not a socket
	reading atomic.Int32  // reads under way (pgconn's background reader may read)
	armed   atomic.Bool   // the next Write waits for the answer
	reader  *serverReader // what the connection's pgproto3.Frontend reads through
	// The armed write under way.
	wp        []byte
	wn        int
	werr      error
	writeWait func(uintptr) bool
}

// wrapServerConn is pgconn.Config.AfterNetConnect for server connections.
func wrapServerConn(_ context.Context, _ *pgconn.Config, conn net.Conn) (net.Conn, error) {
	return &serverConn{Conn: conn, sock: newSockIO(conn)}, nil
}

func (c *serverConn) Read(p []byte) (int, error) {
	c.reading.Add(1)
	var n int
	var err error
	if c.sock != nil {
		n, err = c.sock.Read(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	c.reading.Add(-1)
	return n, err
}

func (c *serverConn) Write(p []byte) (int, error) {
	if !c.armed.Swap(false) || c.sock == nil || c.reading.Load() != 0 {
		// Not armed; or pgconn's background reader reads (it would take
		// the answer the wait is for).
		if c.sock != nil {
			return c.sock.Write(p)
		}
		return c.Conn.Write(p)
	}
	// The poller's readiness is reset before the first call of
	// writeWait, so an answer, which can only come after the write, is
	// never missed.
	c.wp, c.wn, c.werr = p, 0, nil
	if c.writeWait == nil {
		c.writeWait = c.writeThenWait
	}
	err := c.sock.raw.Read(c.writeWait)
	written, werr := c.wn, c.werr
	c.wp, c.werr = nil, nil
	if werr == syscall.EAGAIN {
		werr = nil
	}
	if werr == nil && err != nil && written < len(p) {
		werr = err
	}
	// Written, and the wait failed (the connection closed, a deadline):
	// the read that follows says so.
	if werr != nil {
		return written, &net.OpError{Op: "write", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: werr}
	}
	if written < len(p) {
		n, err := c.sock.Write(p[written:])
		return written + n, err
	}
	return written, nil
}

// writeThenWait, called by RawConn.Read, writes c.wp and then has the
// poller wait until the server's answer can be read.
func (c *serverConn) writeThenWait(fd uintptr) bool {
	if c.werr != nil || c.wn == len(c.wp) && c.wn > 0 {
		return true // written: the answer can be read
	}
	for c.wn < len(c.wp) {
		n, e := rawWrite(fd, c.wp[c.wn:])
		switch {
		case e != 0:
			c.werr = e
			return true // EAGAIN (a full socket buffer) included: the rest the usual way
		case n == 0:
			c.werr = io.ErrShortWrite
			return true
		}
		c.wn += n
	}
	return len(c.wp) == 0
}

// armWrite makes the connection's next write wait for the server's answer.
func armWrite(conn net.Conn) {
	if c, ok := conn.(*serverConn); ok && c.sock != nil {
		c.armed.Store(true)
	}
}

// disarmWrite undoes armWrite, if the write did not come.
func disarmWrite(conn net.Conn) {
	if c, ok := conn.(*serverConn); ok {
		c.armed.Store(false)
	}
}

// serverReader sits between pgconn's reader and its pgproto3.Frontend on a
// server connection. The Frontend reads through it a message at a time,
// never more, so that the proxy can take the messages it passes on
// unchanged straight from the buffer (peek, skip) between them, without
// decoding and encoding them again; pgconn still reads, and keeps its
// state by, every message the proxy does not take so (ReadyForQuery,
// ParameterStatus, errors, notices...).
type serverReader struct {
	r      io.Reader
	buf    []byte
	rp, wp int
	// frameLeft is what Read has yet to give of the message the Frontend
	// is reading.
	frameLeft int
}

const serverBufSize = 8 << 10

// buildServerFrontend is pgconn.Config.BuildFrontend for server
// connections: the connection (a serverConn) keeps its serverReader.
func buildServerFrontend(r io.Reader, w io.Writer) *pgproto3.Frontend {
	sr := &serverReader{r: r}
	if c, ok := w.(*serverConn); ok {
		c.reader = sr
	}
	return pgproto3.NewFrontend(sr, w)
}

// fill makes sure n bytes are buffered at s.rp.
func (s *serverReader) fill(n int) error {
	for s.wp-s.rp < n {
		if len(s.buf)-s.rp < n || len(s.buf)-s.wp < 512 {
			// Nothing handed out is kept: compact, or grow.
			unread := s.wp - s.rp
			if need := max(n, unread) + 512; len(s.buf) < need {
				nb := make([]byte, max(serverBufSize, need, 2*len(s.buf)))
				copy(nb, s.buf[s.rp:s.wp])
				s.buf = nb
			} else {
				copy(s.buf, s.buf[s.rp:s.wp])
			}
			s.rp, s.wp = 0, unread
		}
		m, err := s.r.Read(s.buf[s.wp:])
		s.wp += m
		if err != nil {
			if s.wp-s.rp >= n {
				return nil
			}
			return err
		}
	}
	return nil
}

// Read gives the Frontend the bytes of the message it is reading, and no
// more.
func (s *serverReader) Read(p []byte) (int, error) {
	if s.frameLeft == 0 {
		if err := s.fill(5); err != nil {
			return 0, err
		}
		s.frameLeft = 1 + max(int(int32(binary.BigEndian.Uint32(s.buf[s.rp+1:]))), 4)
	}
	if s.rp == s.wp {
		if err := s.fill(1); err != nil {
			return 0, err
		}
	}
	n := copy(p[:min(len(p), s.frameLeft)], s.buf[s.rp:s.wp])
	s.rp += n
	s.frameLeft -= n
	s.shrink()
	return n, nil
}

// peek returns the server's next message, whole, and leaves it there; ok
// is false (and nothing read) if it is larger than limit or the Frontend
// is in the middle of a message.
func (s *serverReader) peek(limit int) (typ byte, msg []byte, ok bool, err error) {
	if s.frameLeft != 0 {
		return 0, nil, false, nil
	}
	if err := s.fill(5); err != nil {
		return 0, nil, false, err
	}
	n := int(int32(binary.BigEndian.Uint32(s.buf[s.rp+1:])))
	if n < 4 || 1+n > limit {
		return s.buf[s.rp], nil, false, nil
	}
	if err := s.fill(1 + n); err != nil {
		return 0, nil, false, err
	}
	return s.buf[s.rp], s.buf[s.rp : s.rp+1+n : s.rp+1+n], true, nil
}

// skip consumes the n bytes peek returned.
func (s *serverReader) skip(n int) {
	s.rp += n
	s.shrink()
}

// shrink lets go of a buffer that grew for a large message, once empty.
func (s *serverReader) shrink() {
	if s.rp == s.wp {
		s.rp, s.wp = 0, 0
		if len(s.buf) > 256<<10 {
			s.buf = nil
		}
	}
}

// Reads and writes on the proxy's sockets (TCP or Unix, never TLS) are
// made as raw system calls inside the poller's RawConn: the sockets are
// non-blocking, so a call never blocks, and the Go scheduler need not
// hand the proxy's processor to another thread while it runs (which it
// does to a call it sees outlast a tick of its monitor, as a write that
// wakes the receiver often does on a busy machine: two threads woken and
// put to sleep again). A call that would block waits in the poller as
// net.Conn's own would.

// rawRead reads into p from a non-blocking socket.
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// rawWrite writes p to a non-blocking socket.
func rawWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if e != syscall.EINTR {
			return int(n), e
		}
	}
}

// sockIO reads and writes a socket's RawConn with raw system calls. Its
// functions are made once per connection, so that a call allocates
// nothing; a read and a write may run at once, not two of either.
type sockIO struct {
	raw  syscall.RawConn
	conn net.Conn
	// The read under way.
	rp    []byte
	rn    int
	rerr  syscall.Errno
	readF func(uintptr) bool
	// The write under way.
	wp     []byte
	wn     int
	werr   syscall.Errno
	writeF func(uintptr) bool
}

// newSockIO returns conn's sockIO, or nil if conn is no socket (TLS).
func newSockIO(conn net.Conn) *sockIO {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &sockIO{raw: raw, conn: conn}
	s.readF = func(fd uintptr) bool {
		n, e := rawRead(fd, s.rp)
		if e == syscall.EAGAIN {
			return false // wait in the poller
		}
		s.rn, s.rerr = max(n, 0), e
		return true
	}
	s.writeF = func(fd uintptr) bool {
		for len(s.wp) > 0 {
			n, e := rawWrite(fd, s.wp)
			if e == syscall.EAGAIN {
				return false // wait in the poller
			}
			if e != 0 {
				s.werr = e
				return true
			}
			s.wn += n
			s.wp = s.wp[n:]
		}
		return true
	}
	return s
}

// Read is net.Conn's Read.
func (s *sockIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rp, s.rn, s.rerr = p, 0, 0
	err := s.raw.Read(s.readF)
	n, e := s.rn, s.rerr
	s.rp = nil
	switch {
	case err != nil:
		return 0, err
	case e != 0:
		return 0, s.opError("read", os.NewSyscallError("read", e))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// Write is net.Conn's Write.
func (s *sockIO) Write(p []byte) (int, error) {
	s.wp, s.wn, s.werr = p, 0, 0
	err := s.raw.Write(s.writeF)
	n, e := s.wn, s.werr
	s.wp = nil
	switch {
	case err != nil:
		return n, err
	case e != 0:
		return n, s.opError("write", os.NewSyscallError("write", e))
	}
	return n, nil
}

func (s *sockIO) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: s.conn.LocalAddr().Network(), Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}
