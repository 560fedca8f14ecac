package engine

import (
	"context"
	"testing"
	"time"
)

// A session that read from a replica settles its next read on the
// primary (BeforeSettle). Token() resolves the replica's pin, by asking
// the replica, by the monitor's polls, or by a capture on the primary,
// none of which settles anything: the token must still say that the
// session saw a replica, so that the restored session's first read on the
// primary settles.
func TestTokenKeepsSawReplica(t *testing.T) {
	for _, how := range []string{"replica asked", "replica polled since", "primary polled since", "dirty: captured"} {
		t.Run(how, func(t *testing.T) {
			e := newEngine(t, 1, Config{})
			l, _ := tokenServers(t, e, "0/9000", "0/7000")
			s := NewSession()
			o := &Options{Session: s}
			r := read(e, o)
			if r.Node != replica(e, 1) {
				t.Fatal("not on the replica")
			}
			r.Served()
			_, pinAt := s.find(cluster(e).Key()).pinState()
			switch how {
			case "replica polled since":
				at(replica(e, 1), 0x6000, time.Unix(0, pinAt+1))
			case "primary polled since":
				at(primary(e), 0x6000, time.Unix(0, pinAt+1))
			case "dirty: captured":
				var w Plan
				e.PlanWrite(&w, o, cluster(e))
				w.Begin()
				w.Finish(nil)
			}
			tok, err := e.Token(ctxT(t), o, l.lend)
			if err != nil {
				t.Fatal(err)
			}
			if got := decodeOne(t, tok); got.Flags&tokenSawReplica == 0 {
				t.Errorf("the token lost the replica read: %+v", got)
			}
			// The same session goes on: its next primary read settles.
			p := read(e, &Options{Session: s, Primary: true})
			if p.Before != BeforeSettle {
				t.Errorf("the session's next primary read does not settle")
			}
			// And so does the restored one's.
			restored, err := RestoreSession(tok)
			if err != nil {
				t.Fatal(err)
			}
			var q Plan
			e.PlanRead(context.Background(), &q, &Options{Session: restored, Primary: true}, cluster(e))
			if q.Before != BeforeSettle {
				t.Errorf("the restored session's first primary read does not settle")
			}
		})
	}
}
