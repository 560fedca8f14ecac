package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/lsn"
)

// Monitor polls every node of a cluster on a connection of its own (so a
// busy pool never makes a node look dead): whether it is in recovery, its
// WAL position, its default isolation. A node that cannot be reached is
// marked down; one that answers again is put back once its ban has
// expired. It speaks the simple query protocol through pgconn, which passes
// text through untouched whatever the server's encoding.
type Monitor struct {
	cluster  *Cluster
	interval time.Duration
	log      *slog.Logger
	configs  []*pgconn.Config // by the node's place in cluster.Nodes
	redact   func(string) string

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartMonitor starts polling each node of c every interval. configs[i]
// holds the connection settings of c.Nodes[i]; redact scrubs secrets from
// the errors it logs (nil: none). Close stops it.
func StartMonitor(c *Cluster, configs []*pgconn.Config, interval time.Duration, log *slog.Logger, redact func(string) string) *Monitor {
	if redact == nil {
		redact = func(s string) string { return s }
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Monitor{cluster: c, interval: interval, log: log, configs: configs, redact: redact, cancel: cancel}
	for i, n := range c.Nodes {
		m.wg.Add(1)
		go m.watch(ctx, n, configs[i])
	}
	return m
}

// Close stops the monitor and waits for its goroutines and connections to end.
func (m *Monitor) Close() {
	m.cancel()
	m.wg.Wait()
}

// PollSQL asks a node what it is and how far it has got. On a primary the
// timeline is read off the name of the WAL file being written (its first
// eight hex digits).
const PollSQL = `SELECT pg_is_in_recovery(),
	(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_insert_lsn() END)::text,
	CASE WHEN pg_is_in_recovery() THEN 0 ELSE ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int8 END,
	current_setting('default_transaction_isolation') = 'read committed',
	extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8`

// pollTimeout bounds one poll, connecting included: a node that does not
// answer within it is as good as down.
func (m *Monitor) pollTimeout() time.Duration { return max(5*m.interval, time.Second) }

func (m *Monitor) watch(ctx context.Context, n *Node, cfg *pgconn.Config) {
	defer m.wg.Done()
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		if err := m.poll(ctx, n, cfg, &conn); err != nil && ctx.Err() == nil {
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			if why := m.redact(err.Error()); n.MarkDownBecause(time.Now(), why) {
				m.log.Warn("switchyard: node down", "cluster", m.cluster.Name, "node", n.Name, "role", n.Role(), "err", why)
			}
			n.SetWritable(false)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Poll is one poll's answer.
type Poll struct {
	InRecovery    bool
	Position      lsn.LSN // 0 if NULL (a standby that has replayed nothing yet)
	Timeline      uint32
	ReadCommitted bool
	ReplayAge     time.Duration // negative if unknown
}

// ParsePoll reads the text row PollSQL returns.
func ParsePoll(row [][]byte) (Poll, error) {
	if len(row) != 5 {
		return Poll{}, fmt.Errorf("switchyard: poll returned %d columns, want 5", len(row))
	}
	p := Poll{InRecovery: string(row[0]) == "t", ReadCommitted: string(row[3]) == "t", ReplayAge: -1}
	if row[1] != nil {
		l, err := lsn.Parse(string(row[1]))
		if err != nil {
			return Poll{}, err
		}
		p.Position = l
	}
	tli, err := strconv.ParseUint(string(row[2]), 10, 32)
	if err != nil {
		return Poll{}, fmt.Errorf("switchyard: poll: timeline %q: %w", row[2], err)
	}
	p.Timeline = uint32(tli)
	if row[4] != nil {
		age, err := strconv.ParseFloat(string(row[4]), 64)
		if err != nil {
			return Poll{}, fmt.Errorf("switchyard: poll: replay age %q: %w", row[4], err)
		}
		p.ReplayAge = time.Duration(age * float64(time.Second))
	}
	return p, nil
}

func (m *Monitor) poll(ctx context.Context, n *Node, cfg *pgconn.Config, conn **pgconn.PgConn) error {
	ctx, cancel := context.WithTimeout(ctx, m.pollTimeout())
	defer cancel()
	if *conn == nil {
		c, err := pgconn.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		*conn = c
	}
	sent := time.Now()
	results, err := (*conn).Exec(ctx, PollSQL).ReadAll()
	if err != nil {
		return err
	}
	if len(results) != 1 || len(results[0].Rows) != 1 {
		return errors.New("switchyard: poll returned no row")
	}
	p, err := ParsePoll(results[0].Rows[0])
	if err != nil {
		return err
	}
	m.cluster.Observe(n, p, sent, time.Now(), m.log)
	return nil
}

// Observe applies a poll of node n, sent at sent and answered at now: its
// role, position, lag and health, and an election if n accepts writes.
func (c *Cluster) Observe(n *Node, p Poll, sent, now time.Time, log *slog.Logger) {
	n.SetCheckSafe(p.ReadCommitted)
	n.SetWritable(!p.InRecovery)
	pos := p.Position
	if !p.InRecovery {
		pos = lsn.RoundDownPageHeader(pos, c.BlockSize)
		n.SetTimeline(p.Timeline)
	}
	rose := n.SetPosition(pos, sent)
	if !p.InRecovery && n == c.Primary() {
		c.RecordPrimary(pos, sent)
	}
	if p.InRecovery {
		n.SetLag(c.LagAt(pos, sent, p.ReplayAge))
	}
	if rose {
		c.notify()
	}
	if !p.InRecovery && c.Elect(now) {
		np := c.Primary()
		log.Warn("switchyard: following a new primary", "cluster", c.Name, "node", np.Name, "timeline", np.Timeline())
	}
	primary := n == c.Primary()
	switch {
	case !primary && !p.InRecovery:
		// Promoted, or misconfigured: not a replica of this primary any
		// more. Keep it out of reads; Elect decides whether it is the
		// primary.
		if n.MarkDownBecause(now, "not in recovery: not a replica of this primary") {
			log.Warn("switchyard: replica is not in recovery; not reading from it", "cluster", c.Name, "node", n.Name)
		}
		return
	case primary && p.InRecovery:
		if n.MarkDownBecause(now, "the primary is in recovery") {
			log.Warn("switchyard: primary is in recovery", "cluster", c.Name, "node", n.Name)
		}
		return
	}
	if n.MarkUp(now) {
		log.Info("switchyard: node back", "cluster", c.Name, "node", n.Name, "role", n.Role())
	}
}
