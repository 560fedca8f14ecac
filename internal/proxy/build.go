package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/lsn"
)

// The proxy's own statements (engine.CheckSQL, engine.SettleSQL,
// engine.CaptureSQL), prepared under these names on every server
// connection that needs them, and run in implicit transactions of their
// own (after a Sync), so that the client's isolation level never shares
// their snapshot.
const (
	checkName   = "sy_check"
	settleName  = "sy_settle"
	captureName = "sy_capture"
)

var (
	checkStmt   = &statement{sql: engine.CheckSQL, key: engine.CheckSQL, name: checkName}
	settleStmt  = &statement{sql: engine.SettleSQL, key: engine.SettleSQL, name: settleName}
	captureStmt = &statement{sql: engine.CaptureSQL, key: engine.CaptureSQL, name: captureName}
)

// build sends round r to backend b (buffered in its frontend; the caller
// flushes) as plan p says, with a deferred BEGIN ahead of it if begin is
// not empty, and returns the items the relay walks.
func (s *session) build(b *backend, r *round, p *engine.Plan, begin string) []item {
	if s.onCapture == nil {
		s.onCapture, s.onCheck = s.takeCapture, s.takeCheck
	}
	fe := b.fe()
	items := s.items[:0]
	s.checkPassed, s.captured, s.capturedFirst = false, 0, false
	if begin != "" {
		fe.Send(&pgproto3.Query{String: begin})
		delete(b.state.prepared, "") // a simple query destroys the unnamed statement
		items = append(items, item{kind: replyQuery, mode: swallow})
		if p.After == engine.AfterCapture && !r.setsTransaction() {
			// A read-only transaction of a session that wrote, on the
			// primary: its first statement takes the position, and its
			// snapshot then covers the session's writes.
			items = s.inject(b, items, captureStmt, nil, s.onCapture)
			p.After = engine.AfterNone
			s.capturedFirst = true
		}
	}
	switch p.Before {
	case engine.BeforeCheck:
		items = s.inject(b, items, checkStmt, [][]byte{[]byte(p.Check.String())}, s.onCheck)
	case engine.BeforeSettle:
		items = s.inject(b, items, settleStmt, nil, nil)
	}
	raw := &s.rawOut
	for i, m := range r.msgs {
		// What goes to the server as the client sent it, when the proxy
		// has nothing to rename in it.
		raw.b = r.raw[i]
		switch m := m.(type) {
		case *pgproto3.Query:
			fe.Send(raw)
			delete(b.state.prepared, "")
			items = append(items, item{kind: replyQuery})
		case *pgproto3.Parse:
			st := r.pst[i]
			s.define(m.Name, st)
			if !st.unnamed && b.has(st) {
				items = append(items, item{kind: replyParse, mode: synthesize})
				continue
			}
			if st.unnamed {
				// The client's own Parse, as it sent it.
				items = s.prepareAs(b, items, st, forward, raw)
				continue
			}
			items = s.prepare(b, items, st, forward)
		case *pgproto3.Bind:
			if st := s.statement(m.PreparedStatement); st != nil {
				items = s.ensure(b, items, st)
				if name := serverStatement(st); name == m.PreparedStatement {
					fe.Send(raw)
				} else {
					bind := *m
					bind.PreparedStatement = name
					fe.SendBind(&bind)
				}
				if s.portals == nil {
					s.portals = map[string]*statement{}
				}
				if s.portals[m.DestinationPortal] != st {
					s.portals[m.DestinationPortal] = st
				}
			} else {
				fe.Send(raw) // the server answers that it does not exist
			}
			items = append(items, item{kind: replyBind})
		case *pgproto3.Describe:
			if m.ObjectType == 'P' {
				fe.Send(raw)
				items = append(items, item{kind: replyDescribeP})
				continue
			}
			if st := s.statement(m.Name); st != nil {
				items = s.ensure(b, items, st)
				d := *m
				d.Name = serverStatement(st)
				fe.SendDescribe(&d)
			} else {
				fe.Send(raw)
			}
			items = append(items, item{kind: replyDescribeS})
		case *pgproto3.Execute:
			fe.Send(raw)
			items = append(items, item{kind: replyExecute})
		case *pgproto3.Close:
			if m.ObjectType == 'S' {
				// The client's statement goes; the server's stays prepared
				// for whoever uses the same text next.
				if m.Name == "" {
					s.unnamed = nil
				} else {
					delete(s.stmts, m.Name)
				}
				items = append(items, item{kind: replyClose, mode: synthesize})
				continue
			}
			fe.Send(raw)
			items = append(items, item{kind: replyClose})
		case *pgproto3.Sync:
			fe.Send(raw)
			items = append(items, item{kind: replySync})
		case *pgproto3.Flush:
			fe.Send(raw)
		}
	}
	raw.b = nil
	if p.After == engine.AfterCapture {
		if !endsRound(r) || r.begins || r.copyIn || begin != "" {
			// No Sync to run it after; or the client's transaction is open
			// after it, where it would take the transaction's snapshot
			// (and forbid a SET TRANSACTION that follows); or the server
			// will be in COPY FROM STDIN, taking nothing but COPY data.
			p.After = engine.AfterNone
		} else {
			items[len(items)-1].hold = true
			items = s.inject(b, items, captureStmt, nil, s.onCapture)
		}
	}
	s.items = items
	return items
}

// takeCheck reads a freshness check's row.
func (s *session) takeCheck(v [][]byte) {
	s.checkPassed = len(v) == 1 && string(v[0]) == "t"
}

// takeCapture reads a capture's row.
func (s *session) takeCapture(v [][]byte) {
	if len(v) == 1 && v[0] != nil {
		s.captured, _ = lsn.Parse(string(v[0]))
	}
}

// setsTransaction reports whether r runs SET TRANSACTION, which must come
// before any other statement of its transaction.
func (r *round) setsTransaction() bool {
	for _, st := range r.runs {
		if st.Effects&classify.EffectSetTransaction != 0 {
			return true
		}
	}
	return false
}

// inject runs one of the proxy's statements in an implicit transaction of
// its own, its replies swallowed and its first row handed to row.
func (s *session) inject(b *backend, items []item, st *statement, params [][]byte, row func([][]byte)) []item {
	fe := b.fe()
	if !b.has(st) {
		items = s.prepare(b, items, st, swallow)
	}
	fe.SendBind(&pgproto3.Bind{PreparedStatement: st.name, Parameters: params})
	fe.SendExecute(&pgproto3.Execute{})
	fe.SendSync(syncMsg)
	return append(items,
		item{kind: replyBind, mode: swallow},
		item{kind: replyExecute, mode: swallow, row: row},
		item{kind: replySync, mode: swallow})
}

// serverStatement is the name of client statement st on servers: "" (the
// unnamed statement) for the client's unnamed one.
func serverStatement(st *statement) string {
	if st.unnamed {
		return ""
	}
	return st.name
}

// has reports whether b has statement st prepared.
func (b *backend) has(st *statement) bool {
	k, ok := b.state.prepared[serverStatement(st)]
	return ok && k == st.key
}

// ensure prepares client statement st on b, if b does not have it: the
// client prepared it on another server connection. Its success is not
// the client's to hear of; its failure (the table went away since) is.
func (s *session) ensure(b *backend, items []item, st *statement) []item {
	if b.has(st) {
		return items
	}
	return s.prepare(b, items, st, replay)
}

// prepare sends a Parse of st to b under its server name (or as the
// unnamed statement), making room first, and records it.
func (s *session) prepare(b *backend, items []item, st *statement, m mode) []item {
	return s.prepareAs(b, items, st, m, nil)
}

// prepareAs is prepare, with the Parse as the client sent it, if raw is
// not nil (a Parse of the unnamed statement).
func (s *session) prepareAs(b *backend, items []item, st *statement, m mode, raw *rawMsg) []item {
	fe := b.fe()
	name := serverStatement(st)
	if name != "" {
		// Close it first, whether or not the proxy thinks the server has
		// it (closing a statement that does not exist is no error): it may
		// hold another text (a hash collision, a proxy statement to
		// replace), or still exist after the proxy stopped counting on it
		// (a DEALLOCATE ALL whose round trip failed).
		fe.SendClose(&pgproto3.Close{ObjectType: 'S', Name: name})
		items = append(items, item{kind: replyClose, mode: swallow})
		b.forget(name)
		for len(b.state.order) >= maxPrepared {
			old := b.state.order[0]
			fe.SendClose(&pgproto3.Close{ObjectType: 'S', Name: old})
			items = append(items, item{kind: replyClose, mode: swallow})
			b.forget(old)
		}
		b.state.order = append(b.state.order, name)
	}
	b.state.prepared[name] = st.key
	if raw != nil {
		fe.Send(raw)
	} else {
		out := &s.parseOut
		*out = pgproto3.Parse{Name: name, Query: st.sql, ParameterOIDs: st.oids}
		fe.SendParse(out)
		*out = pgproto3.Parse{}
	}
	return append(items, item{kind: replyParse, mode: m, parsed: st})
}

// forget drops a statement name from b's records.
func (b *backend) forget(name string) {
	delete(b.state.prepared, name)
	for i, n := range b.state.order {
		if n == name {
			b.state.order = append(b.state.order[:i], b.state.order[i+1:]...)
			break
		}
	}
}
