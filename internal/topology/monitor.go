package topology

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// Monitor polls every node of a cluster on a connection of its own (so a
// busy pool never makes a node look dead): whether it is in recovery, and
// its WAL position. A node that cannot be reached is marked down; one that
// answers again is put back once its ban has expired.
type Monitor struct {
	cluster  *Cluster
	interval time.Duration
	log      *slog.Logger
	configs  map[*Node]*pgx.ConnConfig

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartMonitor starts polling each node of c every interval. configs holds
// the connection settings of each node. Close stops it.
func StartMonitor(c *Cluster, configs map[*Node]*pgx.ConnConfig, interval time.Duration, log *slog.Logger) *Monitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{cluster: c, interval: interval, log: log, configs: configs, cancel: cancel}
	for _, n := range c.Nodes {
		m.wg.Add(1)
		go m.watch(ctx, n)
	}
	return m
}

// Close stops the monitor and waits for its goroutines and connections to end.
func (m *Monitor) Close() {
	m.cancel()
	m.wg.Wait()
}

// pollSQL asks a node what it is and how far it has got. On a primary the
// timeline is read off the name of the WAL file being written (its first
// eight hex digits).
const pollSQL = `SELECT pg_is_in_recovery(),
	(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END)::text,
	CASE WHEN pg_is_in_recovery() THEN 0 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int8 END,
	current_setting('default_transaction_isolation') = 'read committed',
	extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8`

func (m *Monitor) watch(ctx context.Context, n *Node) {
	defer m.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	timeout := max(5*m.interval, time.Second)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		if err := m.poll(ctx, n, &conn, timeout); err != nil && ctx.Err() == nil {
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			if n.MarkDown(time.Now()) {
				m.log.Warn("switchyard: node down", "node", n.Name, "role", n.Role().String(), "err", err)
			}
			n.writable.Store(false)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (m *Monitor) poll(ctx context.Context, n *Node, conn **pgx.Conn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if *conn == nil {
		c, err := pgx.ConnectConfig(ctx, m.configs[n])
		if err != nil {
			return err
		}
		*conn = c
	}
	var inRecovery, readCommitted bool
	var pos *string
	var timeline int64
	var replayAge *float64 // seconds since the last replayed commit was made
	sent := time.Now()
	if err := (*conn).QueryRow(ctx, pollSQL, pgx.QueryExecModeSimpleProtocol).Scan(&inRecovery, &pos, &timeline, &readCommitted, &replayAge); err != nil {
		return err
	}
	now := time.Now()
	n.checkSafe.Store(readCommitted)
	n.writable.Store(!inRecovery)
	if pos != nil {
		if l, err := lsn.Parse(*pos); err == nil {
			if !inRecovery {
				l = lsn.RoundDownPageHeader(l, m.cluster.BlockSize)
			}
			before := n.Position()
			n.SetPosition(l, sent)
			if !inRecovery {
				n.timeline.Store(uint32(timeline))
				if n == m.cluster.Primary() {
					m.cluster.recordPrimary(l, sent)
				}
			} else {
				age := time.Duration(-1)
				if replayAge != nil {
					age = time.Duration(*replayAge * float64(time.Second))
				}
				n.lag.Store(int64(m.cluster.lagAt(l, sent, age)))
			}
			if l > before {
				m.cluster.notify()
			}
		}
	}
	if !inRecovery && m.cluster.elect(now) {
		p := m.cluster.Primary()
		m.log.Warn("switchyard: following a new primary", "node", p.Name, "timeline", p.Timeline())
	}
	switch role := n.Role(); {
	case role == RoleReplica && !inRecovery:
		// Promoted, or misconfigured: not a replica of this primary any
		// more. Keep it out of reads; following a new primary is the
		// failover logic's business.
		if n.MarkDown(now) {
			m.log.Warn("switchyard: replica is not in recovery; not reading from it", "node", n.Name)
		}
		return nil
	case role == RolePrimary && inRecovery:
		if n.MarkDown(now) {
			m.log.Warn("switchyard: primary is in recovery", "node", n.Name)
		}
		return nil
	}
	if n.MarkUp(now, n == m.cluster.Primary()) {
		m.log.Info("switchyard: node back", "node", n.Name, "role", n.Role().String())
	}
	return nil
}
