package statuspage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/statuspage"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// The status page of a DB, mounted in an application's mux below
// /debug/switchyard/: a browser opens that URL; scripts and switchyard
// status --admin read /debug/switchyard/status.json. Here a lab stands in
// for the servers, and the example reads the JSON.
func ExampleHandler() {
	ctx := context.Background()
	lab, err := switchyardtest.Start(ctx, switchyardtest.Options{Replicas: 2})
	if err != nil {
		log.Fatal(err)
	}
	defer lab.Close()
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:  lab.Primary().DSN(),
		Replicas: []string{lab.Replicas()[0].DSN(), lab.Replicas()[1].DSN()},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	page := statuspage.Handler(db, statuspage.Title("orders"))
	defer page.Close()
	mux := http.NewServeMux()
	mux.Handle("/debug/switchyard/", page)
	srv := httptest.NewServer(mux) // in a program: http.ListenAndServe("127.0.0.1:8081", mux)
	defer srv.Close()

	res, err := http.Get(srv.URL + "/debug/switchyard/status.json")
	if err != nil {
		log.Fatal(err)
	}
	defer res.Body.Close()
	var st statuspage.Status
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		log.Fatal(err)
	}
	for _, n := range st.Nodes {
		fmt.Println(n.Cluster, n.Role, n.State)
	}
	fmt.Println(len(st.History.Series), "replicas in the lag history")
	// Output:
	// default primary up
	// default replica up
	// default replica up
	// 2 replicas in the lag history
}
