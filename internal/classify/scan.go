package classify

import "strings"

// rank orders kinds by how much they restrict routing: the kind of several
// findings is the one with the highest rank.
func rank(k Kind) int {
	switch k {
	case Read:
		return 0
	case Write:
		return 2
	case Session:
		return 3
	}
	return 1 // Unknown, or out of range
}

// worse returns whichever of a and b restricts routing more.
func worse(a, b Kind) Kind {
	if rank(b) > rank(a) {
		return b
	}
	return a
}

// frameKind says what a parenthesis level is.
type frameKind uint8

const (
	fTop    frameKind = iota // the statement itself
	fParen                   // any other parenthesis
	fSubstr                  // SUBSTRING( / OVERLAY( arguments: FOR separates arguments
	fCols                    // a CTE's column names
	fBody                    // a CTE's body: a statement
	fTreat                   // TREAT( arguments: TREAT(x AS f) calls f(x)
)

// withState is the progress through a WITH clause at one parenthesis level:
//
//	WITH [RECURSIVE] name [(cols)] AS [[NOT] MATERIALIZED] (body)
//	     [SEARCH {BREADTH|DEPTH} FIRST BY col, ... SET col]
//	     [CYCLE col, ... SET col [TO const DEFAULT const] USING col]
//	     [, ...]
//	main-statement
type withState uint8

const (
	wNone withState = iota
	wName
	wAfterName
	wColsOpen
	wAfterCols
	wAfterAs
	wAfterNot
	wAfterMat
	wBodyOpen
	wAfterBody
	wSearchKind
	wSearchFirst
	wSearchBy
	wSearchCol
	wSearchColSep
	wSearchSet
	wAfterSearch
	wCycleCol
	wCycleColSep
	wCycleSet
	wCycleAfterSet
	wCycleTo
	wCycleDefault
	wUsingCol
	wAfterCycle
)

// frame is one parenthesis level.
type frame struct {
	kind  frameKind
	with  withState
	first bool // no token seen yet at this level
	rec   bool // just after WITH: RECURSIVE may follow
	as    bool // TREAT(x AS: the type names that follow are function names
	query bool // SELECT or TABLE seen at this level: FROM starts a FROM clause
}

// scanner classifies the statements of one SQL text, token by token.
type scanner struct {
	lx     lexer
	fn     *funcTable
	frames [32]frame // the parenthesis levels, outermost first
	deep   []frame   // levels beyond len(frames), rarely needed
	depth  int       // number of levels

	kind       Kind // what the current statement does so far
	readHead   bool // the statement is SELECT, VALUES, TABLE or WITH (maybe under EXPLAIN)
	createHead bool // the statement is CREATE ...
	broken     bool // the statement does not have the shape we expect
	atomic     bool // inside CREATE FUNCTION ... BEGIN ATOMIC ... END: ';' does not end the statement
	cases      int  // CASE ... END nesting inside a BEGIN ATOMIC body
	lexErr     bool // the text does not lex: the server rejects all of it
	anyBroken  bool // some statement did not have the shape we expect
	copyQuery  bool // the statement is COPY (query) TO STDOUT

	p1, p2, p3, p4, p5 token // the previous five tokens, p1 most recent

	// For Analyze only (an is nil for Classify): the walker's state.
	an       *analysis
	la       lookahead // the next token
	kindFrom int32     // tokens starting before it were read by the head code
	p6       token     // the token before p5
	taken    int       // tokens the walker has consumed
}

// classifyText classifies every statement of src and combines the results.
// It returns whether an ordinary string contained a backslash and whether
// the text failed to lex or had a statement of a shape it does not know.
// With an analysis, it also walks each statement into it.
func classifyText(src string, fn *funcTable, scsOff bool, an *analysis) (k Kind, backslash, bad bool) {
	s := scanner{lx: lexer{src: src, scsOff: scsOff}, fn: fn, an: an}
	k = Read
	any := false
	for {
		sk, empty, done := s.statement()
		if !empty {
			any = true
			k = worse(k, sk)
			if an != nil {
				an.statements++
			}
		}
		if done {
			break
		}
	}
	if !any || s.lexErr {
		k = worse(k, Unknown)
	}
	return k, s.lx.backslash, s.lexErr || s.anyBroken
}

// maxLen bounds the text classify reads (token offsets are int32).
const maxLen = 1 << 30

// classify is the uncached classifier.
func classify(src string, fn *funcTable) Kind {
	if strings.IndexByte(src, 0) >= 0 || len(src) > maxLen {
		// The wire protocol cannot carry a NUL inside a query (nor more
		// than 1 GB).
		return Unknown
	}
	k, backslash, _ := classifyText(src, fn, false, nil)
	if k == Read && backslash {
		// 'a\' means something else if standard_conforming_strings is off.
		// Such a server must not see a write either. (If the other reading
		// does not lex, or is not made of statements we recognize, such a
		// server rejects the text: that is no reason to leave the replica.)
		if k2, _, bad := classifyText(src, fn, true, nil); !bad && (k2 == Write || k2 == Session) {
			return k2
		}
	}
	return k
}

// analyze is the uncached Analyze: classify, walking every statement.
func analyze(src string, fn *funcTable) *Statement {
	if strings.IndexByte(src, 0) >= 0 || len(src) > maxLen {
		return &Statement{Kind: Unknown, Partial: true}
	}
	an := newAnalysis(src)
	defer an.release()
	k, backslash, _ := classifyText(src, fn, false, an)
	if k == Read && backslash {
		// As classify does; what the other reading finds is added, and the
		// analysis is partial: the text means two things.
		an2 := newAnalysis(src)
		defer an2.release()
		if k2, _, bad := classifyText(src, fn, true, an2); !bad && (k2 == Write || k2 == Session) {
			k = k2
			an.merge(an2)
		}
	}
	return an.statement(k, an.statements)
}

func (s *scanner) push(kind frameKind, first bool) {
	f := frame{kind: kind, first: first}
	if s.depth < len(s.frames) {
		s.frames[s.depth] = f
	} else {
		s.deep = append(s.deep, f)
	}
	s.depth++
}

func (s *scanner) pop() {
	s.depth--
	if s.depth >= len(s.frames) {
		s.deep = s.deep[:len(s.deep)-1]
	}
}

func (s *scanner) top() *frame {
	if s.depth <= len(s.frames) {
		return &s.frames[s.depth-1]
	}
	return &s.deep[s.depth-1-len(s.frames)]
}

func (s *scanner) mark(k Kind) { s.kind = worse(s.kind, k) }

func isName(t token) bool { return t.kind == tIdent || t.kind == tQIdent || t.kind == tUIdent }

func isKw(t token, k kw) bool { return t.kind == tIdent && t.kw == k }

// statement classifies one statement, up to and including its ';'. empty
// reports a statement with no tokens; done reports the end of the text.
func (s *scanner) statement() (k Kind, empty, done bool) {
	s.depth, s.deep = 0, s.deep[:0]
	s.push(fTop, false)
	s.kind = Read
	s.readHead, s.createHead, s.broken, s.atomic, s.copyQuery = false, false, false, false, false
	s.p1, s.p2, s.p3, s.p4, s.p5 = token{}, token{}, token{}, token{}, token{}

	t := s.lx.next()
	switch t.kind {
	case tSemi:
		return Unknown, true, false
	case tEOF:
		return Unknown, true, true
	}

	explain, analyze := false, false
	var first token // where the walker starts: after EXPLAIN and its options
head:
	first = t
	for t.kind == tLParen {
		s.push(fParen, false)
		t = s.lx.next()
	}
	nested := s.depth > 1
	switch {
	case isKw(t, kwSelect), isKw(t, kwValues), isKw(t, kwTable):
		s.readHead = true
		s.top().query = true
	case isKw(t, kwWith):
		s.readHead = true
		f := s.top()
		f.with, f.rec = wName, true
	case nested || t.kind == tError:
		s.broken = true
	case isKw(t, kwShow):
	case isKw(t, kwExplain) && !explain:
		explain = true
		analyze, t = s.explain()
		if !s.broken {
			goto head
		}
	default:
		s.kind = s.headKind(t)
	}
	if t.kind != tEOF && t.kind != tSemi && t.kind != tError {
		s.p1 = t // the head is consumed
		if s.an != nil && (first.kind == tIdent || first.kind == tLParen) {
			// The walker reads the statement again from its first token,
			// which starts at first.s (the kind scanner skips what the
			// head code has read); t becomes the statement's end.
			s.walkStatement(first)
			t = s.peek()
			s.lx = s.la.lx
		} else {
			if s.an != nil {
				s.an.partial = true // no statement starts so
				s.an.endStatement()
			}
			t = s.lx.next()
		}
	}

	for {
		if t.kind == tEOF || t.kind == tSemi && !s.atomic || t.kind == tError {
			if t.kind == tError {
				s.lexErr = true
			}
			s.attrCheck(t)
			if s.depth != 1 || s.frames[0].with != wNone {
				s.broken = true
			}
			k = s.kind
			if s.broken {
				s.anyBroken = true
				k = worse(k, Unknown)
			}
			if explain && analyze {
				k = worse(k, Write)
			}
			return k, false, t.kind != tSemi
		}
		s.attrCheck(t)
		s.token(t)
		s.p5, s.p4, s.p3, s.p2, s.p1 = s.p4, s.p3, s.p2, s.p1, t
		t = s.lx.next()
	}
}

// headKind classifies a statement that is not a query by its first word.
func (s *scanner) headKind(t token) Kind {
	if t.kind != tIdent {
		return Unknown
	}
	switch t.kw {
	case kwSet, kwReset, kwListen, kwUnlisten, kwPrepare, kwDeallocate, kwExecute,
		kwDeclare, kwFetch, kwClose, kwMove, kwDiscard, kwLoad, kwBegin, kwStart,
		kwCommit, kwEnd, kwRollback, kwAbort, kwSavepoint, kwRelease:
		return Session
	case kwCreate:
		s.createHead = true
		// CREATE [OR REPLACE] [LOCAL|GLOBAL] {TEMP|TEMPORARY} ...
		la := s.lx
		u := la.next()
		if isKw(u, kwOr) {
			la.next() // REPLACE
			u = la.next()
		}
		if isKw(u, kwLocal) || isKw(u, kwGlobal) {
			u = la.next()
		}
		if isKw(u, kwTemp) {
			s.markTemp()
			return Session
		}
		return Write
	case kwCopy:
		return s.copyKind()
	case kwInsert, kwUpdate, kwDelete, kwMerge, kwAlter, kwDrop, kwTruncate,
		kwGrant, kwRevoke, kwVacuum, kwAnalyze, kwCall, kwDo, kwLock, kwRefresh,
		kwCluster, kwReindex, kwComment, kwSecurity, kwImport, kwNotify, kwCheckpoint,
		kwReassign:
		return Write
	}
	return Unknown
}

// explain consumes EXPLAIN's options after the EXPLAIN keyword. It reports
// whether the statement is executed (ANALYZE) and returns the first token of
// the explained statement.
func (s *scanner) explain() (analyze bool, t token) {
	t = s.lx.next()
	for isKw(t, kwAnalyze) || isKw(t, kwVerbose) {
		if t.kw == kwAnalyze {
			analyze = true
		}
		t = s.lx.next()
	}
	if t.kind != tLParen {
		return analyze, t
	}
	// EXPLAIN (SELECT ...) or EXPLAIN (option [value], ...) ...?
	la := s.lx
	u := la.next()
	if u.kind == tLParen || isKw(u, kwSelect) || isKw(u, kwTable) || isKw(u, kwWith) ||
		isKw(u, kwValues) && la.next().kind == tLParen {
		return analyze, t
	}
	for {
		name := s.lx.next()
		if name.kind == tRParen {
			break
		}
		isAnalyze := isKw(name, kwAnalyze) ||
			name.kind == tQIdent && s.lx.text(name) == "analyze"
		var v [2]token
		nv := 0
		for {
			u = s.lx.next()
			if u.kind == tComma || u.kind == tRParen {
				break
			}
			if u.kind == tEOF || u.kind == tSemi || u.kind == tError || u.kind == tLParen {
				s.broken = true
				return analyze, u
			}
			if nv < len(v) {
				v[nv] = u
			}
			nv++
		}
		if isAnalyze && !s.falseValue(v[:min(nv, len(v))], nv) {
			analyze = true
		}
		if u.kind == tRParen {
			break
		}
	}
	return analyze, s.lx.next()
}

// falseValue reports whether an EXPLAIN option value is one that PostgreSQL's
// defGetBoolean reads as false: 0, false or off (in any case, as a word, a
// quoted identifier or a string).
func (s *scanner) falseValue(v []token, n int) bool {
	if n == 1 {
		t := v[0]
		switch t.kind {
		case tIdent:
			return t.kw == kwFalse || t.kw == kwOff
		case tQIdent, tString:
			if t.flags&fPlain == 0 {
				return false
			}
			txt := s.lx.text(t)
			return foldEq(txt, "false") || foldEq(txt, "off")
		case tNumber:
			return allZeros(s.lx.text(t))
		}
		return false
	}
	if n == 2 && v[0].kind == tOther && v[1].kind == tNumber {
		op := s.lx.text(v[0])
		return (op == "-" || op == "+") && allZeros(s.lx.text(v[1]))
	}
	return false
}

// foldEq reports whether s equals the lower-case ASCII word w, ignoring
// ASCII case only (as PostgreSQL's pg_strcasecmp and identifier folding do).
func foldEq(s, w string) bool {
	if len(s) != len(w) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != w[i] {
			return false
		}
	}
	return true
}

func allZeros(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '0' {
			return false
		}
	}
	return true
}

// token processes one token after the statement's first.
func (s *scanner) token(t token) {
	f := s.top()
	if f.first {
		f.first = false
		if isKw(t, kwWith) {
			f.with, f.rec = wName, true
			return
		}
		if f.kind == fBody {
			switch {
			case isKw(t, kwSelect), isKw(t, kwValues), isKw(t, kwTable), t.kind == tLParen:
			case isKw(t, kwInsert), isKw(t, kwUpdate), isKw(t, kwDelete), isKw(t, kwMerge):
				s.mark(Write) // data-modifying CTE
				return
			default:
				s.broken = true
			}
		}
	}
	if f.with != wNone && s.with(f, t) {
		return
	}
	switch t.kind {
	case tLParen:
		kind := fParen
		if s.copyQuery && s.depth == 1 && isKw(s.p1, kwCopy) {
			kind = fBody // COPY (query): a statement
		} else if (isKw(s.p1, kwSubstring) || isKw(s.p1, kwOverlay)) && s.p2.kind != tDot {
			kind = fSubstr
		} else if isKw(s.p1, kwTreat) && s.p2.kind != tDot {
			kind = fTreat
		}
		if isName(s.p1) && !isKw(s.p2, kwAs) {
			hasSchema := s.p2.kind == tDot && isName(s.p3)
			s.mark(s.fn.callKind(s.lx.src, s.p1, s.p3, hasSchema))
		}
		s.push(kind, true)
	case tRParen:
		if s.depth == 1 {
			s.broken = true
			return
		}
		if f.with != wNone {
			s.broken = true // WITH without its main statement
		}
		s.pop()
		switch p := s.top(); p.with {
		case wColsOpen:
			p.with = wAfterCols
		case wBodyOpen:
			p.with = wAfterBody
		}
	case tIdent, tQIdent, tUIdent:
		if f.kind == fTreat && f.as {
			// TREAT(x AS [schema.]name) runs pg_catalog.name(x).
			s.mark(s.fn.callKind(s.lx.src, t, token{kind: tEOF}, true))
		}
		if t.kind != tIdent {
			break
		}
		switch t.kw {
		case kwSelect, kwTable:
			f.query = true
		case kwAs:
			if f.kind == fTreat {
				f.as = true
			}
		case kwAtomic:
			if s.createHead && isKw(s.p1, kwBegin) {
				s.atomic, s.cases = true, 0 // SQL-standard function body
			}
		case kwCase:
			s.cases++
		case kwEnd:
			if s.cases > 0 {
				s.cases--
			} else {
				s.atomic = false
			}
		case kwUpdate, kwShare, kwNo, kwKey:
			// FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE;
			// but SUBSTRING(x FOR update) names a column "update".
			if isKw(s.p1, kwFor) && f.kind != fSubstr {
				s.mark(Write)
				if s.an != nil {
					s.an.kindLock = true
				}
			}
		case kwInto:
			if s.readHead {
				s.into()
			}
		}
	case tDot:
		if s.createHead && isPgTemp(s.lx.src, s.p1) {
			s.mark(Session) // CREATE ... pg_temp.x: a temporary object
			s.markTemp()
		}
	}
}

// markTemp notes, for Analyze, that the statement creates a temporary
// object.
func (s *scanner) markTemp() {
	if s.an != nil {
		s.an.temp = true
	}
}

// copyKind is the kind of COPY: Read for COPY table [(columns)] TO STDOUT
// and COPY (query) TO STDOUT, which run on a standby (the query's own kind
// still counts: its frame is a statement body); Write for every other COPY.
func (s *scanner) copyKind() Kind {
	la := s.lx
	u := la.next()
	if u.kind == tLParen {
		for depth := 1; depth > 0; {
			switch u = la.next(); u.kind {
			case tLParen:
				depth++
			case tRParen:
				depth--
			case tEOF, tError, tSemi:
				return Write
			}
		}
		s.copyQuery = true
	} else {
		if isKw(u, kwBinary) {
			u = la.next()
		}
		for {
			if !isName(u) {
				return Write
			}
			if u = la.next(); u.kind != tDot {
				break
			}
			u = la.next()
		}
		if u.kind == tLParen {
			for depth := 1; depth > 0; {
				switch u = la.next(); u.kind {
				case tLParen:
					depth++
				case tRParen:
					depth--
				case tEOF, tError, tSemi:
					return Write
				}
			}
		}
	}
	if u.kind == tRParen {
		u = la.next()
	}
	if !isKw(u, kwTo) {
		s.copyQuery = false
		return Write
	}
	if u = la.next(); !isKw(u, kwStdout) && !isKw(u, kwStdin) {
		s.copyQuery = false
		return Write
	}
	s.readHead = s.copyQuery // SELECT ... INTO inside is a write
	return Read
}

// isPgTemp reports whether t names the pg_temp schema.
func isPgTemp(src string, t token) bool {
	switch t.kind {
	case tIdent:
		return foldEq(src[t.s:t.e], "pg_temp")
	case tQIdent:
		return src[t.s:t.e] == "pg_temp"
	}
	return false
}

// into handles INTO in a query: SELECT ... INTO creates a table.
func (s *scanner) into() {
	if isKw(s.p1, kwInsert) || isKw(s.p1, kwMerge) {
		s.mark(Write)
		return
	}
	// INTO [[LOCAL|GLOBAL] {TEMP|TEMPORARY}|UNLOGGED] [TABLE] name
	la := s.lx
	u := la.next()
	if isKw(u, kwLocal) || isKw(u, kwGlobal) {
		u = la.next()
	}
	if isKw(u, kwTemp) {
		s.mark(Session)
		s.markTemp()
		return
	}
	if isKw(u, kwUnlogged) {
		u = la.next()
	}
	if isKw(u, kwTable) {
		u = la.next()
	}
	if isPgTemp(s.lx.src, u) && la.next().kind == tDot {
		s.mark(Session)
		s.markTemp()
		return
	}
	s.mark(Write)
}

// attrCheck handles attribute notation: x.f is f(x) when f takes x's row
// type, so a listed user function used as t.f is a call. (But FROM s.f,
// JOIN s.f, ONLY s.f and TABLE s.f name relations.)
func (s *scanner) attrCheck(t token) {
	if t.kind == tLParen || s.p2.kind != tDot || !isName(s.p1) ||
		!s.fn.userMatch(s.lx.src, s.p1, token{}, false) {
		return
	}
	if s.p4.kind == tIdent {
		switch s.p4.kw {
		case kwJoin, kwOnly, kwTable:
			return
		case kwFrom:
			// A FROM clause, not x IS DISTINCT FROM t.f, nor
			// EXTRACT(y FROM t.f) and the like.
			if f := s.top(); (f.kind == fTop || f.query) && !isKw(s.p5, kwDistinct) {
				return
			}
		}
	}
	s.mark(Write)
}

// with advances f's WITH clause by the token t at f's level. It returns true
// if it consumed t.
func (s *scanner) with(f *frame, t token) bool {
	switch f.with {
	case wName:
		if f.rec {
			f.rec = false
			if isKw(t, kwRecursive) {
				la := s.lx
				if u := la.next(); !isKw(u, kwAs) && u.kind != tLParen {
					return true
				}
			}
		}
		if isName(t) {
			f.with = wAfterName
			return true
		}
	case wAfterName:
		if t.kind == tLParen {
			f.with = wColsOpen
			s.push(fCols, false) // f is invalid from here on
			return true
		}
		if isKw(t, kwAs) {
			f.with = wAfterAs
			return true
		}
	case wAfterCols:
		if isKw(t, kwAs) {
			f.with = wAfterAs
			return true
		}
	case wAfterAs, wAfterMat:
		if t.kind == tLParen {
			f.with = wBodyOpen
			s.push(fBody, true)
			return true
		}
		if f.with == wAfterAs && isKw(t, kwNot) {
			f.with = wAfterNot
			return true
		}
		if isKw(t, kwMaterialized) {
			f.with = wAfterMat
			return true
		}
	case wAfterNot:
		if isKw(t, kwMaterialized) {
			f.with = wAfterMat
			return true
		}
	case wAfterBody, wAfterSearch, wAfterCycle:
		switch {
		case t.kind == tComma:
			f.with = wName
			return true
		case isKw(t, kwSearch) && f.with == wAfterBody:
			f.with = wSearchKind
			return true
		case isKw(t, kwCycle) && f.with != wAfterCycle:
			f.with = wCycleCol
			return true
		}
		// The main statement.
		f.with = wNone
		switch {
		case isKw(t, kwSelect), isKw(t, kwValues), isKw(t, kwTable):
			f.query = true
			return true
		case t.kind == tLParen:
			return false
		case isKw(t, kwInsert), isKw(t, kwUpdate), isKw(t, kwDelete), isKw(t, kwMerge):
			s.mark(Write)
			return true
		}
		s.broken = true
		return false
	case wSearchKind:
		if isKw(t, kwBreadth) || isKw(t, kwDepth) {
			f.with = wSearchFirst
			return true
		}
	case wSearchFirst:
		if isKw(t, kwFirst) {
			f.with = wSearchBy
			return true
		}
	case wSearchBy:
		if isKw(t, kwBy) {
			f.with = wSearchCol
			return true
		}
	case wSearchCol, wCycleCol:
		if isName(t) {
			f.with++ // wSearchColSep, wCycleColSep
			return true
		}
	case wSearchColSep, wCycleColSep:
		if t.kind == tComma {
			f.with-- // wSearchCol, wCycleCol
			return true
		}
		if isKw(t, kwSet) {
			f.with++ // wSearchSet, wCycleSet
			return true
		}
	case wSearchSet:
		if isName(t) {
			f.with = wAfterSearch
			return true
		}
	case wCycleSet:
		if isName(t) {
			f.with = wCycleAfterSet
			return true
		}
	case wCycleAfterSet:
		if isKw(t, kwUsing) {
			f.with = wUsingCol
			return true
		}
		if isKw(t, kwTo) {
			f.with = wCycleTo
			return true
		}
	case wCycleTo, wCycleDefault:
		// Skip the constant; parentheses (typmods) nest as usual.
		switch {
		case t.kind == tLParen || t.kind == tRParen:
			return false
		case f.with == wCycleTo && isKw(t, kwDefault):
			f.with = wCycleDefault
		case f.with == wCycleDefault && isKw(t, kwUsing):
			f.with = wUsingCol
		}
		return true
	case wUsingCol:
		if isName(t) {
			f.with = wAfterCycle
			return true
		}
	}
	// Not the WITH clause we know: give up on this statement.
	f.with = wNone
	s.broken = true
	return false
}
