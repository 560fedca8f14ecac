package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/switchyard-db/switchyard/internal/engine"
)

// startupTimeout bounds a client's startup and authentication.
const startupTimeout = 30 * time.Second

// cleanTimeout bounds the clean-up of a server connection a client leaves.
const cleanTimeout = 5 * time.Second

// handle serves one client connection from its first byte.
func (s *Server) handle(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(startupTimeout))
	sock := newSockIO(conn)
	in := newClientReader(conn)
	if sock != nil {
		in.conn = sock
	}
	fe := pgproto3.NewBackend(in, conn)
	secure := false
	var startup *pgproto3.StartupMessage
	for startup == nil {
		msg, err := fe.ReceiveStartupMessage()
		if err != nil {
			conn.Close()
			return
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if s.cfg.TLS == nil || secure {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					conn.Close()
					return
				}
				continue
			}
			if in.buffered() > 0 {
				// Sent before TLS, to be read as if inside it: refused,
				// as PostgreSQL refuses it.
				conn.Close()
				return
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				conn.Close()
				return
			}
			tc := tls.Server(conn, s.cfg.TLS)
			if err := tc.Handshake(); err != nil {
				s.log.Debug("switchyard proxy: TLS handshake", "client", conn.RemoteAddr().String(), "err", err)
				conn.Close()
				return
			}
			in, sock = newClientReader(tc), nil
			conn, fe, secure = tc, pgproto3.NewBackend(in, tc), true
		case *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				conn.Close()
				return
			}
		case *pgproto3.CancelRequest:
			s.cancel(m)
			conn.Close()
			return
		case *pgproto3.StartupMessage:
			startup = m
			in.untyped = false
		default:
			conn.Close()
			return
		}
	}
	sess := &session{srv: s, conn: conn, sock: sock, fe: fe, in: in, log: s.log, stmts: map[string]*statement{}}
	sess.wmu.Lock() // held while not idle (see setIdle)
	if err := s.startSession(sess, startup, secure); err != nil {
		s.log.Debug("switchyard proxy: client refused", "client", conn.RemoteAddr().String(), "err", err)
		sess.flush()
		sess.wmu.Unlock()
		conn.Close()
		return
	}
	conn.SetDeadline(time.Time{})
	sess.run(context.Background())
}

// startSession checks the client's startup message, authenticates it
// against the servers, and tells it it is in.
func (s *Server) startSession(sess *session, m *pgproto3.StartupMessage, secure bool) error {
	if major := m.ProtocolVersion >> 16; major != 3 {
		return sess.refuse("0A000", fmt.Sprintf("unsupported frontend protocol %d.%d: the switchyard proxy speaks 3.0", major, m.ProtocolVersion&0xffff))
	}
	l := login{params: map[string]string{}}
	var unknown []string
	for k, v := range m.Parameters {
		switch {
		case k == "user":
			l.user = v
		case k == "database":
			l.database = v
		case k == "replication":
			if v != "false" && v != "0" && v != "off" && v != "no" {
				return sess.refuse("0A000", "replication connections are not supported by the switchyard proxy: connect to the primary")
			}
		case k == "application_name":
			// Not sent to the servers, whose connections many clients share.
		case strings.HasPrefix(k, "_pq_."):
			unknown = append(unknown, k)
		default:
			l.params[k] = v
		}
	}
	if l.user == "" {
		return sess.refuse("28000", "no PostgreSQL user name specified in startup packet")
	}
	if l.database == "" {
		l.database = l.user
	}
	if m.ProtocolVersion&0xffff != 0 || len(unknown) > 0 {
		sess.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
	}
	if !s.register(sess) {
		return sess.refuse("57P03", "the switchyard proxy is shutting down")
	}
	statuses, err := s.authenticate(sess, &l, secure)
	if err != nil {
		s.forget(sess)
		return err
	}
	pools, err := s.pools.forLogin(&l)
	if err != nil {
		s.forget(sess)
		return sess.refuse("57P03", err.Error())
	}
	sess.login, sess.pools = l, pools
	sess.sess = engine.NewSession()
	sess.opts = engine.Options{Session: sess.sess, Global: s.cfg.Consistency == Global}
	sess.send(&pgproto3.AuthenticationOk{})
	for _, st := range statuses {
		sess.send(&st)
	}
	if app, ok := m.Parameters["application_name"]; ok {
		sess.send(&pgproto3.ParameterStatus{Name: "application_name", Value: app})
	}
	sess.send(&pgproto3.BackendKeyData{ProcessID: sess.key.pid, SecretKey: binaryKey(sess.key.secret)})
	sess.send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	return sess.flush()
}

func binaryKey(k uint32) []byte { return []byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)} }

// refuse ends a client's startup with a FATAL error.
func (sess *session) refuse(code, msg string) error {
	sess.send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
	return errors.New(msg)
}

// reportedStatuses are the server settings a client hears of at startup,
// as the primary reports them to the client's role.
var reportedStatuses = []string{
	"server_version", "server_encoding", "client_encoding", "DateStyle", "IntervalStyle", "TimeZone",
	"integer_datetimes", "standard_conforming_strings", "is_superuser", "session_authorization",
	"default_transaction_read_only", "in_hot_standby", "scram_iterations",
}

// authCache remembers logins the servers accepted lately, so that a client
// that connects for every request (Django's default) costs no server login
// each time. A password is kept only as a hash.
type authCache struct {
	mu sync.Mutex
	ok map[string]authEntry
}

type authEntry struct {
	at       time.Time
	statuses []pgproto3.ParameterStatus
}

// authFresh is how long an accepted login is trusted without asking the
// servers again.
const authFresh = time.Minute

func (c *authCache) get(k string) ([]pgproto3.ParameterStatus, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.ok[k]
	if !ok || time.Since(e.at) > authFresh {
		return nil, false
	}
	return e.statuses, true
}

func (c *authCache) put(k string, st []pgproto3.ParameterStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok == nil {
		c.ok = map[string]authEntry{}
	}
	if len(c.ok) > 10_000 {
		clear(c.ok)
	}
	c.ok[k] = authEntry{time.Now(), st}
}

// authenticate lets the client in as the servers would: the proxy logs in
// to the primary as the client's role. If the primary lets the role in
// without a password (trust), so does the proxy; else the proxy asks the
// client for its password, in clear text, which it accepts only over TLS
// (or on loopback with LoopbackPasswords), and passes it to the primary.
// The server's own error (28P01 for a wrong password) reaches the client.
// The password stays in memory, with the role's pool, to open its server
// connections; it is never written anywhere.
func (s *Server) authenticate(sess *session, l *login, secure bool) ([]pgproto3.ParameterStatus, error) {
	trustKey := "trust\x00" + l.key()
	if st, ok := s.auth.get(trustKey); ok {
		return st, nil
	}
	st, err := s.tryLogin(l, true)
	if err == nil {
		s.auth.put(trustKey, st)
		return st, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return nil, sess.relayLoginError(pgErr)
	}
	if !passwordRequested(err) {
		return nil, sess.refuse("08006", "switchyard proxy: the primary could not be reached to log in: "+s.engine.Redact(err.Error()))
	}
	if !secure && !(s.cfg.LoopbackPasswords && onLoopback(sess.conn)) {
		return nil, sess.refuse("28000", "switchyard proxy: the server asks for a password, which would cross the network in clear text: "+
			"connect with TLS (sslmode=require; the proxy needs --tls-cert and --tls-key), or, on loopback, start the proxy with --loopback-passwords")
	}
	sess.send(&pgproto3.AuthenticationCleartextPassword{})
	if err := sess.flush(); err != nil {
		return nil, err
	}
	sess.fe.SetAuthType(pgproto3.AuthTypeCleartextPassword)
	msg, err := sess.fe.Receive()
	if err != nil {
		return nil, err
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return nil, sess.refuse("08P01", fmt.Sprintf("expected a password, got %T", msg))
	}
	l.password = pw.Password
	sum := sha256.Sum256([]byte(pw.Password))
	okKey := "pw\x00" + l.key() + "\x00" + string(sum[:])
	if st, ok := s.auth.get(okKey); ok {
		return st, nil
	}
	st, err = s.tryLogin(l, false)
	if err != nil {
		if errors.As(err, &pgErr) {
			return nil, sess.relayLoginError(pgErr)
		}
		return nil, sess.refuse("08006", "switchyard proxy: the primary could not be reached to log in: "+s.engine.Redact(err.Error()))
	}
	s.auth.put(okKey, st)
	return st, nil
}

// relayLoginError passes the server's login error on, as FATAL.
func (sess *session) relayLoginError(e *pgconn.PgError) error {
	r := errorResponse(e)
	r.Severity, r.SeverityUnlocalized = "FATAL", "FATAL"
	sess.send(r)
	return e
}

// tryLogin logs in to the primary as l; noPassword insists that the server
// ask for no password (require_auth=none).
func (s *Server) tryLogin(l *login, noPassword bool) ([]pgproto3.ParameterStatus, error) {
	p := s.engine.Clusters()[0].Primary()
	cfg := s.cfg.Nodes[p.Index].ConnConfig.Config.Copy()
	cfg.User, cfg.Password, cfg.Database = l.user, l.password, l.database
	cfg.RuntimeParams = map[string]string{}
	for k, v := range l.params {
		cfg.RuntimeParams[k] = v
	}
	if noPassword {
		cfg.Password, cfg.RequireAuth = "", "none"
	}
	ctx, cancel := context.WithTimeout(context.Background(), startupTimeout)
	defer cancel()
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var st []pgproto3.ParameterStatus
	for _, k := range reportedStatuses {
		if v := conn.ParameterStatus(k); v != "" {
			st = append(st, pgproto3.ParameterStatus{Name: k, Value: v})
		}
	}
	return st, nil
}

// passwordRequested reports whether a login attempt with require_auth=none
// failed because the server asked for a password: the attempt reached the
// server (no network error) and the server reported no error of its own.
func passwordRequested(err error) bool {
	var ne net.Error
	var pgErr *pgconn.PgError
	return !errors.As(err, &ne) && !errors.As(err, &pgErr) && !errors.Is(err, os.ErrDeadlineExceeded) &&
		!errors.Is(err, context.DeadlineExceeded)
}

// onLoopback reports whether the client is on a loopback address or a
// Unix socket.
func onLoopback(c net.Conn) bool {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}
