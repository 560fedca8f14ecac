package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/switchyard-db/switchyard/switchyardtest"
)

// TestProxyAdmin runs switchyard proxy with --admin on a lab and reads its
// status page, its JSON, its metrics and /healthz, and switchyard status
// against it; the password in the connection strings shows nowhere.
func TestProxyAdmin(t *testing.T) {
	switchyardtest.NeedServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 1})
	const secret = "hunter2-admin"
	if err := c.Primary().Exec(ctx, "ALTER ROLE postgres PASSWORD '"+secret+"'"); err != nil {
		t.Fatal(err)
	}
	withPassword := func(dsn string) string {
		return strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:"+secret+"@", 1)
	}
	pctx, stop := context.WithCancel(ctx)
	var logs syncBuffer
	done := make(chan int)
	go func() {
		done <- run(pctx, []string{"proxy", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0",
			"--primary", withPassword(c.Primary().DSN()), "--replica", withPassword(c.Replicas()[0].DSN())}, io.Discard, &logs)
	}()
	defer func() {
		stop()
		if code := <-done; code != 0 {
			t.Errorf("proxy: exit %d:\n%s", code, logs.String())
		}
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the password is in the proxy's log:\n%s", logs.String())
		}
	}()
	admin := waitOutput(t, &logs, regexp.MustCompile(`admin" addr=([0-9.:]+)`), "the admin address")[1]
	listen := waitOutput(t, &logs, regexp.MustCompile(`listening" addr=([0-9.:]+)`), "the listen address")[1]

	// A little traffic through the proxy, so that the counts move.
	conn, err := pgx.Connect(ctx, "postgres://postgres@"+listen+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)

	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get("http://" + admin + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		if bytes.Contains(body, []byte(secret)) {
			t.Errorf("%s shows the password", path)
		}
		return res.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get("/"); code != 200 || !strings.Contains(body, "switchyard proxy") || !strings.Contains(body, `id="lag-chart"`) {
		t.Errorf("/: %d\n%s", code, body)
	}
	if code, body := get("/status.json"); code != 200 || !regexp.MustCompile(`"role": *"replica"`).MatchString(body) {
		t.Errorf("/status.json: %d\n%s", code, body)
	}
	code, body := get("/metrics")
	if code != 200 || strings.Count(body, "\nswitchyard_node_up{") != 2 || !strings.Contains(body, "\nswitchyard_routed_total{") {
		t.Errorf("/metrics: %d\n%s", code, body)
	}
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{"status", "--admin", admin}, &out, &errOut); code != 0 {
		t.Fatalf("status --admin: exit %d: %s", code, errOut.String())
	}
	if rows := statusTable(t, out.String()); len(rows) != 2 || rows[0].role != "primary" || rows[1].role != "replica" {
		t.Errorf("switchyard status --admin:\n%s", out.String())
	}
}
