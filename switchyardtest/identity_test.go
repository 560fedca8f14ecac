package switchyardtest_test

import (
	"context"
	"strings"
	"testing"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// systemID reads a node's system identifier as PostgreSQL reports it.
func systemID(t *testing.T, ctx context.Context, n *switchyardtest.Node) uint64 {
	t.Helper()
	conn := connectVia(t, ctx, n.DSN())
	defer conn.Close(ctx)
	var id int64
	if err := conn.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id); err != nil {
		t.Fatalf("%s: %v", n.Name(), err)
	}
	return uint64(id)
}

func TestEachLabHasItsOwnSystemIdentifier(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	cs := switchyardtest.NewClusters(t, switchyardtest.Options{Replicas: 2}, switchyardtest.Options{Replicas: 1})
	if len(cs) != 2 {
		t.Fatalf("%d clusters, want 2", len(cs))
	}
	a, b := cs[0], cs[1]
	if a.SystemIdentifier() == b.SystemIdentifier() || a.SystemIdentifier() == 0 {
		t.Fatalf("two labs have system identifiers %d and %d", a.SystemIdentifier(), b.SystemIdentifier())
	}
	for _, c := range cs {
		for _, n := range c.Nodes() {
			if got := systemID(t, ctx, n); got != c.SystemIdentifier() {
				t.Errorf("%s reports system identifier %d, its cluster %d", n.Name(), got, c.SystemIdentifier())
			}
		}
		withTable(t, ctx, c)
		target := insert(t, ctx, c, 1)
		for _, r := range c.Replicas() {
			if err := r.WaitReplay(ctx, target); err != nil {
				t.Fatal(err)
			}
			if !hasRow(t, ctx, r, 1) {
				t.Errorf("%s lacks the row", r.Name())
			}
		}
	}

	// Promotion keeps the identifier, and the other replica follows.
	if err := a.Primary().Stop(ctx); err != nil {
		t.Fatal(err)
	}
	next := a.Replicas()[0]
	if err := a.Promote(ctx, next); err != nil {
		t.Fatal(err)
	}
	target := insert(t, ctx, a, 2)
	follower := a.Replicas()[1]
	if err := follower.WaitReplay(ctx, target); err != nil {
		t.Fatal(err)
	}
	if !hasRow(t, ctx, follower, 2) {
		t.Error("the follower lacks the promoted primary's write")
	}
	for _, n := range []*switchyardtest.Node{next, follower} {
		if got := systemID(t, ctx, n); got != a.SystemIdentifier() {
			t.Errorf("%s after promotion: system identifier %d, want %d", n.Name(), got, a.SystemIdentifier())
		}
	}
	// A crash and restart of the new primary replays WAL that carries
	// the identifier too.
	if err := next.StopImmediate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := next.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := follower.WaitReplay(ctx, insert(t, ctx, a, 3)); err != nil {
		t.Fatal(err)
	}
}

func TestStartClustersIsAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	cs, err := switchyardtest.StartClusters(ctx, switchyardtest.Options{Replicas: 1}, switchyardtest.Options{Replicas: -1})
	if err == nil || cs != nil {
		for _, c := range cs {
			c.Close()
		}
		t.Fatalf("StartClusters with one bad option: %v, %v", cs, err)
	}
	if _, err := switchyardtest.StartClusters(ctx); err == nil {
		t.Error("StartClusters with nothing to start: no error")
	}
}

func TestEncodings(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	cs := switchyardtest.NewClusters(t,
		switchyardtest.Options{Replicas: 1, Encoding: "SQL_ASCII"},
		switchyardtest.Options{Replicas: 1, Encoding: "LATIN1"},
		switchyardtest.Options{Replicas: 1})
	for i, want := range []string{"SQL_ASCII", "LATIN1", "UTF8"} {
		c := cs[i]
		if err := c.Primary().Exec(ctx, "CREATE TABLE words (w text)"); err != nil {
			t.Fatal(err)
		}
		conn := connectVia(t, ctx, c.Primary().DSN()+"&client_encoding=UTF8")
		if _, err := conn.Exec(ctx, "INSERT INTO words VALUES ('café')"); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitReplicas(ctx); err != nil {
			t.Fatal(err)
		}
		for _, n := range c.Nodes() {
			if got := show(t, ctx, n, "server_encoding"); got != want {
				t.Errorf("%s lab, %s: server_encoding %s", want, n.Name(), got)
			}
			if got := show(t, ctx, n, "lc_collate"); got != "C" {
				t.Errorf("%s lab, %s: lc_collate %s, want C", want, n.Name(), got)
			}
			// pgx asks for no client_encoding, so its sessions take the
			// database's: ask for UTF8 for the server to convert.
			conn := connectVia(t, ctx, n.DSN()+"&client_encoding=UTF8")
			var w string
			var octets int
			if err := conn.QueryRow(ctx, "SELECT w, octet_length(w) FROM words").Scan(&w, &octets); err != nil {
				t.Fatal(err)
			}
			// LATIN1 stores é in one byte, UTF8 (and SQL_ASCII, which
			// keeps the client's bytes) in two.
			wantOctets := map[string]int{"SQL_ASCII": 5, "LATIN1": 4, "UTF8": 5}[want]
			if w != "café" || octets != wantOctets {
				t.Errorf("%s lab, %s: read %q (%d bytes), want \"café\" (%d)", want, n.Name(), w, octets, wantOctets)
			}
		}
	}
}

func TestUnknownLocale(t *testing.T) {
	switchyardtest.NeedServer(t)
	t.Parallel()
	ctx := ctxFor(t)
	c, err := switchyardtest.Start(ctx, switchyardtest.Options{Locale: "xx_NOWHERE.UTF-8"})
	if err == nil {
		c.Close()
		t.Fatal("a lab with a locale that does not exist started")
	}
	if !strings.Contains(err.Error(), "initdb") || !strings.Contains(err.Error(), "xx_NOWHERE") {
		t.Errorf("error %v does not say initdb refused the locale", err)
	}
}
