package compare

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestBenchErrors(t *testing.T) {
	stderr := `pgbench (15.18 (Debian 15.18-0+deb12u1))
pgbench: error: ERROR:  prepared statement "P_0" already exists
pgbench: error: ERROR:  prepared statement "P_0" already exists
pgbench: error: pgbench: error: client 14 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist
pgbench:ERROR:  prepared statement "P_0" already exists
pgbench: error: client 3 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist
pgbench: error: client 4 script 0 aborted in command 1 query 0: ERROR:  prepared statement "P_0" does not exist
pgbench: error: client 5 script 0 aborted in command 1 query 0: ERROR:  bind message supplies 0 parameters, but prepared statement "P_0" requires 1
pgbench: error: Run was aborted; the above results are incomplete.
`
	got := benchErrors(stderr, errors.New("exit status 2"))
	want := `prepared statement "P_0" does not exist / prepared statement "P_0" already exists / bind message supplies 0 parameters, but prepared statement "P_0" requires 1`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}

	err := exec.Command("sh", "-c", "exit 1").Run()
	got = benchErrors("pgbench: something odd\n", err)
	if got != "pgbench exited with status 1: pgbench: something odd" {
		t.Errorf("without an error line: %q", got)
	}
	got = benchErrors(`pgbench: error: connection to server at "127.0.0.1", port 1 failed: Connection refused`, err)
	if !strings.HasPrefix(got, "connection to server") {
		t.Errorf("a connection failure: %q", got)
	}
}

func TestMedian(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Errorf("median of 3: %v", m)
	}
	if m := median([]time.Duration{4, 1, 3, 2}); m != 2 {
		t.Errorf("median of 4: %v", m) // (2+3)/2, in whole nanoseconds
	}
	if m := median[float64](nil); m != 0 {
		t.Errorf("median of none: %v", m)
	}
}

func TestThousands(t *testing.T) {
	for f, want := range map[float64]string{0: "0", 999.4: "999", 1000: "1,000", 28226.6: "28,227", 1234567: "1,234,567"} {
		if got := thousands(f); got != want {
			t.Errorf("thousands(%v) = %q, want %q", f, got, want)
		}
	}
}

func TestSummarize(t *testing.T) {
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	direct := []BenchRun{
		{TPS: 100, Avg: us(500), P50: us(100), Transactions: 1000},
		{TPS: 90, Avg: us(600), P50: us(120), Transactions: 900},
		{TPS: 80, Avg: us(700), P50: us(200), Transactions: 800},
	}
	r := BenchRow{Runs: []BenchRun{
		{TPS: 60, Avg: us(900), P50: us(150), Transactions: 600, CPU: 6 * time.Millisecond},
		{Failed: "no"},
		{TPS: 70, Avg: us(800), P50: us(220), Transactions: 700, CPU: 14 * time.Millisecond},
	}}
	summarize(&r, direct)
	if r.OK != 2 || r.Failed != "no" {
		t.Errorf("OK %d, Failed %q", r.OK, r.Failed)
	}
	if r.TPS != 65 || r.MinTPS != 60 || r.MaxTPS != 70 {
		t.Errorf("tps %v (%v-%v)", r.TPS, r.MinTPS, r.MaxTPS)
	}
	if r.P50 != us(185) || r.Avg != us(850) {
		t.Errorf("p50 %v, avg %v", r.P50, r.Avg)
	}
	// Rounds 1 and 3: +50 and +20 µs.
	if r.AddedP50 != us(35) {
		t.Errorf("added p50 %v", r.AddedP50)
	}
	// 10 µs and 20 µs per transaction.
	if r.CPUPerTx != us(15) {
		t.Errorf("CPU per transaction %v", r.CPUPerTx)
	}
}

func TestWriteBenchTable(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	s := Workload{"select-only", "extended"}
	p := Workload{"select-only", "prepared"}
	rows := []BenchRow{
		{Workload: s, Target: DirectName, TPS: 28226, MinTPS: 27000, MaxTPS: 29000, Avg: ms(0.567), P50: ms(0.5), OK: 3, Runs: make([]BenchRun, 3)},
		{Workload: s, Target: PgBouncerName, TPS: 20546, MinTPS: 20000, MaxTPS: 21000, Avg: ms(0.779), P50: ms(0.7), AddedP50: ms(0.2), CPUPerTx: 12500 * time.Nanosecond, OK: 3, Runs: make([]BenchRun, 3)},
		{Workload: p, Target: DirectName, TPS: 37786, MinTPS: 37000, MaxTPS: 38000, Avg: ms(0.4), P50: ms(0.3), OK: 3, Runs: make([]BenchRun, 3)},
		{Workload: p, Target: PgBouncerName, Failed: `prepared statement "P_0" already exists`, Runs: make([]BenchRun, 3)},
	}
	var b strings.Builder
	writeBenchTable(&b, rows)
	want := `  workload        target                    tps      tps range  avg latency  p50 latency  p50 added  proxy CPU/tx
  -S -M extended  direct to the primary  28,226  27,000-29,000     0.567 ms     0.500 ms
                  pgbouncer              20,546  20,000-21,000     0.779 ms     0.700 ms    +200 µs       12.5 µs
  -S -M prepared  direct to the primary  37,786  37,000-38,000     0.400 ms     0.300 ms
                  pgbouncer              fails: prepared statement "P_0" already exists
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestPgpoolConfig(t *testing.T) {
	conf := pgpoolConfig("/w", 9999, 32, "dml_adaptive", []server{{"127.0.0.1", 5432}, {"127.0.0.1", 5433}})
	for _, want := range []string{
		"backend_clustering_mode = 'streaming_replication'",
		"port = 9999\n",
		"backend_port0 = 5432\n", "backend_port1 = 5433\n", "backend_weight1 = 1\n",
		"load_balance_mode = on\n",
		"disable_load_balance_on_write = 'dml_adaptive'\n",
		"num_init_children = 32\n",
		"read_only_function_list = 'pg_is_in_recovery,inet_server_port'\n",
		"pid_file_name = '/w/pgpool.pid'\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("pgpool.conf lacks %q:\n%s", want, conf)
		}
	}
	ini := pgbouncerConfig("/w", 6432, server{"127.0.0.1", 5432})
	for _, want := range []string{"postgres = host=127.0.0.1 port=5432\n", "pool_mode = transaction\n", "listen_port = 6432\n", "auth_type = trust\n"} {
		if !strings.Contains(ini, want) {
			t.Errorf("pgbouncer.ini lacks %q:\n%s", want, ini)
		}
	}
}
