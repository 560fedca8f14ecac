package classify

// stopSet says where an expression ends, besides ')' and the end of the
// statement.
type stopSet uint8

const (
	stopComma stopSet = 1 << iota // at ',' (outside brackets)
	stopJoin                      // at JOIN, CROSS, NATURAL, INNER, LEFT/RIGHT/FULL [OUTER] JOIN
	stopWhen                      // at WHEN and THEN outside CASE (MERGE)
	stopAs                        // at AS (CAST, TREAT)
	stopDDL                       // at ATTACH, DETACH, INHERIT, INHERITS, CASCADE, ON COMMIT
	// inGroup: the expression is inside parentheses, where clause keywords
	// (FROM, WHERE, ORDER, ...) are part of it (SUBSTRING(x FROM 1),
	// agg(x ORDER BY y), FILTER (WHERE ...)). Without it they end it.
	inGroup
)

// Keywords an expression reports having seen at its own level.
const (
	seenFrom uint16 = 1 << iota
	seenFor
	seenPlacing
	seenSimilar
	seenJSON // VALUE, ':', NULL ON NULL, ABSENT, WITH UNIQUE, RETURNING: JSON_OBJECT's syntax
)

// stopsAt reports whether the expression being walked ends before t.
func (s *scanner) stopsAt(t token, stops stopSet, cases int) bool {
	switch t.kind {
	case tComma:
		return stops&stopComma != 0
	case tIdent:
		if s.p1.kind == tDot {
			return false // x.from: a field's name, any word
		}
	default:
		return false
	}
	switch t.kw {
	case kwAs:
		return stops&stopAs != 0
	case kwWhen, kwThen:
		return stops&stopWhen != 0 && cases == 0
	case kwJoin, kwNatural, kwCross, kwInner, kwLeft, kwRight, kwFull:
		return stops&stopJoin != 0 && s.atJoin()
	case kwAttach, kwDetach, kwInherit, kwInherits, kwCascade:
		return stops&stopDDL != 0
	}
	if stops&stopDDL != 0 && t.kw == kwOn && isKw(s.peek2(), kwCommit) {
		return true
	}
	if stops&inGroup != 0 {
		return false
	}
	switch t.kw {
	case kwFrom:
		return !isKw(s.p1, kwDistinct) // IS DISTINCT FROM
	case kwFor:
		return !isKw(s.p1, kwCollation) // COLLATION FOR (x)
	case kwGroup:
		return !isKw(s.p1, kwWithin) // WITHIN GROUP (ORDER BY x)
	case kwWith:
		u := s.peek2() // timestamp WITH TIME ZONE; FETCH ... WITH TIES
		return !isKw(u, kwTime) && !isKw(u, kwTies)
	case kwInto, kwWhere, kwHaving, kwWindow, kwOrder, kwLimit, kwOffset, kwFetch,
		kwUnion, kwIntersect, kwExcept, kwOn, kwReturning:
		return true // none of them can be a bare column label
	}
	return false
}

// expr walks an expression (or a list of them) up to a stop, walking the
// subqueries in it and recording the calls. It returns what seen* keywords
// it met at its own level.
func (s *scanner) expr(stops stopSet) (seen uint16) {
	cases, brackets := 0, 0
	like := false // LIKE or ILIKE: an ESCAPE calls like_escape
	for {
		t := s.peek()
		if s.isEnd(t) || t.kind == tRParen {
			return seen
		}
		if brackets == 0 && s.stopsAt(t, stops, cases) {
			return seen
		}
		switch t.kind {
		case tLParen:
			s.group(groupAuto)
			continue
		case tOther:
			if t.e-t.s == 1 {
				switch s.lx.src[t.s] {
				case '[':
					brackets++
				case ']':
					if brackets > 0 {
						brackets--
					}
				case ':':
					if brackets == 0 && !s.atTypeCast() {
						seen |= seenJSON
					}
				}
			}
		case tIdent:
			if s.p1.kind == tDot {
				break // x.case: a field's name
			}
			switch t.kw {
			case kwCase:
				cases++
			case kwEnd:
				if cases > 0 {
					cases--
				}
			case kwAs:
				s.take()
				if u := s.peek(); isName(u) {
					s.take() // a label: any word
				}
				continue
			case kwReferences:
				if s.an.ddl {
					s.take()
					s.references()
					continue
				}
			case kwLike, kwIlike:
				like = true
			case kwEscape:
				if like {
					s.fixedCall("like_escape")
					like = false
				}
			case kwSimilar:
				if isKw(s.peek2(), kwTo) {
					s.fixedCall("similar_to_escape")
				}
				seen |= seenSimilar
			case kwAt:
				if u := s.peek2(); isKw(u, kwTime) || isKw(u, kwLocal) {
					s.fixedCall("timezone") // x AT TIME ZONE z, x AT LOCAL
				}
			case kwOverlaps:
				if s.p1.kind == tRParen {
					s.fixedCall("overlaps") // (a, b) OVERLAPS (c, d)
				}
			case kwNormalized:
				switch s.p1.kw {
				case kwIs, kwNot, kwNfc, kwNfd, kwNfkc, kwNfkd:
					s.fixedCall("is_normalized")
				}
			case kwSystemUser:
				s.fixedCall("system_user")
			case kwCollation:
				if isKw(s.peek2(), kwFor) {
					s.fixedCall("pg_collation_for")
				}
			case kwFrom:
				seen |= seenFrom
			case kwFor:
				seen |= seenFor
			case kwPlacing:
				seen |= seenPlacing
			case kwValue, kwAbsent, kwReturning, kwUnique, kwOn:
				seen |= seenJSON
			}
		}
		s.take()
		if isName(t) && s.p2.kind == tDot && !s.atKind(tLParen) && !s.atKind(tDot) {
			s.attribute(t)
		}
	}
}

// atTypeCast reports whether the ':' that is next starts "::".
func (s *scanner) atTypeCast() bool {
	t := s.peek()
	u := s.peek2()
	return u.kind == tOther && u.s == t.e && s.lx.src[u.s:u.e] == ":" ||
		s.p1.kind == tOther && s.p1.e == t.s && s.lx.src[s.p1.s:s.p1.e] == ":"
}

// attribute records x.f, which calls f(x) if f is one of the user's
// functions.
func (s *scanner) attribute(f token) {
	if s.fn.userMatch(s.lx.src, f, token{}, false) {
		s.an.funcs = append(s.an.funcs, funcRef{name: f})
	}
}

// fixedCall records a call of pg_catalog.name that SQL syntax makes.
func (s *scanner) fixedCall(name string) int {
	s.an.funcs = append(s.an.funcs, funcRef{fixed: name})
	return len(s.an.funcs) - 1
}

// groupMode says whether a '(' may be a call's.
type groupMode uint8

const (
	groupAuto  groupMode = iota // a call if the tokens before it name a function
	groupPlain                  // never a call: a column list, options, ...
)

// group walks a parenthesized part, whose '(' is next: a call's
// arguments, a subquery, or an expression.
func (s *scanner) group(mode groupMode) {
	if !s.atKind(tLParen) {
		return
	}
	if !s.enter() {
		s.skipParens()
		return
	}
	a := s.an
	var c call
	if mode == groupAuto {
		c = s.callBefore()
	}
	// GROUPING SETS (...) lists grouping items.
	sets := isKw(s.p1, kwSets)
	s.take() // (
	if t := s.peek(); c.kind != callNone && (isQueryHead(t) && !isKw(t, kwValues) || isKw(t, kwValues) && s.at2(tLParen)) {
		c = call{} // no call has a bare query for arguments: f (SELECT ...) is no call
	}
	groupBy, ddl := a.groupBy, a.ddl
	a.groupBy = groupBy && sets
	if c.kind != callNone {
		a.ddl = false
	}
	i := -1
	switch c.kind {
	case callNone:
		if s.startsQuery() {
			s.query()
		}
		s.expr(inGroup)
	case callGeneric:
		i = s.recordCall(c.schema, c.name)
		if identIs(a.src, c.name, "set_config") {
			s.setConfigArgs()
		} else {
			s.expr(inGroup)
		}
	case callFixed:
		s.fixedCall(c.fixed)
		s.expr(inGroup)
	case callSubstring, callOverlay:
		i = s.recordCall(token{}, c.name)
		seen := s.expr(inGroup)
		if c.kind == callSubstring && seen&(seenFrom|seenFor|seenSimilar) != 0 ||
			c.kind == callOverlay && seen&seenPlacing != 0 {
			a.funcs[i] = funcRef{fixed: c.fixed}
		}
		i = -1
	case callTrim:
		name := "btrim"
		switch {
		case s.at(kwLeading):
			name = "ltrim"
		case s.at(kwTrailing):
			name = "rtrim"
		}
		s.fixedCall(name)
		s.expr(inGroup)
	case callTreat, callCast:
		if c.kind == callTreat {
			i = s.fixedCall("treat") // named once the type is read
		}
		s.expr(inGroup | stopAs)
		if !s.accept(kwAs) {
			if i >= 0 {
				a.funcs[i].dropped = true
			}
		} else {
			name, fixed := s.typeName()
			switch {
			case c.kind == callCast:
			case fixed != "":
				a.funcs[i].fixed = fixed
			case name.kind != tEOF:
				a.funcs[i] = funcRef{name: name, sys: true}
				if v, ok := identValue(a.src, name); ok {
					a.stmt |= funcEffect(v)
					if v == "set_config" {
						a.stmt |= EffectSessionState // with one argument
					}
				}
			default:
				a.funcs[i].dropped = true
			}
		}
		i = -1
		s.expr(inGroup)
	case callJSONObject:
		n := s.taken
		if seen := s.expr(inGroup); seen&seenJSON == 0 && s.taken > n {
			s.fixedCall("json_object") // the legacy json_object(text[])
		}
	case callOperator:
		for !s.ended() && !s.atKind(tRParen) {
			s.take()
		}
	}
	s.closeParen()
	a.groupBy, a.ddl = groupBy, ddl
	s.leave()
	switch {
	case c.kind == callOperator:
		a.operatorEnd = s.p1.e
	case i >= 0 && s.atKind(tString):
		a.funcs[i].dropped = true // type 'literal': a typed constant, no call
	}
}

// setConfigArgs walks set_config's arguments: a literal true third
// argument makes the setting last only as long as the transaction.
func (s *scanner) setConfigArgs() {
	local := false
	for arg := 0; ; arg++ {
		first, n := s.peek(), s.taken
		s.expr(inGroup | stopComma)
		if arg == 2 && s.taken == n+1 && isKw(first, kwTrue) {
			local = true
		}
		if !s.acceptKind(tComma) {
			break
		}
	}
	if local {
		s.an.stmt |= EffectTxScoped
	} else {
		s.an.stmt |= EffectSessionState
	}
}

// recordCall records a call of [schema.]name and its effects on the
// session, and returns its index.
func (s *scanner) recordCall(schema, name token) int {
	a := s.an
	a.funcs = append(a.funcs, funcRef{schema: schema, name: name})
	if v, ok := identValue(a.src, name); ok {
		a.stmt |= funcEffect(v)
	}
	return len(a.funcs) - 1
}

// callKind says what a '(' opens.
type callKind uint8

const (
	callNone       callKind = iota // no call
	callGeneric                    // a function call
	callFixed                      // SQL syntax calling pg_catalog.fixed (EXTRACT, POSITION, ...)
	callSubstring                  // SUBSTRING: pg_catalog.substring with FROM, FOR, SIMILAR
	callOverlay                    // OVERLAY: pg_catalog.overlay with PLACING
	callTrim                       // TRIM: pg_catalog.btrim, ltrim or rtrim
	callTreat                      // TREAT(x AS type): pg_catalog.type(x)
	callCast                       // CAST(x AS type)
	callJSONObject                 // JSON_OBJECT: a constructor, or the legacy function
	callOperator                   // OPERATOR(schema.op)
)

// call is what callBefore makes of a '('.
type call struct {
	kind         callKind
	schema, name token
	fixed        string
}

// callBefore says whether the '(' that is next opens a call, from the
// tokens before it: a name, maybe qualified, in a place where PostgreSQL's
// grammar has a function call rather than a type modifier, a column list
// or some other syntax.
func (s *scanner) callBefore() call {
	a := s.an
	src := a.src
	name := s.p1
	if !isName(name) {
		return call{}
	}
	if isKw(name, kwOperator) && s.p2.kind != tDot {
		return call{kind: callOperator} // a OPERATOR(s.+) b
	}
	c := call{kind: callGeneric, name: name}
	before, before2 := s.p2, s.p3
	if s.p2.kind == tDot && isName(s.p3) {
		c.schema, before, before2 = s.p3, s.p4, s.p5
		if s.p4.kind == tDot && isName(s.p5) {
			before, before2 = s.p6, token{}
		}
	}
	switch {
	case before.kind == tOther && src[before.s:before.e] == ":" && before.s > 0 && src[before.s-1] == ':':
		return call{} // ::type(modifiers)
	case isKw(before, kwAs):
		return call{} // AS alias(columns), CAST(x AS type(modifiers))
	case before.kind == tRParen && before.e == a.operatorEnd:
		// OPERATOR(s.op) f(x)
	case operandEnd(src, before):
		return call{} // a type (column definitions, typed literals), a label, ...
	}
	if c.schema.kind != tEOF || name.kind != tIdent {
		return c
	}
	k := name.kw
	switch k.category() {
	case catReserved, catColName:
		return syntaxCall(name)
	case catTypeFunc:
		switch k {
		case kwJoin, kwCross, kwInner, kwNatural, kwOuter, kwFull, kwTablesample:
			return call{}
		}
		if !callPosition(src, before) {
			return call{} // x LIKE (y), x IS (...)
		}
		return c
	}
	switch k {
	case kwNone:
		if a.ddl && isKw(before, kwBy) && isKw(before2, kwPartition) {
			return call{} // PARTITION BY list (a)
		}
		if a.ddl && isKw(before, kwUsing) && isKw(before2, kwExclude) {
			return call{} // EXCLUDE USING gist (...)
		}
		return c
	case kwBy, kwZone, kwEscape, kwSets, kwDocument, kwContent:
		return call{} // ORDER BY (a), AT TIME ZONE ('UTC'), GROUPING SETS (...), XMLPARSE(DOCUMENT (x))
	case kwRollup, kwCube:
		if a.groupBy && (isKw(before, kwBy) || isKw(before, kwAll) || isKw(before, kwDistinct) ||
			before.kind == tComma || before.kind == tLParen) {
			return call{} // a grouping item, not within an expression
		}
	case kwFirst, kwNext:
		if isKw(before, kwFetch) {
			return call{} // FETCH FIRST (n) ROWS
		}
	case kwInsert:
		if isKw(before, kwThen) {
			return call{} // MERGE ... THEN INSERT (columns)
		}
	case kwSet:
		if isKw(before, kwUpdate) || a.ddl {
			return call{} // DO UPDATE SET (a, b) = ...
		}
	case kwConflict:
		if isKw(before, kwOn) {
			return call{} // ON CONFLICT (a)
		}
	case kwSecond:
		if isKw(before, kwTo) {
			return call{} // INTERVAL DAY TO SECOND(3)
		}
	case kwVarying:
		return call{} // CHARACTER VARYING(n), BIT VARYING(n)
	case kwKey, kwInclude, kwIdentity, kwOptions, kwReset:
		if a.ddl {
			return call{} // PRIMARY KEY (a), INCLUDE (b), AS IDENTITY (...), ...
		}
	}
	if a.ddl && !isKw(before, kwDefault) && before.kind != tOther && before.kind != tLParen && before.kind != tComma {
		return call{} // a keyword is a function name in DDL only in an expression
	}
	if isTypeWord(before.kw) && before.kind == tIdent {
		return call{} // INTERVAL SECOND(3)
	}
	return c
}

// syntaxCall is what a reserved or column-name keyword followed by '('
// is: SQL syntax, which calls a function for a few.
func syntaxCall(name token) call {
	switch name.kw {
	case kwExtract:
		return call{kind: callFixed, fixed: "extract"}
	case kwPosition:
		return call{kind: callFixed, fixed: "position"}
	case kwNormalize:
		return call{kind: callFixed, fixed: "normalize"}
	case kwXmlexists:
		return call{kind: callFixed, fixed: "xmlexists"}
	case kwSubstring:
		return call{kind: callSubstring, name: name, fixed: "substring"}
	case kwOverlay:
		return call{kind: callOverlay, name: name, fixed: "overlay"}
	case kwTrim:
		return call{kind: callTrim}
	case kwTreat:
		return call{kind: callTreat}
	case kwCast:
		return call{kind: callCast}
	case kwJsonObject:
		return call{kind: callJSONObject}
	}
	return call{} // COALESCE, EXISTS, ARRAY, ROW, VALUES, IN, numeric(10, 2), ...
}

// operandEnd reports whether t ends an operand: a name that is no keyword,
// a constant, ')' or ']'. A call's name cannot follow one.
func operandEnd(src string, t token) bool {
	switch t.kind {
	case tString, tNumber, tParam, tRParen, tQIdent, tUIdent:
		return true
	case tIdent:
		return t.kw == kwNone
	case tOther:
		return src[t.s:t.e] == "]"
	}
	return false
}

// callPosition reports whether an operand may start after t (for the
// keywords that are operators after an operand and function names before
// one: LIKE, SIMILAR, OVERLAPS, ...).
func callPosition(src string, t token) bool {
	switch t.kind {
	case tEOF, tLParen, tComma:
		return true
	case tOther:
		return src[t.s:t.e] != "]"
	case tIdent:
		return t.kw.category() == catReserved || t.kw == kwBy
	}
	return false
}

// isTypeWord reports whether k is a keyword that a type name's next word
// (with modifiers) can follow: CHARACTER VARYING(n), INTERVAL SECOND(p).
func isTypeWord(k kw) bool {
	switch k {
	case kwChar, kwCharacter, kwNchar, kwNational, kwBit, kwInterval, kwDouble:
		return true
	}
	return false
}

// typeName walks a type name and returns, for TREAT, the name of the
// function pg_catalog would run: fixed for the types the grammar spells
// with keywords (int4 for INTEGER, ...), else the last part of the name.
func (s *scanner) typeName() (name token, fixed string) {
	s.accept(kwSetof)
	t := s.peek()
	if !isName(t) {
		return token{}, ""
	}
	if t.kind == tIdent {
		switch t.kw {
		case kwDouble:
			s.take()
			s.accept(kwPrecision)
			return token{}, "float8"
		case kwChar, kwCharacter, kwNchar, kwNational, kwBit, kwVarchar:
			s.take()
			if t.kw == kwNational {
				s.take() // CHARACTER or CHAR
			}
			varying := t.kw == kwVarchar || s.accept(kwVarying)
			s.group(groupPlain)
			switch {
			case t.kw == kwBit && varying:
				return token{}, "varbit"
			case t.kw == kwBit:
				return token{}, "bit"
			case varying:
				return token{}, "varchar"
			}
			return token{}, "bpchar"
		case kwTime, kwTimestamp:
			s.take()
			s.group(groupPlain)
			tz := false
			if s.at(kwWith) || s.at(kwWithout) {
				tz = s.take().kw == kwWith
				s.accept(kwTime)
				s.accept(kwZone)
			}
			switch {
			case t.kw == kwTime && tz:
				return token{}, "timetz"
			case tz:
				return token{}, "timestamptz"
			case t.kw == kwTime:
				return token{}, "time"
			}
			return token{}, "timestamp"
		}
		if f, ok := keywordTypes[t.kw]; ok {
			s.take()
			s.group(groupPlain)
			return token{}, f
		}
	}
	q, _ := s.nameChain()
	s.group(groupPlain)
	return q.last(), ""
}

// keywordTypes maps the one-word types spelled with keywords to their
// names in pg_catalog.
var keywordTypes = map[kw]string{
	kwInt: "int4", kwInteger: "int4", kwSmallint: "int2", kwBigint: "int8", kwReal: "float4",
	kwFloat: "float8", kwDecimal: "numeric", kwDec: "numeric", kwNumeric: "numeric",
	kwBoolean: "bool", kwInterval: "interval", kwJson: "json",
}

// funcEffect returns the effect on the session of a call of the built-in
// function name (as PostgreSQL folds it), in any schema.
func funcEffect(name string) Effect {
	switch name {
	case "currval", "lastval", "dblink_disconnect", "dblink_open", "dblink_fetch", "dblink_close",
		"dblink_send_query", "dblink_get_result", "dblink_is_busy", "dblink_cancel_query",
		"dblink_error_message", "dblink_get_connections", "dblink_get_notify":
		return EffectSessionDependent
	case "setseed", "dblink_connect", "dblink_connect_u",
		"pg_replication_origin_session_setup", "pg_replication_origin_session_reset":
		return EffectSessionState
	case "pg_export_snapshot", "pg_replication_origin_xact_setup", "pg_replication_origin_xact_reset":
		return EffectTxScoped
	}
	switch name {
	case "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared":
		return EffectSessionState
	case "pg_advisory_xact_lock", "pg_advisory_xact_lock_shared", "pg_try_advisory_xact_lock",
		"pg_try_advisory_xact_lock_shared":
		return EffectTxScoped
	case "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all":
		return EffectSessionDependent
	}
	return 0
}
