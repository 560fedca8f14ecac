package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/statuspage"
)

const statusUsage = `Usage: switchyard status --primary URL [--replica URL]... [flags]
       switchyard status --connect "postgres://host1,host2,host3/db" [flags]
       switchyard status --admin HOST:PORT [flags]

Prints each server's cluster, role, state, replay lag (time and bytes), WAL
position, routed and in-flight statements, and the latest changes of the
servers' state, as "patronictl list" does for Patroni.

From connection strings (--primary and --replica, or --connect, whose roles
are found with pg_is_in_recovery()), it opens switchyard on the servers and
waits for its monitor's first polls. With --admin it reads the status page's
JSON (http://HOST:PORT/status.json, or the URL given) of a running
"switchyard proxy --admin", "switchyard lab up --status", or any program that
mounts package statuspage.

With --watch it clears the screen and prints again every INTERVAL (2s by
default; "--watch 500ms" or "--watch=5s" to change it) until interrupted.

Flags:
`

// watchFlag is --watch with an optional interval.
type watchFlag struct {
	on    bool
	every time.Duration
}

const defaultWatch = 2 * time.Second

func (w *watchFlag) String() string {
	if w == nil || !w.on {
		return "off"
	}
	return w.every.String()
}

func (w *watchFlag) IsBoolFlag() bool { return true }

func (w *watchFlag) Set(s string) error {
	switch s {
	case "true":
		w.on, w.every = true, defaultWatch
		return nil
	case "false":
		w.on = false
		return nil
	}
	d, err := parseInterval(s)
	if err != nil {
		return err
	}
	w.on, w.every = true, d
	return nil
}

// parseInterval reads 500ms, 2s, or a plain number of seconds as watch -n
// takes.
func parseInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil {
			return 0, fmt.Errorf("not an interval such as 2s or 500ms")
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 100*time.Millisecond {
		return 0, fmt.Errorf("at least 100ms")
	}
	return d, nil
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// joinWatchInterval turns "--watch 5s" into "--watch=5s", so that the
// interval may follow the flag as with watch -n.
func joinWatchInterval(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if (a == "--watch" || a == "-watch") && i+1 < len(args) {
			if _, err := parseInterval(args[i+1]); err == nil {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		if a == "--" {
			return append(out, args[i:]...)
		}
		out = append(out, a)
	}
	return out
}

func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	primary := fs.String("primary", "", "the primary's connection `URL`")
	var replicas listFlag
	fs.Var(&replicas, "replica", "a replica's connection `URL` (repeat for each)")
	connect := fs.String("connect", "", "one connection `URL` naming every server (postgres://h1,h2,h3/db); roles are discovered")
	admin := fs.String("admin", "", "a running proxy's or lab's admin `address` (host:port) or status page URL")
	var watch watchFlag
	fs.Var(&watch, "watch", "print again every `INTERVAL` (default 2s) until interrupted")
	events := fs.Int("events", 5, "how many of the latest state changes to print")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the servers or the admin address")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), statusUsage)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, joinWatchInterval(args), stdout); err != nil {
		return err
	}
	urls := *primary != "" || len(replicas) > 0
	switch {
	case !urls && *connect == "" && *admin == "":
		return usageErrorf("status: give --primary (and --replica), --connect, or --admin (try \"switchyard status --help\")")
	case len(replicas) > 0 && *primary == "":
		return usageErrorf("status: --replica needs --primary")
	case (urls && *connect != "") || (urls && *admin != "") || (*connect != "" && *admin != ""):
		return usageErrorf("status: give one of --primary/--replica, --connect and --admin")
	case *events < 0:
		return usageErrorf("status: --events %d: must be 0 or more", *events)
	case *timeout <= 0:
		return usageErrorf("status: --timeout %v: must be positive", *timeout)
	}

	var fetch func(context.Context) (statuspage.Status, error)
	var from string
	if *admin != "" {
		url, err := adminURL(*admin)
		if err != nil {
			return usageErrorf("status: --admin %q: %v", *admin, err)
		}
		from = url
		client := &http.Client{Timeout: *timeout}
		fetch = func(ctx context.Context) (statuspage.Status, error) { return fetchStatus(ctx, client, url) }
	} else {
		octx, cancel := context.WithTimeout(ctx, *timeout)
		var db *switchyard.DB
		var err error
		if *connect != "" {
			db, err = switchyard.Connect(octx, *connect)
		} else {
			db, err = switchyard.Open(octx, switchyard.Config{Primary: *primary, Replicas: replicas})
		}
		if err == nil {
			waitFirstPolls(octx, db)
		}
		cancel()
		if err != nil {
			return err
		}
		defer db.Close()
		from = fmt.Sprintf("%d servers", len(db.Stats().Nodes))
		fetch = func(context.Context) (statuspage.Status, error) {
			return statuspage.NewStatus(db.Stats(), time.Now()), nil
		}
	}

	if !watch.on {
		st, err := fetch(ctx)
		if err != nil {
			return err
		}
		printStatus(stdout, st, from, *events)
		return nil
	}
	t := time.NewTicker(watch.every)
	defer t.Stop()
	for {
		st, err := fetch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// Clear the screen and draw again, as watch(1) does, in one write:
		// no half-drawn frame.
		var frame bytes.Buffer
		frame.WriteString("\x1b[H\x1b[2J")
		fmt.Fprintf(&frame, "Every %v: switchyard status\n\n", watch.every)
		if err != nil {
			fmt.Fprintf(&frame, "switchyard: %v\n", err)
		} else {
			printStatus(&frame, st, from, *events)
		}
		if _, err := stdout.Write(frame.Bytes()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// adminURL is the status JSON's URL for --admin: host:port, or a URL of
// the page (status.json is appended unless it names a .json).
func adminURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		if strings.ContainsAny(s, "/?#") || !strings.Contains(s, ":") {
			return "", errors.New("want host:port or an http:// URL")
		}
		return "http://" + s + "/status.json", nil
	}
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		return "", errors.New("want an http:// or https:// URL")
	}
	if strings.HasSuffix(s, ".json") || strings.Contains(s, "format=json") {
		return s, nil
	}
	return strings.TrimSuffix(s, "/") + "/status.json", nil
}

func fetchStatus(ctx context.Context, client *http.Client, url string) (statuspage.Status, error) {
	var st statuspage.Status
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	req.Header.Set("Accept", "application/json")
	res, err := client.Do(req)
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s: %s", url, res.Status)
	}
	if err := json.NewDecoder(io.LimitReader(res.Body, 16<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("%s: not a switchyard status: %v", url, err)
	}
	return st, nil
}

// waitFirstPolls waits, until ctx ends, for the monitor to have polled
// every server that is up, and for one more poll so that replicas' lag has
// a primary position to be measured against.
func waitFirstPolls(ctx context.Context, db *switchyard.DB) {
	polled := func() bool {
		for _, n := range db.Stats().Nodes {
			if n.Healthy && (n.Position == "" || n.Position == "0/0") {
				return false
			}
		}
		return true
	}
	for !polled() {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(2 * switchyard.DefaultMonitorInterval):
	}
}

// printStatus prints st as a table of servers, a line of routing counts
// and the latest events.
func printStatus(w io.Writer, st statuspage.Status, from string, events int) {
	fmt.Fprintf(w, "switchyard status at %s (%s)\n\n", st.Time.Local().Format("2006-01-02 15:04:05"), from)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tCLUSTER\tROLE\tSTATE\tLAG\tLAG BYTES\tPOSITION\tROUTED\tIN-FLIGHT\tERRORS")
	for _, n := range st.Nodes {
		state := n.State
		if n.State == "down" && n.DownSince != nil {
			state = "down(" + shortDuration(time.Duration(n.DownForSeconds*float64(time.Second))) + ")"
		}
		lag, lagBytes := "-", "-"
		if n.Role == "replica" {
			lag, lagBytes = shortLag(n.LagSeconds), sizeOf(n.LagBytes)
		}
		pos := n.Position
		if pos == "" {
			pos = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\n",
			n.Name, n.Cluster, n.Role, state, lag, lagBytes, pos, n.Routed, n.InFlight, n.Errors)
	}
	tw.Flush()

	r := st.Routes
	type kv struct {
		k string
		v uint64
	}
	var reasons []kv
	for k, v := range r.ByReason {
		if v > 0 {
			reasons = append(reasons, kv{k, v})
		}
	}
	sort.Slice(reasons, func(i, j int) bool {
		if reasons[i].v != reasons[j].v {
			return reasons[i].v > reasons[j].v
		}
		return reasons[i].k < reasons[j].k
	})
	fmt.Fprintln(w)
	share := "no reads yet"
	if s := r.ReplicaShare(); s >= 0 {
		share = fmt.Sprintf("%.0f%%", s*100)
	}
	fmt.Fprintf(w, "Reads served by replicas: %s", share)
	if len(reasons) > 0 {
		parts := make([]string, len(reasons))
		for i, p := range reasons {
			parts[i] = fmt.Sprintf("%s %d", p.k, p.v)
		}
		fmt.Fprintf(w, "; routed: %s", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	var notes []string
	for _, c := range []struct {
		name string
		n    uint64
	}{
		{"read retries", r.Retried}, {"atomic retries", r.AtomicRetries}, {"checks failed", r.CheckFailed},
		{"in-doubt commits committed", r.InDoubtCommitted}, {"aborted", r.InDoubtAborted}, {"unknown", r.InDoubtUnknown},
		{"tokens clamped", r.TokensClamped}, {"tokens foreign", r.TokensForeign},
	} {
		if c.n > 0 {
			notes = append(notes, fmt.Sprintf("%s %d", c.name, c.n))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "Also: %s\n", strings.Join(notes, ", "))
	}

	if events == 0 {
		return
	}
	fmt.Fprintln(w)
	if len(st.Events) == 0 {
		fmt.Fprintln(w, "No state changes since the start.")
		return
	}
	fmt.Fprintln(w, "Latest state changes:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, e := range st.Events {
		if i == events {
			break
		}
		why := e.Why
		if why != "" {
			why = "  " + why
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s ago%s\n", e.At.Local().Format("15:04:05"), e.Node, e.What,
			shortDuration(st.Time.Sub(e.At)), why)
	}
	tw.Flush()
}

func shortLag(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d == 0:
		return "0"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Millisecond).String()
	}
}

func shortDuration(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

// sizeOf prints a byte count as pg_size_pretty does, without its space:
// 0B, 812B, 12kB, 3MB (units of 1024).
func sizeOf(b uint64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	v, i := float64(b), 0
	for v >= 1024*10 && i < len(units)-1 {
		v /= 1024
		i++
	}
	return fmt.Sprintf("%.0f%s", v, units[i])
}
