package switchyard

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// catalog is what a query cache must know of the database: which functions
// are volatile, and which relations may be cached. It is read once per DB,
// at the first read that could be cached, and again (at most every
// catalogRefresh) when a read names something it did not list.
type catalog struct {
	read  time.Time
	funcs map[qualName]uint8 // nameKnown, and nameVolatile if any of that name is
	rels  map[qualName]uint8 // nameKnown, and nameUncacheable if any of that name is
}

// qualName is a schema-qualified name; Schema "" stands for any schema
// (what an unqualified name may resolve to through search_path).
type qualName struct{ schema, name string }

const (
	nameKnown uint8 = 1 << iota
	nameVolatile
	nameUncacheable = nameVolatile
)

// catalogRefresh is how often a read naming something unknown may make the
// catalog be read again.
const catalogRefresh = 30 * time.Second

// catalogRetry is how long after a failed read of the catalog reads go
// uncached before it is tried again.
const catalogRetry = 5 * time.Second

// catalogSQL lists every function (volatile or not, by name) and every
// relation with whether its results may be cached: tables, partitioned
// tables and materialized views may; views may if their definitions
// (returned for judging with the classifier: pg_depend records no use of a
// built-in function such as random()) may; foreign tables, sequences and
// the system catalogs may not (their contents change without the WAL that
// positions measure, or are the server's own).
const catalogSQL = `SELECT false, n.nspname::text, p.proname::text, bool_or(p.provolatile = 'v'), NULL::text
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
GROUP BY n.nspname, p.proname
UNION ALL
SELECT true, n.nspname::text, c.relname::text,
	c.relkind NOT IN ('r', 'p', 'm', 'v') OR n.nspname IN ('pg_catalog', 'information_schema'),
	CASE WHEN c.relkind = 'v' AND n.nspname NOT IN ('pg_catalog', 'information_schema') THEN pg_get_viewdef(c.oid) END
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm', 'v', 'f', 'S') AND n.nspname !~ '^pg_(toast|temp_)'`

// catalogState is a DB's catalog and its loading.
type catalogState struct {
	cur     atomic.Pointer[catalog]
	loading sync.Mutex
	failed  atomic.Int64 // unix nanoseconds of the last failed read
}

// catalog returns cluster c's catalog, reading it first if need be (or
// again, if stale is set and the one it has is older than catalogRefresh).
// It returns nil if it cannot be read now: such reads go uncached.
func (db *DB) catalog(ctx context.Context, c *topology.Cluster, stale bool) *catalog {
	cs := &db.catalogs[c.Index]
	cur := cs.cur.Load()
	if cur != nil && (!stale || time.Since(cur.read) < catalogRefresh) {
		return cur
	}
	if f := cs.failed.Load(); f != 0 && time.Since(time.Unix(0, f)) < catalogRetry {
		return cur
	}
	if cur != nil {
		// A refresh: one goroutine reads; the others go on with the old.
		if !cs.loading.TryLock() {
			return cur
		}
	} else {
		cs.loading.Lock()
	}
	defer cs.loading.Unlock()
	if now := cs.cur.Load(); now != cur {
		return now
	}
	next, err := db.readCatalog(ctx, c)
	if err != nil {
		cs.failed.Store(time.Now().UnixNano())
		db.engine.Logger().Warn("switchyard: query cache: reading the catalog failed; reads go uncached for now", "err", err)
		return cur
	}
	cs.cur.Store(next)
	return next
}

func (db *DB) readCatalog(ctx context.Context, cl *topology.Cluster) (*catalog, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rows, err := db.pool(cl.Primary()).Query(ctx, catalogSQL)
	if err != nil {
		return nil, fmt.Errorf("switchyard: reading pg_proc and pg_class: %w", err)
	}
	defer rows.Close()
	c := &catalog{read: time.Now(), funcs: make(map[qualName]uint8), rels: make(map[qualName]uint8)}
	views := make(map[qualName]string)
	var rel, bad bool
	var schema, name string
	var def *string
	for rows.Next() {
		if err := rows.Scan(&rel, &schema, &name, &bad, &def); err != nil {
			return nil, fmt.Errorf("switchyard: reading pg_proc and pg_class: %w", err)
		}
		if def != nil {
			views[qualName{schema, name}] = *def
		}
		m := c.funcs
		if rel {
			m = c.rels
		}
		flags := nameKnown
		if bad {
			flags |= nameVolatile
		}
		m[qualName{schema, name}] |= flags
		m[qualName{"", name}] |= flags
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("switchyard: reading pg_proc and pg_class: %w", err)
	}
	c.judgeViews(views)
	return c, nil
}

// judgeViews marks the views whose definitions may not be cached (they
// call a volatile function, or read what may not be cached, directly or
// through other views) as uncacheable, under their qualified and bare
// names.
func (c *catalog) judgeViews(views map[qualName]string) {
	byName := make(map[string][]qualName)
	for q := range views {
		byName[q.name] = append(byName[q.name], q)
	}
	const (
		judging = 1 + iota
		fine
		bad
	)
	state := make(map[qualName]int, len(views))
	var judge func(q qualName) bool
	judge = func(q qualName) bool {
		switch state[q] {
		case judging, bad:
			return false // a cycle cannot be, but is not followed either
		case fine:
			return true
		}
		state[q] = judging
		ok := true
		st := classify.Analyze(views[q])
		if st.Kind != classify.Read || st.Partial || st.Locking || st.Sampled {
			ok = false
		}
		for _, f := range st.Funcs {
			if flags := c.funcs[qualName{f.Schema, f.Name}]; flags == 0 || flags&nameVolatile != 0 {
				ok = false
			}
		}
		for _, t := range st.Reads {
			r := qualName{t.Schema, t.Name}
			if flags := c.rels[r]; flags == 0 || flags&nameUncacheable != 0 {
				ok = false
			}
			names := []qualName{r}
			if r.schema == "" {
				names = byName[r.name]
			}
			for _, v := range names {
				if _, isView := views[v]; isView && !judge(v) {
					ok = false
				}
			}
		}
		if ok {
			state[q] = fine
		} else {
			state[q] = bad
			c.rels[q] |= nameUncacheable
			c.rels[qualName{"", q.name}] |= nameUncacheable
		}
		return ok
	}
	for q := range views {
		judge(q)
	}
}

// verdict is what the catalog says of a read.
type verdict uint8

const (
	cacheable verdict = iota
	notCacheable
	unknownName // names something the catalog does not list
)

func (c *catalog) judge(st *classify.Statement) verdict {
	v := cacheable
	for _, f := range st.Funcs {
		switch flags := c.funcs[qualName{f.Schema, f.Name}]; {
		case flags&nameVolatile != 0:
			return notCacheable
		case flags == 0:
			v = unknownName
		}
	}
	for _, t := range st.Reads {
		switch flags := c.rels[qualName{t.Schema, t.Name}]; {
		case flags&nameUncacheable != 0:
			return notCacheable
		case flags == 0:
			v = unknownName
		}
	}
	return v
}

// cacheableRead reports whether a read's result may be kept: one
// statement, nothing the analysis could not follow, no locking clause, no
// effect on the session, no TABLESAMPLE (but REPEATABLE), and only stable
// functions and cacheable relations.
func (db *DB) cacheableRead(ctx context.Context, cl *topology.Cluster, st *classify.Statement) bool {
	if st.Statements != 1 || st.Partial || st.Locking || st.Effects != 0 || st.Sampled {
		return false
	}
	c := db.catalog(ctx, cl, false)
	if c == nil {
		return false
	}
	switch c.judge(st) {
	case cacheable:
		return true
	case unknownName:
		// Created since the catalog was read, perhaps.
		if c = db.catalog(ctx, cl, true); c != nil {
			return c.judge(st) == cacheable
		}
	}
	return false
}
