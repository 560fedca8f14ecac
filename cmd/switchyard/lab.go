package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/prom"
	"github.com/switchyard-db/switchyard/statuspage"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

const labUsage = `Usage: switchyard lab up [--replicas N] [--lag DURATION] [--port P] [--dir DIR] [--status ADDR]

Starts a PostgreSQL primary with streaming replicas on 127.0.0.1, prints each
node's role and connection URL, and stays in the foreground. Ctrl-C stops
every server and removes what the lab created (a --dir you gave is kept).

With --status, it also opens switchyard on the lab and serves its status page
at http://ADDR/ (JSON at /status.json, for "switchyard status --admin ADDR")
and its Prometheus metrics at /metrics.

The servers come from $SWITCHYARD_PG_BIN, pg_config --bindir, PATH, or the
newest /usr/lib/postgresql/*/bin. Run as root, they run as the postgres user.

Flags:
`

func labCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "up" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			args = []string{"up", "--help"}
		} else {
			return usageErrorf("lab: want \"switchyard lab up [flags]\" (try \"switchyard lab --help\")")
		}
	}
	fs := flag.NewFlagSet("lab up", flag.ContinueOnError)
	replicas := fs.Int("replicas", 2, "number of streaming replicas")
	lag := fs.Duration("lag", 0, "replay delay of the last replica, such as 200ms (recovery_min_apply_delay)")
	port := fs.Int("port", 0, "primary's port; replica i gets port+i (default: free ports)")
	dir := fs.String("dir", "", "keep the data directories and logs here (default: a temporary directory, removed on exit)")
	status := fs.String("status", "", "serve the status page and /metrics of switchyard on the lab at `ADDR`, such as 127.0.0.1:8080")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), labUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	switch {
	case *replicas < 0:
		return usageErrorf("lab up: --replicas %d: must be 0 or more", *replicas)
	case *lag < 0:
		return usageErrorf("lab up: --lag %v: must not be negative", *lag)
	case *lag > 0 && *replicas == 0:
		return usageErrorf("lab up: --lag needs at least one replica")
	case *port < 0 || *port > 0 && *port+*replicas > 65535:
		return usageErrorf("lab up: --port %d: out of range", *port)
	}
	if *status != "" {
		if _, _, err := net.SplitHostPort(*status); err != nil {
			return usageErrorf("lab up: --status %q: want host:port", *status)
		}
	}

	opts := switchyardtest.Options{
		Replicas: *replicas,
		Port:     *port,
		Dir:      *dir,
		Logf: func(format string, args ...any) {
			fmt.Fprintf(stderr, "lab: "+format+"\n", args...)
		},
	}
	if *lag > 0 {
		opts.ApplyDelay = make([]time.Duration, *replicas)
		opts.ApplyDelay[*replicas-1] = *lag
	}
	fmt.Fprintf(stderr, "lab: starting a primary and %d replicas\n", *replicas)
	c, err := switchyardtest.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		fmt.Fprintln(stderr, "lab: stopping")
		if err := c.Close(); err != nil {
			fmt.Fprintln(stderr, "lab:", err)
		}
		if *dir != "" {
			fmt.Fprintf(stderr, "lab: kept %s\n", *dir)
		} else {
			fmt.Fprintf(stderr, "lab: removed %s\n", c.Dir())
		}
	}()
	for i, n := range c.Nodes() {
		note := ""
		if *lag > 0 && i == len(c.Nodes())-1 {
			note = fmt.Sprintf("  (replays %v behind)", *lag)
		}
		fmt.Fprintf(stdout, "%-8s %-9s %s%s\n", n.Role(), n.Name(), n.DSN(), note)
	}
	if *status != "" {
		stop, err := serveStatus(ctx, c, *status, stderr)
		if err != nil {
			return err
		}
		defer stop()
	}
	fmt.Fprintf(stderr, "lab: ready; data and logs in %s; press Ctrl-C to stop\n", c.Dir())
	<-ctx.Done()
	return nil
}

// serveStatus opens switchyard on the lab and serves its status page (at
// /, sampling all the time, so that the lag chart has the last minutes when
// opened) and its metrics (at /metrics) on addr. stop ends it all.
func serveStatus(ctx context.Context, c *switchyardtest.Cluster, addr string, stderr io.Writer) (stop func(), err error) {
	cfg := switchyard.Config{Primary: c.Primary().DSN()}
	for _, r := range c.Replicas() {
		cfg.Replicas = append(cfg.Replicas, r.DSN())
	}
	db, err := switchyard.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("--status: %w", err)
	}
	page := statuspage.Handler(db, statuspage.Always(), statuspage.Title("switchyard lab"))
	mux := http.NewServeMux()
	mux.Handle("/metrics", prom.Handler(db))
	mux.Handle("/", page)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintln(stderr, "lab: status page:", err)
		}
	}()
	fmt.Fprintf(stderr, "lab: status page on http://%s/ (JSON at /status.json, metrics at /metrics)\n", ln.Addr())
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.Shutdown(sctx)
		cancel()
		<-done
		page.Close()
		db.Close()
	}, nil
}
