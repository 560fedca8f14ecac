package switchyard_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/switchyard-db/switchyard"
)

// deadPort is a loopback port with nothing listening.
func deadPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestBadInput(t *testing.T) {
	setupRouting(t)
	ctx := testCtx(t)
	const secret = "s3cr3t-pw"
	primary := sharedLab(t).Primary().DSN()
	replica := sharedLab(t).Replicas()[0].DSN()
	dead := fmt.Sprintf("postgres://app:%s@127.0.0.1:%d/app?connect_timeout=2", secret, deadPort(t))

	for _, tc := range []struct {
		name    string
		cfg     switchyard.Config
		want    error
		mention string
	}{
		{"empty primary", switchyard.Config{}, switchyard.ErrConfig, "Primary is empty"},
		{"blank replica", switchyard.Config{Primary: primary, Replicas: []string{" "}}, switchyard.ErrConfig, "replica 1"},
		{"malformed URL", switchyard.Config{Primary: "postgres://app:" + secret + "@db1:notaport/app"}, switchyard.ErrConfig, "primary"},
		{"malformed key=value", switchyard.Config{Primary: "host=db1 password=" + secret + " port=x"}, switchyard.ErrConfig, "primary"},
		{"unknown option", switchyard.Config{Primary: primary + "&pool_max_conns=lots"}, switchyard.ErrConfig, "pool_max_conns"},
		{"multi-host in Config", switchyard.Config{Primary: "postgres://a,b/app"}, switchyard.ErrConfig, "several hosts"},
		{"duplicate", switchyard.Config{Primary: primary, Replicas: []string{replica, replica}}, switchyard.ErrConfig, "same server"},
		{"primary listed as replica", switchyard.Config{Primary: primary, Replicas: []string{primary}}, switchyard.ErrConfig, "the primary"},
		{"weights", switchyard.Config{Primary: primary, Replicas: []string{replica}, ReplicaWeights: []int{1, 2}}, switchyard.ErrConfig, "ReplicaWeights"},
		{"zero weight", switchyard.Config{Primary: primary, Replicas: []string{replica}, ReplicaWeights: []int{0}}, switchyard.ErrConfig, "weight"},
		{"unreachable primary", switchyard.Config{Primary: dead}, switchyard.ErrUnreachable, "127.0.0.1"},
		{"primary is a replica", switchyard.Config{Primary: replica}, switchyard.ErrNoPrimary, "in recovery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := switchyard.Open(ctx, tc.cfg)
			if err == nil {
				db.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the password: %q", err)
			}
		})
	}

	t.Run("unreachable replica is not fatal", func(t *testing.T) {
		var logs syncBuffer
		db, err := switchyard.Open(ctx, switchyard.Config{Primary: primary, Replicas: []string{dead},
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if out := logs.String(); !strings.Contains(out, "replica out of rotation") || strings.Contains(out, secret) {
			t.Errorf("the log should name the down replica and never its password:\n%s", out)
		}
		var rec bool
		if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || rec {
			t.Errorf("read with the only replica down: %v, %v", rec, err)
		}
		if s := db.Stats(); s.Nodes[1].Healthy {
			t.Error("an unreachable replica is marked healthy")
		}
	})

	t.Run("Connect", func(t *testing.T) {
		hosts := func(ports ...int) string {
			var hs []string
			for _, p := range ports {
				hs = append(hs, fmt.Sprintf("127.0.0.1:%d", p))
			}
			return "postgres://postgres:" + secret + "@" + strings.Join(hs, ",") + "/postgres?sslmode=disable&connect_timeout=2"
		}
		p, r1, r2 := sharedLab(t).Primary().Port(), sharedLab(t).Replicas()[0].Port(), sharedLab(t).Replicas()[1].Port()
		for _, tc := range []struct {
			name, url string
			want      error
		}{
			{"empty", "", switchyard.ErrConfig},
			{"malformed", "postgres://postgres:" + secret + "@127.0.0.1:x/postgres", switchyard.ErrConfig},
			{"no primary", hosts(r1, r2), switchyard.ErrNoPrimary},
			{"nothing answers", hosts(deadPort(t)), switchyard.ErrUnreachable},
			{"duplicate host", hosts(p, r1, p), switchyard.ErrConfig},
		} {
			db, err := switchyard.Connect(ctx, tc.url)
			if err == nil {
				db.Close()
				t.Errorf("%s: no error", tc.name)
				continue
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: error %q is not %v", tc.name, err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error shows the password: %q", tc.name, err)
			}
		}
		db, err := switchyard.Connect(ctx, hosts(r2, p, deadPort(t), r1))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		s := db.Stats()
		if s.Nodes[0].Name != fmt.Sprintf("127.0.0.1:%d", p) || s.Nodes[0].Role != switchyard.RolePrimary {
			t.Errorf("Connect made %s the primary", s.Nodes[0].Name)
		}
		var rec bool
		if err := db.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || !rec {
			t.Errorf("a read through Connect: in recovery %v, %v", rec, err)
		}
	})
}

// syncBuffer is a bytes.Buffer safe for the monitor's goroutines to log to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
