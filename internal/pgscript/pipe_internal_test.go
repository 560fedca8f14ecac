package pgscript

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func TestPipe(t *testing.T) {
	a, b := pipe()
	// Writes never wait for the reader.
	for _, s := range []string{"one", "two"} {
		if n, err := a.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatal(n, err)
		}
	}
	if _, err := b.Write([]byte("back")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if n, err := b.Read(buf); string(buf[:n]) != "onet" || err != nil {
		t.Fatalf("%q %v", buf[:n], err)
	}
	if n, err := io.ReadFull(b, buf[:2]); string(buf[:n]) != "wo" || err != nil {
		t.Fatalf("%q %v", buf[:n], err)
	}
	if n, err := a.Read(buf); string(buf[:n]) != "back" || err != nil {
		t.Fatalf("%q %v", buf[:n], err)
	}
	// Deadlines: a blocked read ends at its deadline, and reads again
	// once it is cleared.
	start := time.Now() // before the deadline is set: a busy machine may pause between the two
	b.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	var ne net.Error
	if _, err := b.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) < 10*time.Millisecond {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
	b.SetDeadline(time.Time{})
	done := make(chan error)
	go func() { _, err := b.Read(buf); done <- err }()
	b.SetReadDeadline(time.Now().Add(time.Hour))
	a.Write([]byte("x"))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.SetWriteDeadline(time.Unix(1, 0))
	if _, err := a.Write([]byte("late")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after its deadline: %v", err)
	}
	a.SetWriteDeadline(time.Time{})
	// Close: the peer reads what was written, then EOF; writes to the
	// closed end's peer fail; the closed end fails.
	a.Write([]byte("last"))
	a.Close()
	a.Close()
	if n, err := b.Read(buf); string(buf[:n]) != "last" || err != nil {
		t.Fatalf("%q %v", buf[:n], err)
	}
	if _, err := b.Read(buf); err != io.EOF {
		t.Fatalf("after close: %v", err)
	}
	if _, err := b.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("write to a closed peer: %v", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed end: %v", err)
	}
	if _, err := a.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read on a closed end: %v", err)
	}
	if a.SetReadDeadline(time.Now()) == nil || a.SetWriteDeadline(time.Now()) == nil {
		t.Error("deadlines on a closed end")
	}
	if a.LocalAddr().Network() != "pgscript" || a.RemoteAddr().String() != "pgscript" {
		t.Error("addrs")
	}
}
