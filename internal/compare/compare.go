// Package compare runs one workload through three read/write routers on the
// same primary and replicas, one after the other, and measures what each
// costs: (a) a naive router that sends every SELECT to a random replica, (b)
// a Rails-style router that keeps a session on the primary for a fixed
// window after it writes, and (c) switchyard. It backs "switchyard compare"
// and the end of "switchyard demo".
//
// The workload: Sessions sessions run at once, each on a counter row of its
// own. An operation is, with probability WriteRatio, a write (UPDATE ... SET
// v = v + 1 RETURNING v) followed at once by a read of the same row (the
// form POST and the page that follows it), and otherwise a read; a session
// thinks for a random 0 to MaxThink between operations. A read is stale if
// it returns less than the session last wrote or read (a counter only grows):
// a violation of read-your-writes or of monotonic reads. Each read also
// returns pg_is_in_recovery(), so the replica share is what the servers say,
// not what a router claims.
//
// The think time matters. switchyard promises monotonic reads: once a
// session has read from the primary (right after its own write, say), it
// has seen everything the primary had, and only a replica that has replayed
// that much may serve it again. A session that reads again sooner than the
// replicas' lag therefore stays on the primary; one that pauses longer goes
// back to the replicas. With pauses of 0-50ms and replicas 20ms and 50ms
// behind, most of switchyard's reads go to replicas; with pauses of 0-5ms,
// almost none do (the naive router then reads stale data most of the time).
package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
)

// Cluster is where the comparison runs: a primary and its streaming
// replicas (at least one), as connection strings.
type Cluster struct {
	Primary  string
	Replicas []string
}

// Options shape the workload. Zero values take the defaults.
type Options struct {
	// Sessions run at once (default 16).
	Sessions int
	// Duration is how long each router is measured (default 5s).
	Duration time.Duration
	// Warmup runs each router this long before measuring, to open
	// connections and reach a steady state (default Duration/10, at most
	// 500ms).
	Warmup time.Duration
	// WriteRatio is the share of operations that write, then read back
	// (default 0.15).
	WriteRatio float64
	// MaxThink bounds a session's random pause between operations
	// (default 50ms; negative: no pause). Sessions that read more often
	// than the replicas' lag leave switchyard little to send to replicas
	// (see the package documentation).
	MaxThink time.Duration
	// Stickiness is the sticky router's window (default 2s, Rails'
	// default delay).
	Stickiness time.Duration
	// Logf, if set, hears of each step.
	Logf func(format string, args ...any)
}

func (o Options) withDefaults() Options {
	if o.Sessions <= 0 {
		o.Sessions = 16
	}
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Warmup <= 0 {
		o.Warmup = min(o.Duration/10, 500*time.Millisecond)
	}
	if o.WriteRatio <= 0 {
		o.WriteRatio = 0.15
	}
	o.WriteRatio = min(o.WriteRatio, 1)
	if o.MaxThink < 0 {
		o.MaxThink = 0
	} else if o.MaxThink == 0 {
		o.MaxThink = 50 * time.Millisecond
	}
	if o.Stickiness <= 0 {
		o.Stickiness = 2 * time.Second
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	return o
}

// Result is what one router did in the measured window.
type Result struct {
	Router string
	// Writes and Reads count the statements run.
	Writes, Reads int
	// Stale counts reads that returned less than their session had
	// written or read before (or no row at all).
	Stale int
	// ReplicaReads counts reads that a replica served.
	ReplicaReads int
	// P50 and P99 are read latencies (median and 99th percentile), as the
	// session saw them.
	P50, P99 time.Duration
	// Note says more about the router's decisions (switchyard's routing
	// counts), or is empty.
	Note string
}

// ReplicaShare is the share of reads that replicas served, 0 to 1.
func (r Result) ReplicaShare() float64 {
	if r.Reads == 0 {
		return 0
	}
	return float64(r.ReplicaReads) / float64(r.Reads)
}

// StaleShare is the share of reads that were stale, 0 to 1.
func (r Result) StaleShare() float64 {
	if r.Reads == 0 {
		return 0
	}
	return float64(r.Stale) / float64(r.Reads)
}

// Run runs the workload through the three routers, one after another, on
// cluster c, and returns their results in the order naive, sticky,
// switchyard. It creates (if missing) and fills the table compare_counters
// on c.
func Run(ctx context.Context, c Cluster, o Options) ([]Result, error) {
	o = o.withDefaults()
	if len(c.Replicas) == 0 {
		return nil, errors.New("compare: the cluster has no replicas")
	}
	p, err := openPools(ctx, c, o.Sessions)
	if err != nil {
		return nil, err
	}
	defer p.close()
	if _, err := p.primary.Exec(ctx, `CREATE TABLE IF NOT EXISTS compare_counters
		(run int NOT NULL, id int NOT NULL, v int NOT NULL DEFAULT 0, PRIMARY KEY (run, id))`); err != nil {
		return nil, fmt.Errorf("compare: setup: %w", err)
	}
	var firstRun int
	if err := p.primary.QueryRow(ctx, "SELECT coalesce(max(run), 0) + 1 FROM compare_counters").Scan(&firstRun); err != nil {
		return nil, fmt.Errorf("compare: setup: %w", err)
	}

	makers := []func() (router, error){
		func() (router, error) { return &naive{p}, nil },
		func() (router, error) { return &sticky{p, o.Stickiness}, nil },
		func() (router, error) {
			db, err := switchyard.Open(ctx, switchyard.Config{
				Primary:       c.Primary,
				Replicas:      c.Replicas,
				ConfigurePool: func(pc *pgxpool.Config) { pc.MaxConns, pc.MinConns = poolSize(o.Sessions), poolSize(o.Sessions) },
			})
			if err != nil {
				return nil, fmt.Errorf("compare: %w", err)
			}
			return &sy{db}, nil
		},
	}
	var results []Result
	for i, mk := range makers {
		r, err := mk()
		if err != nil {
			return results, err
		}
		run := firstRun + i
		res, err := runOne(ctx, p, r, run, o)
		r.close()
		if err != nil {
			return results, err
		}
		results = append(results, res)
	}
	return results, nil
}

// poolSize gives every session a connection of its own on every server, so
// that no router's latency includes waiting for a pool.
func poolSize(sessions int) int32 { return int32(sessions + 2) }

func openPools(ctx context.Context, c Cluster, sessions int) (*pools, error) {
	open := func(dsn string) (*pgxpool.Pool, error) {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		cfg.MaxConns, cfg.MinConns = poolSize(sessions), poolSize(sessions)
		pool, err := pgxpool.NewWithConfig(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("compare: %w", err)
		}
		return pool, nil
	}
	p := &pools{}
	var err error
	if p.primary, err = open(c.Primary); err != nil {
		return nil, err
	}
	for _, dsn := range c.Replicas {
		r, err := open(dsn)
		if err != nil {
			p.close()
			return nil, err
		}
		p.replicas = append(p.replicas, r)
	}
	return p, nil
}

func (p *pools) close() {
	if p.primary != nil {
		p.primary.Close()
	}
	for _, r := range p.replicas {
		r.Close()
	}
}

const (
	writeSQL = "UPDATE compare_counters SET v = v + 1 WHERE run = $1 AND id = $2 RETURNING v"
	readSQL  = "SELECT v, pg_is_in_recovery() FROM compare_counters WHERE run = $1 AND id = $2"
)

// prepare makes the counter rows of run and waits until every replica has
// them, so that every router starts from replicas that are in step.
func prepare(ctx context.Context, p *pools, run, sessions int) error {
	if _, err := p.primary.Exec(ctx, "INSERT INTO compare_counters (run, id) SELECT $1, g FROM generate_series(1, $2::int) g", run, sessions); err != nil {
		return fmt.Errorf("compare: setup: %w", err)
	}
	for i, r := range p.replicas {
		for {
			var n int
			if err := r.QueryRow(ctx, "SELECT count(*) FROM compare_counters WHERE run = $1", run).Scan(&n); err != nil {
				// The table itself may not have reached the replica yet.
				if ctx.Err() != nil || !isUndefinedTable(err) {
					return fmt.Errorf("compare: waiting for replica %d: %w", i+1, err)
				}
			} else if n == sessions {
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

// isUndefinedTable reports whether err is PostgreSQL's 42P01.
func isUndefinedTable(err error) bool {
	var pe interface{ SQLState() string }
	return errors.As(err, &pe) && pe.SQLState() == "42P01"
}

// tally is what one session saw in the measured window.
type tally struct {
	writes, reads, stale, replica int
	latencies                     []time.Duration
}

// waitConns waits (a few seconds at most) until the router's pools have
// opened their connections (MinConns, in the background), so that no
// router's measured reads pay for connecting.
func waitConns(ctx context.Context, r router, want int32) {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ready := true
		for _, s := range r.poolStats() {
			if s.TotalConns() < want {
				ready = false
			}
		}
		if ready {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func runOne(ctx context.Context, p *pools, r router, run int, o Options) (Result, error) {
	if err := prepare(ctx, p, run, o.Sessions); err != nil {
		return Result{}, err
	}
	waitConns(ctx, r, poolSize(o.Sessions))
	var window func(measureFrom, end time.Time) (note func() string)
	if db, ok := r.(*sy); ok {
		window = func(measureFrom, end time.Time) func() string {
			var before, after switchyard.RouteStats
			var snap sync.WaitGroup
			snap.Add(2)
			t1 := time.AfterFunc(time.Until(measureFrom), func() { before = db.db.Stats().Routes; snap.Done() })
			t2 := time.AfterFunc(time.Until(end), func() { after = db.db.Stats().Routes; snap.Done() })
			return func() string {
				if t1.Stop() || t2.Stop() {
					return "" // the run ended early
				}
				snap.Wait()
				return routeNote(before, after)
			}
		}
	}
	return measure(ctx, r.name(), func(ctx context.Context, _ int) session { return r.newSession(ctx) }, run, o, window)
}

// measure runs the workload in o.Sessions sessions at once, each made by
// newSession (given the context the session runs in and its index), on
// the counter rows of run. window, if set, is called as the run starts
// with its measured window, and the function it returns once the run
// ended, for the result's note.
func measure(ctx context.Context, name string, newSession func(ctx context.Context, i int) session, run int, o Options,
	window func(measureFrom, end time.Time) (note func() string)) (Result, error) {
	o.Logf("%s: %d sessions, %v warmup, %v measured", name, o.Sessions, o.Warmup, o.Duration)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	start := time.Now()
	measureFrom, end := start.Add(o.Warmup), start.Add(o.Warmup+o.Duration)
	var note func() string
	if window != nil {
		note = window(measureFrom, end)
	}

	tallies := make([]tally, o.Sessions)
	var wg sync.WaitGroup
	for i := range o.Sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := work(ctx, newSession(ctx, i), run, i+1, o, measureFrom, end, &tallies[i]); err != nil {
				cancel(fmt.Errorf("compare: %s, session %d: %w", name, i+1, err))
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		if note != nil {
			note()
		}
		return Result{}, err
	}

	res := Result{Router: name}
	var lat []time.Duration
	for _, t := range tallies {
		res.Writes += t.writes
		res.Reads += t.reads
		res.Stale += t.stale
		res.ReplicaReads += t.replica
		lat = append(lat, t.latencies...)
	}
	slices.Sort(lat)
	res.P50, res.P99 = percentile(lat, 0.50), percentile(lat, 0.99)
	if note != nil {
		res.Note = note()
	}
	o.Logf("%s: %d reads, %d stale, %.1f%% on replicas", name, res.Reads, res.Stale, 100*res.ReplicaShare())
	return res, nil
}

// routeNote describes switchyard's routing decisions between two snapshots.
func routeNote(b, a switchyard.RouteStats) string {
	replica := a.Replica - b.Replica
	afterWrite := a.AfterWrite - b.AfterWrite
	notFresh := a.NotFresh - b.NotFresh
	checked, failed := a.Checked-b.Checked, a.CheckFailed-b.CheckFailed
	return fmt.Sprintf("switchyard's reads: %d to a replica known fresh, %d to a replica with a freshness check in the same round trip (%d failed it and went on to the primary), %d to the primary right after their session wrote, %d to the primary because no replica had caught up",
		replica, checked, failed, afterWrite, notFresh)
}

// work is one session's loop.
func work(ctx context.Context, s session, run, id int, o Options, measureFrom, end time.Time, t *tally) error {
	var seen int // the highest value the session wrote or read
	read := func(measured bool) error {
		began := time.Now()
		v, onReplica, err := s.read(ctx, run, id)
		took := time.Since(began)
		if errors.Is(err, pgx.ErrNoRows) {
			v, err = -1, nil // the row is not there yet: as stale as it gets
		}
		if err != nil {
			return err
		}
		if measured {
			t.reads++
			t.latencies = append(t.latencies, took)
			if onReplica {
				t.replica++
			}
			if v < seen {
				t.stale++
			}
		}
		seen = max(seen, v)
		return nil
	}
	for {
		now := time.Now()
		if !now.Before(end) || ctx.Err() != nil {
			return nil
		}
		measured := !now.Before(measureFrom)
		if rand.Float64() < o.WriteRatio {
			v, err := s.write(ctx, run, id)
			if err != nil {
				return err
			}
			seen = max(seen, v)
			if measured {
				t.writes++
			}
		}
		if err := read(measured); err != nil {
			return err
		}
		if o.MaxThink > 0 {
			time.Sleep(rand.N(o.MaxThink))
		}
	}
}

// percentile returns the q-quantile of sorted (nearest rank), or 0.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// WriteTable prints results as an aligned table (the router's name on the
// left, numbers on the right), with switchyard's routing note below it.
func WriteTable(w io.Writer, results []Result) error {
	return writeResults(w, "router", results)
}

// writeResults is WriteTable with first as the first column's heading.
func writeResults(w io.Writer, first string, results []Result) error {
	rows := [][]string{{first, "reads", "stale reads", "replica share", "p50 read", "p99 read"}}
	for _, r := range results {
		rows = append(rows, []string{
			r.Router,
			fmt.Sprint(r.Reads),
			fmt.Sprintf("%d (%.1f%%)", r.Stale, 100*r.StaleShare()),
			fmt.Sprintf("%.1f%%", 100*r.ReplicaShare()),
			ms(r.P50),
			ms(r.P99),
		})
	}
	var b strings.Builder
	writeAligned(&b, rows, 1)
	for _, r := range results {
		if r.Note != "" {
			fmt.Fprintf(&b, "\n%s\n", wrap(r.Note, 78))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeAligned writes rows as columns two spaces apart, indented by two:
// the first left columns aligned left, the others right.
func writeAligned(b *strings.Builder, rows [][]string, left int) {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(cell))
		}
	}
	for _, row := range rows {
		line := " "
		for i, cell := range row {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
			if i < left {
				line += " " + cell + pad
			} else {
				line += " " + pad + cell
			}
			line += " "
		}
		b.WriteString(strings.TrimRight(line, " "))
		b.WriteByte('\n')
	}
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string {
	f := float64(d) / float64(time.Millisecond)
	if f < 10 {
		return fmt.Sprintf("%.2f ms", f)
	}
	return fmt.Sprintf("%.1f ms", f)
}

// wrap breaks s into lines of at most width characters, at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	line := 0
	for i, word := range strings.Fields(s) {
		if i > 0 {
			if line+1+len(word) > width {
				b.WriteByte('\n')
				line = 0
			} else {
				b.WriteByte(' ')
				line++
			}
		}
		b.WriteString(word)
		line += len(word)
	}
	return b.String()
}
