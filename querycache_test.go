package switchyard_test

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// cacheLab is a lab whose servers count statements (pg_stat_statements),
// so that a test can tell a cached read from one that reached a server.
type cacheLab struct {
	*switchyardtest.Cluster
	t *testing.T
}

func newCacheLab(t *testing.T) *cacheLab {
	switchyardtest.NeedServer(t)
	c := switchyardtest.New(t, switchyardtest.Options{Replicas: 2,
		Settings: map[string]string{"shared_preload_libraries": "pg_stat_statements"}})
	ctx := testCtx(t)
	if err := c.Primary().Exec(ctx, `CREATE EXTENSION pg_stat_statements;
		CREATE TYPE qc_mood AS ENUM ('sad', 'happy');
		CREATE TABLE qc_items (id int PRIMARY KEY, v text NOT NULL, n numeric, at timestamptz, doc jsonb, mood qc_mood, note text);
		INSERT INTO qc_items VALUES (1, 'a', 1.5, '2026-12-02 10:00:00+00', '{"k": [1, 2]}', 'happy', NULL),
			(2, 'b', NULL, NULL, NULL, 'sad', 'x'), (3, 'c', 3, '2000-01-01 00:00:00+00', '{}', NULL, 'y');
		CREATE FUNCTION qc_volatile() RETURNS int VOLATILE LANGUAGE sql AS 'SELECT 1';
		CREATE FUNCTION qc_stable() RETURNS int STABLE LANGUAGE sql AS 'SELECT 2';
		CREATE VIEW qc_random AS SELECT id, random() AS r FROM qc_items;
		CREATE VIEW qc_random2 AS SELECT * FROM qc_random;
		CREATE VIEW qc_plain AS SELECT id, v FROM qc_items;
		CREATE TABLE qc_big (id int, body text);
		INSERT INTO qc_big SELECT g, repeat('x', 1000) FROM generate_series(1, 300) g`); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}
	return &cacheLab{c, t}
}

// calls counts the executions of statements starting with prefix on every
// server of the lab, as their pg_stat_statements say.
func (c *cacheLab) calls(prefix string) int64 {
	c.t.Helper()
	var total int64
	for _, n := range append([]*switchyardtest.Node{c.Primary()}, c.Replicas()...) {
		conn, err := n.Connect(testCtx(c.t))
		if err != nil {
			c.t.Fatal(err)
		}
		var calls int64
		err = conn.QueryRow(testCtx(c.t), "SELECT coalesce(sum(calls), 0)::int8 FROM pg_stat_statements WHERE query LIKE $1 || '%'", prefix).Scan(&calls)
		conn.Close(context.Background())
		if err != nil {
			c.t.Fatal(err)
		}
		total += calls
	}
	return total
}

func cacheStats(db *switchyard.DB) switchyard.QueryCacheStats { return db.Stats().QueryCache }

func TestQueryCache(t *testing.T) {
	lab := newCacheLab(t)
	ctx := testCtx(t)
	db := openDB(t, lab.Cluster)
	waitCaughtUp(t, lab.Cluster, db)
	read := func(ctx context.Context, id int) string {
		t.Helper()
		var v string
		if err := db.QueryRow(ctx, "SELECT v FROM qc_items WHERE id = $1", id).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	outOfBand := func(sql string) {
		t.Helper()
		if err := lab.Primary().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
		if err := lab.WaitReplicas(ctx); err != nil {
			t.Fatal(err)
		}
	}
	const readSQL = "SELECT v FROM qc_items WHERE id = $1"

	t.Run("a repeated read is served from the cache", func(t *testing.T) {
		qctx := switchyard.WithQueryCache(switchyard.WithSession(ctx))
		before, calls := cacheStats(db), lab.calls(readSQL)
		if v := read(qctx, 1); v != "a" {
			t.Fatalf("first read: %q", v)
		}
		outOfBand("UPDATE qc_items SET v = 'a2' WHERE id = 1")
		for i := range 5 {
			if v := read(qctx, 1); v != "a" {
				t.Fatalf("read %d from the cache: %q, want the cached %q", i+2, v, "a")
			}
		}
		if got := lab.calls(readSQL) - calls; got != 1 {
			t.Errorf("six reads reached the servers %d times, want once", got)
		}
		after := cacheStats(db)
		if after.Hits-before.Hits != 5 || after.Misses-before.Misses != 1 {
			t.Errorf("hits %d, misses %d; want 5 and 1", after.Hits-before.Hits, after.Misses-before.Misses)
		}
		// Another argument is another entry; without the cache, the server.
		if v := read(qctx, 2); v != "b" {
			t.Errorf("id 2: %q", v)
		}
		if v := read(ctx, 1); v != "a2" {
			t.Errorf("without the cache: %q, want the new %q", v, "a2")
		}
		outOfBand("UPDATE qc_items SET v = 'a' WHERE id = 1")
	})

	t.Run("a write through the context empties it", func(t *testing.T) {
		for _, w := range []struct {
			name  string
			write func(context.Context) error
		}{
			{"Exec", func(ctx context.Context) error {
				_, err := db.Exec(ctx, "UPDATE qc_items SET v = v || '+' WHERE id = 1")
				return err
			}},
			{"Query of a write", func(ctx context.Context) error {
				rows, err := db.Query(ctx, "UPDATE qc_items SET v = v || '+' WHERE id = 1 RETURNING v")
				if err != nil {
					return err
				}
				rows.Close()
				return rows.Err()
			}},
			{"transaction", func(ctx context.Context) error {
				tx, err := db.Begin(ctx)
				if err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, "UPDATE qc_items SET v = v || '+' WHERE id = 1"); err != nil {
					return err
				}
				return tx.Commit(ctx)
			}},
			{"Atomic", func(ctx context.Context) error {
				return db.Atomic(ctx, func(tx pgx.Tx) error {
					_, err := tx.Exec(ctx, "UPDATE qc_items SET v = v || '+' WHERE id = 1")
					return err
				})
			}},
			{"Acquire", func(ctx context.Context) error {
				return db.AcquireFunc(ctx, func(c *switchyard.Conn) error {
					_, err := c.Exec(ctx, "UPDATE qc_items SET v = v || '+' WHERE id = 1")
					return err
				})
			}},
			{"batch", func(ctx context.Context) error {
				b := &pgx.Batch{}
				b.Queue("UPDATE qc_items SET v = v || '+' WHERE id = 1")
				return db.SendBatch(ctx, b).Close()
			}},
			{"CopyFrom", func(ctx context.Context) error {
				if _, err := db.CopyFrom(ctx, pgx.Identifier{"qc_big"}, []string{"id", "body"}, pgx.CopyFromRows([][]any{{-1, "copied"}})); err != nil {
					return err
				}
				_, err := db.Exec(ctx, "UPDATE qc_items SET v = v || '+' WHERE id = 1")
				return err
			}},
		} {
			t.Run(w.name, func(t *testing.T) {
				for _, session := range []bool{false, true} {
					// An explicit session sees its own writes, not the
					// DB's: let the replicas have the last one.
					waitCaughtUp(t, lab.Cluster, db)
					qctx := switchyard.WithQueryCache(ctx)
					if session {
						qctx = switchyard.WithQueryCache(switchyard.WithSession(ctx))
					}
					first := read(qctx, 1)
					if read(qctx, 1) != first {
						t.Fatal("the second read differs")
					}
					cleared := cacheStats(db).Cleared
					if err := w.write(qctx); err != nil {
						t.Fatal(err)
					}
					if cacheStats(db).Cleared == cleared {
						t.Error("the write did not empty the cache")
					}
					if entries, _ := switchyard.QueryCacheUsage(qctx); entries != 0 {
						t.Errorf("%d entries after the write", entries)
					}
					if got := read(qctx, 1); got != first+"+" {
						t.Errorf("session %v: after the write the read saw %q, want %q", session, got, first+"+")
					}
				}
			})
		}
		outOfBand("UPDATE qc_items SET v = 'a' WHERE id = 1; DELETE FROM qc_big WHERE id < 0")
	})

	t.Run("a session further along does not get an older entry", func(t *testing.T) {
		// The session's position moves on with a read of the primary,
		// which sees the write made out of band since the entry was read.
		qctx := switchyard.WithQueryCache(switchyard.WithSession(ctx))
		if v := read(qctx, 3); v != "c" {
			t.Fatal(v)
		}
		outOfBand("UPDATE qc_items SET v = 'c2' WHERE id = 3")
		var one int
		if err := db.QueryRow(switchyard.Primary(qctx), "SELECT 1").Scan(&one); err != nil {
			t.Fatal(err)
		}
		if v := read(qctx, 3); v != "c2" {
			t.Errorf("after the session saw the primary, the cached read gave %q, want %q", v, "c2")
		}

		// A later read of the session from a replica may have seen more
		// than the entry: it is not served until that is settled.
		qctx = switchyard.WithQueryCache(switchyard.WithSession(ctx))
		read(qctx, 3)
		misses := cacheStats(db).Misses
		read(qctx, 2)
		read(qctx, 3)
		if got := cacheStats(db).Misses - misses; got != 2 {
			t.Errorf("a read after another read of the session: %d misses, want 2 (the entry may be older than the other read)", got)
		}

		// Without a session: a write made through the DB by anyone in the
		// process is seen by later reads, cached or not.
		qctx = switchyard.WithQueryCache(ctx)
		if v := read(qctx, 3); v != "c2" {
			t.Fatal(v)
		}
		if _, err := db.Exec(ctx, "UPDATE qc_items SET v = 'c3' WHERE id = 3"); err != nil {
			t.Fatal(err)
		}
		if v := read(qctx, 3); v != "c3" {
			t.Errorf("after a write elsewhere in the process the cached read gave %q, want %q", v, "c3")
		}
		outOfBand("UPDATE qc_items SET v = 'c' WHERE id = 3")
	})

	t.Run("volatile and locking reads are not cached", func(t *testing.T) {
		waitCaughtUp(t, lab.Cluster, db)
		qctx := switchyard.WithQueryCache(ctx)
		var r1, r2 float64
		if err := db.QueryRow(qctx, "SELECT random()").Scan(&r1); err != nil {
			t.Fatal(err)
		}
		if err := db.QueryRow(qctx, "SELECT random()").Scan(&r2); err != nil {
			t.Fatal(err)
		}
		if r1 == r2 {
			t.Errorf("SELECT random() twice gave %v twice", r1)
		}
		for _, q := range []string{
			"SELECT clock_timestamp()",
			"SELECT qc_volatile()",
			"SELECT public.qc_volatile()",
			"SELECT * FROM qc_random",
			"SELECT * FROM qc_random2",
			"SELECT v FROM qc_items TABLESAMPLE SYSTEM (100)",
			"SELECT * FROM pg_stat_activity",
			"SELECT v FROM qc_items WHERE id = 1 ORDER BY random()",
		} {
			for range 2 {
				before := cacheStats(db)
				rows, err := db.Query(qctx, q)
				if err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				rows.Close()
				if err := rows.Err(); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				if after := cacheStats(db); after.Skipped != before.Skipped+1 || after.Hits != before.Hits {
					t.Errorf("%s: cache stats %+v then %+v; want it skipped", q, before, after)
				}
			}
		}
		// A locking read is a write (it goes to the primary, and empties
		// the cache).
		for range 2 {
			hits := cacheStats(db).Hits
			rows, err := db.Query(qctx, "SELECT v FROM qc_items WHERE id = 1 FOR SHARE")
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
			if cacheStats(db).Hits != hits {
				t.Error("a locking read was served from the cache")
			}
		}
		// Stable functions and plain views are fine. (The first read after
		// a write, the locking read's, takes the session's position along,
		// past what it saw: its result is not kept.)
		db.QueryRow(qctx, "SELECT 1").Scan(new(int))
		for _, q := range []string{"SELECT qc_stable()", "SELECT now()", "SELECT * FROM qc_plain WHERE id = 1", "SELECT count(*) FROM qc_items"} {
			hits := cacheStats(db).Hits
			for range 2 {
				rows, err := db.Query(qctx, q)
				if err != nil {
					t.Fatal(err)
				}
				rows.Close()
			}
			if cacheStats(db).Hits != hits+1 {
				t.Errorf("%s: not served from the cache the second time", q)
			}
		}
		// Inside a transaction, nothing.
		calls := lab.calls(readSQL)
		tx, err := db.BeginTx(qctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			var v string
			if err := tx.QueryRow(qctx, readSQL, 1).Scan(&v); err != nil {
				t.Fatal(err)
			}
		}
		tx.Rollback(ctx)
		if got := lab.calls(readSQL) - calls; got != 3 {
			t.Errorf("three reads in a transaction reached the servers %d times", got)
		}
		// Arguments that are not plain values.
		type point struct{ X int }
		for _, arg := range []any{[]int{1}, point{1}, map[string]int{"a": 1}} {
			skipped := cacheStats(db).Skipped
			rows, err := db.Query(qctx, "SELECT $1::text", fmt.Sprint(arg))
			if err != nil {
				t.Fatal(err)
			}
			rows.Close()
			rows, _ = db.Query(qctx, "SELECT v FROM qc_items WHERE id = ANY($1)", []int{1})
			rows.Close()
			if cacheStats(db).Skipped != skipped+1 {
				t.Errorf("an argument %T was cached", arg)
			}
		}
	})

	t.Run("without a cache nothing is cached", func(t *testing.T) {
		before, calls := cacheStats(db), lab.calls(readSQL)
		for range 3 {
			read(switchyard.WithSession(ctx), 1)
			read(ctx, 1)
		}
		if got := lab.calls(readSQL) - calls; got != 6 {
			t.Errorf("six reads reached the servers %d times", got)
		}
		if after := cacheStats(db); after != before {
			t.Errorf("cache stats moved: %+v then %+v", before, after)
		}
	})

	t.Run("rows are the server's", func(t *testing.T) {
		const q = "SELECT id, v, n, at, doc, mood::text, note FROM qc_items WHERE id <= $1 ORDER BY id"
		type item struct {
			ID   int32
			V    string
			N    pgtype.Numeric
			At   *time.Time
			Doc  map[string]any
			Mood *string
			Note sql.NullString
		}
		collect := func(ctx context.Context) (fields []pgconn.FieldDescription, raw [][][]byte, values [][]any, items []item, tag string) {
			rows, err := db.Query(ctx, q, 3)
			if err != nil {
				t.Fatal(err)
			}
			fields = rows.FieldDescriptions()
			for rows.Next() {
				var r [][]byte
				for _, v := range rows.RawValues() {
					r = append(r, append([]byte(nil), v...))
				}
				raw = append(raw, r)
				vs, err := rows.Values()
				if err != nil {
					t.Fatal(err)
				}
				values = append(values, vs)
				var it item
				if err := rows.Scan(&it.ID, &it.V, &it.N, &it.At, &it.Doc, &it.Mood, &it.Note); err != nil {
					t.Fatal(err)
				}
				items = append(items, it)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			return fields, raw, values, items, rows.CommandTag().String()
		}
		qctx := switchyard.WithQueryCache(ctx)
		f1, r1, v1, i1, t1 := collect(qctx)
		hits := cacheStats(db).Hits
		f2, r2, v2, i2, t2 := collect(qctx)
		if cacheStats(db).Hits != hits+1 {
			t.Fatal("the second read was not served from the cache")
		}
		if !reflect.DeepEqual(f1, f2) || !reflect.DeepEqual(r1, r2) || !reflect.DeepEqual(v1, v2) || !reflect.DeepEqual(i1, i2) || t1 != t2 || t2 != "SELECT 3" {
			t.Errorf("cached rows differ from the server's:\nfields %v\n       %v\nraw %q\n    %q\nvalues %v\n       %v\nitems %+v\n      %+v\ntags %q %q", f1, f2, r1, r2, v1, v2, i1, i2, t1, t2)
		}
		// pgx's helpers, a scan error, QueryRow's no rows.
		rows, _ := db.Query(qctx, "SELECT id, v FROM qc_items WHERE id <= $1 ORDER BY id", 3)
		got, err := pgx.CollectRows(rows, pgx.RowToStructByName[struct {
			ID int32
			V  string
		}])
		rows, _ = db.Query(qctx, "SELECT id, v FROM qc_items WHERE id <= $1 ORDER BY id", 3)
		again, err2 := pgx.CollectRows(rows, pgx.RowToStructByName[struct {
			ID int32
			V  string
		}])
		if err != nil || err2 != nil || !reflect.DeepEqual(got, again) || len(got) != 3 {
			t.Errorf("CollectRows: %v (%v), then %v (%v)", got, err, again, err2)
		}
		var wrong int
		for range 2 {
			err := db.QueryRow(qctx, "SELECT v FROM qc_items WHERE id = $1", 2).Scan(&wrong)
			if err == nil || !strings.Contains(err.Error(), "cannot scan") {
				t.Errorf("scanning text into an int: %v", err)
			}
		}
		for range 2 {
			if err := db.QueryRow(qctx, "SELECT v FROM qc_items WHERE id = $1", 99).Scan(&wrong); err != pgx.ErrNoRows {
				t.Errorf("no rows: %v", err)
			}
		}
		// Through database/sql, whose driver asks for its own formats.
		sqlDB := stdlib.OpenDB(db)
		defer sqlDB.Close()
		// (The driver learns a statement's result formats from its first
		// run: the first two runs differ in what they ask for.)
		hits = cacheStats(db).Hits
		var seen []string
		for range 4 {
			var a string
			if err := sqlDB.QueryRowContext(qctx, "SELECT v || $1 FROM qc_items WHERE id = 2", "!").Scan(&a); err != nil {
				t.Fatal(err)
			}
			seen = append(seen, a)
		}
		if fmt.Sprint(seen) != "[b! b! b! b!]" || cacheStats(db).Hits != hits+2 {
			t.Errorf("database/sql: %q, %d hits; want 2", seen, cacheStats(db).Hits-hits)
		}
	})

	t.Run("limits", func(t *testing.T) {
		qctx := switchyard.WithQueryCache(ctx)
		notKept := cacheStats(db).NotKept
		rows, err := db.Query(qctx, "SELECT body FROM qc_big ORDER BY id") // 300 kB
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		if rows.Err() != nil || n != 300 {
			t.Fatalf("%d rows, %v", n, rows.Err())
		}
		if cacheStats(db).NotKept != notKept+1 {
			t.Error("a result over ResultBytes was kept")
		}
		// A result read in part, then closed: the rest is read by Close
		// anyway, and the whole is kept.
		hits := cacheStats(db).Hits
		for range 2 {
			rows, _ := db.Query(qctx, "SELECT id FROM qc_items ORDER BY id")
			rows.Next()
			rows.Close()
		}
		if cacheStats(db).Hits != hits+1 {
			t.Error("a result closed early was not kept")
		}

		// 10,000 distinct statements in one cache: within its limits.
		limits := switchyard.QueryCacheLimits{Entries: 500, Bytes: 256 << 10}
		qctx = switchyard.WithQueryCacheLimits(ctx, limits)
		maxEntries, maxBytes := 0, 0
		for i := range 10_000 {
			var v string
			if err := db.QueryRow(qctx, fmt.Sprintf("SELECT v FROM qc_items WHERE id = $1 -- %d", i), 1+i%3).Scan(&v); err != nil {
				t.Fatal(err)
			}
			e, b := switchyard.QueryCacheUsage(qctx)
			maxEntries, maxBytes = max(maxEntries, e), max(maxBytes, b)
		}
		t.Logf("10,000 distinct statements: at most %d entries, %d bytes", maxEntries, maxBytes)
		if maxEntries > limits.Entries || maxBytes > limits.Bytes || maxEntries < 100 {
			t.Errorf("at most %d entries and %d bytes; limits %d and %d", maxEntries, maxBytes, limits.Entries, limits.Bytes)
		}

		// Nothing outlives the context.
		cctx, cancel := context.WithCancel(ctx)
		cctx = switchyard.WithQueryCache(cctx)
		read(cctx, 1)
		if e, _ := switchyard.QueryCacheUsage(cctx); e != 1 {
			t.Fatalf("%d entries", e)
		}
		cancel()
		waitFor(t, "the cache to empty when its context ended", func() bool {
			e, _ := switchyard.QueryCacheUsage(cctx)
			return e == 0
		})
	})

	t.Run("a type the connections decode their own way is not kept", func(t *testing.T) {
		custom := openDB(t, lab.Cluster, func(c *switchyard.Config) {
			c.ConfigurePool = func(pc *pgxpool.Config) {
				pc.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
					typ, err := conn.LoadType(ctx, "qc_mood")
					if err != nil {
						return err
					}
					conn.TypeMap().RegisterType(typ)
					return nil
				}
			}
		})
		qctx := switchyard.WithQueryCache(ctx)
		for range 2 {
			var mood string
			if err := custom.QueryRow(qctx, "SELECT mood FROM qc_items WHERE id = 1").Scan(&mood); err != nil || mood != "happy" {
				t.Fatalf("%q, %v", mood, err)
			}
		}
		if st := cacheStats(custom); st.Hits != 0 || st.NotKept != 2 {
			t.Errorf("a registered enum: %+v; want nothing kept", st)
		}
	})

	t.Run("concurrent use", func(t *testing.T) {
		qctx := switchyard.WithQueryCache(switchyard.WithSession(ctx))
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 50 {
					id := 1 + (g+i)%3
					var v string
					if err := db.QueryRow(qctx, readSQL, id).Scan(&v); err != nil {
						t.Error(err)
						return
					}
					if want := string(rune('a' + id - 1)); !strings.HasPrefix(v, want) {
						t.Errorf("id %d: %q", id, v)
					}
					if g == 0 && i%10 == 0 {
						if _, err := db.Exec(qctx, "UPDATE qc_items SET note = $1 WHERE id = 3", fmt.Sprint(i)); err != nil {
							t.Error(err)
						}
					}
				}
			}()
		}
		wg.Wait()
	})

}
