package httpsession_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/httpsession"
)

// openLab opens a DB on the test binary's lab (a primary and two streaming
// replicas, one of them replaying 200ms late). In your own code, the DSNs
// come from your configuration.
func openLab(ctx context.Context) *switchyard.DB {
	c := lab()
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:  c.Primary().DSN(),
		Replicas: []string{c.Replicas()[0].DSN(), c.Replicas()[1].DSN()},
	})
	if err != nil {
		log.Fatal(err)
	}
	return db
}

func ExampleMiddleware() {
	ctx := context.Background()
	db := openLab(ctx)
	defer db.Close()
	if _, err := db.Exec(ctx, "CREATE TABLE IF NOT EXISTS example_notes (body text NOT NULL); TRUNCATE example_notes"); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// r.Context() carries the user's session: pass it to the DB.
		if _, err := db.Exec(r.Context(), "INSERT INTO example_notes (body) VALUES ($1)", string(body)); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated) // the cookie goes out with this
	})
	mux.HandleFunc("GET /notes", func(w http.ResponseWriter, r *http.Request) {
		// Served by a replica only if it has replayed this user's last
		// write (made by another request, maybe on another server).
		rows, err := db.Query(r.Context(), "SELECT body FROM example_notes")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer rows.Close()
		for rows.Next() {
			var body string
			rows.Scan(&body)
			fmt.Fprintln(w, body)
		}
	})
	// The admin pages show every user's latest data: the primary, always.
	handler := httpsession.Middleware(db, httpsession.PrimaryPaths("/admin"))(mux)

	srv := httptest.NewServer(handler)
	defer srv.Close()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}

	resp, err := browser.Post(srv.URL+"/notes", "text/plain", strings.NewReader("buy milk"))
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status, "with cookie:", resp.Cookies()[0].Name)

	resp, err = browser.Get(srv.URL + "/notes") // right away: no replica has it yet
	if err != nil {
		log.Fatal(err)
	}
	notes, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Print("notes: ", string(notes))
	// Output:
	// 201 Created with cookie: switchyard
	// notes: buy milk
}

// A job enqueued by a request reads what the request wrote: the request
// puts its session's token in the job, and the worker (any process, with
// its own DB) restores it.
func Example_backgroundJob() {
	ctx := context.Background()
	web := openLab(ctx) // the web server's DB
	defer web.Close()
	worker := openLab(ctx) // the worker's DB, in another process in real life
	defer worker.Close()
	if _, err := web.Exec(ctx, "CREATE TABLE IF NOT EXISTS example_orders (id int PRIMARY KEY, state text NOT NULL); TRUNCATE example_orders"); err != nil {
		log.Fatal(err)
	}

	type job struct {
		OrderID int
		Token   string // the session's position: a short opaque string
	}
	queue := make(chan job, 1) // a message queue, a jobs table, ...

	handler := httpsession.Middleware(web)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := web.Exec(r.Context(), "INSERT INTO example_orders VALUES (1, 'paid')"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		tok, err := web.Token(r.Context()) // after the writes the job must see
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		queue <- job{OrderID: 1, Token: tok}
		w.WriteHeader(http.StatusAccepted)
	}))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("POST", "/orders", nil))
	fmt.Println("request:", rec.Code)

	// The worker.
	j := <-queue
	jctx, err := switchyard.WithToken(ctx, j.Token)
	if err != nil {
		log.Fatal(err) // only for a token that is not one (ErrBadToken)
	}
	var state string
	if err := worker.QueryRow(jctx, "SELECT state FROM example_orders WHERE id = $1", j.OrderID).Scan(&state); err != nil {
		log.Fatal(err) // without the token, this could be pgx.ErrNoRows
	}
	fmt.Println("job sees order", j.OrderID, state)
	// Output:
	// request: 202
	// job sees order 1 paid
}

// With QueryCache, each request reads a row it needs in several places
// (the current user, say: for the page, its menu and its permission
// checks) once: the repeats come from the request's cache, and a write
// the request makes empties it.
func ExampleQueryCache() {
	ctx := context.Background()
	db := openLab(ctx)
	defer db.Close()

	currentUser := func(r *http.Request) (name, role string) {
		if err := db.QueryRow(r.Context(), "SELECT name, role FROM example_users WHERE id = $1", 7).Scan(&name, &role); err != nil {
			log.Fatal(err)
		}
		return name, role
	}
	handler := httpsession.Middleware(db, httpsession.QueryCache())(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var name, role string
		for range 6 { // the page, its menu, four permission checks
			name, role = currentUser(r)
		}
		fmt.Fprintln(w, name, role)
	}))

	before := db.Stats().QueryCache
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	after := db.Stats().QueryCache
	fmt.Print("page: ", rec.Body.String())
	fmt.Println("round trips:", after.Misses-before.Misses, "from the cache:", after.Hits-before.Hits)
	// Output:
	// page: Ada admin
	// round trips: 1 from the cache: 5
}
