package classify

import (
	"sync"
	"unsafe"
)

// analysis collects what the walker finds in one text. Everything refers
// to the text by token offsets; strings are made once, by statement.
type analysis struct {
	src   string
	rels  []relRef
	funcs []funcRef
	ctes  []token    // the names of the CTEs in scope, innermost last
	sels  []selInfo  // every SELECT seen, by id
	items []fromItem // FROM items that may be named by FOR UPDATE OF

	partial  bool // some statement has a shape the walker does not follow
	locking  bool // a locking clause was seen
	sampled  bool // TABLESAMPLE without REPEATABLE was seen
	kindLock bool // the kind scanner saw FOR UPDATE and the like

	effects    Effect // of the statements finished so far
	stmt       Effect // of the statement being walked
	temp       bool   // the statement creates a temporary object
	commitDrop bool   // ... with ON COMMIT DROP
	access     Access
	isolation  Isolation
	deferrable bool

	statements  int   // statements walked
	depth       int   // nesting of the walker's recursion
	ddl         bool  // walking DDL outside expressions: keywords before '(' are syntax
	groupBy     bool  // walking GROUP BY's list (or a GROUPING SETS one): ROLLUP (...) and CUBE (...) items are no calls
	operatorEnd int32 // the end of the last OPERATOR(...): a call may follow it
	work        int   // name comparisons made, bounded by maxWork

	// Scratch for statement.
	tables []Table
	fns    []Func
	seen   map[Table]struct{}
}

// relRef is one mention of a relation.
type relRef struct {
	schema, name token // schema.kind is tEOF for an unqualified name
	read, write  bool
	cteOK        bool  // the mention may name a CTE (a FROM item or TABLE)
	cte          bool  // it does: it is no table
	sel          int32 // the SELECT whose FROM list holds it, or -1
}

// funcRef is one call.
type funcRef struct {
	schema, name token  // schema.kind is tEOF for an unqualified name
	fixed        string // for SQL syntax that calls pg_catalog.fixed; name is unused
	sys          bool   // a call of pg_catalog.name (TREAT)
	dropped      bool   // not a call after all (a typed literal)
}

// maxWork bounds the name comparisons (CTE scope, FOR UPDATE OF) one text
// may cost: past it, names are no longer resolved and the analysis is
// partial. Real statements come nowhere near it; it keeps crafted ones
// from costing quadratic time.
const maxWork = 1 << 20

// spend accounts for n name comparisons, and reports false (making the
// analysis partial) once the budget is spent.
func (a *analysis) spend(n int) bool {
	a.work += n
	if a.work > maxWork {
		a.partial = true
		return false
	}
	return true
}

// selInfo is one SELECT (or TABLE) of the text.
type selInfo struct {
	// parent is the SELECT in whose FROM list this one is a subquery, or
	// -1: a locking clause of the parent locks this one's tables too.
	parent   int32
	firstRel int32 // the first relRef that may belong to it
	locked   bool  // a locking clause without OF has locked all of it
}

// fromItem is a FROM item that a FOR UPDATE OF list may name.
type fromItem struct {
	sel  int32 // the SELECT whose FROM list holds it
	name token // its alias, or the relation's (or function's) name
	kind itemKind
	ref  int32 // itemRelation: the relRef; itemSubquery: the select (or -1)
	// itemJoin: the relRefs recorded inside it
	from, to int32
}

type itemKind uint8

const (
	itemRelation itemKind = iota
	itemSubquery
	itemJoin
	itemOther // a function, VALUES: nothing to lock
)

var analysisPool = sync.Pool{New: func() any { return new(analysis) }}

func newAnalysis(src string) *analysis {
	a := analysisPool.Get().(*analysis)
	a.src = src
	return a
}

// maxPooled bounds the lists an analysis keeps for reuse: one huge text
// should not pin its memory in the pool.
const maxPooled = 1024

// release returns a to the pool.
func (a *analysis) release() {
	if cap(a.rels) > maxPooled || cap(a.funcs) > maxPooled || cap(a.sels) > maxPooled ||
		cap(a.items) > maxPooled || cap(a.ctes) > maxPooled || len(a.seen) > maxPooled {
		return
	}
	*a = analysis{
		rels: a.rels[:0], funcs: a.funcs[:0], ctes: a.ctes[:0], sels: a.sels[:0],
		items: a.items[:0], tables: a.tables[:0], fns: a.fns[:0], seen: a.seen,
	}
	clear(a.seen)
	analysisPool.Put(a)
}

// endStatement folds the statement's effects into the text's.
func (a *analysis) endStatement() {
	if a.temp {
		if a.commitDrop {
			a.stmt |= EffectTxScoped
		} else {
			a.stmt |= EffectSessionState
		}
	}
	a.effects |= a.stmt
	a.stmt, a.temp, a.commitDrop = 0, false, false
	a.ctes = a.ctes[:0]
}

// merge adds what b found to a (b read the same text another way).
func (a *analysis) merge(b *analysis) {
	a.rels = append(a.rels, b.rels...)
	a.funcs = append(a.funcs, b.funcs...)
	a.partial = true
	a.locking = a.locking || b.locking
	a.sampled = a.sampled || b.sampled
	a.kindLock = a.kindLock || b.kindLock
	a.effects |= b.effects
}

// table returns the relation r names. ok is false if a name does not
// decode.
func (a *analysis) table(r *relRef) (t Table, ok bool) {
	if t.Name, ok = identValue(a.src, r.name); !ok {
		return t, false
	}
	if r.schema.kind != tEOF {
		t.Schema, ok = identValue(a.src, r.schema)
	}
	return t, ok
}

// statement builds the Statement of the text.
func (a *analysis) statement(kind Kind, statements int) *Statement {
	st := &Statement{
		Kind: kind, Statements: statements, Partial: a.partial || kind == Unknown,
		Locking: a.locking || (a.partial && a.kindLock), Sampled: a.sampled, Effects: a.effects,
		TxAccess: a.access, TxIsolation: a.isolation, TxDeferrable: a.deferrable,
	}
	tabs := a.tables[:0]
	nReads := 0
	for pass := 0; pass < 2; pass++ {
		start := len(tabs)
		clear(a.seen)
		for i := range a.rels {
			r := &a.rels[i]
			if r.cte || (pass == 0 && !r.read) || (pass == 1 && !r.write) {
				continue
			}
			t, ok := a.table(r)
			if !ok {
				st.Partial = true
				continue
			}
			a.add(&tabs, start, t)
		}
		if pass == 0 {
			nReads = len(tabs)
		}
	}
	a.tables = tabs
	if len(tabs) > 0 {
		all := make([]Table, len(tabs))
		copy(all, tabs)
		if nReads > 0 {
			st.Reads = all[:nReads:nReads]
		}
		if len(all) > nReads {
			st.Writes = all[nReads:]
		}
	}

	fns := a.fns[:0]
	clear(a.seen)
	for i := range a.funcs {
		f := &a.funcs[i]
		if f.dropped {
			continue
		}
		var fn Func
		if f.fixed != "" {
			fn = Func{Schema: "pg_catalog", Name: f.fixed}
		} else if f.sys {
			var ok bool
			if fn.Name, ok = identValue(a.src, f.name); !ok {
				st.Partial = true
				continue
			}
			fn.Schema = "pg_catalog"
		} else {
			var ok bool
			if fn.Name, ok = identValue(a.src, f.name); ok && f.schema.kind != tEOF {
				fn.Schema, ok = identValue(a.src, f.schema)
			}
			if !ok {
				st.Partial = true
				continue
			}
		}
		a.addFunc(&fns, fn)
	}
	a.fns = fns
	if len(fns) > 0 {
		st.Funcs = append([]Func(nil), fns...)
	}
	return st
}

// smallList is the length up to which duplicates are found by a linear
// search rather than a map.
const smallList = 16

// add appends t to (*tabs)[start:] unless it is there already.
func (a *analysis) add(tabs *[]Table, start int, t Table) {
	l := (*tabs)[start:]
	if len(l) < smallList {
		for _, u := range l {
			if u == t {
				return
			}
		}
		*tabs = append(*tabs, t)
		return
	}
	if len(a.seen) == 0 {
		if a.seen == nil {
			a.seen = make(map[Table]struct{})
		}
		for _, u := range l {
			a.seen[u] = struct{}{}
		}
	}
	if _, ok := a.seen[t]; ok {
		return
	}
	a.seen[t] = struct{}{}
	*tabs = append(*tabs, t)
}

// addFunc appends f to *fns unless it is there already.
func (a *analysis) addFunc(fns *[]Func, f Func) {
	t := Table(f) // the same shape: share the map
	l := *fns
	if len(l) < smallList {
		for _, g := range l {
			if g == f {
				return
			}
		}
		*fns = append(*fns, f)
		return
	}
	if len(a.seen) == 0 {
		if a.seen == nil {
			a.seen = make(map[Table]struct{})
		}
		for _, g := range l {
			a.seen[Table(g)] = struct{}{}
		}
	}
	if _, ok := a.seen[t]; ok {
		return
	}
	a.seen[t] = struct{}{}
	*fns = append(*fns, f)
}

// size is the memory st holds beyond its strings' shared text, for the
// cache's budget.
func (st *Statement) size() int {
	n := int(unsafe.Sizeof(*st)) +
		(cap(st.Reads)+cap(st.Writes))*int(unsafe.Sizeof(Table{})) +
		cap(st.Funcs)*int(unsafe.Sizeof(Func{}))
	for _, t := range st.Reads {
		n += len(t.Schema) + len(t.Name)
	}
	for _, t := range st.Writes {
		n += len(t.Schema) + len(t.Name)
	}
	for _, f := range st.Funcs {
		n += len(f.Schema) + len(f.Name)
	}
	return n
}
