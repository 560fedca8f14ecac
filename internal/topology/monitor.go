package topology

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
	current_setting('default_transaction_isolation'),
	extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8,
	current_setting('default_transaction_read_only')::bool`

// PollQuery runs PollSQL in a read-committed read-only transaction of its
// own, so that it runs whatever the server's defaults (a hot standby
// refuses every statement whose default isolation is serializable, and
// PollSQL reports that default).
const PollQuery = "BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; " + PollSQL + "; COMMIT"

// monitorParams are the monitor's session settings: its polls must not be
// cut short by the users' timeouts.
var monitorParams = map[string]string{
	"statement_timeout":                   "0",
	"lock_timeout":                        "0",
	"idle_in_transaction_session_timeout": "0",
}

// pollTimeout bounds one poll of n, connecting included: a node that does
// not answer within it is as good as down (frozen, partitioned, its disk
// stalled). It is eight intervals, at least 200 ms, or four of the node's
// latest round trip where that is longer: a replica far away is slow, not
// hung.
func (m *Monitor) pollTimeout(n *Node) time.Duration {
	return max(8*m.interval, 200*time.Millisecond, 4*n.LastRTT())
}

// maxPollTimeout bounds how long a poll of a node that timed out before
// may wait (unless eight intervals are longer).
const maxPollTimeout = 5 * time.Second

// nextPollTimeout is the bound of n's next poll after one that took
// timeout and failed with err (nil: it answered). A poll that timed out
// makes the next wait twice as long, so that a node that became slow but
// still answers (a network path that got 200 ms longer) is seen answering
// and rejoins, balanced by its new round trip; a node that never answers
// is out of rotation meanwhile all the same. After an answer, the bound
// comes back down to what the node's round trips call for, a quarter of
// the way each poll.
func (m *Monitor) nextPollTimeout(n *Node, timeout time.Duration, err error) time.Duration {
	base := m.pollTimeout(n)
	switch {
	case err == nil:
		return max(base, timeout-(timeout-base)/4)
	case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
		return min(2*timeout, max(base, maxPollTimeout))
	}
	return base
}

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
	soon := time.NewTimer(HurryInterval)
	defer soon.Stop()
	gap := HurryInterval
	timeout := m.pollTimeout(n)
	for {
		// Taken before the poll, so that a read that starts waiting
		// while it runs is not missed.
		hurry := m.cluster.Hurried()
		from := n.Position()
		err := m.poll(ctx, n, cfg, &conn, timeout)
		timeout = m.nextPollTimeout(n, timeout, err)
		if err != nil && ctx.Err() == nil {
			if conn != nil {
				conn.Close(context.Background())
				conn = nil
			}
			if why := m.redact(err.Error()); n.MarkDownBecause(time.Now(), why) {
				m.log.Warn("switchyard: node down", "cluster", m.cluster.Name, "node", n.Name, "role", n.Role(), "err", why)
			}
			n.SetWritable(false)
		}
		// A replica that answers is polled at once when a read starts
		// waiting for one to catch up, and while reads wait, again after
		// HurryInterval if the poll reached what one of them needed, twice
		// as late as last time if not (up to HurryMaxGap). A node that
		// does not answer, or the primary, waits for the ticker: reads
		// waiting for replicas must not turn into a storm of connection
		// attempts.
		replica := err == nil && n != m.cluster.Primary()
		if !replica {
			hurry = nil
		}
		if replica && m.cluster.Waiting() {
			if m.cluster.Waited(from, n.Position()) {
				gap = HurryInterval
			}
			soon.Reset(gap)
			gap = min(2*gap, HurryMaxGap, m.interval)
			select {
			case <-ctx.Done():
				return
			case <-soon.C:
			}
			continue
		}
		gap = HurryInterval
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-hurry:
		}
	}
}

// Poll is one poll's answer.
type Poll struct {
	InRecovery bool
	Position   lsn.LSN // 0 if NULL (a standby that has replayed nothing yet)
	Timeline   uint32
	// Isolation is the server's default_transaction_isolation; ReadCommitted
	// says whether it is "read committed".
	Isolation     string
	ReadCommitted bool
	ReplayAge     time.Duration // negative if unknown
	// ReadOnly is the server's default_transaction_read_only.
	ReadOnly bool
}

// ParsePoll reads the text row PollSQL returns.
func ParsePoll(row [][]byte) (Poll, error) {
	if len(row) != 6 {
		return Poll{}, fmt.Errorf("switchyard: poll returned %d columns, want 6", len(row))
	}
	p := Poll{InRecovery: string(row[0]) == "t", Isolation: string(row[3]), ReplayAge: -1, ReadOnly: string(row[5]) == "t"}
	p.ReadCommitted = p.Isolation == "read committed"
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

func (m *Monitor) poll(ctx context.Context, n *Node, cfg *pgconn.Config, conn **pgconn.PgConn, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if *conn == nil {
		own := cfg.Copy()
		own.RuntimeParams = maps.Clone(own.RuntimeParams)
		if own.RuntimeParams == nil {
			own.RuntimeParams = map[string]string{}
		}
		maps.Copy(own.RuntimeParams, monitorParams)
		c, err := pgconn.ConnectConfig(ctx, own)
		if err != nil {
			return err
		}
		*conn = c
	}
	sent := time.Now()
	results, err := (*conn).Exec(ctx, PollQuery).ReadAll()
	if err != nil {
		return err
	}
	row, err := PollRow(results)
	if err != nil {
		return err
	}
	p, err := ParsePoll(row)
	if err != nil {
		return err
	}
	now := time.Now()
	n.ObserveRTT(now.Sub(sent))
	m.cluster.Observe(n, p, sent, now, m.log)
	return nil
}

// PollRow finds PollSQL's row among a poll's results.
func PollRow(results []*pgconn.Result) ([][]byte, error) {
	for _, r := range results {
		if len(r.Rows) == 1 && len(r.FieldDescriptions) == 6 {
			return r.Rows[0], nil
		}
	}
	return nil, errors.New("switchyard: poll returned no row")
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
	if primary && p.ReadOnly != n.readOnlyDefault.Swap(p.ReadOnly) && p.ReadOnly {
		log.Warn("switchyard: the primary has default_transaction_read_only = on: every write there fails (25006) unless it sets transaction_read_only = off; set default_transaction_read_only = off on the primary",
			"cluster", c.Name, "node", n.Name)
	}
	switch {
	case !primary && p.InRecovery && p.Isolation == "serializable":
		// A hot standby cannot run serializable transactions: every
		// statement at that default fails there (0A000). Serializable
		// reads belong on the primary.
		if n.MarkDownBecause(now, "default_transaction_isolation is serializable, which a hot standby cannot run") {
			log.Warn("switchyard: replica's default_transaction_isolation is serializable, which a hot standby cannot run: every read there would fail, so reads go elsewhere; "+
				"set default_transaction_isolation to 'read committed' (or 'repeatable read') on the replicas, and ask for serializable transactions where they belong, on the primary",
				"cluster", c.Name, "node", n.Name)
		}
		return
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
