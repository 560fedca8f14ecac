package engine

import (
	"testing"
	"time"
)

// served plans a read with o, begins it and serves it.
func served(e *Engine, o *Options) (*Plan, Seen) {
	p := read(e, o)
	p.Begin()
	p.Served()
	p.Finish(nil)
	return p, p.Seen()
}

func TestSeenFloor(t *testing.T) {
	e := newEngine(t, 1, Config{})
	r := replica(e, 1)
	now := time.Now()
	at(r, 500, now)
	s := NewSession()
	setPos(s, cluster(e), 300, now.Add(-time.Second))
	p, seen := served(e, &Options{Session: s})
	if p.Node != r || seen.Floor != 500 || seen.Node != r || seen.Cluster != cluster(e) || seen.At == 0 {
		t.Fatalf("replica read: node %s, seen %+v; want floor 500 (the replica's polled position)", p.Node.Name, seen)
	}
	// On the primary, the session's position only: the primary's polled
	// position may cover commits not visible yet.
	at(primary(e), 900, now)
	_, seen = served(e, &Options{Primary: true})
	if seen.Floor != 0 || seen.Node != primary(e) {
		t.Errorf("primary read of a session at 0: seen %+v", seen)
	}
	// A checked read: the check's position.
	e2, s2 := checkedSetup(t)
	p, seen = served(e2, &Options{Session: s2})
	if p.Before != BeforeCheck || seen.Floor != 200 {
		t.Errorf("checked read: before %v, floor %d; want the check's 200", p.Before, seen.Floor)
	}
	// A stale-ok read promises nothing but the replica's own position.
	e3 := newEngine(t, 1, Config{})
	cluster(e3).RecordPrimary(100, time.Now()) // the primary polled: staleness has a bound
	at(replica(e3, 1), 100, time.Now())
	replica(e3, 1).SetLag(time.Millisecond)
	s3 := NewSession()
	setPos(s3, cluster(e3), 400, time.Now())
	p, seen = served(e3, &Options{Session: s3, MaxStaleness: time.Hour})
	if p.Reason != ReasonStaleOK || seen.Floor != 100 {
		t.Errorf("stale-ok read: reason %v, floor %d; want stale_ok, 100", p.Reason, seen.Floor)
	}
}

func TestSeenIsCurrent(t *testing.T) {
	e := newEngine(t, 2, Config{})
	now := time.Now()
	r1, r2 := replica(e, 1), replica(e, 2)
	at(r1, 500, now)
	at(r2, 500, now)
	c := cluster(e)

	t.Run("DB-wide session", func(t *testing.T) {
		e := newEngine(t, 1, Config{})
		at(replica(e, 1), 500, time.Now())
		_, seen := served(e, nil)
		if !e.SeenIsCurrent(nil, seen) {
			t.Fatal("not current right after the read")
		}
		// Other reads change nothing: the DB-wide session promises
		// read-your-writes only.
		served(e, nil)
		if !e.SeenIsCurrent(nil, seen) {
			t.Error("another read made it stale")
		}
		var w Plan
		e.PlanWrite(&w, nil, cluster(e))
		w.Begin()
		if e.SeenIsCurrent(nil, seen) {
			t.Error("current while a write is in flight")
		}
		w.Finish(nil)
		if e.SeenIsCurrent(nil, seen) {
			t.Error("current after a write its position does not cover")
		}
		// The capture after the write moves the position past the read.
		p := read(e, nil)
		p.Begin()
		p.Captured(600)
		p.Finish(nil)
		if e.SeenIsCurrent(nil, seen) {
			t.Error("current after the position passed it")
		}
		if e.SeenIsCurrent(&Options{Primary: true}, seen) || e.SeenIsCurrent(&Options{Latest: true}, seen) {
			t.Error("current for a read that must go to the server")
		}
	})

	t.Run("explicit session", func(t *testing.T) {
		s := NewSession()
		o := &Options{Session: s}
		p, seen := served(e, o)
		if !e.SeenIsCurrent(o, seen) {
			t.Fatal("not current right after the read")
		}
		// Another read of the session, later, may have seen more.
		time.Sleep(time.Microsecond)
		p2 := read(e, o)
		if p2.Node != p.Node {
			t.Fatalf("the pin moved: %s then %s", p.Node.Name, p2.Node.Name)
		}
		p2.Begin()
		p2.Served()
		p2.Finish(nil)
		if e.SeenIsCurrent(o, seen) {
			t.Error("current after a later read of the session")
		}
		// Once the monitor has polled the node again and found it where
		// it was, the pin resolves into a position the read covers.
		at(p.Node, 500, time.Now())
		served(e, o)
		_, seen = served(e, o)
		at(seen.Node, 500, time.Now())
		read(e, o) // resolves the pin
		if !e.SeenIsCurrent(o, seen) {
			t.Error("not current after the pin resolved at the read's own position")
		}
		// A replica that replayed more since: the position passes it.
		at(seen.Node, 700, time.Now())
		served(e, o)
		at(seen.Node, 700, time.Now().Add(time.Millisecond))
		read(e, o)
		if e.SeenIsCurrent(o, seen) {
			t.Error("current after the session's position passed the read")
		}
		// Another session that has read nothing may have it.
		if !e.SeenIsCurrent(&Options{Session: NewSession()}, seen) {
			t.Error("not current for a session that has seen nothing")
		}
		other := NewSession()
		setPos(other, c, 1000, time.Now())
		if e.SeenIsCurrent(&Options{Session: other}, seen) {
			t.Error("current for a session further along")
		}
	})
}
