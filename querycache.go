package switchyard

import (
	"context"
	"encoding/binary"
	"math"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/switchyard-db/switchyard/internal/classify"
	"github.com/switchyard-db/switchyard/internal/engine"
	"github.com/switchyard-db/switchyard/internal/topology"
)

// QueryCacheLimits bound one query cache (see WithQueryCacheLimits). Zero
// fields take the defaults.
type QueryCacheLimits struct {
	// Entries is the most results the cache holds (default
	// DefaultQueryCacheEntries); the least recently used goes first.
	Entries int
	// Bytes bounds the memory its entries take, counting each one's SQL
	// text, arguments, column descriptions and row data (default
	// DefaultQueryCacheBytes).
	Bytes int
	// ResultBytes is the largest result it keeps (default
	// DefaultQueryCacheResultBytes); a larger one is read as usual and not
	// kept.
	ResultBytes int
}

// The default limits of a query cache.
const (
	DefaultQueryCacheEntries     = 256
	DefaultQueryCacheBytes       = 2 << 20
	DefaultQueryCacheResultBytes = 128 << 10
)

// WithQueryCache returns a context with a new query cache, for one request,
// job or unit of work, as Rails caches a request's identical SELECTs: a
// read run with it (or a context derived from it) outside a transaction,
// through DB.Query, DB.QueryRow or stdlib's *sql.DB, whose SQL text and
// argument values equal an earlier one's gets the earlier rows again
// without a round trip, exactly as the server sent them (column
// descriptions, formats, command tag). The cache keeps the rules that make
// that safe:
//
//   - A write made with it (an autocommit statement, a read-write
//     transaction, Atomic, Acquire's Conn, CopyFrom, a batch that writes)
//     empties the cache before it starts and again when it ends, as the
//     switch_point gem does for Rails; so does a read-write transaction's
//     end.
//   - A result is not handed out once it could be older than what its
//     session has seen since: its session wrote (through any context) or
//     its position moved past what the read saw, or, for an explicit
//     session (WithSession, a token), it read again since from a server
//     that may have seen more. A MaxStaleness(d) read gets a result only
//     while it holds everything committed more than d before.
//   - Reads that call volatile functions (random(), clock_timestamp(),
//     nextval, the application's own, as pg_proc says, read once per DB),
//     read views that do, or read relations the catalog did not list when
//     it was read (temporary tables, foreign tables, system catalogs),
//     reads with locking clauses, TABLESAMPLE or several statements, Latest
//     reads (Config.Latest too) and Primary reads, reads inside transactions and on a Conn, and reads
//     whose arguments are not plain values (see below) are never cached.
//   - Entries, bytes and the size of a result kept are bounded (see
//     QueryCacheLimits); a result with a column whose type the
//     connections decode in their own way (a codec registered in
//     AfterConnect) is not kept. Nothing outlives ctx: when it ends, the
//     cache is emptied and keeps nothing more.
//
// Arguments that can be cached are nil, strings, byte slices, booleans,
// integers, floats, time.Time and time.Duration, pointers to them, named
// types of those kinds (enums, UUIDs as [16]byte), and pgx's exec mode and
// result formats options.
//
// DB.Stats counts hits and misses (Stats.QueryCache). A cache is safe for
// concurrent use by the goroutines of its request.
func WithQueryCache(ctx context.Context) context.Context {
	return WithQueryCacheLimits(ctx, QueryCacheLimits{})
}

// WithQueryCacheLimits is WithQueryCache with limits of its own.
func WithQueryCacheLimits(ctx context.Context, limits QueryCacheLimits) context.Context {
	qc := newQueryCache(limits)
	if ctx.Done() != nil {
		context.AfterFunc(ctx, qc.close)
	}
	return withOpts(ctx, func(o *ctxOptions) { o.cache = qc })
}

// queryCache is one context's cache: entries by key (DB, SQL text,
// arguments), least recently used last.
type queryCache struct {
	limits QueryCacheLimits

	mu         sync.Mutex
	entries    map[string]*cacheEntry
	head, tail *cacheEntry // most and least recently used
	bytes      int
	gen        uint64 // bumped by every clear: captures begun before one are not kept
	closed     bool
}

// cacheEntry is a result kept: what pgx's rows gave, and what the read is
// known to have seen.
type cacheEntry struct {
	key    string
	fields []pgconn.FieldDescription
	values [][]byte // rows × columns; nil is NULL
	tag    pgconn.CommandTag
	seen   engine.Seen
	size   int
	inline [4][]byte // values, for a small result

	inlineFields [2]pgconn.FieldDescription // fields, for a narrow one

	prev, next *cacheEntry
}

// entryOverhead is what an entry costs beyond its keys and data: the
// struct, its map slot and slice headers.
const entryOverhead = 256

func newQueryCache(l QueryCacheLimits) *queryCache {
	if l.Entries <= 0 {
		l.Entries = DefaultQueryCacheEntries
	}
	if l.Bytes <= 0 {
		l.Bytes = DefaultQueryCacheBytes
	}
	if l.ResultBytes <= 0 {
		l.ResultBytes = DefaultQueryCacheResultBytes
	}
	l.ResultBytes = min(l.ResultBytes, l.Bytes)
	return &queryCache{limits: l, entries: make(map[string]*cacheEntry)}
}

// get returns the entry for key, or nil, and the generation a capture
// started now must still find to be kept.
func (c *queryCache) get(key []byte) (*cacheEntry, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[string(key)]
	if e != nil {
		c.unlink(e)
		c.pushFront(e)
	}
	return e, c.gen
}

// put keeps e unless the cache was cleared since gen or is closed,
// evicting the least recently used entries to make room.
func (c *queryCache) put(e *cacheEntry, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.gen != gen || e.size > c.limits.Bytes {
		return false
	}
	if old := c.entries[e.key]; old != nil {
		c.remove(old)
	}
	for c.tail != nil && (len(c.entries) >= c.limits.Entries || c.bytes+e.size > c.limits.Bytes) {
		c.remove(c.tail)
	}
	c.entries[e.key] = e
	c.pushFront(e)
	c.bytes += e.size
	return true
}

// drop removes e if it is still the cache's.
func (c *queryCache) drop(e *cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.key] == e {
		c.remove(e)
	}
}

// clear empties the cache, for a write.
func (c *queryCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	clear(c.entries)
	c.head, c.tail, c.bytes = nil, nil, 0
}

// close empties the cache for good: its context ended.
func (c *queryCache) close() {
	c.clear()
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// usage returns the number of entries and the bytes they take.
func (c *queryCache) usage() (entries, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.bytes
}

func (c *queryCache) remove(e *cacheEntry) {
	c.unlink(e)
	delete(c.entries, e.key)
	c.bytes -= e.size
}

func (c *queryCache) unlink(e *cacheEntry) {
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.tail = e.prev
	}
	e.prev, e.next = nil, nil
}

func (c *queryCache) pushFront(e *cacheEntry) {
	e.next = c.head
	if c.head != nil {
		c.head.prev = e
	}
	c.head = e
	if c.tail == nil {
		c.tail = e
	}
}

// queryCacheStats counts a DB's use of query caches.
type queryCacheStats struct {
	hits, misses, skipped, notKept, cleared atomic.Uint64
}

// wrote empties ctx's query cache around a write, and counts it.
func (db *DB) wrote(ctx context.Context) {
	if qc := cacheFrom(ctx); qc != nil {
		qc.clear()
		db.qcStats.cleared.Add(1)
	}
}

// cachedQuery runs a statement with a query cache: a read that may be
// cached is looked up, and kept after it runs; anything else runs as
// usual.
func (db *DB) cachedQuery(ctx context.Context, qc *queryCache, sql string, args []any) (*cachedRows, *rows, error) {
	st := db.engine.Classifier().Analyze(sql)
	at, err := db.place(ctx, sql)
	if err != nil {
		return nil, nil, err
	}
	if st.Kind != classify.Read {
		r, err := db.query(ctx, sql, args, nil, at.cluster) // a write: it empties the cache
		return nil, r, err
	}
	o := optsFrom(ctx)
	c := captures.Get().(*capture)
	var ok bool
	c.key, ok = db.cacheKey(c.key[:0], at.cluster, sql, args)
	if !ok || o != nil && o.Primary || db.wantsLatest(o) || !db.cacheableRead(ctx, at.cluster, st) {
		c.release()
		db.qcStats.skipped.Add(1)
		r, err := db.query(ctx, sql, args, nil, at.cluster)
		return nil, r, err
	}
	e, gen := qc.get(c.key)
	if e != nil {
		if db.engine.SeenIsCurrent(o, e.seen) {
			c.release()
			db.qcStats.hits.Add(1)
			return newCachedRows(e), nil, nil
		}
		qc.drop(e)
	}
	db.qcStats.misses.Add(1)
	c.db, c.qc, c.opts, c.gen = db, qc, o, gen
	c.limit = qc.limits.ResultBytes - len(c.key) - entryOverhead
	r, err := db.query(ctx, sql, args, c, at.cluster)
	if err != nil {
		c.release()
	}
	return nil, r, err
}

// dbIDs numbers DBs, so that one cache used with two DBs (two clusters)
// keeps their results apart.
var dbIDs atomic.Uint64

// cacheKey appends the key of a read to b: the DB and the cluster, the SQL
// text and the arguments, each with its type. It reports false for
// arguments it cannot encode exactly (any other type, pgx's named
// arguments or rewriters).
func (db *DB) cacheKey(b []byte, c *topology.Cluster, sql string, args []any) ([]byte, bool) {
	b = binary.LittleEndian.AppendUint64(b, db.id)
	b = binary.AppendUvarint(b, uint64(c.Index))
	b = binary.AppendUvarint(b, uint64(len(sql)))
	b = append(b, sql...)
	for i, a := range args {
		var ok bool
		if i == 0 {
			switch o := a.(type) {
			case pgx.QueryExecMode:
				b = append(b, 'M', byte(o))
				continue
			case pgx.QueryResultFormats:
				b = append(b, 'F')
				b = binary.AppendUvarint(b, uint64(len(o)))
				for _, f := range o {
					b = binary.LittleEndian.AppendUint16(b, uint16(f))
				}
				continue
			}
		}
		if b, ok = appendArg(b, a); !ok {
			return b, false
		}
	}
	return b, true
}

// appendArg appends one argument's type and value.
func appendArg(b []byte, a any) ([]byte, bool) {
	switch v := a.(type) {
	case nil:
		return append(b, 'n'), true
	case string:
		return appendBytes(append(b, 's'), v), true
	case []byte:
		if v == nil {
			return append(b, 'N'), true // NULL, as pgx sends it
		}
		return appendBytes(append(b, 'b'), string(v)), true
	case bool:
		if v {
			return append(b, 'T'), true
		}
		return append(b, 'f'), true
	case int:
		return binary.AppendVarint(append(b, 'i'), int64(v)), true
	case int8:
		return binary.AppendVarint(append(b, '1'), int64(v)), true
	case int16:
		return binary.AppendVarint(append(b, '2'), int64(v)), true
	case int32:
		return binary.AppendVarint(append(b, '4'), int64(v)), true
	case int64:
		return binary.AppendVarint(append(b, '8'), v), true
	case uint:
		return binary.AppendUvarint(append(b, 'u'), uint64(v)), true
	case uint8:
		return binary.AppendUvarint(append(b, 'U'), uint64(v)), true
	case uint16:
		return binary.AppendUvarint(append(b, 'W'), uint64(v)), true
	case uint32:
		return binary.AppendUvarint(append(b, 'D'), uint64(v)), true
	case uint64:
		return binary.AppendUvarint(append(b, 'Q'), v), true
	case float32:
		return binary.LittleEndian.AppendUint32(append(b, 'r'), math.Float32bits(v)), true
	case float64:
		return binary.LittleEndian.AppendUint64(append(b, 'd'), math.Float64bits(v)), true
	case time.Duration:
		return binary.AppendVarint(append(b, 'p'), int64(v)), true
	case time.Time:
		// The instant, the offset and the zone's name: timestamp
		// parameters send the wall clock, timestamptz the instant.
		_, off := v.Zone()
		b = binary.AppendVarint(append(b, 't'), v.Unix())
		b = binary.AppendVarint(b, int64(v.Nanosecond()))
		b = binary.AppendVarint(b, int64(off))
		return appendBytes(b, v.Location().String()), true
	}
	return appendReflected(b, a)
}

// appendReflected handles pointers to the plain types, and named types of
// their kinds, with the type's identity in the key.
func appendReflected(b []byte, a any) ([]byte, bool) {
	v := reflect.ValueOf(a)
	t := v.Type()
	if t.Kind() == reflect.Pointer {
		if v.IsNil() {
			return append(b, 'n'), true
		}
		return appendArg(append(b, '*'), v.Elem().Interface())
	}
	if t.PkgPath() == "" {
		return b, false // an unnamed composite: a slice, a map, a struct literal
	}
	b = appendBytes(append(b, 'k'), t.PkgPath())
	b = appendBytes(b, t.Name())
	switch t.Kind() {
	case reflect.String:
		return appendBytes(b, v.String()), true
	case reflect.Bool:
		if v.Bool() {
			return append(b, 1), true
		}
		return append(b, 0), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return binary.AppendVarint(b, v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return binary.AppendUvarint(b, v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Float())), true
	case reflect.Array:
		if t.Elem().Kind() != reflect.Uint8 {
			return b, false
		}
		b = binary.AppendUvarint(b, uint64(v.Len()))
		for i := range v.Len() {
			b = append(b, byte(v.Index(i).Uint()))
		}
		return b, true
	}
	return b, false
}

func appendBytes(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// capture copies a read's rows as the caller reads them, to keep them in
// its cache once the result has been read to its end without error.
type capture struct {
	db    *DB
	qc    *queryCache
	opts  *engine.Options // the read's
	key   []byte
	gen   uint64
	limit int // bytes of row data it may hold

	fields    []pgconn.FieldDescription // the result's columns, once described
	fieldBuf  []pgconn.FieldDescription // reused
	described bool                      // fields are set (a result may have none)
	data      []byte
	spans     []int32 // per value: start and length in data; length -1 is NULL
	failed    bool    // too big, or of a type decoded in a way of the connection's own
	done      bool    // the result was read to its end
}

// captures are reused, with their buffers: a miss then allocates only
// what it keeps.
var captures = sync.Pool{New: func() any { return new(capture) }}

// reset drops what an attempt that failed had copied.
func (c *capture) reset() {
	c.fields, c.data, c.spans, c.failed, c.done, c.described = nil, c.data[:0], c.spans[:0], false, false, false
}

// release gives c back for reuse, dropping buffers grown large.
func (c *capture) release() {
	key, data, spans, fields := c.key[:0], c.data[:0], c.spans[:0], c.fieldBuf[:0]
	if cap(data) > 64<<10 || cap(spans) > 16<<10 || cap(key) > 16<<10 || cap(fields) > 64 {
		key, data, spans, fields = nil, nil, nil, nil
	}
	*c = capture{key: key, data: data, spans: spans, fieldBuf: fields}
	captures.Put(c)
}

// describe notes the result's columns, once: a column whose type the
// connection decodes with a codec other than pgx's default (one
// registered in AfterConnect) cannot be decoded the same way later, so
// such a result is not kept. It must be called while the result's
// connection is still the read's (pgx keeps a result's columns in the
// connection).
func (c *capture) describe(rs pgx.Rows) {
	if c.described || c.failed {
		return
	}
	c.described = true
	fields := rs.FieldDescriptions()
	if m := rs.TypeMap(); m != nil {
		for _, f := range fields {
			mine, ok1 := m.TypeForOID(f.DataTypeOID)
			std, ok2 := defaultTypes.TypeForOID(f.DataTypeOID)
			if ok1 != ok2 || mine != std {
				c.failed = true
				return
			}
		}
	}
	// Copied into c's own buffer, reused: the connection may reuse the
	// slice it gave for its next result.
	c.fields = append(c.fieldBuf[:0], fields...)
	c.fieldBuf = c.fields
}

// row copies the current row of rs.
func (c *capture) row(rs pgx.Rows) {
	c.describe(rs)
	if c.failed {
		return
	}
	for _, v := range rs.RawValues() {
		if v == nil {
			c.spans = append(c.spans, int32(len(c.data)), -1)
			continue
		}
		c.spans = append(c.spans, int32(len(c.data)), int32(len(v)))
		c.data = append(c.data, v...)
	}
	if len(c.data)+4*len(c.spans)+len(c.fields)*64 > c.limit {
		c.failed = true
	}
}

// keep puts the result in the cache, if it was read whole. The rows
// were described (see describe) before their connection went back.
func (c *capture) keep(rs pgx.Rows, seen engine.Seen) {
	// A read that took its session's position along (the first after a
	// write) is already older than that position says: not worth keeping.
	if c.failed || !c.done || !c.db.engine.SeenIsCurrent(c.opts, seen) {
		c.db.qcStats.notKept.Add(1)
		return
	}
	// The key and the row data in one allocation (c's buffers are
	// reused).
	arena := make([]byte, len(c.key)+len(c.data))
	copy(arena, c.key)
	copy(arena[len(c.key):], c.data)
	e := &cacheEntry{key: unsafe.String(unsafe.SliceData(arena), len(c.key)), tag: rs.CommandTag(), seen: seen}
	if len(c.fields) <= len(e.inlineFields) {
		e.fields = append(e.inlineFields[:0:len(e.inlineFields)], c.fields...)
	} else {
		e.fields = slices.Clone(c.fields)
	}
	if n := len(c.spans) / 2; n > 0 {
		data := arena[len(c.key):]
		if n <= len(e.inline) {
			e.values = e.inline[:n:n]
		} else {
			e.values = make([][]byte, n)
		}
		for i := range e.values {
			start, length := c.spans[2*i], c.spans[2*i+1]
			if length >= 0 {
				e.values[i] = data[start : start+length : start+length]
			}
		}
	}
	e.size = entryOverhead + len(arena) + 24*len(e.values) + len(e.tag.String())
	for _, f := range e.fields {
		e.size += int(unsafe.Sizeof(f)) + len(f.Name)
	}
	if !c.qc.put(e, c.gen) {
		c.db.qcStats.notKept.Add(1)
	}
}

// defaultTypes is pgx's default type map, read only: which codec decodes
// each built-in type.
var defaultTypes = pgtype.NewMap()
