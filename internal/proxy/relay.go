package proxy

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// An item is what one message sent to a server (or answered by the proxy
// itself) makes the client expect, in order: the relay walks the items of
// a round trip as the server's replies arrive, forwarding what the client
// asked for, swallowing what the proxy slipped in (a freshness check, a
// position capture, a Parse of a statement this server has not seen, a
// deferred BEGIN), and answering itself where the proxy kept a message
// back (a Parse of a statement the server already has, a Close of a
// client's statement).
type item struct {
	kind reply
	mode mode
	// tag is the command tag of a synthesized Execute or Query.
	tag string
	// status is the transaction status of a synthesized ReadyForQuery.
	status byte
	// row, for a swallowed Execute or Query, receives the first row's
	// values (valid only during the call).
	row func(values [][]byte)
	// hold: keep a forwarded ReadyForQuery back until the relay is done
	// (a write's capture must be recorded before the client hears of the
	// write's end).
	hold bool
	// parsed, for a Parse sent to the server, is the statement it
	// prepares: the backend forgets it if the server refuses or skips the
	// Parse, and the login remembers it as accepted on ParseComplete.
	parsed *statement
}

// reply says what the server answers to a message.
type reply uint8

const (
	replyParse     reply = iota // ParseComplete
	replyBind                   // BindComplete
	replyDescribeS              // ParameterDescription, then RowDescription or NoData
	replyDescribeP              // RowDescription or NoData
	replyExecute                // DataRow*, then CommandComplete, EmptyQueryResponse or PortalSuspended (or a COPY)
	replyClose                  // CloseComplete
	replySync                   // ReadyForQuery
	replyQuery                  // a simple query's results, up to and including ReadyForQuery
)

// mode says what the relay does with an item's replies.
type mode uint8

const (
	forward    mode = iota // pass them to the client
	swallow                // drop them: the proxy sent the message
	synthesize             // the server sends nothing: answer the client here
	// replay: the proxy sent again, on this server, a message the client
	// sent on another (a Parse of its statement): drop the success, pass
	// an error on, as the client's message would have met it.
	replay
)

// ends reports whether msg, a reply to an item of kind k, is the item's
// last message.
func (k reply) ends(msg pgproto3.BackendMessage) bool {
	switch msg.(type) {
	case *pgproto3.ParseComplete:
		return k == replyParse
	case *pgproto3.BindComplete:
		return k == replyBind
	case *pgproto3.RowDescription:
		return k == replyDescribeS || k == replyDescribeP
	case *pgproto3.NoData:
		return k == replyDescribeS || k == replyDescribeP
	case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse, *pgproto3.PortalSuspended:
		return k == replyExecute
	case *pgproto3.CloseComplete:
		return k == replyClose
	case *pgproto3.ReadyForQuery:
		return k == replySync || k == replyQuery
	}
	return false
}

// synthesized returns the messages the proxy answers for an item it kept
// back.
func (it *item) synthesized() []pgproto3.BackendMessage {
	switch it.kind {
	case replyParse:
		return []pgproto3.BackendMessage{&pgproto3.ParseComplete{}}
	case replyBind:
		return []pgproto3.BackendMessage{&pgproto3.BindComplete{}}
	case replyDescribeP:
		return []pgproto3.BackendMessage{&pgproto3.NoData{}}
	case replyExecute:
		return []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte(it.tag)}}
	case replyClose:
		return []pgproto3.BackendMessage{&pgproto3.CloseComplete{}}
	case replySync:
		return []pgproto3.BackendMessage{&pgproto3.ReadyForQuery{TxStatus: it.status}}
	case replyQuery:
		return []pgproto3.BackendMessage{&pgproto3.CommandComplete{CommandTag: []byte(it.tag)}, &pgproto3.ReadyForQuery{TxStatus: it.status}}
	}
	return nil
}

// relayResult is what a relay learned.
type relayResult struct {
	status   byte  // the last ReadyForQuery's transaction status
	sent     bool  // something of the server's reached the client's output
	err      error // the first ErrorResponse of a forwarded item, as an error
	held     *pgproto3.ReadyForQuery
	copyFail bool
}

// errServerGone wraps a failure to talk to the server.
type errServerGone struct{ err error }

func (e *errServerGone) Error() string {
	return "switchyard proxy: server connection failed: " + e.err.Error()
}
func (e *errServerGone) Unwrap() error { return e.err }

// relay reads the server's replies to items and answers the client as
// each item says, until every item is done. It returns an errServerGone
// when the server connection fails. While it runs, the client's output is
// only buffered (s.out): the caller decides when it is written, so that a
// read whose server failed before anything was written can be run again
// elsewhere.
func (s *session) relay(b *backend, items []item) (relayResult, error) {
	var res relayResult
	var sr *serverReader
	if c, ok := b.conn.Conn().(*serverConn); ok {
		sr = c.reader
	}
	failed := false // an error: the server skips messages up to the next Sync
	for i := 0; i < len(items); {
		it := &items[i]
		if failed && it.kind != replySync && it.kind != replyQuery {
			if it.parsed != nil && it.mode != synthesize {
				b.forget(serverStatement(it.parsed)) // skipped: not prepared
			}
			i++ // the server skips it, so must the proxy
			continue
		}
		if it.mode == synthesize {
			for _, m := range it.synthesized() {
				s.send(m)
			}
			if it.kind == replySync || it.kind == replyQuery {
				failed, res.status = false, it.status
			}
			i++
			continue
		}
		if sr != nil {
			// The messages the proxy passes on as they are, and pgconn
			// keeps no state by, go from the server's bytes to the
			// client's without being decoded.
			typ, raw, ok, err := sr.peek(maxRawMessage)
			if err != nil {
				return res, &errServerGone{err}
			}
			if ok {
				switch typ {
				case 'D':
					if it.mode == forward {
						s.sendRaw(raw)
						res.sent = true
					} else if it.row != nil {
						row := &s.dataRow
						if err := row.Decode(raw[5:]); err != nil {
							return res, &errServerGone{err}
						}
						it.row(row.Values)
						it.row = nil // the first row only
					}
					sr.skip(len(raw))
					continue
				case 'd':
					if it.mode == forward {
						s.sendRaw(raw)
						res.sent = true
					}
					sr.skip(len(raw))
					continue
				case '1', '2', '3', 'T', 'n', 't', 'C', 'I', 's':
					if it.mode == forward {
						s.sendRaw(raw)
						res.sent = true
					}
					sr.skip(len(raw))
					if it.kind.endsType(typ) {
						s.ended(it)
						i++
					}
					continue
				}
			}
		}
		msg, err := b.receive()
		if err != nil {
			return res, &errServerGone{err}
		}
		switch m := msg.(type) {
		case *pgproto3.NoticeResponse:
			if it.mode == forward {
				s.send(m)
			}
			continue
		case *pgproto3.ParameterStatus:
			s.send(m) // the client's session changed, whoever asked
			continue
		case *pgproto3.NotificationResponse:
			s.send(m)
			continue
		case *pgproto3.ErrorResponse:
			if it.parsed != nil {
				b.forget(serverStatement(it.parsed)) // refused: not prepared
			}
			if it.mode == forward || it.mode == replay {
				s.send(m)
				res.sent = true
				if res.err == nil {
					res.err = errorFromResponse(m)
				}
			} else if it.row != nil {
				it.row(nil) // an injected query failed: it has no row
			}
			if it.kind != replyQuery {
				failed = true
				i++
			}
			continue
		case *pgproto3.DataRow:
			if it.mode == forward {
				s.send(m)
				res.sent = true
			} else if it.row != nil {
				it.row(m.Values)
				it.row = nil // the first row only
			}
			continue
		case *pgproto3.CopyInResponse:
			if it.mode != forward {
				return res, fmt.Errorf("switchyard proxy: the server asked for COPY data for a query of the proxy's")
			}
			s.send(m)
			res.sent = true
			if err := s.copyIn(b); err != nil {
				return res, err
			}
			continue
		case *pgproto3.CopyOutResponse, *pgproto3.CopyData, *pgproto3.CopyDone:
			if it.mode == forward {
				s.send(m)
				res.sent = true
			}
			continue
		case *pgproto3.CopyBothResponse:
			return res, &errServerGone{errors.New("the server started a replication stream, which the proxy does not relay")}
		case *pgproto3.ReadyForQuery:
			res.status = m.TxStatus
			if it.kind != replySync && it.kind != replyQuery {
				return res, &errServerGone{fmt.Errorf("ReadyForQuery where the proxy expected the reply to another message")}
			}
			switch {
			case it.mode == forward && it.hold:
				held := *m
				res.held = &held
			case it.mode == forward:
				s.send(m)
			}
			failed = false
			i++
			continue
		}
		if it.mode == forward {
			s.send(msg)
			res.sent = true
		}
		if it.kind.ends(msg) {
			s.ended(it)
			i++
		}
	}
	return res, nil
}

// ended is what the relay does when an item's last message arrived.
func (s *session) ended(it *item) {
	if it.row != nil && it.kind == replyExecute {
		it.row(nil) // done without a row
	}
	if it.parsed != nil && s.pools != nil {
		s.pools.markParsed(it.parsed.key)
	}
}

// maxRawMessage bounds the messages the relay passes on from the server's
// buffer; larger ones go through pgconn.
const maxRawMessage = 64 << 10

// sendRaw passes a server's message on to the client as it is.
func (s *session) sendRaw(msg []byte) {
	s.out = append(s.out, msg...)
	if len(s.out) > maxBufferedOutput {
		s.flush()
	}
}

// endsType is ends, by message type.
func (k reply) endsType(typ byte) bool {
	switch typ {
	case '1':
		return k == replyParse
	case '2':
		return k == replyBind
	case 'T', 'n':
		return k == replyDescribeS || k == replyDescribeP
	case 'C', 'I', 's':
		return k == replyExecute
	case '3':
		return k == replyClose
	case 'Z':
		return k == replySync || k == replyQuery
	}
	return false
}

// copyIn passes the client's COPY data to the server until the client ends
// it (CopyDone or CopyFail).
func (s *session) copyIn(b *backend) error {
	if err := s.flush(); err != nil {
		return err
	}
	fe := b.conn.Frontend()
	pending := 0
	raw := &s.rawOut
	defer func() { raw.b = nil }()
	for {
		// Each message goes on as the client sent it; the client's buffer
		// need not keep it.
		s.in.release()
		typ, _, m, err := s.in.next()
		if err != nil {
			fe.Send(&pgproto3.CopyFail{Message: "switchyard proxy: the client went away during COPY"})
			fe.Flush()
			return err
		}
		raw.b = m
		switch typ {
		case 'd':
			fe.Send(raw)
			pending += len(m)
		case 'c', 'f':
			fe.Send(raw)
			if err := fe.Flush(); err != nil {
				return &errServerGone{err}
			}
			return nil
		case 'H', 'S':
			// Allowed during COPY; the server ignores them until the
			// copy ends.
			fe.Send(raw)
		default:
			fe.Send(&pgproto3.CopyFail{Message: fmt.Sprintf("switchyard proxy: unexpected message type %q during COPY", typ)})
			fe.Flush()
			return fmt.Errorf("switchyard proxy: the client sent message type %q during COPY", typ)
		}
		if pending > copyFlushBytes {
			if err := fe.Flush(); err != nil {
				return &errServerGone{err}
			}
			pending = 0
		}
	}
}

// copyFlushBytes is how much COPY data the proxy collects before passing
// it on.
const copyFlushBytes = 256 << 10
