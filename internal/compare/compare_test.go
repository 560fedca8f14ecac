package compare

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, ms(i))
	}
	for _, tc := range []struct {
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{nil, 0.5, 0},
		{[]time.Duration{ms(7)}, 0.99, ms(7)},
		{[]time.Duration{ms(1), ms(2)}, 0.5, ms(1)},
		{[]time.Duration{ms(1), ms(2), ms(3)}, 0.5, ms(2)},
		{hundred, 0.5, ms(50)},
		{hundred, 0.99, ms(99)},
		{hundred, 1, ms(100)},
	} {
		if got := percentile(tc.sorted, tc.q); got != tc.want {
			t.Errorf("percentile(%d values, %v) = %v, want %v", len(tc.sorted), tc.q, got, tc.want)
		}
	}
}

func TestIsSelect(t *testing.T) {
	for sql, want := range map[string]bool{
		readSQL:                   true,
		"  select 1":              true,
		"SELECT":                  true,
		writeSQL:                  false,
		"WITH x AS (SELECT 1) ..": false, // what naive routers get wrong, one way
		"SELECT nextval('s')":     true,  // and the other
		"SEL":                     false,
	} {
		if got := isSelect(sql); got != want {
			t.Errorf("isSelect(%q) = %v", sql, got)
		}
	}
}

func TestWriteTable(t *testing.T) {
	var b strings.Builder
	err := WriteTable(&b, []Result{
		{Router: NaiveName, Reads: 12345, Stale: 2345, ReplicaReads: 12345, P50: 180 * time.Microsecond, P99: 12300 * time.Microsecond},
		{Router: SwitchyardName, Reads: 99, ReplicaReads: 33, P50: time.Millisecond, P99: 2 * time.Millisecond, Note: "a note"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `  router                  reads   stale reads  replica share  p50 read  p99 read
  naive (random replica)  12345  2345 (19.0%)         100.0%   0.18 ms   12.3 ms
  switchyard                 99      0 (0.0%)          33.3%   1.00 ms   2.00 ms

a note
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestWrap(t *testing.T) {
	got := wrap("aaa bbb ccc ddd", 7)
	if got != "aaa bbb\nccc ddd" {
		t.Errorf("wrap: %q", got)
	}
}

// TestRouters checks that the two hand-rolled routers do what they claim:
// naive reads only replicas; sticky reads the primary within its window
// after a write, and replicas otherwise.
func TestRouters(t *testing.T) {
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := Cluster{Primary: c.Primary().DSN()}
	for _, r := range c.Replicas() {
		cl.Replicas = append(cl.Replicas, r.DSN())
	}
	p, err := openPools(ctx, cl, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	if _, err := p.primary.Exec(ctx, `CREATE TABLE compare_counters
		(run int NOT NULL, id int NOT NULL, v int NOT NULL DEFAULT 0, PRIMARY KEY (run, id))`); err != nil {
		t.Fatal(err)
	}
	if err := prepare(ctx, p, 1, 1); err != nil {
		t.Fatal(err)
	}
	onReplica := func(s session) bool {
		t.Helper()
		_, rec, err := s.read(ctx, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	write := func(s session) {
		t.Helper()
		if _, err := s.write(ctx, 1, 1); err != nil {
			t.Fatal(err)
		}
	}

	n := (&naive{p}).newSession(ctx)
	write(n)
	for range 20 {
		if !onReplica(n) {
			t.Fatal("naive: a read went to the primary")
		}
	}

	const window = 300 * time.Millisecond
	s := (&sticky{p, window}).newSession(ctx)
	if !onReplica(s) {
		t.Error("sticky: a session that never wrote read the primary")
	}
	write(s)
	if onReplica(s) {
		t.Error("sticky: a read right after a write went to a replica")
	}
	time.Sleep(window)
	if !onReplica(s) {
		t.Errorf("sticky: a read %v after the last write still went to the primary", window)
	}
}
