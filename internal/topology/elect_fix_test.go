package topology

import (
	"testing"
	"time"
)

// After a split brain the old primary, writable on its old timeline, is
// kept out; it must stay out when the new primary misses a poll, or writes
// would go back to the timeline that lost.
func TestElectNeverGoesBackToAnOlderTimeline(t *testing.T) {
	c := newTestCluster(1)
	old, promoted := c.Nodes[0], c.Nodes[1]
	now := time.Now()
	c.Observe(old, Poll{Position: 1000, Timeline: 1, ReplayAge: -1}, now, now, discard)
	c.Observe(promoted, Poll{InRecovery: true, Position: 1000, ReplayAge: -1}, now, now, discard)
	c.Observe(promoted, Poll{Position: 2000, Timeline: 2, ReplayAge: -1}, now, now, discard)
	c.Observe(old, Poll{Position: 1100, Timeline: 1, ReplayAge: -1}, now, now, discard)
	if c.Primary() != promoted || old.Healthy() {
		t.Fatal("setup: the split brain")
	}
	// The new primary misses a poll, as the monitor records it.
	promoted.MarkDown(now)
	promoted.SetWritable(false)
	// The old one is polled meanwhile, still writable on timeline 1.
	later := now.Add(time.Second)
	c.Observe(old, Poll{Position: 1200, Timeline: 1, ReplayAge: -1}, later, later, discard)
	if c.Primary() != promoted {
		t.Fatalf("%s (timeline %d) is the primary again; %s is on timeline %d", c.Primary().Name, c.Primary().Timeline(), promoted.Name, promoted.Timeline())
	}
	if old.Healthy() {
		t.Error("the old primary is back in rotation")
	}
	// The new primary answers again.
	c.Observe(promoted, Poll{Position: 2100, Timeline: 2, ReplayAge: -1}, later, later, discard)
	if c.Primary() != promoted || !promoted.Healthy() {
		t.Error("the new primary is not back")
	}
}

// A primary that went through recovery (a restart) and is writable again
// on its timeline is the primary again, even while a node that was wrongly
// writable on the same timeline is out of rotation.
func TestElectKeepsPrimaryComingBack(t *testing.T) {
	c := newTestCluster(1)
	p, stray := c.Nodes[0], c.Nodes[1]
	now := time.Now()
	c.Observe(p, Poll{Position: 1000, Timeline: 3, ReplayAge: -1}, now, now, discard)
	c.Observe(stray, Poll{Position: 900, Timeline: 3, ReplayAge: -1}, now, now, discard)
	if c.Primary() != p || stray.Healthy() {
		t.Fatal("setup: the stray writable node")
	}
	c.Observe(p, Poll{InRecovery: true, Position: 1000, ReplayAge: -1}, now, now, discard)
	if p.Healthy() {
		t.Fatal("setup: a primary in recovery")
	}
	c.Observe(p, Poll{Position: 1100, Timeline: 3, ReplayAge: -1}, now, now, discard)
	if c.Primary() != p || !p.Healthy() {
		t.Fatalf("%s is the primary (healthy %v), %s healthy %v", c.Primary().Name, c.Primary().Healthy(), p.Name, p.Healthy())
	}
}
