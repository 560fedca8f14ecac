// Package httpsession carries a switchyard session across HTTP requests, so
// that a user (or an API client, or another service) never reads data older
// than what its earlier requests wrote or read, even when consecutive
// requests are served by different processes with their own *switchyard.DB.
//
//	db, err := switchyard.Open(ctx, switchyard.Config{Primary: ..., Replicas: ...})
//	...
//	handler := httpsession.Middleware(db,
//		httpsession.PrimaryPaths("/admin"), // everything under /admin reads the primary
//	)(mux)
//	http.ListenAndServe(":8080", handler)
//
// # What it does for each request
//
// The middleware restores the session from the token the client sent (the
// header "Switchyard-Token" if present, else the cookie "switchyard") with
// switchyard.WithToken, or starts a new one with switchyard.WithSession when
// there is none. A token that switchyard cannot parse (tampered with, or from
// an incompatible version) is not an error for the client: the request gets a
// new session, and the OnBadToken hook, if set, hears of it. The session's
// context is the request's context (r.Context()): pass it to the DB's methods
// and every read sees what the session wrote and read before, in this request
// and in earlier ones.
//
// When the response starts (the handler's first WriteHeader, Write, or
// Flush; or the end of a handler that wrote nothing) the middleware asks the
// DB for the session's token (DB.Token: at most one query to the primary,
// none when the request did nothing with the database) and sends it back if
// it changed: as the cookie, and, for clients that use the header, as the
// response header of the same name. A response's headers cannot change once
// they are on the wire, so write to the database before writing the
// response, as handlers naturally do (the status code depends on the write).
// A write made after the response started is not in the token the client
// got, so the client's next request may not see it.
//
// # Transports
//
// A browser carries the token in the cookie: HttpOnly, SameSite=Lax, Path
// "/", Secure when the request came over TLS, and no Max-Age (it ends with
// the browser session). Each is configurable; behind a proxy that terminates
// TLS, use CookieSecure(true).
//
// An API client or a service calling another service carries it in the
// header: it sends the header (an empty value is fine on the first call) and
// stores the header of each response, which it gets whenever it sent one (see
// EchoHeader). When a request carries both, the header wins. A request that
// sent the header and no cookie gets no Set-Cookie.
//
// # Forcing the primary
//
// PrimaryPaths and PrimaryIf send everything a request does to the primary
// (switchyard.Primary): the request-aware router that Django users write,
// for pages such as an admin that must show the very latest state of every
// session's data, not only the caller's.
//
// # Background jobs
//
// A job enqueued by a request can read what the request wrote: put the
// session's token in the job's payload, and restore it in the worker.
//
//	tok, err := db.Token(r.Context()) // in the handler, after the writes
//	queue.Enqueue(Job{..., Token: tok})
//
//	ctx, err := switchyard.WithToken(ctx, job.Token) // in the worker, any process
//
// A token is a short opaque string (about 16 characters) that any DB of the
// same cluster accepts; see switchyard.WithToken for what happens to a token
// from another cluster or timeline.
package httpsession

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/switchyard-db/switchyard"
)

// The default names of the cookie and of the header that carry the token.
const (
	DefaultCookieName = "switchyard"
	DefaultHeaderName = "Switchyard-Token"
)

// Echo says when a response carries the token in the header (HeaderName).
type Echo int

const (
	// EchoIfSent puts the token in the response header when the request
	// carried the header, even empty. This is the default: API clients
	// opt in by sending the header, browsers are left alone.
	EchoIfSent Echo = iota
	// EchoAlways puts the token in every response's header.
	EchoAlways
	// EchoNever never puts the token in a response header; requests may
	// still send it.
	EchoNever
)

// Option configures Middleware.
type Option func(*config)

type config struct {
	cookieName   string
	cookiePath   string
	cookieDomain string
	cookieMaxAge time.Duration
	sameSite     http.SameSite
	httpOnly     bool
	secure       *bool // nil: when the request came over TLS

	headerName string
	echo       Echo

	primaryPrefixes []string
	primaryIf       []func(*http.Request) bool

	onBadToken func(*http.Request, error)
	onError    func(*http.Request, error)

	queryCache *switchyard.QueryCacheLimits // nil: none
}

// CookieName sets the cookie's name (default "switchyard"). An empty name
// turns the cookie off: tokens then travel only in the header.
func CookieName(name string) Option { return func(c *config) { c.cookieName = name } }

// CookiePath sets the cookie's Path attribute (default "/").
func CookiePath(p string) Option { return func(c *config) { c.cookiePath = p } }

// CookieDomain sets the cookie's Domain attribute (default none: the host
// that set it only). Set it to share sessions across subdomains.
func CookieDomain(domain string) Option { return func(c *config) { c.cookieDomain = domain } }

// CookieMaxAge sets the cookie's Max-Age, rounded up to whole seconds. Zero
// (the default) sends none: the cookie lasts until the browser closes. A
// token only matters for as long as the replicas lag, so a long life buys
// nothing.
func CookieMaxAge(d time.Duration) Option { return func(c *config) { c.cookieMaxAge = max(d, 0) } }

// CookieSameSite sets the cookie's SameSite attribute (default
// http.SameSiteLaxMode). Browsers refuse SameSite=None without Secure.
func CookieSameSite(s http.SameSite) Option { return func(c *config) { c.sameSite = s } }

// CookieHTTPOnly sets whether the cookie is HttpOnly, hidden from scripts
// (default true).
func CookieHTTPOnly(on bool) Option { return func(c *config) { c.httpOnly = on } }

// CookieSecure makes the cookie Secure (sent over HTTPS only) or not,
// whatever the request. By default it is Secure when the request came over
// TLS (r.TLS != nil); behind a proxy that terminates TLS, say
// CookieSecure(true).
func CookieSecure(on bool) Option { return func(c *config) { c.secure = &on } }

// HeaderName sets the name of the request and response header that carries
// the token (default "Switchyard-Token"). An empty name turns the header off:
// tokens then travel only in the cookie.
func HeaderName(name string) Option {
	return func(c *config) { c.headerName = http.CanonicalHeaderKey(name) }
}

// EchoHeader says when a response carries the token in the header (default
// EchoIfSent).
func EchoHeader(e Echo) Option { return func(c *config) { c.echo = e } }

// PrimaryPaths sends everything done by requests whose path is one of
// prefixes, or lies below one, to the primary (see switchyard.Primary).
// Matching is by whole path segments on the cleaned path: "/admin" (or
// "/admin/") matches "/admin" and "/admin/users" but not "/administrator".
// It may be given more than once; the prefixes add up.
func PrimaryPaths(prefixes ...string) Option {
	return func(c *config) {
		for _, p := range prefixes {
			p = path.Clean("/" + p)
			c.primaryPrefixes = append(c.primaryPrefixes, p)
		}
	}
}

// PrimaryIf sends everything done by the requests for which f returns true
// to the primary (see switchyard.Primary): say, by method, by header, or by
// the user's role. f runs before the handler, on the request as it came in.
// It may be given more than once; any one that returns true forces the
// primary.
func PrimaryIf(f func(r *http.Request) bool) Option {
	return func(c *config) { c.primaryIf = append(c.primaryIf, f) }
}

// QueryCache gives each request a query cache of its own (see
// switchyard.WithQueryCache): a handler that reads the same rows several
// times makes one round trip, and any write it makes empties the cache.
// limits, if given, bound each request's cache; the default is
// switchyard's.
func QueryCache(limits ...switchyard.QueryCacheLimits) Option {
	return func(c *config) {
		var l switchyard.QueryCacheLimits
		if len(limits) > 0 {
			l = limits[0]
		}
		c.queryCache = &l
	}
}

// OnBadToken sets a function called when a request carries a token that
// switchyard cannot parse (err wraps switchyard.ErrBadToken). The request
// goes on with a new session, and its response replaces the bad cookie;
// use f to log or count.
func OnBadToken(f func(r *http.Request, err error)) Option {
	return func(c *config) { c.onBadToken = f }
}

// OnError sets a function called when the session's token could not be
// taken for the response (DB.Token failed: say, the primary is down). The
// response goes out without a new token; the client keeps the one it had.
// It is not called when the client has gone away (the request's context
// ended).
func OnError(f func(r *http.Request, err error)) Option {
	return func(c *config) { c.onError = f }
}

// Middleware returns middleware that gives each request a switchyard
// session carried across requests in a cookie or a header, as the package
// documentation describes. db is the DB the handlers use; the token it makes
// is understood by every DB of the same cluster, so requests of one user may
// go to any number of processes.
func Middleware(db *switchyard.DB, opts ...Option) func(http.Handler) http.Handler {
	if db == nil {
		panic("httpsession: Middleware with a nil DB")
	}
	c := &config{
		cookieName: DefaultCookieName,
		cookiePath: "/",
		sameSite:   http.SameSiteLaxMode,
		httpOnly:   true,
		headerName: DefaultHeaderName,
		echo:       EchoIfSent,
	}
	for _, o := range opts {
		o(c)
	}
	m := &middleware{db: db, config: c}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(next, w, r)
		})
	}
}

type middleware struct {
	db *switchyard.DB
	*config
}

// incoming is what a request brought.
type incoming struct {
	cookie     string // the cookie's value ("" if none)
	hasCookie  bool
	header     string // the header's value ("" if none or empty)
	hasHeader  bool   // the header was present, even empty
	useHeader  bool   // the token to restore is the header's
	secureConn bool
}

func (m *middleware) read(r *http.Request) incoming {
	var in incoming
	if m.cookieName != "" {
		if c, err := r.Cookie(m.cookieName); err == nil {
			in.cookie, in.hasCookie = c.Value, true
		}
	}
	if m.headerName != "" {
		if vs, ok := r.Header[m.headerName]; ok {
			in.hasHeader = true
			if len(vs) > 0 {
				in.header = strings.TrimSpace(vs[0])
			}
		}
	}
	in.useHeader = in.header != ""
	in.secureConn = r.TLS != nil
	return in
}

func (in *incoming) token() string {
	if in.useHeader {
		return in.header
	}
	return in.cookie
}

func (m *middleware) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	in := m.read(r)
	ctx := r.Context()
	var sctx context.Context
	if tok := in.token(); tok != "" {
		var err error
		if sctx, err = switchyard.WithToken(ctx, tok); err != nil {
			if m.onBadToken != nil {
				m.onBadToken(r, err)
			}
			sctx = switchyard.WithSession(ctx)
		}
	} else {
		sctx = switchyard.WithSession(ctx)
	}
	if m.queryCache != nil {
		sctx = switchyard.WithQueryCacheLimits(sctx, *m.queryCache)
	}
	if m.forcePrimary(r) {
		sctx = switchyard.Primary(sctx)
	}
	r = r.WithContext(sctx)
	rw := &responseWriter{ResponseWriter: w, m: m, r: r, in: in}
	next.ServeHTTP(rw, r)
	rw.commit()
}

func (m *middleware) forcePrimary(r *http.Request) bool {
	if len(m.primaryPrefixes) > 0 {
		p := path.Clean("/" + r.URL.Path)
		for _, prefix := range m.primaryPrefixes {
			if prefix == "/" || p == prefix || strings.HasPrefix(p, prefix+"/") {
				return true
			}
		}
	}
	for _, f := range m.primaryIf {
		if f(r) {
			return true
		}
	}
	return false
}

// setsCookie reports whether the response may carry the cookie: cookies
// are on, and the request is not a header-only client's.
func (m *middleware) setsCookie(in *incoming) bool {
	return m.cookieName != "" && (in.hasCookie || !in.hasHeader)
}

func (m *middleware) echoes(in *incoming) bool {
	if m.headerName == "" {
		return false
	}
	switch m.echo {
	case EchoAlways:
		return true
	case EchoIfSent:
		return in.hasHeader
	}
	return false
}

// responseWriter sends the session's token with the response's header.
type responseWriter struct {
	http.ResponseWriter
	m         *middleware
	r         *http.Request // the request, with the session's context
	in        incoming
	committed bool // the token has been taken (or will never be)
}

// commit takes the session's token and puts it in the response's header,
// once, before anything of the response goes out.
func (w *responseWriter) commit() {
	if w.committed {
		return
	}
	w.committed = true
	m, in := w.m, &w.in
	cookie, echo := m.setsCookie(in), m.echoes(in)
	if !cookie && !echo {
		return // nothing to send: spare the DB the question
	}
	tok, err := m.db.Token(w.r.Context())
	if err != nil {
		if m.onError != nil && w.r.Context().Err() == nil {
			m.onError(w.r, err)
		}
		return
	}
	if cookie && tok != in.cookie {
		secure := in.secureConn
		if m.secure != nil {
			secure = *m.secure
		}
		c := &http.Cookie{
			Name:     m.cookieName,
			Value:    tok,
			Path:     m.cookiePath,
			Domain:   m.cookieDomain,
			HttpOnly: m.httpOnly,
			Secure:   secure,
			SameSite: m.sameSite,
		}
		if m.cookieMaxAge > 0 {
			c.MaxAge = int((m.cookieMaxAge + time.Second - 1) / time.Second)
		}
		http.SetCookie(w.ResponseWriter, c)
	}
	if echo {
		w.ResponseWriter.Header().Set(m.headerName, tok)
	}
}

// WriteHeader sends the token along with a final status; informational
// (1xx) statuses other than 101 pass through, since the final header is yet
// to come.
func (w *responseWriter) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.commit()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	w.commit()
	return w.ResponseWriter.Write(b)
}

// Flush implements http.Flusher: it sends the header, with the token, and
// whatever is buffered. It does nothing if the underlying ResponseWriter
// cannot flush.
func (w *responseWriter) Flush() {
	w.FlushError()
}

// FlushError is Flush that reports an error, as http.ResponseController
// expects; http.ErrNotSupported if the underlying ResponseWriter cannot
// flush.
func (w *responseWriter) FlushError() error {
	w.commit()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker by handing over the underlying
// connection (http.ErrNotSupported if it cannot be). A hijacked connection
// gets no token: whatever the handler writes on it is its own business.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.committed = true
	}
	return conn, brw, err
}

// ReadFrom implements io.ReaderFrom, so that io.Copy to the response keeps
// the server's sendfile path.
func (w *responseWriter) ReadFrom(src io.Reader) (int64, error) {
	w.commit()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(writerOnly{w.ResponseWriter}, src)
}

// Unwrap returns the underlying ResponseWriter, for
// http.ResponseController (deadlines, full duplex).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writerOnly hides every method but Write, so that io.Copy does not call
// ReadFrom again.
type writerOnly struct{ io.Writer }

var (
	_ http.Flusher  = (*responseWriter)(nil)
	_ http.Hijacker = (*responseWriter)(nil)
	_ io.ReaderFrom = (*responseWriter)(nil)
)
