package pgscript

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// conn is one client connection.
type conn struct {
	srv    *Server
	nc     net.Conn
	be     *pgproto3.Backend
	id     int
	pid    uint32
	secret []byte
	cancel chan struct{} // a CancelRequest for this connection
	busy   atomic.Bool   // from a query's first message to ReadyForQuery

	pending []byte // bytes read while hanging, to be read before the socket's

	txStatus   byte
	skipping   bool // after an error in the extended protocol, until Sync
	statements map[string]*statement
	portals    map[string]*portal
}

type statement struct {
	sql  string
	oids []uint32
}

type portal struct {
	stmt          *statement
	name          string
	params        [][]byte
	paramFormats  []int16
	resultFormats []int16
	reply         *Reply // once the handler answered
	sent          int    // rows sent so far
	done          bool   // CommandComplete sent
}

func newConn(s *Server, nc net.Conn, id int) *conn {
	c := &conn{
		srv: s, nc: nc, id: id, pid: uint32(10000 + id), secret: make([]byte, 4),
		cancel: make(chan struct{}, 1), txStatus: 'I',
		statements: map[string]*statement{}, portals: map[string]*portal{},
	}
	rand.Read(c.secret)
	c.be = pgproto3.NewBackend(c, nc)
	return c
}

// Read reads what was read off the socket while hanging first, then the
// socket: the Backend reads through it.
func (c *conn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.nc.Read(p)
}

func (c *conn) serve() {
	defer c.srv.wg.Done()
	defer c.srv.forget(c)
	defer c.nc.Close()
	if !c.startup() {
		return
	}
	for {
		msg, err := c.be.Receive()
		if err != nil {
			return
		}
		c.busy.Store(true)
		if !c.dispatch(msg) {
			return
		}
	}
}

// startup runs the connection's start: it reports whether queries follow.
func (c *conn) startup() bool {
	for {
		msg, err := c.be.ReceiveStartupMessage()
		if err != nil {
			return false
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := c.nc.Write([]byte{'N'}); err != nil {
				return false
			}
		case *pgproto3.CancelRequest:
			c.srv.cancel(m.ProcessID, m.SecretKey)
			return false
		case *pgproto3.StartupMessage:
			if f := c.srv.cfg.Startup; f != nil {
				if e := f(maps.Clone(m.Parameters)); e != nil {
					if e.Severity == "" {
						e.Severity = "FATAL"
					}
					c.be.Send(errorResponse(e))
					c.be.Flush()
					return false
				}
			}
			c.be.Send(&pgproto3.AuthenticationOk{})
			params := map[string]string{
				"server_version":              "15.0",
				"server_encoding":             "UTF8",
				"client_encoding":             "UTF8",
				"standard_conforming_strings": "on",
				"integer_datetimes":           "on",
				"DateStyle":                   "ISO, MDY",
				"TimeZone":                    "UTC",
				"application_name":            m.Parameters["application_name"],
			}
			maps.Copy(params, c.srv.cfg.Params)
			for _, k := range slices.Sorted(maps.Keys(params)) {
				c.be.Send(&pgproto3.ParameterStatus{Name: k, Value: params[k]})
			}
			c.be.Send(&pgproto3.BackendKeyData{ProcessID: c.pid, SecretKey: c.secret})
			c.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			// Counted before the client can know it is connected.
			c.srv.accepted.Add(1)
			return c.be.Flush() == nil
		default:
			return false
		}
	}
}

// dispatch handles one message; it reports whether the connection goes on.
func (c *conn) dispatch(msg pgproto3.FrontendMessage) bool {
	switch m := msg.(type) {
	case *pgproto3.Query:
		return c.simple(m.String)
	case *pgproto3.Sync:
		c.skipping = false
		if c.txStatus == 'I' {
			clear(c.portals) // the implicit transaction ended
		}
		return c.ready()
	case *pgproto3.Flush:
		return c.be.Flush() == nil
	case *pgproto3.Terminate:
		return false
	}
	if c.skipping {
		return true
	}
	switch m := msg.(type) {
	case *pgproto3.Parse:
		if _, ok := c.statements[m.Name]; ok && m.Name != "" {
			return c.fail(&Error{Code: "42P05", Message: fmt.Sprintf("prepared statement %q already exists", m.Name)})
		}
		c.statements[m.Name] = &statement{sql: m.Query, oids: append([]uint32(nil), m.ParameterOIDs...)}
		c.be.Send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		st, ok := c.statements[m.PreparedStatement]
		if !ok {
			return c.fail(&Error{Code: "26000", Message: fmt.Sprintf("prepared statement %q does not exist", m.PreparedStatement)})
		}
		if _, ok := c.portals[m.DestinationPortal]; ok && m.DestinationPortal != "" {
			return c.fail(&Error{Code: "42P03", Message: fmt.Sprintf("cursor %q already exists", m.DestinationPortal)})
		}
		formats, err := expandFormats(m.ParameterFormatCodes, len(m.Parameters))
		if err != nil {
			return c.fail(&Error{Code: "08P01", Message: err.Error()})
		}
		params := make([][]byte, len(m.Parameters))
		for i, v := range m.Parameters {
			if v != nil {
				params[i] = append([]byte{}, v...)
			}
		}
		c.portals[m.DestinationPortal] = &portal{
			stmt: st, name: m.DestinationPortal, params: params, paramFormats: formats,
			resultFormats: append([]int16(nil), m.ResultFormatCodes...),
		}
		c.be.Send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		if m.ObjectType == 'S' {
			return c.describeStatement(m.Name)
		}
		p, ok := c.portals[m.Name]
		if !ok {
			return c.fail(&Error{Code: "34000", Message: fmt.Sprintf("portal %q does not exist", m.Name)})
		}
		r, goOn, answered := c.run(p)
		if !answered {
			return goOn
		}
		if len(r.Columns) == 0 {
			c.be.Send(&pgproto3.NoData{})
			return true
		}
		fields, err := describe(r.Columns, p.resultFormats)
		if err != nil {
			return c.fail(err)
		}
		c.be.Send(&pgproto3.RowDescription{Fields: fields})
	case *pgproto3.Execute:
		return c.execute(m.Portal, m.MaxRows)
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(c.statements, m.Name)
		} else {
			delete(c.portals, m.Name)
		}
		c.be.Send(&pgproto3.CloseComplete{})
	default:
		return c.fail(&Error{Code: "0A000", Message: fmt.Sprintf("pgscript: %T is not supported", msg)})
	}
	return true
}

// fail sends an error; in the extended protocol, messages are then skipped
// until Sync. It reports whether the connection goes on.
func (c *conn) fail(e *Error) bool {
	c.be.Send(errorResponse(e))
	if e.fatal() {
		c.be.Flush()
		return false
	}
	c.skipping = true
	if c.txStatus == 'T' {
		c.txStatus = 'E'
	}
	return true
}

// ready ends a query cycle with ReadyForQuery.
func (c *conn) ready() bool {
	c.be.Send(&pgproto3.ReadyForQuery{TxStatus: c.txStatus})
	c.busy.Store(false)
	select {
	case <-c.cancel: // a cancel that came too late for anything
	default:
	}
	return c.be.Flush() == nil
}

func (c *conn) describeStatement(name string) bool {
	st, ok := c.statements[name]
	if !ok {
		return c.fail(&Error{Code: "26000", Message: fmt.Sprintf("prepared statement %q does not exist", name)})
	}
	r := c.srv.handle(Query{SQL: st.sql, ParamOIDs: st.oids, Extended: true, Describe: true, Statement: name, Conn: c.id, TxStatus: c.txStatus})
	switch {
	case r.Drop:
		return false
	case r.Hang:
		return c.hang()
	case r.Error != nil:
		return c.fail(r.Error)
	}
	oids := r.ParamOIDs
	if oids == nil {
		oids = append([]uint32(nil), st.oids...)
		for len(oids) < maxParam(st.sql) {
			oids = append(oids, TextOID)
		}
		for i, o := range oids {
			if o == 0 {
				oids[i] = TextOID
			}
		}
	}
	c.be.Send(&pgproto3.ParameterDescription{ParameterOIDs: oids})
	if len(r.Columns) == 0 {
		c.be.Send(&pgproto3.NoData{})
		return true
	}
	fields, err := describe(r.Columns, nil)
	if err != nil {
		return c.fail(err)
	}
	c.be.Send(&pgproto3.RowDescription{Fields: fields})
	return true
}

var paramRef = regexp.MustCompile(`\$([0-9]+)`)

// maxParam is the highest $n that sql mentions.
func maxParam(sql string) int {
	n := 0
	for _, m := range paramRef.FindAllStringSubmatch(sql, -1) {
		if v, err := strconv.Atoi(m[1]); err == nil && v > n && v <= 65535 {
			n = v
		}
	}
	return n
}

// run asks the handler about portal p once. answered reports whether a
// result follows; if not, goOn reports whether the connection goes on (the
// reply was an error, a drop or a hang).
func (c *conn) run(p *portal) (r *Reply, goOn, answered bool) {
	if p.reply == nil {
		q := Query{
			SQL: p.stmt.sql, Params: p.params, ParamFormats: p.paramFormats, ParamOIDs: p.stmt.oids,
			Extended: true, Statement: c.statementName(p.stmt), Portal: p.name, Conn: c.id, TxStatus: c.txStatus,
		}
		reply := c.srv.handle(q)
		p.reply = &reply
	}
	r = p.reply
	switch {
	case r.Drop:
		return r, false, false
	case r.Hang:
		p.reply = &Reply{} // answered by the cancel's error, if one comes
		if !c.hang() {
			return r, false, false
		}
		return r, c.fail(&Error{Code: "57014", Message: "canceling statement due to user request"}), false
	case r.Error != nil:
		goOn = c.fail(r.Error)
		if r.TxStatus != 0 {
			c.txStatus = r.TxStatus
		}
		return r, goOn, false
	}
	return r, true, true
}

func (c *conn) statementName(st *statement) string {
	for name, s := range c.statements {
		if s == st {
			return name
		}
	}
	return ""
}

func (c *conn) execute(name string, maxRows uint32) bool {
	p, ok := c.portals[name]
	if !ok {
		return c.fail(&Error{Code: "34000", Message: fmt.Sprintf("portal %q does not exist", name)})
	}
	if p.done {
		// A portal run to completion returns nothing more.
		c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag(p.stmt.sql, p.reply, 0))})
		return true
	}
	r, goOn, answered := c.run(p)
	if !answered {
		return goOn
	}
	formats, err := expandFormats(p.resultFormats, len(r.Columns))
	if err != nil {
		return c.fail(&Error{Code: "08P01", Message: err.Error()})
	}
	limit, suspend := len(r.Rows), false
	if maxRows > 0 && p.sent+int(maxRows) < len(r.Rows) {
		limit, suspend = p.sent+int(maxRows), true
	}
	for ; p.sent < limit; p.sent++ {
		row, err := encodeRow(r.Columns, formats, r.Rows[p.sent])
		if err != nil {
			return c.fail(err)
		}
		c.be.Send(&pgproto3.DataRow{Values: row})
	}
	if suspend {
		c.be.Send(&pgproto3.PortalSuspended{})
		return true
	}
	p.done = true
	if strings.TrimSpace(p.stmt.sql) == "" && len(r.Columns) == 0 && r.Tag == "" {
		c.be.Send(&pgproto3.EmptyQueryResponse{})
	} else {
		c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag(p.stmt.sql, r, len(r.Rows)))})
	}
	c.track(r)
	if r.DropAfter {
		c.be.Flush()
		return false
	}
	return true
}

// simple answers a Query message.
func (c *conn) simple(sql string) bool {
	c.skipping = false
	r := c.srv.handle(Query{SQL: sql, Conn: c.id, TxStatus: c.txStatus})
	switch {
	case r.Drop:
		return false
	case r.Hang:
		if !c.hang() {
			return false
		}
		r = Reply{Error: &Error{Code: "57014", Message: "canceling statement due to user request"}}
	}
	if r.Error != nil {
		if !c.fail(r.Error) {
			return false
		}
		if r.TxStatus != 0 {
			c.txStatus = r.TxStatus
		}
		c.skipping = false
		return c.ready()
	}
	if strings.TrimSpace(sql) == "" && len(r.Columns) == 0 && r.Tag == "" {
		c.be.Send(&pgproto3.EmptyQueryResponse{})
		return c.ready()
	}
	if len(r.Columns) > 0 {
		fields, err := describe(r.Columns, nil)
		if err != nil {
			c.fail(err)
			c.skipping = false
			return c.ready()
		}
		c.be.Send(&pgproto3.RowDescription{Fields: fields})
		for _, values := range r.Rows {
			row, err := encodeRow(r.Columns, nil, values)
			if err != nil {
				c.fail(err)
				c.skipping = false
				return c.ready()
			}
			c.be.Send(&pgproto3.DataRow{Values: row})
		}
	}
	c.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag(sql, &r, len(r.Rows)))})
	c.track(&r)
	if r.DropAfter {
		c.be.Flush()
		return false
	}
	return c.ready()
}

// track follows the transaction status through a successful command.
func (c *conn) track(r *Reply) {
	switch word, _, _ := strings.Cut(r.Tag, " "); strings.ToUpper(word) {
	case "BEGIN", "START":
		c.txStatus = 'T'
	case "COMMIT", "ROLLBACK", "END", "ABORT":
		c.txStatus = 'I'
	}
	if r.TxStatus != 0 {
		c.txStatus = r.TxStatus
	}
}

// tag is r's command tag for sql, with n rows. It fills r.Tag in when it
// was empty, so that track sees it.
func tag(sql string, r *Reply, n int) string {
	if r.Tag != "" {
		return r.Tag
	}
	if len(r.Columns) > 0 {
		r.Tag = "SELECT " + strconv.Itoa(n)
		return r.Tag
	}
	word := strings.ToUpper(firstWord(sql))
	switch word {
	case "INSERT":
		r.Tag = "INSERT 0 0"
	case "UPDATE", "DELETE", "SELECT", "MERGE", "FETCH", "MOVE", "COPY":
		r.Tag = word + " 0"
	case "START":
		r.Tag = "START TRANSACTION"
	default:
		r.Tag = word
	}
	return r.Tag
}

func firstWord(sql string) string {
	s := strings.TrimLeft(sql, " \t\r\n(;")
	end := strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_')
	})
	if end < 0 {
		return s
	}
	return s[:end]
}

// hang waits until the client goes away (false), the server closes
// (false), or a CancelRequest for this connection arrives (true): the
// bytes the client sent meanwhile are then read next.
func (c *conn) hang() bool {
	if c.be.Flush() != nil {
		return false
	}
	readDone := make(chan struct{})
	var buf []byte
	var rerr error
	go func() {
		defer close(readDone)
		b := make([]byte, 4096)
		for {
			n, err := c.nc.Read(b)
			buf = append(buf, b[:n]...)
			if err != nil {
				rerr = err
				return
			}
		}
	}()
	select {
	case <-readDone:
		return false
	case <-c.srv.done:
		c.nc.Close()
		<-readDone
		return false
	case <-c.cancel:
		c.nc.SetReadDeadline(time.Unix(1, 0))
		<-readDone
		var ne net.Error
		if !errors.As(rerr, &ne) || !ne.Timeout() {
			return false
		}
		c.nc.SetReadDeadline(time.Time{})
		c.pending = append(c.pending, buf...)
		return true
	}
}

func errorResponse(e *Error) *pgproto3.ErrorResponse {
	sev := e.Severity
	if sev == "" {
		sev = "ERROR"
	}
	code := e.Code
	if code == "" {
		code = "XX000"
	}
	return &pgproto3.ErrorResponse{Severity: sev, SeverityUnlocalized: sev, Code: code, Message: e.Message, Detail: e.Detail}
}

// expandFormats spreads a Bind's format codes over n values: none means
// text for all, one applies to all.
func expandFormats(codes []int16, n int) ([]int16, error) {
	out := make([]int16, n)
	switch len(codes) {
	case 0:
	case 1:
		for i := range out {
			out[i] = codes[0]
		}
	case n:
		copy(out, codes)
	default:
		return nil, fmt.Errorf("bind message has %d format codes for %d values", len(codes), n)
	}
	for _, f := range out {
		if f != 0 && f != 1 {
			return nil, fmt.Errorf("unsupported format code: %d", f)
		}
	}
	return out, nil
}

// describe makes the fields of a RowDescription.
func describe(cols []Column, resultFormats []int16) ([]pgproto3.FieldDescription, *Error) {
	formats, err := expandFormats(resultFormats, len(cols))
	if err != nil {
		return nil, &Error{Code: "08P01", Message: err.Error()}
	}
	fields := make([]pgproto3.FieldDescription, len(cols))
	for i, col := range cols {
		if formats[i] == 1 && !binaryOK(col.OID) {
			return nil, &Error{Code: "0A000", Message: fmt.Sprintf("pgscript: binary format of type %d is not supported", col.OID)}
		}
		oid := col.OID
		if oid == 0 {
			oid = TextOID
		}
		fields[i] = pgproto3.FieldDescription{
			Name: []byte(col.Name), DataTypeOID: oid, DataTypeSize: typeSize(oid), TypeModifier: -1, Format: formats[i],
		}
	}
	return fields, nil
}

func typeSize(oid uint32) int16 {
	switch oid {
	case BoolOID:
		return 1
	case Int2OID:
		return 2
	case Int4OID, OIDOID, Float4OID:
		return 4
	case Int8OID, Float8OID, PgLSNOID:
		return 8
	case NameOID:
		return 64
	}
	return -1
}

func binaryOK(oid uint32) bool {
	switch oid {
	case BoolOID, Int2OID, Int4OID, Int8OID, OIDOID, Float4OID, Float8OID,
		TextOID, VarcharOID, BPCharOID, NameOID, UnknownOID, JSONOID, 0:
		return true
	}
	return false
}

// encodeRow encodes one row's values (formats nil: all text).
func encodeRow(cols []Column, formats []int16, values []any) ([][]byte, *Error) {
	if len(values) != len(cols) {
		return nil, &Error{Code: "XX000", Message: fmt.Sprintf("pgscript: a row of %d values for %d columns", len(values), len(cols))}
	}
	row := make([][]byte, len(values))
	for i, v := range values {
		if v == nil {
			continue
		}
		text := textOf(v)
		if formats == nil || formats[i] == 0 {
			row[i] = []byte(text)
			continue
		}
		b, err := encodeBinary(cols[i].OID, text)
		if err != nil {
			return nil, &Error{Code: "22P02", Message: fmt.Sprintf("pgscript: column %s: %v", cols[i].Name, err)}
		}
		row[i] = b
	}
	return row, nil
}

// textOf is v's text form, as PostgreSQL prints it.
func textOf(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case bool:
		if v {
			return "t"
		}
		return "f"
	case int:
		return strconv.FormatInt(int64(v), 10)
	case int8:
		return strconv.FormatInt(int64(v), 10)
	case int16:
		return strconv.FormatInt(int64(v), 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint8:
		return strconv.FormatUint(uint64(v), 10)
	case uint16:
		return strconv.FormatUint(uint64(v), 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case fmt.Stringer:
		return v.String()
	}
	return fmt.Sprint(v)
}

// encodeBinary encodes the text form of a value of type oid in binary.
func encodeBinary(oid uint32, text string) ([]byte, error) {
	switch oid {
	case BoolOID:
		switch strings.ToLower(text) {
		case "t", "true", "on", "yes", "1":
			return []byte{1}, nil
		case "f", "false", "off", "no", "0":
			return []byte{0}, nil
		}
		return nil, fmt.Errorf("invalid boolean %q", text)
	case Int2OID, Int4OID, Int8OID, OIDOID:
		bits := map[uint32]int{Int2OID: 16, Int4OID: 32, Int8OID: 64, OIDOID: 32}[oid]
		var v int64
		if oid == OIDOID {
			u, err := strconv.ParseUint(text, 10, 32)
			if err != nil {
				return nil, err
			}
			v = int64(u)
		} else {
			var err error
			if v, err = strconv.ParseInt(text, 10, bits); err != nil {
				return nil, err
			}
		}
		b := make([]byte, bits/8)
		switch bits {
		case 16:
			binary.BigEndian.PutUint16(b, uint16(v))
		case 32:
			binary.BigEndian.PutUint32(b, uint32(v))
		default:
			binary.BigEndian.PutUint64(b, uint64(v))
		}
		return b, nil
	case Float4OID:
		f, err := strconv.ParseFloat(text, 32)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(f))), nil
	case Float8OID:
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, math.Float64bits(f)), nil
	case TextOID, VarcharOID, BPCharOID, NameOID, UnknownOID, JSONOID, 0:
		return []byte(text), nil
	}
	return nil, fmt.Errorf("binary format of type %d is not supported", oid)
}

// decodeBinary decodes a binary parameter of type oid to its text form.
func decodeBinary(oid uint32, b []byte) (string, bool) {
	switch {
	case oid == BoolOID && len(b) == 1:
		return textOf(b[0] != 0), true
	case oid == Int2OID && len(b) == 2:
		return strconv.FormatInt(int64(int16(binary.BigEndian.Uint16(b))), 10), true
	case oid == Int4OID && len(b) == 4:
		return strconv.FormatInt(int64(int32(binary.BigEndian.Uint32(b))), 10), true
	case oid == OIDOID && len(b) == 4:
		return strconv.FormatUint(uint64(binary.BigEndian.Uint32(b)), 10), true
	case oid == Int8OID && len(b) == 8:
		return strconv.FormatInt(int64(binary.BigEndian.Uint64(b)), 10), true
	case oid == Float4OID && len(b) == 4:
		return textOf(math.Float32frombits(binary.BigEndian.Uint32(b))), true
	case oid == Float8OID && len(b) == 8:
		return textOf(math.Float64frombits(binary.BigEndian.Uint64(b))), true
	}
	return "", false
}
