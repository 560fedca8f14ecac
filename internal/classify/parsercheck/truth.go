package parsercheck

import (
	"sort"
	"strings"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/switchyard-db/switchyard/internal/classify"
)

// rank orders kinds as the classifier combines them.
func rank(k classify.Kind) int {
	switch k {
	case classify.Read:
		return 0
	case classify.Write:
		return 2
	case classify.Session:
		return 3
	}
	return 1
}

func worse(a, b classify.Kind) classify.Kind {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// Truth parses sql with PostgreSQL's parser and returns the Kind the
// classifier should give it, or the parser's error.
func Truth(sql string, user *UserFuncs) (classify.Kind, error) {
	res, err := pg_query.Parse(sql)
	if err != nil {
		return classify.Unknown, err
	}
	if len(res.Stmts) == 0 {
		return classify.Unknown, nil
	}
	k := classify.Read
	for _, rs := range res.Stmts {
		k = worse(k, stmtKind(rs.Stmt, user))
	}
	return k, nil
}

// stmtKind is the kind of one statement.
func stmtKind(n *pg_query.Node, user *UserFuncs) classify.Kind {
	var base classify.Kind
	create := false
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt, *pg_query.Node_VariableShowStmt:
		base = classify.Read
	case *pg_query.Node_ExplainStmt:
		base = stmtKind(x.ExplainStmt.Query, user)
		if explainAnalyze(x.ExplainStmt.Options) {
			base = worse(base, classify.Write)
		}
		return base
	case *pg_query.Node_VariableSetStmt, *pg_query.Node_TransactionStmt,
		*pg_query.Node_ListenStmt, *pg_query.Node_UnlistenStmt,
		*pg_query.Node_PrepareStmt, *pg_query.Node_DeallocateStmt, *pg_query.Node_ExecuteStmt,
		*pg_query.Node_DeclareCursorStmt, *pg_query.Node_FetchStmt, *pg_query.Node_ClosePortalStmt,
		*pg_query.Node_DiscardStmt, *pg_query.Node_LoadStmt, *pg_query.Node_ConstraintsSetStmt:
		base = classify.Session
	case *pg_query.Node_CreateStmt:
		base = persistence(x.CreateStmt.Relation)
	case *pg_query.Node_CreateTableAsStmt:
		base = persistence(x.CreateTableAsStmt.Into.GetRel())
	case *pg_query.Node_ViewStmt:
		base = persistence(x.ViewStmt.View)
	case *pg_query.Node_CreateSeqStmt:
		base = persistence(x.CreateSeqStmt.Sequence)
	case *pg_query.Node_CopyStmt:
		// COPY ... TO STDOUT of a table or of a query runs on a standby.
		c := x.CopyStmt
		base = classify.Write
		if !c.IsFrom && !c.IsProgram && c.Filename == "" {
			base = classify.Read
			if c.Query != nil && c.Query.GetSelectStmt() == nil {
				base = classify.Write // COPY (DELETE ... RETURNING ...) TO STDOUT
			}
		}
	default:
		base = classify.Write
	}
	if base != classify.Read {
		msg := n.ProtoReflect().WhichOneof(n.ProtoReflect().Descriptor().Oneofs().Get(0))
		if msg != nil {
			name := string(msg.Message().FullName().Name())
			create = strings.HasPrefix(name, "Create") || name == "DefineStmt" || name == "IndexStmt" ||
				name == "RuleStmt" || name == "ViewStmt" || name == "CompositeTypeStmt"
		}
	}
	w := walker{user: user, create: create, kind: base}
	w.walk(n.ProtoReflect())
	return w.kind
}

// persistence is Session for a temporary relation, else Write.
func persistence(rv *pg_query.RangeVar) classify.Kind {
	if rv != nil && (rv.Relpersistence == "t" || rv.Schemaname == "pg_temp") {
		return classify.Session
	}
	return classify.Write
}

// explainAnalyze reports whether EXPLAIN's options make it run the
// statement, as PostgreSQL's defGetBoolean reads the analyze option (a
// value it rejects counts as true: unsure means primary).
func explainAnalyze(opts []*pg_query.Node) bool {
	analyze := false
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.Defname != "analyze" {
			continue
		}
		if d.Arg == nil {
			analyze = true
			continue
		}
		switch a := d.Arg.Node.(type) {
		case *pg_query.Node_Integer:
			if a.Integer.Ival != 0 {
				analyze = true
			}
		case *pg_query.Node_String_:
			if v := lowerASCII(a.String_.Sval); v != "false" && v != "off" {
				analyze = true
			}
		case *pg_query.Node_Boolean:
			if a.Boolean.Boolval {
				analyze = true
			}
		default:
			analyze = true
		}
	}
	return analyze
}

// walker visits every message of a parse tree.
type walker struct {
	user   *UserFuncs
	create bool
	kind   classify.Kind
}

func (w *walker) mark(k classify.Kind) { w.kind = worse(w.kind, k) }

func (w *walker) walk(m protoreflect.Message) {
	w.visit(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			if w.create {
				w.pgTempList(l)
			}
			for i := 0; i < l.Len(); i++ {
				w.walk(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			w.walk(v.Message())
		}
		return true
	})
}

// pgTempList marks Session a name list like pg_temp.x in a CREATE statement.
func (w *walker) pgTempList(l protoreflect.List) {
	for i := 0; i+1 < l.Len(); i++ {
		if n, ok := l.Get(i).Message().Interface().(*pg_query.Node); ok {
			if s := n.GetString_(); s != nil && s.Sval == "pg_temp" {
				if m, ok := l.Get(i + 1).Message().Interface().(*pg_query.Node); ok && m.GetString_() != nil {
					w.mark(classify.Session)
				}
			}
		}
	}
}

func strs(nodes []*pg_query.Node) []string {
	var out []string
	for _, n := range nodes {
		if s := n.GetString_(); s != nil {
			out = append(out, s.Sval)
		} else {
			out = append(out, "")
		}
	}
	return out
}

func (w *walker) visit(m protoreflect.ProtoMessage) {
	switch x := m.(type) {
	case *pg_query.FuncCall:
		names := strs(x.Funcname)
		if len(names) == 0 {
			return
		}
		name, schema := names[len(names)-1], ""
		if len(names) >= 2 {
			schema = names[len(names)-2]
		}
		k := builtinKind(name)
		if k != classify.Session && w.user.match(schema, name) {
			k = classify.Write
		}
		w.mark(k)
	case *pg_query.LockingClause:
		w.mark(classify.Write)
	case *pg_query.IntoClause:
		w.mark(persistence(x.Rel))
	case *pg_query.CommonTableExpr:
		if x.Ctequery.GetSelectStmt() == nil {
			w.mark(classify.Write) // data-modifying CTE
		}
	case *pg_query.ColumnRef:
		// Attribute notation t.f calls f(t).
		if f := strs(x.Fields); len(f) >= 2 && f[len(f)-1] != "" && w.user.match("", f[len(f)-1]) {
			w.mark(classify.Write)
		}
	case *pg_query.A_Indirection:
		if f := strs(x.Indirection); len(f) >= 1 && f[len(f)-1] != "" && w.user.match("", f[len(f)-1]) {
			w.mark(classify.Write)
		}
	case *pg_query.RangeVar:
		if w.create && x.Schemaname == "pg_temp" {
			w.mark(classify.Session)
		}
	}
}

// Facts is what PostgreSQL's parse tree says about a text, in the terms of
// classify.Statement.
type Facts struct {
	Reads, Writes []classify.Table
	Funcs         []classify.Func
	Locking       bool
	Effects       classify.Effect
	TxAccess      classify.Access
	TxIsolation   classify.Isolation
	TxDeferrable  bool
	// Opaque says that, by the policy, the text may touch relations it
	// does not name (EXECUTE, DO, DROP ... CASCADE, VACUUM of every table,
	// statements the policy does not follow): classify must say Partial.
	Opaque bool
	// Unhandled lists relations the walker met where it did not expect
	// any: a gap in this file, not in the classifier.
	Unhandled []string
}

// TruthFacts parses sql and returns its Facts, or the parser's error.
func TruthFacts(sql string, user *UserFuncs) (*Facts, error) {
	res, err := pg_query.Parse(sql)
	if err != nil {
		return nil, err
	}
	w := &factWalker{user: user, f: &Facts{}}
	for _, rs := range res.Stmts {
		w.stmtLoc = int(rs.StmtLocation)
		w.statement(rs.Stmt)
	}
	w.finish()
	return w.f, nil
}

// factWalker walks parse trees for Facts.
type factWalker struct {
	user             *UserFuncs
	f                *Facts
	rels             []factRel
	funcs            []classify.Func
	ctes             []string   // CTE names in scope, innermost last
	sels             []int      // the parent SELECT of each SELECT (FROM subqueries), or -1
	items            []factItem // FROM items, for FOR UPDATE OF
	order            int        // a counter giving mentions without a location their place
	stmtLoc          int        // where the statement being walked starts
	temp, commitDrop bool
}

type factRel struct {
	t           classify.Table
	read, write bool
	cte         bool
	sel         int
	loc         int
}

type factItem struct {
	sel      int
	name     string
	kind     int // 0 relation, 1 subquery, 2 join, 3 other
	ref      int // relation: rels index; subquery: select id
	from, to int // join: rels range
}

func (w *factWalker) finish() {
	// Mentions in text order, each list without duplicates.
	rels := append([]factRel(nil), w.rels...)
	sort.SliceStable(rels, func(i, j int) bool { return rels[i].loc < rels[j].loc })
	seenR, seenW := map[classify.Table]bool{}, map[classify.Table]bool{}
	for _, r := range rels {
		if r.cte {
			continue
		}
		if r.read && !seenR[r.t] {
			seenR[r.t] = true
			w.f.Reads = append(w.f.Reads, r.t)
		}
		if r.write && !seenW[r.t] {
			seenW[r.t] = true
			w.f.Writes = append(w.f.Writes, r.t)
		}
	}
	seenF := map[classify.Func]bool{}
	for _, fn := range w.funcs {
		if !seenF[fn] {
			seenF[fn] = true
			w.f.Funcs = append(w.f.Funcs, fn)
		}
	}
}

// rel records a mention of a relation and returns its index.
func (w *factWalker) rel(t classify.Table, read, write bool, sel, loc int) int {
	w.order++
	w.rels = append(w.rels, factRel{t: t, read: read, write: write, sel: sel, loc: loc<<20 + w.order})
	return len(w.rels) - 1
}

// rangeVar records the relation rv; a FROM item (cteOK) may name a CTE.
func (w *factWalker) rangeVar(rv *pg_query.RangeVar, read, write, cteOK bool, sel int) int {
	i := w.rel(classify.Table{Schema: rv.Schemaname, Name: rv.Relname}, read, write, sel, max(int(rv.Location), w.stmtLoc))
	if cteOK && rv.Schemaname == "" && rv.Catalogname == "" {
		for j := len(w.ctes) - 1; j >= 0; j-- {
			if w.ctes[j] == rv.Relname {
				w.rels[i].cte = true
				break
			}
		}
	}
	return i
}

// names records a relation named by a list of String nodes (DROP, COMMENT),
// less its last drop elements.
func (w *factWalker) names(n *pg_query.Node, drop int, loc int) {
	var parts []string
	if l := n.GetList(); l != nil {
		parts = strs(l.Items)
	} else if s := n.GetString_(); s != nil {
		parts = []string{s.Sval}
	}
	parts = parts[:max(len(parts)-drop, 0)]
	if len(parts) == 0 {
		return
	}
	t := classify.Table{Name: parts[len(parts)-1]}
	if len(parts) >= 2 {
		t.Schema = parts[len(parts)-2]
	}
	w.rel(t, false, true, -1, max(loc, w.stmtLoc))
}

// node walks any part of a tree generically: subqueries, calls, nested
// statements.
func (w *factWalker) node(n *pg_query.Node) {
	if n != nil {
		w.msg(n.ProtoReflect())
	}
}

func (w *factWalker) nodes(l []*pg_query.Node) {
	for _, n := range l {
		w.node(n)
	}
}

func (w *factWalker) msg(m protoreflect.Message) {
	if !m.IsValid() {
		return
	}
	switch x := m.Interface().(type) {
	case *pg_query.SelectStmt:
		w.selectStmt(x)
		return
	case *pg_query.InsertStmt, *pg_query.UpdateStmt, *pg_query.DeleteStmt, *pg_query.MergeStmt:
		w.dml(x)
		return
	case *pg_query.RangeVar:
		w.f.Unhandled = append(w.f.Unhandled, x.Schemaname+"."+x.Relname)
		return
	case *pg_query.FuncCall:
		w.funcCall(x)
	case *pg_query.ColumnRef:
		if f := strs(x.Fields); len(f) >= 2 && f[len(f)-1] != "" && w.user.match("", f[len(f)-1]) {
			w.funcs = append(w.funcs, classify.Func{Name: f[len(f)-1]})
		}
	case *pg_query.A_Indirection:
		if f := strs(x.Indirection); len(f) >= 1 && f[len(f)-1] != "" && w.user.match("", f[len(f)-1]) {
			w.funcs = append(w.funcs, classify.Func{Name: f[len(f)-1]})
		}
	case *pg_query.LockingClause:
		w.f.Locking = true
	case *pg_query.IntoClause:
		if x.Rel != nil {
			w.rangeVar(x.Rel, false, true, false, -1)
			if x.Rel.Relpersistence == "t" || x.Rel.Schemaname == "pg_temp" {
				w.temp = true
			}
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.msg(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			w.msg(v.Message())
		}
		return true
	})
}

// funcCall records a call and its effect on the session.
func (w *factWalker) funcCall(x *pg_query.FuncCall) {
	names := strs(x.Funcname)
	if len(names) == 0 {
		return
	}
	fn := classify.Func{Name: names[len(names)-1]}
	if len(names) >= 2 {
		fn.Schema = names[len(names)-2]
	}
	w.funcs = append(w.funcs, fn)
	if fn.Name == "set_config" {
		local := false
		if len(x.Args) == 3 {
			if c := x.Args[2].GetAConst(); c != nil && c.GetBoolval() != nil && c.GetBoolval().Boolval {
				local = true
			}
		}
		if local {
			w.f.Effects |= classify.EffectTxScoped
		} else {
			w.f.Effects |= classify.EffectSessionState
		}
		return
	}
	w.f.Effects |= funcEffect(fn.Name)
}

// with walks a WITH clause, putting its names in scope.
func (w *factWalker) with(wc *pg_query.WithClause) {
	if wc == nil {
		return
	}
	if wc.Recursive {
		for _, c := range wc.Ctes {
			w.ctes = append(w.ctes, c.GetCommonTableExpr().Ctename)
		}
	}
	for _, c := range wc.Ctes {
		cte := c.GetCommonTableExpr()
		w.node(cte.Ctequery)
		w.nodes(cte.SearchClause.GetSearchColList())
		if !wc.Recursive {
			w.ctes = append(w.ctes, cte.Ctename)
		}
	}
}

// selectStmt walks a query and returns the id of the SELECT a locking
// clause on it locks, or -1 for set operations and VALUES.
func (w *factWalker) selectStmt(x *pg_query.SelectStmt) int {
	mark := len(w.ctes)
	w.with(x.WithClause)
	id := -1
	switch {
	case x.Op != pg_query.SetOperation_SETOP_NONE:
		w.selectStmt(x.Larg)
		w.selectStmt(x.Rarg)
	case x.ValuesLists != nil:
		w.nodes(x.ValuesLists)
	default:
		id = len(w.sels)
		w.sels = append(w.sels, -1)
		w.nodes(x.DistinctClause)
		w.nodes(x.TargetList)
		if x.IntoClause != nil {
			w.msg(x.IntoClause.ProtoReflect())
		}
		for _, n := range x.FromClause {
			w.fromItem(n, id)
		}
		w.node(x.WhereClause)
		w.nodes(x.GroupClause)
		w.node(x.HavingClause)
		w.nodes(x.WindowClause)
	}
	w.nodes(x.SortClause)
	w.node(x.LimitOffset)
	w.node(x.LimitCount)
	for _, n := range x.LockingClause {
		w.locking(n.GetLockingClause(), id)
	}
	w.ctes = w.ctes[:mark]
	return id
}

// fromItem walks a FROM item of SELECT sel.
func (w *factWalker) fromItem(n *pg_query.Node, sel int) {
	switch x := n.Node.(type) {
	case *pg_query.Node_RangeVar:
		rv := x.RangeVar
		i := w.rangeVar(rv, true, false, true, sel)
		name := rv.Relname
		if rv.Alias != nil {
			name = rv.Alias.Aliasname
		}
		w.items = append(w.items, factItem{sel: sel, name: name, ref: i})
	case *pg_query.Node_RangeSubselect:
		sub := w.selectStmt(x.RangeSubselect.Subquery.GetSelectStmt())
		if sub >= 0 {
			w.sels[sub] = sel
		}
		if a := x.RangeSubselect.Alias; a != nil {
			w.items = append(w.items, factItem{sel: sel, name: a.Aliasname, kind: 1, ref: sub})
		}
	case *pg_query.Node_JoinExpr:
		j := x.JoinExpr
		from := len(w.rels)
		w.fromItem(j.Larg, sel)
		w.fromItem(j.Rarg, sel)
		w.node(j.Quals)
		if j.Alias != nil {
			w.items = append(w.items, factItem{sel: sel, name: j.Alias.Aliasname, kind: 2, from: from, to: len(w.rels)})
		}
	case *pg_query.Node_RangeTableSample:
		w.fromItem(x.RangeTableSample.Relation, sel)
		w.nodes(x.RangeTableSample.Args)
		w.node(x.RangeTableSample.Repeatable)
	default:
		w.node(n)
	}
}

// locking applies a locking clause of SELECT sel.
func (w *factWalker) locking(lc *pg_query.LockingClause, sel int) {
	w.f.Locking = true
	if len(lc.LockedRels) == 0 {
		if sel >= 0 {
			w.lockAll(sel, 0, len(w.rels))
		}
		return
	}
	for _, n := range lc.LockedRels {
		rv := n.GetRangeVar()
		found := false
		if rv.Schemaname == "" && sel >= 0 {
			for i := len(w.items) - 1; i >= 0; i-- {
				it := w.items[i]
				if it.sel != sel || it.name != rv.Relname {
					continue
				}
				switch it.kind {
				case 0:
					w.rels[it.ref].write = true
				case 1:
					if it.ref >= 0 {
						w.lockAll(it.ref, 0, len(w.rels))
					}
				case 2:
					w.lockAll(sel, it.from, it.to)
				}
				found = true
				break
			}
		}
		if !found {
			w.rangeVar(rv, false, true, false, -1)
		}
	}
}

func (w *factWalker) lockAll(sel, from, to int) {
	for i := from; i < to; i++ {
		for p := w.rels[i].sel; p >= 0; p = w.sels[p] {
			if p == sel {
				w.rels[i].write = true
				break
			}
		}
	}
}

// dml walks INSERT, UPDATE, DELETE and MERGE.
func (w *factWalker) dml(m protoreflect.ProtoMessage) {
	mark := len(w.ctes)
	switch x := m.(type) {
	case *pg_query.InsertStmt:
		w.with(x.WithClause)
		w.rangeVar(x.Relation, false, true, false, -1)
		w.nodes(x.Cols)
		w.node(x.SelectStmt)
		if x.OnConflictClause != nil {
			w.msg(x.OnConflictClause.ProtoReflect())
		}
		w.nodes(x.ReturningList)
	case *pg_query.UpdateStmt:
		w.with(x.WithClause)
		w.rangeVar(x.Relation, false, true, false, -1)
		w.nodes(x.TargetList)
		sel := len(w.sels)
		w.sels = append(w.sels, -1)
		for _, n := range x.FromClause {
			w.fromItem(n, sel)
		}
		w.node(x.WhereClause)
		w.nodes(x.ReturningList)
	case *pg_query.DeleteStmt:
		w.with(x.WithClause)
		w.rangeVar(x.Relation, false, true, false, -1)
		sel := len(w.sels)
		w.sels = append(w.sels, -1)
		for _, n := range x.UsingClause {
			w.fromItem(n, sel)
		}
		w.node(x.WhereClause)
		w.nodes(x.ReturningList)
	case *pg_query.MergeStmt:
		w.with(x.WithClause)
		w.rangeVar(x.Relation, false, true, false, -1)
		sel := len(w.sels)
		w.sels = append(w.sels, -1)
		w.fromItem(x.SourceRelation, sel)
		w.node(x.JoinCondition)
		w.nodes(x.MergeWhenClauses)
		w.nodes(x.ReturningList)
	}
	w.ctes = w.ctes[:mark]
}

// relationTypes are the object types whose names are relations.
var relationTypes = map[pg_query.ObjectType]bool{
	pg_query.ObjectType_OBJECT_TABLE: true, pg_query.ObjectType_OBJECT_VIEW: true,
	pg_query.ObjectType_OBJECT_MATVIEW: true, pg_query.ObjectType_OBJECT_INDEX: true,
	pg_query.ObjectType_OBJECT_SEQUENCE: true, pg_query.ObjectType_OBJECT_FOREIGN_TABLE: true,
}

// onTableTypes are the object types named "name ON table".
var onTableTypes = map[pg_query.ObjectType]bool{
	pg_query.ObjectType_OBJECT_TRIGGER: true, pg_query.ObjectType_OBJECT_POLICY: true,
	pg_query.ObjectType_OBJECT_RULE: true, pg_query.ObjectType_OBJECT_TABCONSTRAINT: true,
}

// statement walks one statement.
func (w *factWalker) statement(n *pg_query.Node) {
	w.temp, w.commitDrop = false, false
	w.ctes = w.ctes[:0]
	w.stmt(n)
	if isCreate(n) && hasPgTemp(n.ProtoReflect()) {
		w.temp = true // CREATE ... pg_temp.x, as Truth's kind rule has it
	}
	if w.temp {
		if w.commitDrop {
			w.f.Effects |= classify.EffectTxScoped
		} else {
			w.f.Effects |= classify.EffectSessionState
		}
	}
}

func (w *factWalker) stmt(n *pg_query.Node) {
	f := w.f
	cascade := func(b pg_query.DropBehavior) {
		if b == pg_query.DropBehavior_DROP_CASCADE {
			f.Opaque = true
		}
	}
	switch x := n.Node.(type) {
	case *pg_query.Node_SelectStmt:
		w.selectStmt(x.SelectStmt)
	case *pg_query.Node_InsertStmt, *pg_query.Node_UpdateStmt, *pg_query.Node_DeleteStmt, *pg_query.Node_MergeStmt:
		w.node(n)
	case *pg_query.Node_ExplainStmt:
		w.stmt(x.ExplainStmt.Query)
	case *pg_query.Node_PrepareStmt:
		f.Effects |= classify.EffectSessionState | classify.EffectPrepare
		w.stmt(x.PrepareStmt.Query)
	case *pg_query.Node_DeclareCursorStmt:
		if x.DeclareCursorStmt.Options&0x0020 != 0 { // CURSOR_OPT_HOLD
			f.Effects |= classify.EffectSessionState
		} else {
			f.Effects |= classify.EffectTxScoped
		}
		w.stmt(x.DeclareCursorStmt.Query)
	case *pg_query.Node_CopyStmt:
		c := x.CopyStmt
		if c.Relation != nil {
			w.rangeVar(c.Relation, !c.IsFrom, c.IsFrom, false, -1)
		}
		if c.Query != nil {
			w.stmt(c.Query)
		}
		w.node(c.WhereClause)
		if c.Filename == "" && !c.IsProgram {
			if c.IsFrom {
				f.Effects |= classify.EffectCopyFrom
			} else {
				f.Effects |= classify.EffectCopyTo
			}
		}
	case *pg_query.Node_TruncateStmt:
		for _, r := range x.TruncateStmt.Relations {
			w.rangeVar(r.GetRangeVar(), false, true, false, -1)
		}
		cascade(x.TruncateStmt.Behavior)
	case *pg_query.Node_LockStmt:
		for _, r := range x.LockStmt.Relations {
			w.rangeVar(r.GetRangeVar(), false, true, false, -1)
		}
	case *pg_query.Node_CreateStmt:
		c := x.CreateStmt
		w.rangeVar(c.Relation, false, true, false, -1)
		w.persistence(c.Relation)
		w.commitDrop = c.Oncommit == pg_query.OnCommitAction_ONCOMMIT_DROP
		for _, e := range c.TableElts {
			w.tableElement(e)
		}
		for _, r := range c.InhRelations {
			w.rangeVar(r.GetRangeVar(), false, true, false, -1)
		}
		for _, e := range c.Constraints {
			w.tableElement(e)
		}
		if c.Partbound != nil {
			w.msg(c.Partbound.ProtoReflect())
		}
		if c.Partspec != nil {
			w.msg(c.Partspec.ProtoReflect())
		}
	case *pg_query.Node_CreateTableAsStmt:
		c := x.CreateTableAsStmt
		w.rangeVar(c.Into.Rel, false, true, false, -1)
		w.persistence(c.Into.Rel)
		w.commitDrop = c.Into.OnCommit == pg_query.OnCommitAction_ONCOMMIT_DROP
		if c.Query.GetExecuteStmt() != nil {
			f.Opaque = true
		}
		w.stmt(c.Query)
	case *pg_query.Node_ViewStmt:
		w.rangeVar(x.ViewStmt.View, false, true, false, -1)
		w.persistence(x.ViewStmt.View)
		w.stmt(x.ViewStmt.Query)
	case *pg_query.Node_IndexStmt:
		w.rangeVar(x.IndexStmt.Relation, false, true, false, -1)
		w.nodes(x.IndexStmt.IndexParams)
		w.nodes(x.IndexStmt.IndexIncludingParams)
		w.node(x.IndexStmt.WhereClause)
	case *pg_query.Node_CreateSeqStmt:
		w.rangeVar(x.CreateSeqStmt.Sequence, false, true, false, -1)
		w.persistence(x.CreateSeqStmt.Sequence)
	case *pg_query.Node_AlterSeqStmt:
		w.rangeVar(x.AlterSeqStmt.Sequence, false, true, false, -1)
	case *pg_query.Node_AlterTableStmt:
		w.rangeVar(x.AlterTableStmt.Relation, false, true, false, -1)
		for _, c := range x.AlterTableStmt.Cmds {
			cmd := c.GetAlterTableCmd()
			cascade(cmd.Behavior)
			switch d := cmd.Def.GetNode().(type) {
			case *pg_query.Node_PartitionCmd:
				w.rangeVar(d.PartitionCmd.Name, false, true, false, -1)
				if d.PartitionCmd.Bound != nil {
					w.msg(d.PartitionCmd.Bound.ProtoReflect())
				}
			case *pg_query.Node_RangeVar: // INHERIT, NO INHERIT
				w.rangeVar(d.RangeVar, false, true, false, -1)
			default:
				w.tableElement(cmd.Def)
			}
		}
	case *pg_query.Node_RenameStmt:
		r := x.RenameStmt
		switch {
		case r.Relation != nil:
			w.rangeVar(r.Relation, false, true, false, -1)
		case r.RenameType == pg_query.ObjectType_OBJECT_ROLE, r.RenameType == pg_query.ObjectType_OBJECT_DATABASE:
		default:
			f.Opaque = true
		}
	case *pg_query.Node_AlterObjectSchemaStmt:
		if r := x.AlterObjectSchemaStmt.Relation; r != nil {
			w.rangeVar(r, false, true, false, -1)
		} else {
			f.Opaque = true
		}
	case *pg_query.Node_AlterOwnerStmt:
		if x.AlterOwnerStmt.ObjectType != pg_query.ObjectType_OBJECT_DATABASE {
			f.Opaque = true
		}
	case *pg_query.Node_DropStmt:
		d := x.DropStmt
		switch {
		case relationTypes[d.RemoveType]:
			for _, o := range d.Objects {
				w.names(o, 0, 0)
			}
		case onTableTypes[d.RemoveType]:
			for _, o := range d.Objects {
				w.names(o, 1, 0)
			}
		case d.RemoveType == pg_query.ObjectType_OBJECT_EXTENSION:
			f.Opaque = true
		}
		cascade(d.Behavior)
	case *pg_query.Node_RefreshMatViewStmt:
		w.rangeVar(x.RefreshMatViewStmt.Relation, false, true, false, -1)
	case *pg_query.Node_VacuumStmt:
		if len(x.VacuumStmt.Rels) == 0 {
			f.Opaque = true
		}
		for _, r := range x.VacuumStmt.Rels {
			w.rangeVar(r.GetVacuumRelation().Relation, false, true, false, -1)
		}
	case *pg_query.Node_ClusterStmt:
		if x.ClusterStmt.Relation == nil {
			f.Opaque = true
		} else {
			w.rangeVar(x.ClusterStmt.Relation, false, true, false, -1)
		}
	case *pg_query.Node_ReindexStmt:
		switch x.ReindexStmt.Kind {
		case pg_query.ReindexObjectType_REINDEX_OBJECT_INDEX, pg_query.ReindexObjectType_REINDEX_OBJECT_TABLE:
			w.rangeVar(x.ReindexStmt.Relation, false, true, false, -1)
		default:
			f.Opaque = true
		}
	case *pg_query.Node_GrantStmt:
		g := x.GrantStmt
		isRel := g.Objtype == pg_query.ObjectType_OBJECT_TABLE || g.Objtype == pg_query.ObjectType_OBJECT_SEQUENCE
		switch {
		case isRel && g.Targtype == pg_query.GrantTargetType_ACL_TARGET_OBJECT:
			for _, o := range g.Objects {
				w.rangeVar(o.GetRangeVar(), false, true, false, -1)
			}
		case isRel:
			f.Opaque = true // ALL TABLES IN SCHEMA
		}
	case *pg_query.Node_CommentStmt:
		w.objectName(x.CommentStmt.Objtype, x.CommentStmt.Object)
	case *pg_query.Node_SecLabelStmt:
		w.objectName(x.SecLabelStmt.Objtype, x.SecLabelStmt.Object)
	case *pg_query.Node_TransactionStmt:
		w.transaction(x.TransactionStmt)
	case *pg_query.Node_VariableSetStmt:
		v := x.VariableSetStmt
		switch {
		case v.Kind == pg_query.VariableSetKind_VAR_SET_MULTI && v.Name == "TRANSACTION":
			f.Effects |= classify.EffectSetTransaction | classify.EffectTxScoped
			w.modes(v.Args)
		case v.Kind == pg_query.VariableSetKind_VAR_SET_MULTI && v.Name == "TRANSACTION SNAPSHOT":
			f.Effects |= classify.EffectSetTransaction | classify.EffectTxScoped
		case v.IsLocal:
			f.Effects |= classify.EffectTxScoped
		default:
			f.Effects |= classify.EffectSessionState
		}
	case *pg_query.Node_ConstraintsSetStmt:
		f.Effects |= classify.EffectTxScoped
	case *pg_query.Node_ListenStmt:
		f.Effects |= classify.EffectSessionState | classify.EffectListen
	case *pg_query.Node_LoadStmt:
		f.Effects |= classify.EffectSessionState
	case *pg_query.Node_UnlistenStmt, *pg_query.Node_DeallocateStmt, *pg_query.Node_ClosePortalStmt:
		f.Effects |= classify.EffectSessionDependent
	case *pg_query.Node_ExecuteStmt, *pg_query.Node_FetchStmt:
		f.Effects |= classify.EffectSessionDependent
		f.Opaque = true
		w.node(n)
	case *pg_query.Node_DiscardStmt:
		if x.DiscardStmt.Target == pg_query.DiscardMode_DISCARD_ALL {
			f.Effects |= classify.EffectDiscardAll
		} else {
			f.Effects |= classify.EffectSessionDependent
		}
	case *pg_query.Node_CreateSchemaStmt:
		if len(x.CreateSchemaStmt.SchemaElts) > 0 {
			f.Opaque = true
		}
	case *pg_query.Node_VariableShowStmt, *pg_query.Node_NotifyStmt, *pg_query.Node_CheckPointStmt,
		*pg_query.Node_CallStmt, *pg_query.Node_AlterSystemStmt, *pg_query.Node_AlterRoleStmt,
		*pg_query.Node_AlterRoleSetStmt, *pg_query.Node_AlterDatabaseStmt, *pg_query.Node_AlterDatabaseSetStmt,
		*pg_query.Node_AlterDatabaseRefreshCollStmt, *pg_query.Node_CreateRoleStmt,
		*pg_query.Node_CreateDomainStmt, *pg_query.Node_CreateEnumStmt,
		*pg_query.Node_CreateRangeStmt, *pg_query.Node_GrantRoleStmt, *pg_query.Node_DropRoleStmt,
		*pg_query.Node_DropTableSpaceStmt, *pg_query.Node_DropSubscriptionStmt, *pg_query.Node_DropUserMappingStmt:
		w.node(n)
	case *pg_query.Node_CompositeTypeStmt:
		w.nodes(x.CompositeTypeStmt.Coldeflist) // its typevar names a type
	case *pg_query.Node_CreateTrigStmt:
		c := x.CreateTrigStmt
		w.rangeVar(c.Relation, false, true, false, -1)
		if c.Constrrel != nil {
			w.rangeVar(c.Constrrel, false, true, false, -1)
		}
		w.node(c.WhenClause)
	case *pg_query.Node_CreatePolicyStmt:
		w.rangeVar(x.CreatePolicyStmt.Table, false, true, false, -1)
		w.node(x.CreatePolicyStmt.Qual)
		w.node(x.CreatePolicyStmt.WithCheck)
	case *pg_query.Node_DefineStmt:
		if x.DefineStmt.Kind != pg_query.ObjectType_OBJECT_TYPE {
			f.Opaque = true
		}
		w.node(n)
	default:
		// DO, CREATE FUNCTION, CREATE TRIGGER, REASSIGN OWNED, ...: the
		// policy does not follow them.
		f.Opaque = true
		w.node(n)
	}
}

// persistence notes a temporary relation.
func (w *factWalker) persistence(rv *pg_query.RangeVar) {
	if rv != nil && (rv.Relpersistence == "t" || rv.Schemaname == "pg_temp") {
		w.temp = true
	}
}

// isCreate reports whether n is a CREATE statement (or EXPLAINs one).
func isCreate(n *pg_query.Node) bool {
	if e := n.GetExplainStmt(); e != nil {
		return isCreate(e.Query)
	}
	msg := n.ProtoReflect().WhichOneof(n.ProtoReflect().Descriptor().Oneofs().Get(0))
	if msg == nil {
		return false
	}
	name := string(msg.Message().FullName().Name())
	return strings.HasPrefix(name, "Create") || name == "DefineStmt" || name == "IndexStmt" ||
		name == "RuleStmt" || name == "ViewStmt" || name == "CompositeTypeStmt"
}

// hasPgTemp reports a pg_temp.x name anywhere in m.
func hasPgTemp(m protoreflect.Message) bool {
	found := false
	switch x := m.Interface().(type) {
	case *pg_query.RangeVar:
		return x.Schemaname == "pg_temp"
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && !found; i++ {
				if n, ok := l.Get(i).Message().Interface().(*pg_query.Node); ok && i+1 < l.Len() {
					if s := n.GetString_(); s != nil && s.Sval == "pg_temp" {
						if m, ok := l.Get(i + 1).Message().Interface().(*pg_query.Node); ok && m.GetString_() != nil {
							found = true
						}
					}
				}
				found = found || hasPgTemp(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			found = found || hasPgTemp(v.Message())
		}
		return !found
	})
	return found
}

// tableElement walks a column definition, constraint or LIKE clause.
func (w *factWalker) tableElement(n *pg_query.Node) {
	switch x := n.GetNode().(type) {
	case *pg_query.Node_TableLikeClause:
		w.rangeVar(x.TableLikeClause.Relation, true, false, false, -1)
	case *pg_query.Node_Constraint:
		w.constraint(x.Constraint)
	case *pg_query.Node_ColumnDef:
		for _, c := range x.ColumnDef.Constraints {
			w.constraint(c.GetConstraint())
		}
		w.node(x.ColumnDef.RawDefault)
	default:
		w.node(n)
	}
}

func (w *factWalker) constraint(c *pg_query.Constraint) {
	if c == nil {
		return
	}
	if c.Pktable != nil {
		w.rangeVar(c.Pktable, false, true, false, -1)
	}
	w.node(c.RawExpr)
	w.node(c.WhereClause)
	w.nodes(c.Exclusions)
}

// objectName records the relation a COMMENT ON or SECURITY LABEL ON names.
func (w *factWalker) objectName(t pg_query.ObjectType, obj *pg_query.Node) {
	switch {
	case relationTypes[t]:
		w.names(obj, 0, 0)
	case t == pg_query.ObjectType_OBJECT_COLUMN, onTableTypes[t]:
		w.names(obj, 1, 0)
	}
}

// transaction walks BEGIN, COMMIT, ... .
func (w *factWalker) transaction(x *pg_query.TransactionStmt) {
	f := w.f
	switch x.Kind {
	case pg_query.TransactionStmtKind_TRANS_STMT_BEGIN, pg_query.TransactionStmtKind_TRANS_STMT_START:
		f.Effects |= classify.EffectBegin
		f.TxAccess, f.TxIsolation, f.TxDeferrable = classify.AccessDefault, classify.IsolationDefault, false
		w.modes(x.Options)
	case pg_query.TransactionStmtKind_TRANS_STMT_COMMIT:
		f.Effects |= classify.EffectCommit
	case pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK:
		f.Effects |= classify.EffectRollback
	case pg_query.TransactionStmtKind_TRANS_STMT_SAVEPOINT, pg_query.TransactionStmtKind_TRANS_STMT_RELEASE,
		pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_TO:
		f.Effects |= classify.EffectSavepoint
	default:
		f.Effects |= classify.EffectTwoPhase
	}
	if x.Chain {
		f.Effects |= classify.EffectChain
	}
}

// modes applies transaction modes (DefElems).
func (w *factWalker) modes(opts []*pg_query.Node) {
	f := w.f
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil {
			continue
		}
		c := d.Arg.GetAConst()
		switch d.Defname {
		case "transaction_isolation":
			switch c.GetSval().GetSval() {
			case "serializable":
				f.TxIsolation = classify.Serializable
			case "repeatable read":
				f.TxIsolation = classify.RepeatableRead
			case "read committed":
				f.TxIsolation = classify.ReadCommitted
			case "read uncommitted":
				f.TxIsolation = classify.ReadUncommitted
			}
		case "transaction_read_only":
			if c.GetIval().GetIval() != 0 {
				f.TxAccess = classify.AccessReadOnly
			} else {
				f.TxAccess = classify.AccessReadWrite
			}
		case "transaction_deferrable":
			f.TxDeferrable = c.GetIval().GetIval() != 0
		}
	}
}
