package proxy

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/engine"
)

// answerLocally answers the round trips the proxy serves itself: SHOW and
// SET of switchyard.token, a BEGIN it holds back until the transaction's
// first statement (which picks the server), and the COMMIT or ROLLBACK of
// such a transaction that did nothing.
func (s *session) answerLocally(ctx context.Context, r *round) (bool, error) {
	if s.failed {
		s.answerFailed(r)
		return true, nil
	}
	if done := s.answerToken(ctx, r); done {
		return true, nil
	}
	if s.bound == nil && s.knownParses(r) {
		s.answerAll(r, "", s.status(), nil)
		return true, nil
	}
	if len(r.runs) != 1 || r.runs[0].Statements != 1 {
		return false, nil
	}
	st := r.runs[0]
	sql := r.sqlOfRun()
	if s.bound != nil || st.Kind == classify.Unknown {
		return false, nil
	}
	switch {
	case s.deferred == "" && st.Effects == classify.EffectBegin:
		s.deferred = sql
		s.answerAll(r, "BEGIN", 'T', nil)
		return true, nil
	case s.deferred != "" && st.Effects&classify.EffectChain == 0 && st.Effects&(classify.EffectCommit|classify.EffectRollback) != 0:
		tag := "COMMIT"
		if st.Effects&classify.EffectRollback != 0 {
			tag = "ROLLBACK"
		}
		s.deferred = ""
		s.answerAll(r, tag, 'I', nil)
		return true, nil
	}
	return false, nil
}

// knownParses reports whether r only prepares statements (Parse, then Sync
// or Flush) that a server of the client's login has accepted before: the
// proxy answers those itself, and prepares them on the server that runs
// them. (Should a statement no longer parse there, its table dropped
// since, the error comes with its execution.)
func (s *session) knownParses(r *round) bool {
	if r.query != nil || len(r.msgs) < 2 {
		return false
	}
	for i, m := range r.msgs {
		switch m.(type) {
		case *pgproto3.Parse:
			if !s.pools.wasParsed(r.pst[i].key) {
				return false
			}
		case *pgproto3.Sync, *pgproto3.Flush:
		default:
			return false
		}
	}
	return true
}

// answerToken answers a round trip about switchyard.token: SHOW gives the
// session's position, SET restores one (from this proxy or another on the
// same servers). Such statements never reach a server; they must come
// alone in their round trip.
func (s *session) answerToken(ctx context.Context, r *round) bool {
	switch {
	case r.tokens == 0:
		return false
	case r.tokens < r.texts:
		s.answerAll(r, "", s.status(), &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "0A000",
			Message: "switchyard proxy: SHOW and SET of switchyard.token must come alone in their round trip"})
		return true
	}
	show := tokenShow.MatchString(r.text0)
	desc := &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
		Name: []byte("switchyard.token"), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1,
	}}}
	if len(r.runs) == 0 { // a Parse or Describe only
		if !show {
			desc = nil
		}
		s.answer(r, "", s.status(), nil, desc, "")
		return true
	}
	if show {
		tok, err := s.srv.engine.Token(ctx, &s.opts, s.lend)
		if err != nil {
			s.answerAll(r, "", s.status(), errorFor(err))
			return true
		}
		s.answer(r, "SHOW", s.status(), nil, desc, tok)
		return true
	}
	m := tokenSet.FindStringSubmatch(r.runSQL[0])
	sess, err := engine.RestoreSession(strings.ReplaceAll(m[1], "''", "'"))
	if err != nil {
		s.answerAll(r, "", s.status(), &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "22023",
			Message: "invalid value for parameter \"switchyard.token\": " + err.Error(),
			Hint:    "Use a token that SHOW switchyard.token gave, through this proxy or another on the same servers."})
		return true
	}
	s.sess, s.opts.Session = sess, sess
	s.answerAll(r, "SET", s.status(), nil)
	return true
}

// The proxy's own setting, answered by the proxy and never sent to a
// server.
var (
	tokenShow = regexp.MustCompile(`(?is)^\s*show\s+"?switchyard"?\s*\.\s*"?token"?\s*;?\s*$`)
	tokenSet  = regexp.MustCompile(`(?is)^\s*set\s+(?:session\s+)?"?switchyard"?\s*\.\s*"?token"?\s*(?:=|\s+to\s+)\s*'((?:[^']|'')*)'\s*;?\s*$`)
)

// isToken reports whether sql is a SHOW or SET of switchyard.token. Only a
// text that starts with SHOW or SET is matched against them.
func isToken(sql string) bool {
	i := 0
	for i < len(sql) && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r' || sql[i] == '\f') {
		i++
	}
	if len(sql)-i < 3 {
		return false
	}
	switch sql[i] | 0x20 {
	case 's':
	default:
		return false
	}
	switch w := sql[i+1] | 0x20; {
	case w == 'h', w == 'e':
	default:
		return false
	}
	return tokenShow.MatchString(sql) || tokenSet.MatchString(sql)
}

// sqlOfRun is the text of the round trip's only statement.
func (r *round) sqlOfRun() string { return r.runSQL[0] }

// status is the client's transaction status as the proxy answers it.
func (s *session) status() byte {
	switch {
	case s.failed:
		return 'E'
	case s.bound != nil:
		return s.bound.conn.TxStatus()
	case s.deferred != "":
		return 'T'
	}
	return 'I'
}

// answerFailed answers a round trip of a client whose transaction block
// lost its server connection (failTransaction), as PostgreSQL answers in a
// failed transaction: a lone COMMIT, END, ROLLBACK or ABORT ends it, rolled
// back (AND CHAIN begins another, with default modes: the failed one's
// are not known here); preparing one of those is answered; anything else
// is refused with 25P02 until then.
func (s *session) answerFailed(r *round) {
	exits := len(r.runs) <= 1
	for _, st := range r.runs {
		exits = exits && exitsTransaction(st)
	}
	for i, m := range r.msgs {
		if _, ok := m.(*pgproto3.Parse); ok {
			exits = exits && r.pst[i] != nil && exitsTransaction(r.pst[i].info)
		}
	}
	switch {
	case !exits:
		s.refuseFailed(r, &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "25P02",
			Message: "current transaction is aborted, commands ignored until end of transaction block",
			Detail:  "switchyard proxy: the transaction's server connection was lost"})
	case len(r.runs) == 0:
		s.answerAll(r, "", 'E', nil) // Parse, Describe, Close, Sync
	default:
		s.failed = false
		status := byte('I')
		if r.runs[0].Effects&classify.EffectChain != 0 {
			s.deferred, status = "BEGIN", 'T'
		}
		s.answerAll(r, "ROLLBACK", status, nil)
	}
}

// exitsTransaction reports whether st is one statement that ends a
// transaction: COMMIT, END, ROLLBACK or ABORT (AND CHAIN or not).
func exitsTransaction(st *classify.Statement) bool {
	return st != nil && st.Statements == 1 && st.Effects&(classify.EffectCommit|classify.EffectRollback) != 0 &&
		st.Effects&^(classify.EffectCommit|classify.EffectRollback|classify.EffectChain) == 0
}

// refuseFailed answers each part of r up to a Sync with e (a part of nothing but
// Flush gets nothing), and each Sync with ReadyForQuery in the failed
// state.
func (s *session) refuseFailed(r *round, e *pgproto3.ErrorResponse) {
	s.lastState = 'E'
	if r.query != nil {
		s.send(e)
		s.send(&pgproto3.ReadyForQuery{TxStatus: 'E'})
		return
	}
	sent := false
	for _, m := range r.msgs {
		switch m.(type) {
		case *pgproto3.Sync:
			s.send(&pgproto3.ReadyForQuery{TxStatus: 'E'})
			sent = false
		case *pgproto3.Flush:
		default:
			if !sent {
				s.send(e)
				sent = true
			}
		}
	}
}

// answerAll answers every message of r itself: as if each statement it
// executes completed with tag, or, with fail, failed with it (the rest
// skipped to the Sync); ReadyForQuery says status.
func (s *session) answerAll(r *round, tag string, status byte, fail *pgproto3.ErrorResponse) {
	s.answer(r, tag, status, fail, nil, "")
}

func (s *session) answer(r *round, tag string, status byte, fail *pgproto3.ErrorResponse, desc *pgproto3.RowDescription, value string) {
	describe := func() {
		if desc != nil {
			s.send(desc)
		} else {
			s.send(&pgproto3.NoData{})
		}
	}
	execute := func() bool {
		if fail != nil {
			s.send(fail)
			return false
		}
		if desc != nil {
			s.send(&pgproto3.DataRow{Values: [][]byte{[]byte(value)}})
		}
		s.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
		return true
	}
	if r.query != nil {
		if desc != nil && fail == nil {
			s.send(desc)
		}
		execute()
		s.send(&pgproto3.ReadyForQuery{TxStatus: status})
		s.lastState = status
		return
	}
	skipping := false
	for i, m := range r.msgs {
		if _, ok := m.(*pgproto3.Sync); ok {
			s.send(&pgproto3.ReadyForQuery{TxStatus: status})
			s.lastState = status
			skipping = false
			continue
		}
		if skipping {
			continue
		}
		switch m := m.(type) {
		case *pgproto3.Parse:
			s.define(m.Name, r.pst[i])
			s.send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			s.send(&pgproto3.BindComplete{})
		case *pgproto3.Describe:
			if m.ObjectType == 'S' {
				s.send(&pgproto3.ParameterDescription{})
			}
			describe()
		case *pgproto3.Execute:
			skipping = !execute()
		case *pgproto3.Close:
			if m.ObjectType == 'S' {
				delete(s.stmts, m.Name)
			}
			s.send(&pgproto3.CloseComplete{})
		}
	}
}

// commit commits the client's read-write transaction with the engine's
// COMMIT protocol: the transaction's id travels with COMMIT, so that a
// connection lost during COMMIT is resolved by asking the primary, and the
// position after the commit is captured in the same round trip.
func (s *session) commit(ctx context.Context, r *round) error {
	b := s.bound
	var p engine.Plan
	s.srv.engine.PlanPinned(&p, &s.opts, b.node, false)
	p.After = engine.AfterCapture
	p.Begin()
	s.setBusy(b)
	tag, err := s.srv.engine.Commit(ctx, &p, b.conn, s.lend)
	s.setBusy(nil)
	p.Finish(err)
	var pgErr *pgconn.PgError
	broken := err != nil && (errors.Is(err, engine.ErrCommitUnknown) || notCommitted(err) || !errors.As(err, &pgErr))
	stateLost := broken && s.pinned
	if !s.pinned || broken {
		s.bound, s.pinned, s.portals, s.txWrites = nil, false, nil, false
		s.plan.Finish(err)
		if broken {
			b.destroy()
		} else {
			b.release()
		}
	}
	switch {
	case err == nil && tag.String() == "":
		// Its reply was lost with the connection; the primary said it
		// committed.
		s.answerAll(r, "COMMIT", 'I', nil)
	case err == nil:
		s.answerAll(r, tag.String(), 'I', nil)
	case !broken:
		// COMMIT failed on the server (a deferred constraint, a
		// serialization failure): the transaction is rolled back.
		s.answerAll(r, "", 'I', errorResponse(pgErr))
	default:
		s.answerAll(r, "", 'I', errorFor(err))
	}
	if stateLost {
		return s.stateLost(err)
	}
	return nil
}

func notCommitted(err error) bool {
	var nc *engine.NotCommittedError
	return errors.As(err, &nc)
}

// errorFor turns an error of the proxy's or the engine's into what the
// client is told, with the SQLSTATE a client can act on.
func errorFor(err error) *pgproto3.ErrorResponse {
	e := &pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "08006", Message: "switchyard proxy: " + err.Error()}
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, engine.ErrCommitUnknown):
		e.Code = "08007" // transaction_resolution_unknown
		e.Message = "switchyard proxy: the outcome of COMMIT is unknown: " + err.Error()
	case notCommitted(err):
		// The server connection failed during COMMIT, and the primary says
		// the transaction did not commit: rolled back, as far as the
		// client is concerned, on a client connection that goes on.
		e.Code = "40000" // transaction_rollback
		e.Message = "switchyard proxy: the server connection failed during COMMIT, and the transaction did not commit: " + err.Error()
	case errors.Is(err, engine.ErrNoPrimary):
		e.Code = "57P03"
	case errors.As(err, &pgErr):
		return errorResponse(pgErr)
	}
	return e
}

// errorResponse passes a server's error on with its SQLSTATE and fields
// unchanged.
func errorResponse(e *pgconn.PgError) *pgproto3.ErrorResponse {
	return &pgproto3.ErrorResponse{
		Severity: e.Severity, SeverityUnlocalized: e.SeverityUnlocalized, Code: e.Code, Message: e.Message,
		Detail: e.Detail, Hint: e.Hint, Position: e.Position, InternalPosition: e.InternalPosition,
		InternalQuery: e.InternalQuery, Where: e.Where, SchemaName: e.SchemaName, TableName: e.TableName,
		ColumnName: e.ColumnName, DataTypeName: e.DataTypeName, ConstraintName: e.ConstraintName,
		File: e.File, Line: e.Line, Routine: e.Routine,
	}
}

// errorFromResponse is a server's ErrorResponse as an error.
func errorFromResponse(m *pgproto3.ErrorResponse) error { return pgconn.ErrorResponseToPgError(m) }
