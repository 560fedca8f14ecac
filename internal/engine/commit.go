package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/internal/pgerr"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// Lender lends the engine a connection to node n for a short query of its
// own (in-doubt resolution, a session's position, a settle); release gives
// it back.
type Lender func(ctx context.Context, n *topology.Node) (conn *pgconn.PgConn, release func(), err error)

// xidSQL reads the transaction's id (NULL if it wrote nothing, so has
// nothing to lose) and when the server started, sent just ahead of COMMIT.
const xidSQL = "SELECT pg_current_xact_id_if_assigned()::text, extract(epoch FROM pg_postmaster_start_time())::float8::text"

// Commit commits the read-write transaction open on conn (begun as plan p)
// in one round trip: the transaction's id, a Flush (so that the server
// sends the id before it runs COMMIT), COMMIT, Sync. Whatever then breaks,
// an id in hand means the outcome can be asked for; an error from the
// server without the id means COMMIT never ran (replies arrive in order);
// a connection that simply broke before the id leaves the outcome unknown.
//
// The session is marked written around it. It returns COMMIT's command tag ("COMMIT", or "ROLLBACK" for a
// transaction the server rolled back) and nil; or an error: the server's
// (COMMIT failed: a deferred constraint, a serialization failure); a
// *NotCommittedError when it provably did not commit; one wrapping
// ErrCommitUnknown when that cannot be learned. A connection that failed
// during COMMIT is resolved by asking the same primary (pg_xact_status)
// once it answers, on a connection from lend.
func (e *Engine) Commit(ctx context.Context, p *Plan, conn *pgconn.PgConn, lend Lender) (pgconn.CommandTag, error) {
	// A committed transaction is a write of its session: marked when COMMIT
	// is sent and when its outcome is known; or, with a capture
	// (AfterCapture), read after COMMIT in the same round trip, not marked
	// at all unless the capture does not arrive.
	capture := p.After == AfterCapture
	if !capture {
		p.markWrite()
		defer p.markWrite()
	}
	primary, timeline := p.Node, p.Node.Timeline()
	pl := conn.StartPipeline(ctx)
	pl.SendQueryParams(xidSQL, nil, nil, nil, nil)
	pl.SendFlushRequest()
	pl.SendQueryParams("COMMIT", nil, nil, nil, nil)
	pl.SendPipelineSync()
	if capture {
		pl.SendQueryParams(CaptureSQL, nil, nil, nil, nil)
		pl.SendPipelineSync()
	}
	err := pl.Flush()
	var xid, started []byte
	gotXid := false
	var tag pgconn.CommandTag
	if err == nil {
		xid, started, gotXid, err = readXid(pl)
	}
	if err == nil {
		tag, err = readTag(pl)
	}
	if err == nil {
		_, err = pl.GetResults() // the Sync
	}
	if err == nil && capture {
		if l, cerr := readLSN(pl); cerr == nil {
			p.Captured(l)
		}
	}
	if cerr := pl.Close(); err == nil {
		err = cerr
	}
	if capture && !p.captured {
		p.markWrite()
		p.markWrite()
	}
	if err == nil || tag.String() == "COMMIT" {
		// COMMIT's reply arrived: that is the outcome, whatever broke after.
		return tag, nil
	}

	var pgErr *pgconn.PgError
	isPgErr := errors.As(err, &pgErr)
	switch {
	case pgconn.SafeToRetry(err):
		return tag, err // nothing was sent; the connection and the transaction are gone
	case isPgErr && !gotXid:
		// The server reported an error (or ended the session) before the
		// id, which it sends before it runs COMMIT: the SELECT failed or
		// was cut short, so COMMIT never ran.
		return tag, &NotCommittedError{err}
	case isPgErr && !fatal(pgErr):
		return tag, err // COMMIT failed
	case !gotXid:
		e.of(p.Cluster).add(statInDoubtUnknown)
		return tag, fmt.Errorf("%w: the connection failed before the transaction id arrived: %w", ErrCommitUnknown, err)
	case xid == nil:
		return tag, &NotCommittedError{err} // it wrote nothing, so nothing can have committed
	}
	// The connection died, or the server ended the session, during COMMIT
	// (a FATAL can even follow a commit: a canceled synchronous
	// replication wait), or the caller's context ended, which says
	// nothing of the primary. Ask.
	if pgerr.NodeDown(err) {
		e.NodeDown(primary, err)
	}
	return tag, e.resolve(ctx, primary, timeline, inDoubt{xid: string(xid), started: string(started)}, err, lend)
}

// readXid reads the result of xidSQL from a pipeline.
func readXid(p *pgconn.Pipeline) (xid, started []byte, ok bool, err error) {
	res, err := p.GetResults()
	if err != nil {
		return nil, nil, false, err
	}
	rr, isReader := res.(*pgconn.ResultReader)
	if !isReader {
		return nil, nil, false, fmt.Errorf("switchyard: unexpected %T reading the transaction id", res)
	}
	r := rr.Read()
	if r.Err != nil {
		return nil, nil, false, r.Err
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 2 {
		return nil, nil, false, errors.New("switchyard: no transaction id in the reply")
	}
	if v := r.Rows[0][0]; v != nil {
		xid = append([]byte(nil), v...)
	}
	return xid, append([]byte(nil), r.Rows[0][1]...), true, nil
}

// readLSN reads a query's single LSN, and the Sync after it, from a
// pipeline.
func readLSN(p *pgconn.Pipeline) (lsn.LSN, error) {
	res, err := p.GetResults()
	if err != nil {
		return 0, err
	}
	rr, isReader := res.(*pgconn.ResultReader)
	if !isReader {
		return 0, fmt.Errorf("switchyard: unexpected %T reading a WAL position", res)
	}
	r := rr.Read()
	if r.Err != nil {
		return 0, r.Err
	}
	if _, err := p.GetResults(); err != nil {
		return 0, err
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 1 || r.Rows[0][0] == nil {
		return 0, errors.New("switchyard: no WAL position in the reply")
	}
	return lsn.Parse(string(r.Rows[0][0]))
}

// readTag reads a command's tag from a pipeline.
func readTag(p *pgconn.Pipeline) (pgconn.CommandTag, error) {
	res, err := p.GetResults()
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	rr, isReader := res.(*pgconn.ResultReader)
	if !isReader {
		return pgconn.CommandTag{}, fmt.Errorf("switchyard: unexpected %T reading COMMIT's reply", res)
	}
	return rr.Close()
}

// fatal reports whether the server ended the session with err.
func fatal(err *pgconn.PgError) bool {
	sev := cmp.Or(err.SeverityUnlocalized, err.Severity)
	return sev == "FATAL" || sev == "PANIC"
}

// inDoubt is a transaction whose COMMIT was sent when the connection failed:
// its id, and when its server had started (seconds since the epoch, as text).
type inDoubt struct {
	xid, started string
}

// resolveSQL asks about an in-doubt transaction: its status; when the
// server started; and, should it have restarted since, what crash recovery
// accounted for. A transaction whose WAL had not reached disk at the crash
// leaves no trace, and its id is handed out again after recovery: then
// pg_xact_status reports the new owner's fate. Recovery accounts for every
// id below the next id of its end-of-recovery checkpoint (a shutdown
// checkpoint, so redo_lsn = checkpoint_lsn, taken after the start), and
// commit timestamps, when tracked, tell the old owner's commit from the new
// one's.
const resolveSQL = `SELECT pg_xact_status($1::xid8),
	extract(epoch FROM pg_postmaster_start_time())::float8::text,
	c.checkpoint_lsn = c.redo_lsn AND c.checkpoint_time >= pg_postmaster_start_time(),
	c.next_xid,
	CASE WHEN current_setting('track_commit_timestamp')::bool
		THEN pg_xact_commit_timestamp((($1::xid8)::text::numeric % 4294967296)::text::xid) < pg_postmaster_start_time() END
FROM pg_control_checkpoint() c`

// ResolveWindow bounds how long an in-doubt commit is asked about.
func (e *Engine) ResolveWindow() time.Duration { return e.cfg.PrimaryWait + 5*time.Second }

// resolvePoll is how often an in-doubt commit is asked about while the
// primary does not answer.
const resolvePoll = 20 * time.Millisecond

// resolve learns the outcome of transaction d, whose COMMIT was sent to
// primary (on timeline) when the connection failed with cause: it asks the
// same primary, once it answers again.
func (e *Engine) resolve(ctx context.Context, primary *topology.Node, timeline uint32, d inDoubt, cause error, lend Lender) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.ResolveWindow())
	defer cancel()
	unknown := func(why string) error {
		e.of(primary.Cluster()).add(statInDoubtUnknown)
		return fmt.Errorf("%w: transaction %s: %s: %w", ErrCommitUnknown, d.xid, why, cause)
	}
	for {
		c := primary.Cluster()
		if p := c.Primary(); p != primary || (timeline != 0 && p.Timeline() != 0 && p.Timeline() != timeline) {
			return unknown("the primary changed before the outcome could be learned")
		}
		row, err := ask(ctx, primary, lend, d.xid)
		switch {
		case err == nil:
			committed, known, why := judge(d, row)
			if !known {
				if why != "" {
					return unknown(why)
				}
				break // still in progress: ask again
			}
			if committed {
				e.of(primary.Cluster()).add(statInDoubtCommitted)
				e.log.Info("switchyard: in-doubt commit resolved: committed", "xid", d.xid)
				return nil
			}
			e.of(primary.Cluster()).add(statInDoubtAborted)
			e.log.Info("switchyard: in-doubt commit resolved: not committed", "xid", d.xid)
			return &NotCommittedError{cause}
		case !pgerr.NodeDown(err) && ctx.Err() == nil:
			return unknown(fmt.Sprintf("asking failed (%v)", e.redact(err.Error())))
		}
		select {
		case <-ctx.Done():
			return unknown(fmt.Sprintf("the primary did not answer in %v", e.ResolveWindow()))
		case <-time.After(resolvePoll):
		}
	}
}

// resolveRow is resolveSQL's answer, as text (nil for NULL).
type resolveRow struct {
	status, started, endOfRecovery, nextXid, committedBeforeStart []byte
}

func ask(ctx context.Context, n *topology.Node, lend Lender, xid string) (resolveRow, error) {
	conn, release, err := lend(ctx, n)
	if err != nil {
		return resolveRow{}, err
	}
	defer release()
	r := conn.ExecParams(ctx, resolveSQL, [][]byte{[]byte(xid)}, nil, nil, nil).Read()
	if r.Err != nil {
		return resolveRow{}, r.Err
	}
	if len(r.Rows) != 1 || len(r.Rows[0]) != 5 {
		return resolveRow{}, errors.New("switchyard: unexpected answer to pg_xact_status")
	}
	v := r.Rows[0]
	return resolveRow{v[0], v[1], v[2], v[3], v[4]}, nil
}

// judge reads the answer about transaction d: whether it committed, and
// whether that is known. Unknown with a reason means it cannot be known;
// unknown without one, ask again (the old backend is still committing).
func judge(d inDoubt, r resolveRow) (committed, known bool, why string) {
	switch status := string(r.status); {
	case r.status == nil:
		return false, false, "too old to look up"
	case status == "in progress":
		return false, false, ""
	default:
		committed = status == "committed"
	}
	if r.started == nil || string(r.started) != d.started {
		// The server restarted: is the status ours?
		switch {
		case r.committedBeforeStart != nil:
			committed = committed && string(r.committedBeforeStart) == "t"
		case r.endOfRecovery == nil || string(r.endOfRecovery) != "t" || r.nextXid == nil:
			if committed {
				return false, false, "the server restarted, and its first checkpoint since is gone"
			}
		case !xidBelow(d.xid, string(r.nextXid)):
			committed = false // unknown to recovery: its WAL was lost, and the id may be reused
		}
	}
	return committed, true, ""
}

// xidBelow reports whether full transaction id xid (decimal) is below a
// checkpoint's next_xid ("epoch:xid").
func xidBelow(xid, next string) bool {
	x, err1 := strconv.ParseUint(xid, 10, 64)
	epoch, low, ok := strings.Cut(next, ":")
	e, err2 := strconv.ParseUint(epoch, 10, 32)
	l, err3 := strconv.ParseUint(low, 10, 32)
	if err1 != nil || err2 != nil || err3 != nil || !ok {
		return false
	}
	return x < e<<32|l
}
