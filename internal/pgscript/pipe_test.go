package pgscript_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/pgscript"
)

func dialConfig(t *testing.T, s *pgscript.Server) *pgconn.Config {
	t.Helper()
	cfg, err := pgconn.ParseConfig(s.ConnString())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = s.Dial
	return cfg
}

func TestDialInMemory(t *testing.T) {
	// A listening server serves in-memory connections too.
	s := start(t, func(q pgscript.Query) pgscript.Reply { return pgscript.Row(q.SQL) })
	conn, err := pgconn.ConnectConfig(timeout(t), dialConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if r := conn.ExecParams(timeout(t), "hello", nil, nil, nil, nil).Read(); r.Err != nil || string(r.Rows[0][0]) != "hello" {
		t.Fatalf("%v %q", r.Err, r.Rows)
	}
	s.Close()
	if _, err := s.Dial(context.Background(), "tcp", "x"); err == nil {
		t.Error("dialed a closed server")
	}
}

// A server made by NewServer inside a synctest bubble runs on the bubble's
// clock: a query that hangs until a one-hour deadline ends at once.
func TestNewServerInBubble(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := pgscript.NewServer(pgscript.Config{Handler: func(q pgscript.Query) pgscript.Reply {
			if q.SQL == "hang" {
				return pgscript.Reply{Hang: true}
			}
			return pgscript.Row("ok")
		}})
		defer s.Close()
		if s.Port() != 5432 || s.Addr() != "127.0.0.1:5432" {
			t.Errorf("addr %s", s.Addr())
		}
		conn, err := pgconn.ConnectConfig(context.Background(), dialConfig(t, s))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		start := time.Now()
		_, err = conn.Exec(ctx, "hang").ReadAll()
		if !errors.Is(err, context.DeadlineExceeded) && !pgconn.Timeout(err) {
			t.Fatalf("%v", err)
		}
		if d := time.Since(start); d < time.Hour {
			t.Errorf("fake time: %v", d)
		}
		// The server sees the client gone.
		for s.Open() != 0 {
			synctest.Wait()
		}
		conn, err = pgconn.ConnectConfig(context.Background(), dialConfig(t, s))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if r := conn.ExecParams(context.Background(), "q", nil, nil, nil, nil).Read(); r.Err != nil || string(r.Rows[0][0]) != "ok" {
			t.Fatalf("%v %q", r.Err, r.Rows)
		}
	})
}
