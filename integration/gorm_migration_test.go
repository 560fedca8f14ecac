package integration_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/switchyard-db/switchyard"
	"github.com/switchyard-db/switchyard/stdlib"
	"github.com/switchyard-db/switchyard/switchyardtest"
)

// The model as the application knows it before, during and after its
// migrations: a column added, then a column's type widened.
type gormMigrated struct {
	ID int32 `gorm:"primaryKey"`
	V  int32 `gorm:"not null"`
}

type gormMigratedWithNote struct {
	ID   int32  `gorm:"primaryKey"`
	V    int32  `gorm:"not null"`
	Note string `gorm:"not null;default:x"`
}

type gormMigratedWide struct {
	ID   int32  `gorm:"primaryKey"`
	V    int64  `gorm:"not null"`
	Note string `gorm:"not null;default:x"`
}

func (gormMigrated) TableName() string         { return "gorm_migrated" }
func (gormMigratedWithNote) TableName() string { return "gorm_migrated" }
func (gormMigratedWide) TableName() string     { return "gorm_migrated" }

// refusedTracer counts, per server port, the statements a server refused
// because their prepared form was thrown out under them (0A000, 26000).
type refusedTracer struct {
	mu     sync.Mutex
	byPort map[uint16]int
}

func (r *refusedTracer) note(conn *pgx.Conn, err error) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" && pgErr.Code != "26000" {
		return
	}
	r.mu.Lock()
	if r.byPort == nil {
		r.byPort = map[uint16]int{}
	}
	r.byPort[conn.Config().Port]++
	r.mu.Unlock()
}

func (r *refusedTracer) count(nodes ...*switchyardtest.Node) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, node := range nodes {
		n += r.byPort[uint16(node.Port())]
	}
	return n
}

func (r *refusedTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}
func (r *refusedTracer) TraceQueryEnd(_ context.Context, c *pgx.Conn, d pgx.TraceQueryEndData) {
	r.note(c, d.Err)
}
func (r *refusedTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}
func (r *refusedTracer) TraceBatchQuery(_ context.Context, c *pgx.Conn, d pgx.TraceBatchQueryData) {
	r.note(c, d.Err)
}
func (r *refusedTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

// TestGORMMigrationUnderReads: GORM in its default configuration
// (gorm.Config{}: no prepared statements of its own; its postgres driver
// on the *sql.DB) runs its own migrations (Migrator().AddColumn, then
// AlterColumn to a wider type) while 16 goroutines read the table with
// Find, which selects *, a quarter of them on the primary and the rest
// routed to replicas. The server connections under the *sql.DB have the
// statement prepared (pgx's default) and refuse it once after each
// change; no caller sees an error.
func TestGORMMigrationUnderReads(t *testing.T) {
	ctx := testCtx(t)
	lab := switchyardtest.Need(t, lab)
	tr := &refusedTracer{}
	cfg := switchyard.Config{
		Primary:       lab.Primary().DSN(),
		ConfigurePool: func(pc *pgxpool.Config) { pc.ConnConfig.Tracer = tr },
	}
	for _, r := range lab.Replicas() {
		cfg.Replicas = append(cfg.Replicas, r.DSN())
	}
	db, err := switchyard.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sqlDB := stdlib.OpenDB(db)
	defer sqlDB.Close()
	gdb, err := gorm.Open(postgres.New(postgres.Config{Conn: sqlDB}), &gorm.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Migrations read the catalog, then change it: on the primary.
	migrator := gdb.WithContext(switchyard.Primary(ctx)).Migrator()
	if err := migrator.DropTable(&gormMigrated{}); err != nil {
		t.Fatal(err)
	}
	if err := migrator.CreateTable(&gormMigrated{}); err != nil {
		t.Fatal(err)
	}
	rows := make([]gormMigrated, 100)
	for i := range rows {
		rows[i] = gormMigrated{ID: int32(i + 1), V: int32(i + 1)}
	}
	if err := gdb.WithContext(ctx).Create(&rows).Error; err != nil {
		t.Fatal(err)
	}
	if err := lab.WaitReplicas(ctx); err != nil {
		t.Fatal(err)
	}

	var reads, fails atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	done := make(chan struct{})
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for call := 0; ; call++ {
				select {
				case <-done:
					return
				default:
				}
				rctx := ctx
				if call%4 == g%4 {
					rctx = switchyard.Primary(ctx)
				}
				var got []gormMigratedWide
				err := gdb.WithContext(rctx).Where("id = ?", call%100+1).Find(&got).Error
				if err == nil && len(got) != 1 {
					err = errors.New("no row")
				}
				reads.Add(1)
				if err != nil {
					fails.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			close(done)
			wg.Wait()
		}
	}
	defer stop()
	primary, replicas := lab.Primary(), lab.Replicas()
	change := func(what string, migrate func(gorm.Migrator) error) {
		t.Helper()
		p0, r0 := tr.count(primary), tr.count(replicas...)
		if err := migrate(gdb.WithContext(switchyard.Primary(ctx)).Migrator()); err != nil {
			t.Fatal(err)
		}
		at := reads.Load()
		deadline := time.Now().Add(30 * time.Second)
		for !(tr.count(primary) > p0 && tr.count(replicas...) > r0 && reads.Load() > at+2000) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: in 30 s, %d statements refused on the primary, %d on replicas, %d reads since", what, tr.count(primary)-p0, tr.count(replicas...)-r0, reads.Load()-at)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for reads.Load() < 500 {
		time.Sleep(5 * time.Millisecond)
	}
	change("AddColumn", func(m gorm.Migrator) error { return m.AddColumn(&gormMigratedWithNote{}, "Note") })
	change("AlterColumn", func(m gorm.Migrator) error { return m.AlterColumn(&gormMigratedWide{}, "V") })
	stop()
	var typ string
	if err := sqlDB.QueryRowContext(switchyard.Primary(ctx), "SELECT data_type FROM information_schema.columns WHERE table_name = 'gorm_migrated' AND column_name = 'v'").Scan(&typ); err != nil || typ != "bigint" {
		t.Errorf("after AlterColumn, v is %q (%v)", typ, err)
	}
	t.Logf("%d GORM reads (%d routed to replicas) across AddColumn and AlterColumn: %d errors to callers; servers refused %d statements on the primary, %d on replicas",
		reads.Load(), db.Stats().Routes.Replica, fails.Load(), tr.count(primary), tr.count(replicas...))
	if n := fails.Load(); n != 0 {
		t.Errorf("%d reads failed; first: %v", n, firstErr.Load())
	}
}
