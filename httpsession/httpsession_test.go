package httpsession_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/httpsession"
	"github.com/switchyard-db/switchyard/internal/lsn"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// openDB opens a DB on the shared lab, as one app server would, and closes
// it when the test ends.
func openDB(t testing.TB) *switchyard.DB {
	t.Helper()
	cfg := switchyard.Config{Primary: switchyardtest.Need(t, shared).Primary().DSN()}
	for _, r := range switchyardtest.Need(t, shared).Replicas() {
		cfg.Replicas = append(cfg.Replicas, r.DSN())
	}
	db, err := switchyard.Open(testCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	return db
}

// appHandler is a small app on counter rows of kv, whatever the path:
//
//	?op=write&id=N        increments counter N, answers its new value
//	?op=read&id=N&n=K     reads counter N K times, one line each: "value role"
//	(no op)               touches no database
func appHandler(db *switchyard.DB) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		q := r.URL.Query()
		id, _ := strconv.Atoi(q.Get("id"))
		switch q.Get("op") {
		case "write":
			var v int
			if err := db.QueryRow(ctx, "UPDATE kv SET v = v + 1 WHERE id = $1 RETURNING v", id).Scan(&v); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			fmt.Fprintln(w, v)
		case "read":
			n, _ := strconv.Atoi(q.Get("n"))
			var out strings.Builder
			for range max(n, 1) {
				var v int
				var inRecovery bool
				if err := db.QueryRow(ctx, "SELECT v, pg_is_in_recovery() FROM kv WHERE id = $1", id).Scan(&v, &inRecovery); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				fmt.Fprintf(&out, "%d %s\n", v, role(inRecovery))
			}
			io.WriteString(w, out.String())
		}
	})
}

func role(inRecovery bool) string {
	if inRecovery {
		return "replica"
	}
	return "primary"
}

// serve starts an app server for db behind the middleware.
func serve(t *testing.T, db *switchyard.DB, opts ...httpsession.Option) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(httpsession.Middleware(db, opts...)(appHandler(db)))
	t.Cleanup(srv.Close)
	return srv
}

func newJarClient(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

// do sends a request and returns the response (its body read) and body. It
// fails the test on anything but 200 OK.
func do(t *testing.T, client *http.Client, method, url string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header[textproto.CanonicalMIMEHeaderKey(header[i])] = []string{header[i+1]}
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, body)
	}
	return resp, string(body)
}

// read is one line of a read's answer.
type read struct {
	v    int
	role string
}

func parseReads(t *testing.T, body string) []read {
	t.Helper()
	var rs []read
	for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("bad read line %q", line)
		}
		v, err := strconv.Atoi(f[0])
		if err != nil {
			t.Fatalf("bad read line %q", line)
		}
		rs = append(rs, read{v, f[1]})
	}
	return rs
}

func parseWrite(t *testing.T, body string) int {
	t.Helper()
	v, err := strconv.Atoi(strings.TrimSpace(body))
	if err != nil {
		t.Fatalf("bad write answer %q", body)
	}
	return v
}

func tokenCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// TestCookieAcrossServers is the point of the package: two app servers,
// each with its own DB, and a browser (one cookie jar) whose requests
// alternate between them. Every read right after a write, on the other
// server, sees the write, although replica2 replays 200ms late. Without the
// cookie the same reads see stale data; and once the replicas have caught
// up, the session's reads go to replicas again.
func TestCookieAcrossServers(t *testing.T) {
	ctx := testCtx(t)
	dbA, dbB := openDB(t), openDB(t)
	a, b := serve(t, dbA), serve(t, dbB)
	const id = 1

	browser := newJarClient(t)
	const rounds = 200
	stale := 0
	where := map[string]int{}
	for i := range rounds {
		writer, reader := a, b
		if i%2 == 1 {
			writer, reader = b, a
		}
		_, body := do(t, browser, "POST", writer.URL+"/counter?op=write&id="+strconv.Itoa(id))
		wrote := parseWrite(t, body)
		_, body = do(t, browser, "GET", reader.URL+"/counter?op=read&n=2&id="+strconv.Itoa(id))
		for _, r := range parseReads(t, body) {
			where[r.role]++
			if r.v < wrote {
				stale++
				if stale <= 5 {
					t.Errorf("round %d: wrote %d on one server, then read %d on the other (%s)", i, wrote, r.v, r.role)
				}
			}
		}
	}
	t.Logf("%d rounds: %d stale reads; reads right after a write on the other server: %v", rounds, stale, where)
	if stale > 0 {
		t.Errorf("%d stale reads in %d rounds", stale, rounds)
	}

	// The control: the same requests without the cookie (a client with no
	// jar) read stale data, so the lab does show staleness.
	t.Run("control without cookie", func(t *testing.T) {
		stale := 0
		for i := range 40 {
			_, body := do(t, http.DefaultClient, "POST", a.URL+"/counter?op=write&id=2")
			wrote := parseWrite(t, body)
			_, body = do(t, http.DefaultClient, "GET", b.URL+"/counter?op=read&id=2")
			if r := parseReads(t, body)[0]; r.v < wrote {
				stale++
			}
			_ = i
		}
		t.Logf("without the cookie: %d of 40 reads after a write were stale", stale)
		if stale == 0 {
			t.Error("no stale read without the cookie: the lab does not lag, so this test proves nothing")
		}
	})

	// Once the replicas have the session's writes, its reads go to them:
	// the cookie does not pin the user to the primary.
	t.Run("reads go to replicas once they caught up", func(t *testing.T) {
		if err := switchyardtest.Need(t, shared).WaitReplicas(ctx); err != nil {
			t.Fatal(err)
		}
		target, err := switchyardtest.Need(t, shared).Primary().InsertLSN(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The DBs' monitors see it.
		for deadline := time.Now().Add(30 * time.Second); !caughtUp(dbA, target); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the monitor never saw the replicas caught up")
			}
		}
		_, body := do(t, browser, "GET", a.URL+"/counter?op=read&n=4&id="+strconv.Itoa(id))
		reads := parseReads(t, body)
		onReplica := 0
		for _, r := range reads {
			if r.role == "replica" {
				onReplica++
			}
		}
		t.Logf("reads of a session that did not write recently: %v", reads)
		if onReplica == 0 {
			t.Errorf("every read of a session whose writes every replica has went to the primary: %v", reads)
		}
	})
}

func TestCookieAttributes(t *testing.T) {
	db := openDB(t)
	h := httpsession.Middleware(db)(appHandler(db))

	plain := httptest.NewServer(h)
	defer plain.Close()
	resp, _ := do(t, plain.Client(), "GET", plain.URL+"/?op=read&id=3")
	c := tokenCookie(resp, "switchyard")
	if c == nil {
		t.Fatalf("no cookie set for a new session: %v", resp.Header["Set-Cookie"])
	}
	if c.Value == "" || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge != 0 || c.Domain != "" {
		t.Errorf("cookie over plain HTTP: %q; want HttpOnly, SameSite=Lax, Path=/, not Secure, no Max-Age, no Domain", resp.Header.Get("Set-Cookie"))
	}

	tls := httptest.NewTLSServer(h)
	defer tls.Close()
	resp, _ = do(t, tls.Client(), "GET", tls.URL+"/?op=read&id=3")
	if c := tokenCookie(resp, "switchyard"); c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Errorf("cookie over TLS: %q; want Secure, HttpOnly, SameSite=Lax", resp.Header.Get("Set-Cookie"))
	}

	custom := httptest.NewServer(httpsession.Middleware(db,
		httpsession.CookieName("sy"),
		httpsession.CookiePath("/app"),
		httpsession.CookieDomain("example.test"),
		httpsession.CookieMaxAge(90*time.Minute+time.Millisecond),
		httpsession.CookieSameSite(http.SameSiteStrictMode),
		httpsession.CookieHTTPOnly(false),
		httpsession.CookieSecure(true),
	)(appHandler(db)))
	defer custom.Close()
	resp, _ = do(t, custom.Client(), "GET", custom.URL+"/app/?op=read&id=3")
	c = tokenCookie(resp, "sy")
	if c == nil || c.Path != "/app" || c.Domain != "example.test" || c.MaxAge != 90*60+1 ||
		c.SameSite != http.SameSiteStrictMode || c.HttpOnly || !c.Secure {
		t.Errorf("configured cookie: %q", resp.Header.Get("Set-Cookie"))
	}
	if tokenCookie(resp, "switchyard") != nil {
		t.Error("the default cookie was set too")
	}

	// Secure can be turned off under TLS too (a test setup, say).
	insecure := httptest.NewTLSServer(httpsession.Middleware(db, httpsession.CookieSecure(false))(appHandler(db)))
	defer insecure.Close()
	resp, _ = do(t, insecure.Client(), "GET", insecure.URL+"/?op=read&id=3")
	if c := tokenCookie(resp, "switchyard"); c == nil || c.Secure {
		t.Errorf("CookieSecure(false) under TLS: %q", resp.Header.Get("Set-Cookie"))
	}
}

// TestCookieNotResetWhenUnchanged: a response re-sends the cookie only when
// the token changed.
func TestCookieNotResetWhenUnchanged(t *testing.T) {
	db := openDB(t)
	srv := serve(t, db)
	browser := newJarClient(t)
	resp, _ := do(t, browser, "POST", srv.URL+"/?op=write&id=4")
	if tokenCookie(resp, "switchyard") == nil {
		t.Fatal("a write set no cookie")
	}
	resp, _ = do(t, browser, "POST", srv.URL+"/?op=write&id=4")
	if tokenCookie(resp, "switchyard") == nil {
		t.Fatal("a second write set no new cookie")
	}

	// Requests that change nothing. (The token can still move when the
	// primary's WAL position moved for other reasons since the last one, so
	// allow one such change among several requests; a middleware that set
	// the cookie every time would set it on all of them.)
	set := 0
	for range 5 {
		resp, _ = do(t, browser, "GET", srv.URL+"/")
		if tokenCookie(resp, "switchyard") != nil {
			set++
		}
	}
	if set > 1 {
		t.Errorf("%d of 5 requests that touched no data re-set the cookie", set)
	}
}

func TestHeaderTransport(t *testing.T) {
	dbA, dbB := openDB(t), openDB(t)
	a, b := serve(t, dbA), serve(t, dbB)
	const h = httpsession.DefaultHeaderName
	api := &http.Client{} // no cookie jar: a service calling a service

	// The first call sends the header empty, to ask for the token.
	resp, body := do(t, api, "POST", a.URL+"/?op=write&id=5", h, "")
	tok := resp.Header.Get(h)
	if tok == "" {
		t.Fatalf("no token in the %s response header", h)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("a header client got cookies: %v", resp.Header["Set-Cookie"])
	}
	for i := range 50 {
		wrote := parseWrite(t, body)
		resp, body = do(t, api, "GET", b.URL+"/?op=read&id=5", h, tok)
		if r := parseReads(t, body)[0]; r.v < wrote {
			t.Fatalf("round %d: wrote %d, then read %d through the other server with the token in the header", i, wrote, r.v)
		}
		if got := resp.Header.Get(h); got == "" {
			t.Fatal("a request that sent the header got none back")
		} else {
			tok = got
		}
		resp, body = do(t, api, "POST", a.URL+"/?op=write&id=5", h, tok)
		tok = resp.Header.Get(h)
	}

	// A client that sends nothing gets a cookie, and no header.
	resp, _ = do(t, api, "GET", a.URL+"/?op=read&id=5")
	if resp.Header.Get(h) != "" || tokenCookie(resp, "switchyard") == nil {
		t.Errorf("a client that sent no token: header %q, cookies %v", resp.Header.Get(h), resp.Header["Set-Cookie"])
	}

	t.Run("header wins over cookie", func(t *testing.T) {
		var bad []error
		var mu sync.Mutex
		srv := serve(t, dbA, httpsession.OnBadToken(func(r *http.Request, err error) {
			mu.Lock()
			bad = append(bad, err)
			mu.Unlock()
		}))
		// A good header and a bad cookie: the bad cookie is not read, and,
		// since the request carried it, it is replaced.
		req, _ := http.NewRequest("GET", srv.URL+"/?op=read&id=5", nil)
		req.Header.Set(h, tok)
		req.AddCookie(&http.Cookie{Name: "switchyard", Value: "garbage!"})
		resp, err := api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		if len(bad) != 0 {
			t.Errorf("the cookie was read although the header was sent: %v", bad)
		}
		if c := tokenCookie(resp, "switchyard"); c == nil || c.Value != resp.Header.Get(h) {
			t.Errorf("the bad cookie was not replaced by the token: %v (header %q)", resp.Header["Set-Cookie"], resp.Header.Get(h))
		}
		mu.Unlock()
		// A bad header and a good cookie: the header is read.
		req, _ = http.NewRequest("GET", srv.URL+"/?op=read&id=5", nil)
		req.Header.Set(h, "garbage!")
		req.AddCookie(&http.Cookie{Name: "switchyard", Value: tok})
		resp, err = api.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		if resp.StatusCode != http.StatusOK || len(bad) != 1 || !errors.Is(bad[0], switchyard.ErrBadToken) {
			t.Errorf("bad header, good cookie: %s, bad tokens %v", resp.Status, bad)
		}
		mu.Unlock()
	})

	t.Run("echo modes", func(t *testing.T) {
		always := serve(t, dbA, httpsession.EchoHeader(httpsession.EchoAlways))
		resp, _ := do(t, api, "GET", always.URL+"/?op=read&id=5")
		if resp.Header.Get(h) == "" {
			t.Error("EchoAlways: no header for a request that sent none")
		}
		never := serve(t, dbA, httpsession.EchoHeader(httpsession.EchoNever))
		resp, _ = do(t, api, "GET", never.URL+"/?op=read&id=5", h, tok)
		if resp.Header.Get(h) != "" {
			t.Error("EchoNever: a header was sent")
		}
		renamed := serve(t, dbA, httpsession.HeaderName("x-session"), httpsession.CookieName(""))
		resp, _ = do(t, api, "GET", renamed.URL+"/?op=read&id=5", "X-Session", tok)
		if resp.Header.Get("X-Session") == "" || len(resp.Cookies()) != 0 {
			t.Errorf("renamed header, no cookie: header %q, cookies %v", resp.Header.Get("X-Session"), resp.Header["Set-Cookie"])
		}
		// Both transports off: the middleware only gives each request a
		// session, and never asks the DB for a token.
		off := serve(t, dbA, httpsession.HeaderName(""), httpsession.CookieName(""))
		resp, _ = do(t, api, "GET", off.URL+"/?op=read&id=5", h, tok)
		if resp.Header.Get(h) != "" || len(resp.Cookies()) != 0 {
			t.Errorf("transports off: header %q, cookies %v", resp.Header.Get(h), resp.Header["Set-Cookie"])
		}
	})
}

func TestPrimaryPaths(t *testing.T) {
	db := openDB(t)
	srv := serve(t, db,
		httpsession.PrimaryPaths("/admin/", "reports"),
		httpsession.PrimaryIf(func(r *http.Request) bool { return r.Header.Get("X-Fresh") == "1" }),
	)
	for _, tc := range []struct {
		path    string
		header  []string
		primary bool
	}{
		{"/admin", nil, true},
		{"/admin/users", nil, true},
		{"/reports/2024/q1", nil, true},
		{"/x/../admin/users", nil, true},
		{"/administrator", nil, false},
		{"/shop/admin", nil, false},
		{"/", nil, false},
		{"/shop", []string{"X-Fresh", "1"}, true},
	} {
		// A client without cookies: a new session that wrote nothing,
		// whose reads would go to a replica.
		req, _ := http.NewRequest("GET", srv.URL+"?op=read&n=3&id=6", nil)
		req.URL.Path = tc.path // as sent, uncleaned
		for i := 0; i+1 < len(tc.header); i += 2 {
			req.Header.Set(tc.header[i], tc.header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", tc.path, resp.Status)
		}
		for _, r := range parseReads(t, string(body)) {
			if (r.role == "primary") != tc.primary {
				t.Errorf("%s %v: a read ran on the %s", tc.path, tc.header, r.role)
			}
		}
	}
}

func TestMalformedToken(t *testing.T) {
	db := openDB(t)
	var bad []error
	var mu sync.Mutex
	srv := serve(t, db, httpsession.OnBadToken(func(r *http.Request, err error) {
		mu.Lock()
		bad = append(bad, err)
		mu.Unlock()
	}))
	for _, value := range []string{"garbage!", "AQ", "bm90IGEgdG9rZW4", strings.Repeat("A", 600)} {
		req, _ := http.NewRequest("POST", srv.URL+"/?op=write&id=7", nil)
		req.AddCookie(&http.Cookie{Name: "switchyard", Value: value})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("cookie %.20q: %s", value, resp.Status)
		}
		c := tokenCookie(resp, "switchyard")
		if c == nil || c.Value == value {
			t.Errorf("cookie %.20q was not replaced: %v", value, resp.Header["Set-Cookie"])
			continue
		}
		// The new cookie is a good token.
		if _, err := switchyard.WithToken(context.Background(), c.Value); err != nil {
			t.Errorf("replacement cookie %q: %v", c.Value, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) != 4 {
		t.Fatalf("OnBadToken called %d times, want 4", len(bad))
	}
	for _, err := range bad {
		if !errors.Is(err, switchyard.ErrBadToken) {
			t.Errorf("OnBadToken got %v, want ErrBadToken", err)
		}
	}
}

// TestResponseWriter checks that the cookie goes out with the response's
// header however the handler starts the response, and that the wrapper keeps
// what the server's ResponseWriter can do.
func TestResponseWriter(t *testing.T) {
	db := openDB(t)
	write := func(w http.ResponseWriter, r *http.Request) bool {
		_, err := db.Exec(r.Context(), "UPDATE kv SET v = v + 1 WHERE id = 8")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return false
		}
		return true
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		status  int
		body    string
	}{
		{"nothing written", func(w http.ResponseWriter, r *http.Request) { write(w, r) }, 200, ""},
		{"WriteHeader", func(w http.ResponseWriter, r *http.Request) {
			if write(w, r) {
				w.WriteHeader(http.StatusCreated)
			}
		}, 201, ""},
		{"Write", func(w http.ResponseWriter, r *http.Request) {
			if write(w, r) {
				io.WriteString(w, "ok")
			}
		}, 200, "ok"},
		{"Flush, then write", func(w http.ResponseWriter, r *http.Request) {
			if write(w, r) {
				w.(http.Flusher).Flush()
				io.WriteString(w, "streamed")
			}
		}, 200, "streamed"},
		{"ResponseController", func(w http.ResponseWriter, r *http.Request) {
			if !write(w, r) {
				return
			}
			rc := http.NewResponseController(w)
			if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
				http.Error(w, "SetWriteDeadline: "+err.Error(), 500)
				return
			}
			if err := rc.Flush(); err != nil {
				http.Error(w, "Flush: "+err.Error(), 500)
				return
			}
			io.WriteString(w, "controlled")
		}, 200, "controlled"},
		{"io.Copy (ReaderFrom)", func(w http.ResponseWriter, r *http.Request) {
			if !write(w, r) {
				return
			}
			if _, ok := w.(io.ReaderFrom); !ok {
				http.Error(w, "not an io.ReaderFrom", 500)
				return
			}
			io.Copy(w, strings.NewReader("copied"))
		}, 200, "copied"},
		{"early hints", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			if write(w, r) {
				io.WriteString(w, "hinted")
			}
		}, 200, "hinted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(httpsession.Middleware(db)(tc.handler))
			defer srv.Close()
			var hintCookies []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				hintCookies = append(hintCookies, h.Values("Set-Cookie")...)
				return nil
			}}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", srv.URL, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || string(body) != tc.body {
				t.Fatalf("%s %q, want %d %q", resp.Status, body, tc.status, tc.body)
			}
			if tokenCookie(resp, "switchyard") == nil {
				t.Errorf("no cookie: %v", resp.Header)
			}
			if len(hintCookies) > 0 {
				t.Errorf("the cookie went out with a 1xx response: %v", hintCookies)
			}
		})
	}

	t.Run("Hijack", func(t *testing.T) {
		srv := httptest.NewServer(httpsession.Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !write(w, r) {
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
			brw.Flush()
		})))
		defer srv.Close()
		resp, body := do(t, http.DefaultClient, "GET", srv.URL)
		if body != "hijacked" || len(resp.Cookies()) != 0 {
			t.Errorf("hijacked: %q, cookies %v", body, resp.Header["Set-Cookie"])
		}
	})

	t.Run("no Flusher or Hijacker underneath", func(t *testing.T) {
		h := httpsession.Middleware(db)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := http.NewResponseController(w).Flush(); !errors.Is(err, http.ErrNotSupported) {
				t.Errorf("Flush over a writer that cannot: %v", err)
			}
			if _, _, err := w.(http.Hijacker).Hijack(); !errors.Is(err, http.ErrNotSupported) {
				t.Errorf("Hijack over a writer that cannot: %v", err)
			}
			io.Copy(w, strings.NewReader("plain"))
		}))
		rec := &plainWriter{header: http.Header{}}
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
		if rec.body.String() != "plain" || !strings.HasPrefix(rec.header.Get("Set-Cookie"), "switchyard=") {
			t.Errorf("body %q, header %v", rec.body.String(), rec.header)
		}
	})
}

// plainWriter is a ResponseWriter with nothing but the three methods.
type plainWriter struct {
	header http.Header
	body   strings.Builder
}

func (w *plainWriter) Header() http.Header         { return w.header }
func (w *plainWriter) WriteHeader(int)             {}
func (w *plainWriter) Write(b []byte) (int, error) { return w.body.Write(b) }

func TestOnError(t *testing.T) {
	db := openDB(t)
	var got []error
	h := httpsession.Middleware(db, httpsession.OnError(func(r *http.Request, err error) { got = append(got, err) }))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "still served") }))
	db.Close() // DB.Token fails from now on
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != 200 || rec.Body.String() != "still served" || rec.Header().Get("Set-Cookie") != "" {
		t.Errorf("%d %q, Set-Cookie %q", rec.Code, rec.Body.String(), rec.Header().Get("Set-Cookie"))
	}
	if len(got) != 1 || !errors.Is(got[0], switchyard.ErrClosed) {
		t.Errorf("OnError got %v, want ErrClosed once", got)
	}
}

// TestBackgroundJob carries a request's session into a job run by a worker
// with another DB (another process, in production): the job reads what the
// request wrote, although replica2 replays 200ms late.
func TestBackgroundJob(t *testing.T) {
	web, worker := openDB(t), openDB(t)
	type job struct {
		ID    int
		Want  int // what the request wrote
		Token string
	}
	jobs := make(chan job, 1)
	srv := httptest.NewServer(httpsession.Middleware(web)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var v int
		if err := web.QueryRow(r.Context(), "UPDATE kv SET v = v + 1 WHERE id = 9 RETURNING v").Scan(&v); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		tok, err := web.Token(r.Context())
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		jobs <- job{ID: 9, Want: v, Token: tok}
		w.WriteHeader(http.StatusAccepted)
	})))
	defer srv.Close()

	ctx := testCtx(t)
	run := func(j job, carry bool) (got int, err error) {
		jctx := switchyard.WithSession(ctx)
		if carry {
			if jctx, err = switchyard.WithToken(ctx, j.Token); err != nil {
				return 0, err
			}
		}
		err = worker.QueryRow(jctx, "SELECT v FROM kv WHERE id = $1", j.ID).Scan(&got)
		return got, err
	}
	stale, staleWithout := 0, 0
	for range 100 {
		resp, err := http.Post(srv.URL, "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		j := <-jobs
		if got, err := run(j, true); err != nil {
			t.Fatal(err)
		} else if got < j.Want {
			stale++
		}
		// The same job without the token, as a control.
		if got, err := run(j, false); err != nil {
			t.Fatal(err)
		} else if got < j.Want {
			staleWithout++
		}
	}
	t.Logf("100 jobs: %d stale reads with the token, %d without", stale, staleWithout)
	if stale > 0 {
		t.Errorf("%d of 100 jobs did not see the write of the request that enqueued them", stale)
	}
	if staleWithout == 0 {
		t.Error("no stale read even without the token: the lab does not lag, so this test proves nothing")
	}
}

// caughtUp reports whether db's monitor has seen every replica healthy and
// at or past target (as the primary's insert position, page headers aside).
func caughtUp(db *switchyard.DB, target lsn.LSN) bool {
	target = lsn.RoundDownPageHeader(target, 8192)
	for _, n := range db.Stats().Nodes {
		if n.Role == switchyard.RolePrimary {
			continue
		}
		if pos, err := lsn.Parse(n.Position); err != nil || !n.Healthy || pos < target {
			return false
		}
	}
	return true
}

// TestQueryCache: each request has a cache of its own, made with the
// limits given; a write in the request empties it and the next read sees
// the write; without the option, nothing is cached.
func TestQueryCache(t *testing.T) {
	db := openDB(t)
	var seen []int
	var writes bool
	handler := func(opts ...httpsession.Option) http.Handler {
		return httpsession.Middleware(db, opts...)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := range 3 {
				var v int
				if err := db.QueryRow(r.Context(), "SELECT v FROM kv WHERE id = 42").Scan(&v); err != nil {
					t.Error(err)
					return
				}
				seen = append(seen, v)
				if writes && i == 1 {
					if _, err := db.Exec(r.Context(), "UPDATE kv SET v = v + 1 WHERE id = 42"); err != nil {
						t.Error(err)
					}
				}
			}
		}))
	}
	serve := func(h http.Handler) switchyard.QueryCacheStats {
		before := db.Stats().QueryCache
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		after := db.Stats().QueryCache
		return switchyard.QueryCacheStats{Hits: after.Hits - before.Hits, Misses: after.Misses - before.Misses, NotKept: after.NotKept - before.NotKept}
	}
	cached := handler(httpsession.QueryCache())
	for i := range 2 {
		if st := serve(cached); st.Hits != 2 || st.Misses != 1 {
			t.Errorf("request %d: %+v; want 1 miss, 2 hits (its own cache)", i+1, st)
		}
	}
	if st := serve(handler()); st.Hits != 0 || st.Misses != 0 {
		t.Errorf("without QueryCache: %+v", st)
	}
	tiny := handler(httpsession.QueryCache(switchyard.QueryCacheLimits{ResultBytes: 16}))
	if st := serve(tiny); st.Hits != 0 || st.NotKept != 3 {
		t.Errorf("with a 16-byte result limit: %+v; want nothing kept", st)
	}
	writes, seen = true, nil
	serve(cached)
	if len(seen) != 3 || seen[0] != seen[1] || seen[2] != seen[1]+1 {
		t.Errorf("reads around the request's write saw %v; want the write in the third", seen)
	}
}
