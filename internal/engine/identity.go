package engine

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/topology"
)

// Clusters are told apart by their system identifier: positions, tokens
// and the process-wide session are keyed by it (topology.Cluster.Key).
// Clones of one physical backup (a restored snapshot, a replica promoted
// into a cluster of its own, the green side of a blue/green switch) share
// one, and their positions must never mix: a capture on one would cover a
// write on the other, and a read would go to a replica that lacks it. So
// Open refuses two such clusters in one engine, or in two engines of the
// process whose primaries are different servers, unless an Identity tells
// them apart.

// live is every open engine's clusters, by key.
var live = struct {
	sync.Mutex
	m map[uint32][]liveCluster
}{m: map[uint32][]liveCluster{}}

type liveCluster struct {
	e *Engine
	c *topology.Cluster
}

// checkIdentity registers e's clusters and refuses a cluster whose key
// another of e's clusters, or of another open engine on a different
// server, already has.
func (e *Engine) checkIdentity(ctx context.Context) error {
	seen := map[uint32]*topology.Cluster{}
	for _, c := range e.clusters {
		if o := seen[c.Key()]; o != nil {
			return fmt.Errorf("%w: clusters %s and %s share system identifier %d: clones of one physical backup (or a replica promoted into a cluster of its own), whose positions must not mix; set Identity on one of them (Cluster.Identity), to the same value in every process that uses it",
				ErrConfig, o.Name, c.Name, c.System)
		}
		seen[c.Key()] = c
	}
	var others []liveCluster
	var mine []int // the index in e.clusters of each of others'
	live.Lock()
	for i, c := range e.clusters {
		for _, o := range live.m[c.Key()] {
			others = append(others, o)
			mine = append(mine, i)
		}
		live.m[c.Key()] = append(live.m[c.Key()], liveCluster{e, c})
	}
	live.Unlock()
	// Registered first and checked after, so that of two engines opened
	// at once on clones, the one that registers second sees the first.
	for k, o := range others {
		c := e.clusters[mine[k]]
		theirs, err := o.e.primaryStarted(ctx, o.c)
		if err != nil || o.e.closed.Load() {
			continue // gone, or not answering: nothing to tell apart
		}
		if theirs != e.started[mine[k]] {
			e.unregister()
			return fmt.Errorf("%w: cluster %s (primary %s) and cluster %s of another DB in this process (primary %s) share system identifier %d but are different servers: clones of one physical backup (or a replica promoted into a cluster of its own), whose positions must not mix; set Identity (Config.Identity, or Cluster.Identity) on one of them, to the same value in every process that uses it",
				ErrConfig, c.Name, c.Primary().Name, o.c.Name, o.c.Primary().Name, c.System)
		}
	}
	return nil
}

// unregister removes e's clusters from live.
func (e *Engine) unregister() {
	live.Lock()
	defer live.Unlock()
	for _, c := range e.clusters {
		list := live.m[c.Key()]
		for i, o := range list {
			if o.e == e && o.c == c {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(live.m, c.Key())
		} else {
			live.m[c.Key()] = list
		}
	}
}

// primaryStarted asks cluster c's current primary when it started, on a
// connection of the monitor's configuration.
func (e *Engine) primaryStarted(ctx context.Context, c *topology.Cluster) (int64, error) {
	p := c.Primary()
	var cfg *pgconn.Config
	for i, n := range c.Nodes {
		if n == p {
			cfg = e.configs[c.Index][i]
		}
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	res := conn.ExecParams(ctx, "SELECT "+startedSQL, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, res.Err
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
		return 0, fmt.Errorf("switchyard: no start time in the reply")
	}
	return strconv.ParseInt(string(res.Rows[0][0]), 10, 64)
}
