package classify

// The walker reads a statement's structure for Analyze: which relations it
// reads and writes, which functions it calls, what it does to the session.
// It is a recursive-descent parser over the scanner's tokens, and it pulls
// every token through take, which also runs the kind scanner on it: the
// text is still read once, and the kind comes out exactly as Classify's.
// Where the text leaves the shapes it knows, it marks the analysis partial
// and goes on reading expressions, so that a subquery further on is still
// seen.

// maxWalkDepth bounds the walker's recursion; parentheses nested deeper
// are skipped, and the analysis is partial.
const maxWalkDepth = 200

// lookahead is the next token, with the lexer state after it.
type lookahead struct {
	t  token
	lx lexer
}

// peek returns the next token without consuming it.
func (s *scanner) peek() token { return s.la.t }

// peek2 returns the token after the next one.
func (s *scanner) peek2() token {
	l := s.la.lx
	return l.next()
}

// isEnd reports whether t ends the statement.
func (s *scanner) isEnd(t token) bool {
	return t.kind == tEOF || t.kind == tError || t.kind == tSemi && !s.atomic
}

// ended reports whether the statement's tokens are all consumed.
func (s *scanner) ended() bool { return s.isEnd(s.la.t) }

// take consumes the next token, runs the kind scanner on it (unless the
// head code has) and returns it. At the end of the statement it consumes
// nothing.
func (s *scanner) take() token {
	t := s.la.t
	if s.isEnd(t) {
		return t
	}
	s.lx = s.la.lx
	s.la.t = s.la.lx.next()
	if t.s >= s.kindFrom {
		s.attrCheck(t)
		s.token(t)
		s.p6, s.p5, s.p4, s.p3, s.p2, s.p1 = s.p5, s.p4, s.p3, s.p2, s.p1, t
	}
	s.taken++
	return t
}

// at reports whether the next token is the keyword k.
func (s *scanner) at(k kw) bool { return isKw(s.peek(), k) }

// atKind reports whether the next token is of kind k.
func (s *scanner) atKind(k tokKind) bool { return s.peek().kind == k }

// accept consumes the next token if it is the keyword k.
func (s *scanner) accept(k kw) bool {
	if s.at(k) {
		s.take()
		return true
	}
	return false
}

// acceptKind consumes the next token if it is of kind k.
func (s *scanner) acceptKind(k tokKind) bool {
	if s.atKind(k) {
		s.take()
		return true
	}
	return false
}

// atOp reports whether the next token is the operator or punctuation op.
func (s *scanner) atOp(op string) bool {
	t := s.peek()
	return t.kind == tOther && s.lx.src[t.s:t.e] == op
}

// partial notes that the analysis may miss relations.
func (s *scanner) partial() { s.an.partial = true }

// enter starts a nested part; it reports false if the nesting is too deep.
func (s *scanner) enter() bool {
	if s.an.depth >= maxWalkDepth {
		return false
	}
	s.an.depth++
	return true
}

func (s *scanner) leave() { s.an.depth-- }

// closeParen consumes the ')' that ends the part being walked. If other
// tokens come first, the part has a shape the walker does not know: they
// are walked as expressions.
func (s *scanner) closeParen() {
	for !s.acceptKind(tRParen) {
		if s.ended() {
			s.partial()
			return
		}
		s.partial()
		s.skipExpr(inGroup)
	}
}

// skipParens consumes a parenthesized part without walking it.
func (s *scanner) skipParens() {
	s.partial()
	depth := 0
	for !s.ended() {
		switch s.take().kind {
		case tLParen:
			depth++
		case tRParen:
			depth--
		}
		if depth <= 0 {
			return
		}
	}
}

// skipExpr walks tokens as an expression, consuming at least one unless
// the next is ')'.
func (s *scanner) skipExpr(stops stopSet) {
	n := s.taken
	s.expr(stops)
	if s.taken == n && !s.atKind(tRParen) {
		s.take()
	}
}

// drain consumes the rest of a statement that can hold neither relations
// nor calls.
func (s *scanner) drain() {
	for !s.ended() {
		s.take()
	}
}

// skipRest walks whatever is left of the statement as expressions; if
// anything is left, the analysis is partial.
func (s *scanner) skipRest() {
	for !s.ended() {
		s.partial()
		if !s.acceptKind(tRParen) {
			s.skipExpr(0)
		}
	}
}

// walkStatement walks one statement, from its token first (the head code
// has read up to the statement's first word: the walker reads those
// tokens again, and the kind scanner does not).
func (s *scanner) walkStatement(first token) {
	s.kindFrom = int32(s.lx.pos)
	s.lx.pos = int(first.s) // first is '(' or a word: it starts at s, unlike a quoted token
	s.la.lx = s.lx
	s.la.t = s.la.lx.next()
	switch {
	case isQueryHead(first), first.kind == tLParen:
		s.preparable()
	default:
		s.utility()
	}
	s.skipRest()
	s.an.endStatement()
}

// isQueryHead reports whether t starts a query.
func isQueryHead(t token) bool {
	return isKw(t, kwSelect) || isKw(t, kwValues) || isKw(t, kwTable) || isKw(t, kwWith)
}

// startsQuery reports whether the tokens that follow, after any number of
// '(' (including one that is peeked), start a query.
func (s *scanner) startsQuery() bool {
	l := s.lx
	for {
		t := l.next()
		switch {
		case t.kind == tLParen:
			continue
		case isKw(t, kwValues):
			return l.next().kind == tLParen
		}
		return isQueryHead(t)
	}
}

// preparable walks [WITH ...] followed by a query or by INSERT, UPDATE,
// DELETE or MERGE.
func (s *scanner) preparable() {
	mark := len(s.an.ctes)
	if s.at(kwWith) {
		s.withClause()
	}
	switch {
	case s.at(kwInsert):
		s.insert()
	case s.at(kwUpdate):
		s.update()
	case s.at(kwDelete):
		s.delete()
	case s.at(kwMerge):
		s.merge()
	default:
		s.queryBody()
	}
	s.an.ctes = s.an.ctes[:mark]
}

// query walks a query: [WITH ...] select_clause [ORDER BY ...] [LIMIT ...]
// [FOR UPDATE ...]. It returns the SELECT a locking clause after it would
// lock (when it is one SELECT, maybe parenthesized), or -1.
func (s *scanner) query() int32 {
	a := s.an
	mark, ddl, groupBy := len(a.ctes), a.ddl, a.groupBy
	a.ddl, a.groupBy = false, false
	if s.at(kwWith) {
		s.withClause()
	}
	sel := s.queryBody()
	a.ctes, a.ddl, a.groupBy = a.ctes[:mark], ddl, groupBy
	return sel
}

func (s *scanner) queryBody() int32 {
	sel := s.selectClause()
	s.queryTail(sel)
	return sel
}

// withClause walks a WITH clause, putting its CTE names in scope.
func (s *scanner) withClause() {
	a := s.an
	s.take() // WITH
	rec := false
	if s.at(kwRecursive) {
		if u := s.peek2(); !isKw(u, kwAs) && u.kind != tLParen {
			s.take()
			rec = true
		}
	}
	mark, firstRel := len(a.ctes), len(a.rels)
	for {
		name := s.peek()
		if !isName(name) {
			s.partial()
			return
		}
		s.take()
		if rec {
			a.ctes = append(a.ctes, name) // visible in every body
		}
		if s.atKind(tLParen) {
			s.group(groupPlain) // column names
		}
		if !s.accept(kwAs) {
			s.partial()
			return
		}
		if s.accept(kwNot) && !s.at(kwMaterialized) {
			s.partial()
			return
		}
		s.accept(kwMaterialized)
		if !s.atKind(tLParen) {
			s.partial()
			return
		}
		if !s.enter() {
			s.skipParens()
		} else {
			s.take()
			s.preparable()
			s.closeParen()
			s.leave()
		}
		if !rec {
			a.ctes = append(a.ctes, name) // visible after its body
		}
		s.searchCycle()
		if !s.acceptKind(tComma) {
			break
		}
	}
	if rec && a.spend((len(a.rels)-firstRel)*(len(a.ctes)-mark)) {
		// Bodies of a recursive WITH may name CTEs that come later.
		for i := firstRel; i < len(a.rels); i++ {
			r := &a.rels[i]
			if r.cteOK && !r.cte && r.schema.kind == tEOF {
				for _, c := range a.ctes[mark:] {
					if identEqual(a.src, c, r.name) {
						r.cte = true
						break
					}
				}
			}
		}
	}
}

// searchCycle walks a CTE's SEARCH and CYCLE clauses (names and constants:
// nothing to record).
func (s *scanner) searchCycle() {
	if s.accept(kwSearch) {
		// {BREADTH | DEPTH} FIRST BY col, ... SET col
		for !s.ended() && !s.accept(kwSet) {
			s.take()
		}
		s.take()
	}
	if s.accept(kwCycle) {
		// col, ... SET col [TO value DEFAULT value] USING col
		for !s.ended() && !s.accept(kwUsing) {
			s.take()
		}
		s.take()
	}
}

// newSelect registers a SELECT and returns its id.
func (s *scanner) newSelect() int32 {
	a := s.an
	a.sels = append(a.sels, selInfo{parent: -1, firstRel: int32(len(a.rels))})
	return int32(len(a.sels) - 1)
}

// selectClause walks SELECTs, VALUES, TABLEs and parenthesized queries
// combined by UNION, INTERSECT and EXCEPT.
func (s *scanner) selectClause() int32 {
	sel := s.selectPrimary()
	for s.at(kwUnion) || s.at(kwIntersect) || s.at(kwExcept) {
		s.take()
		if !s.accept(kwAll) {
			s.accept(kwDistinct)
		}
		s.selectPrimary()
		sel = -1
	}
	return sel
}

func (s *scanner) selectPrimary() int32 {
	t := s.peek()
	switch {
	case isKw(t, kwSelect):
		return s.simpleSelect()
	case isKw(t, kwValues):
		s.take()
		s.expr(0)
		return -1
	case isKw(t, kwTable):
		s.take()
		sel := s.newSelect()
		s.accept(kwOnly)
		if q, ok := s.nameChain(); ok {
			r := s.relation(q, true, false, true, sel)
			s.an.items = append(s.an.items, fromItem{sel: sel, name: q.last(), kind: itemRelation, ref: r})
		} else {
			s.partial()
		}
		s.acceptOp("*")
		return sel
	case t.kind == tLParen:
		if !s.enter() {
			s.skipParens()
			return -1
		}
		s.take()
		sel := s.query()
		if !s.atKind(tRParen) {
			// ((SELECT 1) + 1): the parenthesis held an expression.
			s.expr(inGroup)
			sel = -1
		}
		s.closeParen()
		s.leave()
		return sel
	}
	s.partial()
	return -1
}

// acceptOp consumes the next token if it is the operator op.
func (s *scanner) acceptOp(op string) bool {
	if s.atOp(op) {
		s.take()
		return true
	}
	return false
}

// simpleSelect walks SELECT ... [INTO ...] [FROM ...] [WHERE ...]
// [GROUP BY ...] [HAVING ...] [WINDOW ...].
func (s *scanner) simpleSelect() int32 {
	s.take() // SELECT
	sel := s.newSelect()
	if s.accept(kwDistinct) {
		if s.accept(kwOn) {
			s.group(groupPlain)
		}
	} else {
		s.accept(kwAll)
	}
	s.expr(0)
	if s.at(kwInto) {
		s.intoClause()
		s.expr(0)
	}
	if s.accept(kwFrom) {
		s.fromList(sel)
	}
	for {
		switch {
		case s.at(kwWhere), s.at(kwHaving), s.at(kwWindow):
			s.take()
			s.expr(0)
		case s.at(kwGroup):
			s.take()
			s.accept(kwBy)
			s.an.groupBy = true
			s.expr(0)
			s.an.groupBy = false
		default:
			return sel
		}
	}
}

// intoClause walks SELECT's INTO [TEMP | UNLOGGED | ...] [TABLE] name.
func (s *scanner) intoClause() {
	s.take() // INTO
	temp := false
	if s.accept(kwLocal) || s.accept(kwGlobal) {
		temp = s.accept(kwTemp)
	} else if temp = s.accept(kwTemp); !temp {
		s.accept(kwUnlogged)
	}
	s.accept(kwTable)
	q, ok := s.nameChain()
	if !ok {
		s.partial()
		return
	}
	s.relation(q, false, true, false, -1)
	if temp || q.n >= 2 && isPgTemp(s.lx.src, q.part[q.n-2]) {
		s.an.temp = true
	}
}

// queryTail walks ORDER BY, LIMIT, OFFSET, FETCH and locking clauses, in
// any order, after the query whose lock target is sel.
func (s *scanner) queryTail(sel int32) {
	for {
		switch {
		case s.at(kwOrder), s.at(kwLimit), s.at(kwOffset), s.at(kwFetch):
			s.take()
			s.expr(0)
		case s.at(kwFor):
			s.locking(sel)
		default:
			return
		}
	}
}

// locking walks FOR {UPDATE | NO KEY UPDATE | SHARE | KEY SHARE} [OF name,
// ...] [NOWAIT | SKIP LOCKED], or FOR READ ONLY.
func (s *scanner) locking(sel int32) {
	s.take() // FOR
	switch {
	case s.accept(kwRead):
		s.accept(kwOnly)
		return
	case s.accept(kwUpdate), s.accept(kwShare):
	case s.accept(kwNo):
		if !s.accept(kwKey) || !s.accept(kwUpdate) {
			s.partial()
			return
		}
	case s.accept(kwKey):
		if !s.accept(kwShare) {
			s.partial()
			return
		}
	default:
		s.partial()
		return
	}
	s.an.locking = true
	if s.accept(kwOf) {
		for {
			q, ok := s.nameChain()
			if !ok {
				s.partial()
				return
			}
			s.lockOf(sel, q)
			if !s.acceptKind(tComma) {
				break
			}
		}
	} else if sel >= 0 && !s.an.sels[sel].locked {
		s.lockAll(sel, 0, int32(len(s.an.rels)))
		s.an.sels[sel].locked = true
	}
	if !s.accept(kwNowait) && s.accept(kwSkip) {
		s.accept(kwLocked)
	}
}

// lockAll marks written every relation in rels[from:to] that is in sel's
// FROM list or, through subqueries in FROM, below it.
func (s *scanner) lockAll(sel, from, to int32) {
	a := s.an
	from = max(from, a.sels[sel].firstRel)
	for i := from; i < to; i++ {
		for p := a.rels[i].sel; p >= 0; p = a.sels[p].parent {
			if p == sel {
				a.rels[i].write = true
				break
			}
		}
	}
}

// lockOf marks written what FOR UPDATE OF q names: the FROM item of sel
// of that name, or else the relation q itself.
func (s *scanner) lockOf(sel int32, q qname) {
	a := s.an
	if q.n == 1 && sel >= 0 && a.spend(len(a.items)) {
		for i := len(a.items) - 1; i >= 0; i-- {
			it := &a.items[i]
			if it.sel != sel || !identEqual(a.src, it.name, q.part[0]) {
				continue
			}
			switch it.kind {
			case itemRelation:
				a.rels[it.ref].write = true
			case itemSubquery:
				if it.ref >= 0 {
					s.lockAll(it.ref, 0, int32(len(a.rels)))
				}
			case itemJoin:
				s.lockAll(sel, it.from, it.to)
			}
			return
		}
	}
	s.relation(q, false, true, false, -1)
}

// qname is a possibly qualified name: up to four parts (a column's:
// db.schema.table.column).
type qname struct {
	part [4]token
	n    int
}

// last returns the last part.
func (q qname) last() token { return q.part[q.n-1] }

// nameChain consumes name [. name ...]. A name of more than four parts
// keeps its last four, and the analysis is partial.
func (s *scanner) nameChain() (q qname, ok bool) {
	t := s.peek()
	if !isName(t) {
		return q, false
	}
	s.take()
	q.part[0], q.n = t, 1
	for s.atKind(tDot) && isName(s.peek2()) {
		s.take()
		t = s.take()
		if q.n == len(q.part) {
			copy(q.part[:], q.part[1:])
			q.n--
			s.partial()
		}
		q.part[q.n] = t
		q.n++
	}
	return q, true
}

// relation records a mention of the relation q: read and/or written,
// whether it may name a CTE in scope, and the SELECT whose FROM list has
// it. It returns its index.
func (s *scanner) relation(q qname, read, write, cteOK bool, sel int32) int32 {
	a := s.an
	r := relRef{name: q.last(), read: read, write: write, cteOK: cteOK && q.n == 1, sel: sel}
	if q.n >= 2 {
		r.schema = q.part[q.n-2]
	}
	if q.n > 3 {
		s.partial() // PostgreSQL rejects the name
	}
	if r.cteOK && a.spend(len(a.ctes)) {
		for i := len(a.ctes) - 1; i >= 0; i-- {
			if identEqual(a.src, a.ctes[i], r.name) {
				r.cte = true
				break
			}
		}
	}
	if (r.name.kind == tUIdent || r.schema.kind == tUIdent) && !r.cte {
		if _, ok := a.table(&r); !ok {
			s.partial()
		}
	}
	a.rels = append(a.rels, r)
	return int32(len(a.rels) - 1)
}

// fromList walks a FROM list of sel (or UPDATE's FROM, DELETE's USING).
func (s *scanner) fromList(sel int32) {
	for {
		s.tableRef(sel)
		if t := s.peek(); !s.isEnd(t) && t.kind != tComma && t.kind != tRParen &&
			(t.kind != tIdent || t.kw.category() < catTypeFunc) {
			// Something the walker does not know: skip it, and go on with
			// the list, whose other items are still relations.
			s.partial()
			s.skipExpr(stopComma)
		}
		if !s.acceptKind(tComma) {
			return
		}
	}
}

// atJoin reports whether a join follows.
func (s *scanner) atJoin() bool {
	t := s.peek()
	if t.kind != tIdent {
		return false
	}
	switch t.kw {
	case kwJoin, kwNatural, kwCross, kwInner:
		return true
	case kwLeft, kwRight, kwFull:
		u := s.peek2()
		return isKw(u, kwJoin) || isKw(u, kwOuter)
	}
	return false
}

// tableRef walks a FROM item and the joins after it. An unparenthesized
// join may nest: a JOIN b JOIN c ON x ON y joins a with (b JOIN c ON x).
func (s *scanner) tableRef(sel int32) {
	s.fromItem(sel)
	s.joins(sel)
}

// joins walks the joins after a FROM item.
func (s *scanner) joins(sel int32) {
	quals := 0 // joins waiting for their ON or USING
	for {
		switch {
		case s.atJoin():
			natural := s.accept(kwNatural)
			cross := !natural && s.accept(kwCross)
			if !cross && !s.accept(kwInner) && (s.accept(kwLeft) || s.accept(kwRight) || s.accept(kwFull)) {
				s.accept(kwOuter)
			}
			if !s.accept(kwJoin) {
				s.partial()
				return
			}
			s.fromItem(sel)
			if !natural && !cross {
				quals++
			}
		case quals > 0 && s.accept(kwOn):
			s.expr(stopComma | stopJoin)
			quals--
		case quals > 0 && s.accept(kwUsing):
			s.group(groupPlain)
			if s.accept(kwAs) {
				s.take()
			}
			quals--
		default:
			if quals > 0 {
				s.partial()
			}
			return
		}
	}
}

// sqlValueFunction reports whether the keyword k, alone, is one of the SQL
// functions without parentheses (CURRENT_DATE, CURRENT_USER, ...).
func sqlValueFunction(k kw) bool {
	switch k {
	case kwCurrentDate, kwCurrentTime, kwCurrentTimestamp, kwLocaltime, kwLocaltimestamp,
		kwCurrentRole, kwCurrentUser, kwSessionUser, kwSystemUser, kwUser, kwCurrentCatalog,
		kwCurrentSchema:
		return true
	}
	return false
}

// fromItem walks one FROM item: a relation, a function, ROWS FROM, a
// subquery or a parenthesized join, with its alias.
func (s *scanner) fromItem(sel int32) {
	a := s.an
	s.accept(kwLateral)
	t := s.peek()
	switch {
	case t.kind == tLParen:
		if !s.enter() {
			s.skipParens()
			return
		}
		s.take()
		from := int32(len(a.rels))
		if s.startsQuery() {
			sub := s.query()
			if sub >= 0 {
				a.sels[sub].parent = sel
			}
			if s.acceptKind(tRParen) { // (query) [alias]
				s.leave()
				s.fromAlias(fromItem{sel: sel, kind: itemSubquery, ref: sub})
				return
			}
			// ((query) alias JOIN ...): the query is a parenthesized
			// join's first item.
			s.fromAlias(fromItem{sel: sel, kind: itemSubquery, ref: sub})
			s.joins(sel)
		} else {
			s.tableRef(sel)
		}
		s.closeParen()
		s.leave()
		s.fromAlias(fromItem{sel: sel, kind: itemJoin, from: from, to: int32(len(a.rels))})
	case isKw(t, kwRows) && isKw(s.peek2(), kwFrom):
		s.take()
		s.take()
		s.group(groupPlain)
		s.ordinality()
		s.fromAlias(fromItem{sel: sel, kind: itemOther})
	case isKw(t, kwOnly):
		s.take()
		paren := s.acceptKind(tLParen)
		q, ok := s.nameChain()
		if !ok {
			s.partial()
			return
		}
		r := s.relation(q, true, false, true, sel)
		if paren {
			s.closeParen()
		}
		s.acceptOp("*")
		s.fromAlias(fromItem{sel: sel, kind: itemRelation, ref: r, name: q.last()})
		s.tablesample()
	case t.kind == tIdent && t.kw.category() >= catTypeFunc && !s.at2(tLParen):
		// CURRENT_DATE and the like are functions; other reserved words
		// name nothing.
		if !sqlValueFunction(t.kw) {
			s.partial()
			return
		}
		s.take()
		if t.kw == kwSystemUser {
			s.fixedCall("system_user")
		}
		s.ordinality()
		s.fromAlias(fromItem{sel: sel, kind: itemOther, name: t})
	case isName(t):
		q, _ := s.nameChain()
		if s.atKind(tLParen) {
			s.group(groupAuto) // a function
			s.ordinality()
			s.fromAlias(fromItem{sel: sel, kind: itemOther, name: q.last()})
			return
		}
		r := s.relation(q, true, false, true, sel)
		s.acceptOp("*")
		s.fromAlias(fromItem{sel: sel, kind: itemRelation, ref: r, name: q.last()})
		s.tablesample()
	default:
		s.partial()
	}
}

// at2 reports whether the token after the next is of kind k.
func (s *scanner) at2(k tokKind) bool { return s.peek2().kind == k }

// ordinality walks WITH ORDINALITY.
func (s *scanner) ordinality() {
	if s.at(kwWith) && isKw(s.peek2(), kwOrdinality) {
		s.take()
		s.take()
	}
}

// fromAlias walks the alias of the FROM item it ([AS] name [(columns)], or
// AS (column definitions)) and records the item under its alias, or under
// it.name if it has none.
func (s *scanner) fromAlias(it fromItem) {
	if alias, ok := s.alias(kwNone); ok {
		it.name = alias
	}
	if it.name.kind != tEOF {
		s.an.items = append(s.an.items, it)
	}
}

// alias walks [AS] name [(columns)] or AS (columns). A bare alias cannot
// be a reserved word, nor the keyword except (SET after UPDATE's target).
func (s *scanner) alias(except kw) (name token, ok bool) {
	t := s.peek()
	switch {
	case isKw(t, kwAs):
		s.take()
		t = s.peek()
		if t.kind == tLParen {
			s.group(groupPlain)
			return token{}, false
		}
		if !isName(t) {
			s.partial()
			return token{}, false
		}
	case t.kind == tQIdent || t.kind == tUIdent:
	case t.kind == tIdent && t.kw.category() <= catColName && (t.kw != except || except == kwNone):
	default:
		return token{}, false
	}
	s.take()
	if s.atKind(tLParen) {
		s.group(groupPlain)
	}
	return t, true
}

// tablesample walks TABLESAMPLE method (args) [REPEATABLE (seed)].
func (s *scanner) tablesample() {
	if !s.accept(kwTablesample) {
		return
	}
	s.nameChain()
	s.group(groupPlain)
	if s.accept(kwRepeatable) {
		s.group(groupPlain)
		return
	}
	s.an.sampled = true
}

// target walks the target of INSERT, UPDATE, DELETE or MERGE: [ONLY] name
// [*], written.
func (s *scanner) target() bool {
	only := s.accept(kwOnly)
	q, ok := s.nameChain()
	if !ok || q.part[0].kind == tIdent && q.part[0].kw.category() >= catTypeFunc && q.n == 1 {
		s.partial()
		return false
	}
	s.relation(q, false, true, false, -1)
	if !only {
		s.acceptOp("*")
	}
	return true
}

// insert walks INSERT INTO name [AS alias] [(columns)] [OVERRIDING ...
// VALUE] {DEFAULT VALUES | query} [ON CONFLICT ...] [RETURNING ...].
func (s *scanner) insert() {
	s.take() // INSERT
	if !s.accept(kwInto) || !s.target() {
		s.partial()
		return
	}
	if s.accept(kwAs) {
		s.take()
	}
	if s.atKind(tLParen) && !s.startsQuery() {
		s.group(groupPlain)
	}
	if s.accept(kwOverriding) {
		s.take() // SYSTEM or USER
		s.accept(kwValue)
	}
	if s.accept(kwDefault) {
		s.accept(kwValues)
	} else if s.startsQueryHere() {
		s.query()
	} else {
		s.partial()
	}
	if s.accept(kwOn) {
		// ON CONFLICT [(index elements) [WHERE ...] | ON CONSTRAINT name]
		// DO {NOTHING | UPDATE SET ... [WHERE ...]}: no relations.
		s.accept(kwConflict)
		for !s.ended() && !s.at(kwReturning) && !s.atKind(tRParen) {
			s.skipExpr(0)
		}
	}
	s.returning()
}

// startsQueryHere reports whether a query starts at the next token.
func (s *scanner) startsQueryHere() bool {
	t := s.peek()
	return isQueryHead(t) || t.kind == tLParen && s.startsQuery()
}

// returning walks RETURNING ....
func (s *scanner) returning() {
	if s.accept(kwReturning) {
		s.expr(0)
	}
}

// update walks UPDATE [ONLY] name [*] [[AS] alias] SET ... [FROM ...]
// [WHERE ...] [RETURNING ...].
func (s *scanner) update() {
	s.take() // UPDATE
	if !s.target() {
		return
	}
	s.alias(kwSet)
	if !s.accept(kwSet) {
		s.partial()
		return
	}
	s.expr(0)
	if s.accept(kwFrom) {
		s.fromList(s.newSelect())
	}
	s.where()
	s.returning()
}

// where walks WHERE condition or WHERE CURRENT OF cursor.
func (s *scanner) where() {
	if s.accept(kwWhere) {
		s.expr(0)
	}
}

// delete walks DELETE FROM [ONLY] name [*] [[AS] alias] [USING ...]
// [WHERE ...] [RETURNING ...].
func (s *scanner) delete() {
	s.take() // DELETE
	if !s.accept(kwFrom) || !s.target() {
		s.partial()
		return
	}
	s.alias(kwNone)
	if s.accept(kwUsing) {
		s.fromList(s.newSelect())
	}
	s.where()
	s.returning()
}

// merge walks MERGE INTO [ONLY] name [*] [[AS] alias] USING item ON
// condition WHEN ... [RETURNING ...].
func (s *scanner) merge() {
	s.take() // MERGE
	if !s.accept(kwInto) || !s.target() {
		s.partial()
		return
	}
	s.alias(kwNone)
	if !s.accept(kwUsing) {
		s.partial()
		return
	}
	s.tableRef(s.newSelect())
	if !s.accept(kwOn) {
		s.partial()
		return
	}
	s.expr(stopWhen)
	// WHEN [NOT] MATCHED [BY SOURCE | BY TARGET] [AND condition] THEN
	// {UPDATE SET ... | DELETE | INSERT [(columns)] [OVERRIDING ...]
	// {VALUES (...) | DEFAULT VALUES} | DO NOTHING}: no relations.
	for s.accept(kwWhen) {
		for !s.ended() && !s.at(kwThen) && !s.atKind(tRParen) {
			s.skipExpr(stopWhen)
		}
		s.accept(kwThen)
		switch {
		case s.accept(kwInsert):
			if s.atKind(tLParen) {
				s.group(groupPlain)
			}
		case s.accept(kwDo):
			s.accept(kwNothing)
		}
		s.expr(stopWhen)
	}
	s.returning()
}
