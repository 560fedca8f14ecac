package engine

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard/internal/topology"
)

// A write planned before a failover goes to the new primary: Ready binds
// a plan bound for the primary to the primary of the moment.
func TestReadyFollowsNewPrimary(t *testing.T) {
	e := newEngine(t, 1, Config{})
	c := cluster(e)
	var w Plan
	e.PlanWrite(&w, nil, c)
	old := w.Node
	promote(c, replica(e, 1), 2)
	if c.Primary() != replica(e, 1) {
		t.Fatal("not promoted")
	}
	var ran *topology.Node
	if err := e.Do(context.Background(), &w, func(p *Plan) error { ran = p.Node; return nil }); err != nil {
		t.Fatal(err)
	}
	w.Finish(nil)
	if ran != replica(e, 1) {
		t.Errorf("the write ran on %s, the old primary (%s is the primary now)", ran.Name, c.Primary().Name)
	}
	_ = old

	// Likewise a read planned onto the primary, and a write sent again
	// after the old primary refused it.
	e = newEngine(t, 1, Config{})
	c = cluster(e)
	replica(e, 1).MarkDown(time.Now())
	p := read(e, nil)
	var nodes []*topology.Node
	err := e.Do(context.Background(), p, func(p *Plan) error {
		nodes = append(nodes, p.Node)
		if len(nodes) == 1 {
			promote(c, replica(e, 1), 2)
			return safeErr{}
		}
		return nil
	})
	if err != nil || len(nodes) != 2 || nodes[1] != c.Primary() {
		t.Errorf("%v: %v", err, nodes)
	}
}
