package prom_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/prom"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// A /metrics endpoint for a DB: Handler serves its metrics with the Go
// runtime's and the process's. Here a lab stands in for the servers, and the
// example scrapes the endpoint as Prometheus would and prints each server's
// switchyard_node_up.
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

	mux := http.NewServeMux()
	mux.Handle("/metrics", prom.Handler(db))
	srv := httptest.NewServer(mux) // in a program: http.ListenAndServe(":9187", mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	up := regexp.MustCompile(`^switchyard_node_up\{cluster="(\w+)",node="[^"]+",role="(\w+)"\} (\d)`)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if m := up.FindStringSubmatch(sc.Text()); m != nil {
			fmt.Printf("cluster %s: a %s, up %s\n", m[1], m[2], m[3])
		}
	}
	// Unordered output:
	// cluster default: a primary, up 1
	// cluster default: a replica, up 1
	// cluster default: a replica, up 1
}

// On a registry of one's own (here the default one), with a label telling
// this DB's metrics from those of the process's other DBs.
func ExampleNewCollector() {
	ctx := context.Background()
	db, err := switchyard.Open(ctx, switchyard.Config{
		Primary:  "postgres://app@db1/orders",
		Replicas: []string{"postgres://app@db2/orders", "postgres://app@db3/orders"},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	prometheus.MustRegister(prom.NewCollector(db, prom.ConstLabels(prometheus.Labels{"db": "orders"})))
	http.Handle("/metrics", promhttp.Handler())
	log.Fatal(http.ListenAndServe(":9187", nil))
}
