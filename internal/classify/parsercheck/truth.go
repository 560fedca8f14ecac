package parsercheck

import (
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
