// Package statuspage is a status page for switchyard: an http.Handler to
// mount in an application (or served by switchyard proxy --admin and
// switchyard lab up --status) that shows each server's cluster, role,
// health, replay lag in bytes and time, position, routed, in-flight and
// failed statements, how long it has been down, the latest changes of the
// servers' state, the routing decisions by reason, and a chart of each
// replica's lag over the last minutes that updates every second.
//
//	db, err := switchyard.Open(ctx, cfg)
//	...
//	page := statuspage.Handler(db)
//	defer page.Close()
//	http.Handle("/debug/switchyard/", page)
//
// The handler serves, below wherever it is mounted:
//
//   - the page itself (any path but those below): HTML rendered on the
//     server, readable on a phone, with its CSS and a few lines of
//     JavaScript inline and nothing loaded from anywhere else (its
//     Content-Security-Policy forbids it). The script fetches the page's
//     live part (the same URL with ?live=1) every second and puts it in
//     place; without JavaScript the page reloads itself every 5 seconds.
//   - <mount>/status.json (or any URL of the page with ?format=json): the
//     same data as JSON, a Status.
//
// Only GET and HEAD are answered. Everything shown is escaped; nothing but
// server names (host:port), counts and state changes is shown, and the
// reasons of state changes, which switchyard redacts, are scrubbed again of
// anything shaped like a password.
//
// # Sampling
//
// The lag chart needs samples. By default the page takes them only while
// someone watches: each request for the page, its live part or its JSON
// takes a snapshot (Source.Stats) and, if the newest sample is at least an
// interval (Interval, 1 s) old, keeps it in a ring that holds one window
// (Window, 5 minutes) of samples and no more. That costs nothing while no
// one looks and starts no goroutine; the chart of a page just opened starts
// empty. With Always the page also samples every interval in a goroutine of
// its own from Handler on, so the chart shows the last minutes when it is
// opened; Close stops that goroutine. Close is safe to call in either mode,
// and more than once; a closed page still serves, sampling on requests.
package statuspage

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/switchyard-db/switchyard/stats"
)

// Source is what the page shows: a *switchyard.DB, or the proxy.
type Source interface {
	Stats() stats.Stats
}

// An Option changes a Page.
type Option func(*config)

type config struct {
	interval time.Duration
	window   time.Duration
	always   bool
	title    string
}

// Interval sets how often the page samples its source for the lag chart,
// and how often the page in a browser refreshes itself: 1 s by default, at
// least 100 ms.
func Interval(d time.Duration) Option {
	return func(c *config) { c.interval = max(d, 100*time.Millisecond) }
}

// Window sets how far back the lag chart goes: 5 minutes by default. The
// page keeps Window/Interval samples (at most 3600) and no more.
func Window(d time.Duration) Option {
	return func(c *config) { c.window = d }
}

// Always makes the page sample its source every interval from Handler on,
// in a goroutine that Close stops, rather than only while someone watches.
func Always() Option {
	return func(c *config) { c.always = true }
}

// Title sets the page's title ("switchyard" by default), such as the name
// of the application or of the proxy.
func Title(s string) Option {
	return func(c *config) { c.title = s }
}

// maxSamples bounds the ring whatever Window and Interval say.
const maxSamples = 3600

// Page is the status page's handler.
type Page struct {
	src Source
	cfg config

	mu   sync.Mutex
	ring ring

	closeOnce sync.Once
	stop      chan struct{}
	done      chan struct{}
}

// Handler returns the status page of src. Call Close when done with it if
// it was made with Always.
func Handler(src Source, opts ...Option) *Page {
	cfg := config{interval: time.Second, window: 5 * time.Minute, title: "switchyard"}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.window < cfg.interval {
		cfg.window = cfg.interval
	}
	n := int(cfg.window/cfg.interval) + 1
	n = min(n, maxSamples)
	p := &Page{src: src, cfg: cfg, ring: ring{buf: make([]sample, n)}}
	if cfg.always {
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.sampleEvery()
	}
	return p
}

// Close stops the page's sampling goroutine (with Always), waiting for it
// to end. The page still serves afterwards, sampling on requests.
func (p *Page) Close() error {
	p.closeOnce.Do(func() {
		if p.stop != nil {
			close(p.stop)
			<-p.done
		}
	})
	return nil
}

func (p *Page) sampleEvery() {
	defer close(p.done)
	t := time.NewTicker(p.cfg.interval)
	defer t.Stop()
	p.take(time.Now(), true)
	for {
		select {
		case <-p.stop:
			return
		case now := <-t.C:
			p.take(now, true)
		}
	}
}

// take snapshots the source at now and keeps a sample of it if forced or
// if the newest sample is an interval old.
func (p *Page) take(now time.Time, force bool) stats.Stats {
	s := p.src.Stats()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Samples on requests: allow a little jitter, so that a browser
	// polling every interval gets every one of its polls kept.
	if last, ok := p.ring.newest(); force || !ok || now.Sub(last.at) >= p.cfg.interval*9/10 {
		p.ring.add(sampleOf(s, now))
	}
	return s
}

// Status returns what the page shows now: a fresh snapshot of the source
// with the lag history. It takes a sample as a request does.
func (p *Page) Status() Status {
	now := time.Now()
	s := p.take(now, false)
	return p.status(s, now)
}

func (p *Page) status(s stats.Stats, now time.Time) Status {
	st := NewStatus(s, now)
	p.mu.Lock()
	st.History = p.ring.history(now, p.cfg.interval, p.cfg.window, st.Nodes)
	p.mu.Unlock()
	return st
}

// ServeHTTP serves the page, its live part (?live=1) and its JSON
// (status.json, or ?format=json).
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	base := ""
	if r.URL.Path != "" {
		base = path.Base(r.URL.Path) // "/" for "/"
	}
	switch {
	case base == "status.json" || q.Get("format") == "json":
		p.serveJSON(w)
	case strings.Contains(base, "."):
		// favicon.ico and the like: nothing of the page's.
		http.NotFound(w, r)
	case q.Has("live"):
		p.serveHTML(w, r, "live")
	default:
		p.serveHTML(w, r, "page")
	}
}

func (p *Page) serveJSON(w http.ResponseWriter) {
	st := p.Status()
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(st) // escapes <, > and & too
}

func (p *Page) serveHTML(w http.ResponseWriter, r *http.Request, name string) {
	st := p.Status()
	nonce := newNonce()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	// Nothing but the page's own inline style and script, and requests to
	// the page itself.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+nonce+"'; script-src 'nonce-"+nonce+"'; "+
		"connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	v := p.view(st, nonce, r.URL.Path)
	if err := templates.ExecuteTemplate(w, name, v); err != nil {
		// Headers are gone; the page is cut short. Templates are tested,
		// so this is a write error (the client left).
		return
	}
}

func newNonce() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
