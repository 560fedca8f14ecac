package classify

// utility walks a statement that is not a query: DML, COPY, transaction
// control, session statements and DDL.
func (s *scanner) utility() {
	a := s.an
	t := s.peek()
	if t.kind != tIdent {
		s.partial()
		return
	}
	switch t.kw {
	case kwInsert, kwUpdate, kwDelete, kwMerge:
		s.preparable()
	case kwCopy:
		s.copyStatement()
	case kwTruncate:
		s.take()
		s.accept(kwTable)
		s.relationList(true)
		s.behavior()
	case kwLock:
		s.take()
		s.accept(kwTable)
		s.relationList(true)
		s.drain()
	case kwShow, kwNotify, kwCheckpoint:
		s.drain()
	case kwSet:
		s.set()
	case kwReset, kwLoad:
		a.stmt |= EffectSessionState
		s.drain()
	case kwBegin, kwStart:
		s.take()
		if !s.accept(kwTransaction) {
			s.accept(kwWork)
		}
		a.stmt |= EffectBegin
		a.access, a.isolation, a.deferrable = AccessDefault, IsolationDefault, false
		s.transactionModes()
	case kwCommit, kwEnd:
		s.take()
		if s.accept(kwPrepared) {
			a.stmt |= EffectTwoPhase
		} else {
			if !s.accept(kwTransaction) {
				s.accept(kwWork)
			}
			a.stmt |= EffectCommit
			s.chain()
		}
		s.drain()
	case kwRollback, kwAbort:
		s.take()
		if s.accept(kwPrepared) {
			a.stmt |= EffectTwoPhase
		} else if !s.accept(kwTransaction) {
			s.accept(kwWork)
		}
		if a.stmt&EffectTwoPhase == 0 {
			if s.accept(kwTo) {
				a.stmt |= EffectSavepoint
			} else {
				a.stmt |= EffectRollback
				s.chain()
			}
		}
		s.drain()
	case kwSavepoint, kwRelease:
		a.stmt |= EffectSavepoint
		s.drain()
	case kwPrepare:
		s.prepare()
	case kwExecute:
		s.take()
		s.take() // the name
		s.group(groupPlain)
		a.stmt |= EffectSessionDependent
		s.partial()
	case kwFetch, kwMove:
		a.stmt |= EffectSessionDependent
		s.partial()
		s.drain()
	case kwDeallocate, kwClose, kwUnlisten:
		a.stmt |= EffectSessionDependent
		s.drain()
	case kwListen:
		a.stmt |= EffectSessionState | EffectListen
		s.drain()
	case kwDiscard:
		s.take()
		if s.accept(kwAll) {
			a.stmt |= EffectDiscardAll
		} else {
			a.stmt |= EffectSessionDependent
		}
		s.drain()
	case kwDeclare:
		s.declare()
	case kwCall:
		s.take()
		s.expr(0)
	case kwCreate:
		s.create()
	case kwAlter:
		s.alter()
	case kwDrop:
		s.drop()
	case kwGrant, kwRevoke:
		s.grant()
	case kwComment:
		s.take()
		s.accept(kwOn)
		s.commentObject()
	case kwSecurity:
		s.take()
		s.accept(kwLabel)
		if s.accept(kwFor) {
			s.take()
		}
		s.accept(kwOn)
		s.commentObject()
	case kwVacuum, kwAnalyze:
		s.vacuum()
	case kwCluster:
		s.cluster()
	case kwReindex:
		s.reindex()
	case kwRefresh:
		s.take()
		s.accept(kwMaterialized)
		s.accept(kwView)
		s.accept(kwConcurrently)
		s.relationList(false)
		s.drain()
	default:
		// DO, REASSIGN OWNED, IMPORT FOREIGN SCHEMA, ...: they can touch
		// relations the text does not name.
		s.partial()
	}
}

// relationList walks name [, ...] (with ONLY and * if only is true) and
// records each relation as written.
func (s *scanner) relationList(only bool) {
	for {
		if only {
			s.accept(kwOnly)
		}
		q, ok := s.nameChain()
		if !ok {
			s.partial()
			return
		}
		s.relation(q, false, true, false, -1)
		if only {
			s.acceptOp("*")
		}
		if !s.acceptKind(tComma) {
			return
		}
	}
}

// behavior walks the rest of a statement whose CASCADE changes relations
// the text does not name (DROP, TRUNCATE).
func (s *scanner) behavior() {
	for !s.ended() {
		if s.take().kw == kwCascade {
			s.partial()
		}
	}
}

// skipBalanced consumes a parenthesized part that holds neither relations
// nor calls (options, argument types), if one is next.
func (s *scanner) skipBalanced() {
	if !s.atKind(tLParen) {
		return
	}
	depth := 0
	for !s.ended() {
		switch s.take().kind {
		case tLParen:
			depth++
		case tRParen:
			depth--
		}
		if depth == 0 {
			return
		}
	}
}

// chain walks AND [NO] CHAIN.
func (s *scanner) chain() {
	if s.accept(kwAnd) && !s.accept(kwNo) && s.accept(kwChain) {
		s.an.stmt |= EffectChain
	}
}

// set walks SET.
func (s *scanner) set() {
	a := s.an
	s.take() // SET
	switch {
	case s.accept(kwLocal):
		if s.accept(kwTransaction) {
			s.setTransaction()
		} else {
			a.stmt |= EffectTxScoped
		}
	case s.at(kwSession) && isKw(s.peek2(), kwTransaction):
		s.take()
		s.take()
		s.setTransaction()
	case s.accept(kwTransaction):
		s.setTransaction()
	case s.accept(kwConstraints):
		a.stmt |= EffectTxScoped
	default:
		a.stmt |= EffectSessionState
	}
	s.drain()
}

// setTransaction walks the rest of SET TRANSACTION.
func (s *scanner) setTransaction() {
	s.an.stmt |= EffectSetTransaction | EffectTxScoped
	if !s.accept(kwSnapshot) {
		s.transactionModes()
	}
}

// transactionModes walks transaction modes: ISOLATION LEVEL ..., READ ONLY,
// READ WRITE, [NOT] DEFERRABLE, separated by commas or not.
func (s *scanner) transactionModes() {
	a := s.an
	for {
		switch {
		case s.accept(kwIsolation):
			s.accept(kwLevel)
			switch {
			case s.accept(kwSerializable):
				a.isolation = Serializable
			case s.accept(kwRepeatable):
				s.accept(kwRead)
				a.isolation = RepeatableRead
			case s.accept(kwRead):
				if s.accept(kwCommitted) {
					a.isolation = ReadCommitted
				} else if s.accept(kwUncommitted) {
					a.isolation = ReadUncommitted
				}
			}
		case s.accept(kwRead):
			if s.accept(kwOnly) {
				a.access = AccessReadOnly
			} else if s.accept(kwWrite) {
				a.access = AccessReadWrite
			}
		case s.accept(kwDeferrable):
			a.deferrable = true
		case s.accept(kwNot):
			if s.accept(kwDeferrable) {
				a.deferrable = false
			}
		case s.acceptKind(tComma):
		default:
			return
		}
	}
}

// prepare walks PREPARE TRANSACTION 'gid' and PREPARE name [(types)] AS
// statement.
func (s *scanner) prepare() {
	a := s.an
	s.take() // PREPARE
	if s.accept(kwTransaction) {
		a.stmt |= EffectTwoPhase
		s.drain()
		return
	}
	s.take() // the name
	s.skipBalanced()
	a.stmt |= EffectSessionState | EffectPrepare
	if !s.accept(kwAs) {
		s.partial()
		return
	}
	s.preparable()
}

// declare walks DECLARE name [options] CURSOR [WITH[OUT] HOLD] FOR query.
func (s *scanner) declare() {
	a := s.an
	s.take() // DECLARE
	for !s.ended() && !s.accept(kwCursor) {
		s.take()
	}
	hold := false
	if s.accept(kwWith) {
		hold = s.accept(kwHold)
	} else if s.accept(kwWithout) {
		s.accept(kwHold)
	}
	if hold {
		a.stmt |= EffectSessionState
	} else {
		a.stmt |= EffectTxScoped
	}
	if !s.accept(kwFor) {
		s.partial()
		return
	}
	s.query()
}

// copyStatement walks COPY table [(columns)] {FROM | TO} ... and COPY
// (query) TO ....
func (s *scanner) copyStatement() {
	a := s.an
	s.take() // COPY
	var q qname
	query := s.atKind(tLParen)
	if query {
		if !s.enter() {
			s.skipParens()
		} else {
			s.take()
			s.preparable()
			s.closeParen()
			s.leave()
		}
	} else {
		s.accept(kwBinary)
		var ok bool
		if q, ok = s.nameChain(); !ok {
			s.partial()
			return
		}
		s.group(groupPlain)
	}
	from := s.accept(kwFrom)
	if !from && !s.accept(kwTo) || from && query {
		s.partial()
		return
	}
	if !query {
		s.relation(q, !from, from, false, -1)
	}
	program := s.accept(kwProgram)
	if !program && (s.at(kwStdin) || s.at(kwStdout)) {
		if from {
			a.stmt |= EffectCopyFrom
		} else {
			a.stmt |= EffectCopyTo
		}
	}
	s.take() // the file name, program, STDIN or STDOUT
	for !s.ended() {
		switch {
		case s.accept(kwWhere):
			s.expr(0)
		case s.atKind(tLParen):
			s.skipBalanced()
		default:
			s.take()
		}
	}
}

// create walks CREATE.
func (s *scanner) create() {
	a := s.an
	s.take() // CREATE
	if s.accept(kwOr) {
		s.accept(kwReplace)
	}
	if s.accept(kwGlobal) || s.accept(kwLocal) {
		s.accept(kwTemp)
	} else if !s.accept(kwTemp) {
		s.accept(kwUnlogged)
	}
	a.ddl = true
	switch t := s.take(); t.kw {
	case kwTable:
		s.createTable()
	case kwView, kwMaterialized:
		s.accept(kwView)
		s.createView(false)
	case kwRecursive:
		s.accept(kwView)
		s.createView(true)
	case kwUnique, kwIndex:
		if t.kw == kwUnique {
			s.accept(kwIndex)
		}
		s.createIndex()
	case kwSequence:
		s.ifNotExists()
		s.relationList(false)
		s.drain()
	case kwSchema:
		// CREATE SCHEMA name [AUTHORIZATION role] [schema elements]: the
		// elements create relations.
		for !s.ended() {
			if u := s.take(); u.kw == kwCreate || u.kw == kwGrant {
				s.partial()
			}
		}
	case kwType:
		s.nameChain()
		s.skipBalanced() // a base type's definition
		s.ddlRest()
	case kwDomain, kwRole, kwUser, kwGroup:
		s.ddlRest()
	case kwConstraint, kwTrigger:
		if t.kw == kwConstraint {
			s.accept(kwTrigger)
		}
		s.createTrigger()
	case kwPolicy:
		s.take() // the name
		if !s.accept(kwOn) || !s.writtenName() {
			s.partial()
			return
		}
		for !s.ended() {
			if s.atKind(tLParen) {
				s.group(groupAuto) // USING (...), WITH CHECK (...)
			} else {
				s.take()
			}
		}
	case kwFunction, kwProcedure, kwAggregate:
		// Its body may name relations; creating it touches none, but the
		// walker does not follow function bodies.
		s.nameChain()
		s.skipBalanced()
		s.partial()
		s.ddlRest()
	default:
		s.partial()
		s.ddlRest()
	}
	a.ddl = false
}

// createTrigger walks the rest of CREATE TRIGGER: the table it is on and
// the one a constraint trigger's FROM names are written; the function it
// executes is not called now.
func (s *scanner) createTrigger() {
	s.take() // the name
	for !s.ended() && !s.at(kwOn) {
		s.take() // BEFORE, AFTER, INSTEAD OF, the events
	}
	if !s.accept(kwOn) || !s.writtenName() {
		s.partial()
		return
	}
	for !s.ended() {
		switch {
		case s.accept(kwFrom):
			s.writtenName()
		case s.accept(kwExecute):
			s.take() // FUNCTION, PROCEDURE
			s.nameChain()
			s.skipBalanced() // string arguments
		case s.atKind(tLParen):
			s.group(groupAuto) // WHEN (condition)
		default:
			s.take()
		}
	}
}

// ddlRest walks the rest of a DDL statement as expressions.
func (s *scanner) ddlRest() {
	for !s.ended() {
		s.skipExpr(inGroup)
		s.acceptKind(tRParen)
	}
}

// ifNotExists walks IF NOT EXISTS.
func (s *scanner) ifNotExists() {
	if s.accept(kwIf) {
		s.accept(kwNot)
		s.accept(kwExists)
	}
}

// createTable walks the rest of CREATE TABLE.
func (s *scanner) createTable() {
	a := s.an
	s.ifNotExists()
	if !s.writtenName() {
		return
	}
	if s.accept(kwPartition) {
		if !s.accept(kwOf) || !s.writtenName() {
			s.partial()
			return
		}
	} else if s.accept(kwOf) {
		s.nameChain() // a composite type
	}
	if s.atKind(tLParen) {
		s.tableElements()
	}
	for !s.ended() {
		switch {
		case s.accept(kwInherits):
			if s.acceptKind(tLParen) {
				s.relationList(false)
				s.closeParen()
			}
		case s.accept(kwAs):
			if s.at(kwExecute) {
				a.stmt |= EffectSessionDependent
				s.partial()
				s.drain()
				return
			}
			s.query()
			s.drain() // WITH [NO] DATA
		case s.at(kwOn) && isKw(s.peek2(), kwCommit):
			s.take()
			s.take()
			if s.accept(kwDrop) {
				a.commitDrop = true
			}
		default:
			s.skipExpr(inGroup | stopAs | stopDDL)
			s.acceptKind(tRParen)
		}
	}
}

// writtenName walks a name and records it as a written relation.
func (s *scanner) writtenName() bool {
	q, ok := s.nameChain()
	if !ok {
		s.partial()
		return false
	}
	s.relation(q, false, true, false, -1)
	return true
}

// tableElements walks CREATE TABLE's (column definitions, constraints,
// LIKE source).
func (s *scanner) tableElements() {
	if !s.enter() {
		s.skipParens()
		return
	}
	s.take() // (
	for !s.ended() && !s.atKind(tRParen) {
		t := s.peek()
		switch {
		case isKw(t, kwLike):
			s.take()
			if q, ok := s.nameChain(); ok {
				s.relation(q, true, false, false, -1)
			}
		case t.kind == tIdent && (t.kw == kwConstraint || t.kw == kwCheck || t.kw == kwUnique ||
			t.kw == kwPrimary || t.kw == kwForeign || t.kw == kwExclude):
		case isName(t):
			s.take() // the column's name
			if isName(s.peek()) && !isKw(s.peek(), kwWith) {
				s.typeName()
			}
		}
		s.expr(inGroup | stopComma)
		if !s.acceptKind(tComma) {
			break
		}
	}
	s.closeParen()
	s.leave()
}

// references walks REFERENCES table [(columns)]: the table is written
// (its foreign-key triggers change).
func (s *scanner) references() {
	if q, ok := s.nameChain(); ok {
		s.relation(q, false, true, false, -1)
	} else {
		s.partial()
	}
	s.group(groupPlain)
}

// createView walks the rest of CREATE [MATERIALIZED | RECURSIVE] VIEW. A
// recursive view's query names the view as a recursive CTE (PostgreSQL
// makes it one).
func (s *scanner) createView(recursive bool) {
	s.ifNotExists()
	q, ok := s.nameChain()
	if !ok {
		s.partial()
		return
	}
	s.relation(q, false, true, false, -1)
	if recursive {
		s.an.ctes = append(s.an.ctes, q.last())
	}
	for !s.ended() && !s.at(kwAs) {
		if s.atKind(tLParen) {
			s.group(groupPlain)
		} else {
			s.take()
		}
	}
	if !s.accept(kwAs) {
		s.partial()
		return
	}
	s.query()
	s.drain() // WITH [CASCADED | LOCAL] CHECK OPTION, WITH [NO] DATA
}

// createIndex walks the rest of CREATE [UNIQUE] INDEX.
func (s *scanner) createIndex() {
	s.accept(kwConcurrently)
	s.ifNotExists()
	if !s.at(kwOn) {
		s.nameChain() // the index's name
	}
	if !s.accept(kwOn) {
		s.partial()
		return
	}
	s.accept(kwOnly)
	if !s.writtenName() {
		return
	}
	if s.accept(kwUsing) {
		s.take() // the access method
	}
	s.group(groupPlain)
	for !s.ended() {
		switch {
		case s.accept(kwWhere):
			s.expr(0)
		case s.atKind(tLParen):
			s.group(groupPlain)
		default:
			s.take()
		}
	}
}

// alter walks ALTER.
func (s *scanner) alter() {
	a := s.an
	s.take() // ALTER
	t := s.take()
	if (t.kw == kwMaterialized || t.kw == kwForeign) && (s.at(kwView) || s.at(kwTable)) {
		t = s.take()
	}
	switch t.kw {
	case kwTable, kwView, kwIndex, kwSequence:
	case kwRole, kwUser, kwGroup, kwSystem, kwDatabase:
		s.drain()
		return
	default:
		s.partial()
		a.ddl = true
		s.ddlRest()
		a.ddl = false
		return
	}
	if s.accept(kwIf) {
		s.accept(kwExists)
	}
	if s.at(kwAll) { // ALTER TABLE ALL IN TABLESPACE ...
		s.partial()
		s.drain()
		return
	}
	s.accept(kwOnly)
	if !s.writtenName() {
		return
	}
	s.acceptOp("*")
	a.ddl = true
	for !s.ended() {
		switch {
		case s.accept(kwAttach), s.accept(kwDetach):
			if s.accept(kwPartition) {
				s.writtenName()
			}
		case s.accept(kwInherit):
			s.writtenName()
		case s.at(kwCascade):
			if !isKw(s.p1, kwDelete) && !isKw(s.p1, kwUpdate) {
				s.partial() // DROP ... CASCADE; not ON DELETE CASCADE
			}
			s.take()
		default:
			s.skipExpr(inGroup | stopDDL)
			s.acceptKind(tRParen)
		}
	}
	a.ddl = false
}

// drop walks DROP.
func (s *scanner) drop() {
	s.take() // DROP
	t := s.take()
	if (t.kw == kwMaterialized || t.kw == kwForeign) && (s.at(kwView) || s.at(kwTable)) {
		t = s.take()
	}
	switch t.kw {
	case kwTable, kwView, kwIndex, kwSequence:
		s.accept(kwConcurrently)
		if s.accept(kwIf) {
			s.accept(kwExists)
		}
		s.relationList(false)
	case kwTrigger, kwPolicy, kwRule:
		if s.accept(kwIf) {
			s.accept(kwExists)
		}
		s.take() // the name
		if !s.accept(kwOn) {
			s.partial()
			return
		}
		s.relationList(false)
	case kwExtension, kwOwned, kwDatabase:
		s.partial() // an extension's relations, a role's, a database's
	default:
		// Functions, types, schemas, ...: no relations, unless CASCADE
		// drops or changes them.
		for !s.ended() && !s.at(kwCascade) {
			if s.atKind(tLParen) {
				s.skipBalanced()
			} else {
				s.take()
			}
		}
	}
	s.behavior()
}

// grant walks GRANT and REVOKE.
func (s *scanner) grant() {
	s.take() // GRANT, REVOKE
	for !s.ended() && !s.at(kwOn) && !s.at(kwTo) && !s.at(kwFrom) {
		if s.atKind(tLParen) {
			s.skipBalanced() // column lists
		} else {
			s.take()
		}
	}
	if !s.accept(kwOn) {
		s.drain() // a role
		return
	}
	switch t := s.peek(); {
	case isKw(t, kwTable), isKw(t, kwSequence):
		s.take()
	case isKw(t, kwAll):
		s.take()
		if s.at(kwTables) || s.at(kwSequences) {
			s.partial() // every table in a schema
		}
		s.drain()
		return
	case t.kind == tIdent && isName(s.peek2()) && !isKw(s.peek2(), kwTo) && !isKw(s.peek2(), kwFrom):
		// FUNCTION f(...), SCHEMA s, DATABASE d, ...: no relations.
		for !s.ended() {
			if s.atKind(tLParen) {
				s.skipBalanced()
			} else {
				s.take()
			}
		}
		return
	}
	s.relationList(false)
	s.drain()
}

// commentObject walks the object of COMMENT ON and SECURITY LABEL ON.
func (s *scanner) commentObject() {
	t := s.take()
	switch t.kw {
	case kwTable, kwView, kwIndex, kwSequence:
		s.relationList(false)
	case kwMaterialized, kwForeign:
		if u := s.take(); u.kw == kwView || u.kw == kwTable {
			s.relationList(false)
		}
	case kwColumn:
		// table.column: the table
		if q, ok := s.nameChain(); ok && q.n >= 2 {
			q.n--
			s.relation(q, false, true, false, -1)
		} else {
			s.partial()
		}
	case kwConstraint, kwTrigger, kwPolicy, kwRule:
		s.take() // the name
		if s.accept(kwOn) && !s.at(kwDomain) {
			s.relationList(false)
		}
	}
	for !s.ended() {
		if s.atKind(tLParen) {
			s.skipBalanced() // a function's argument types
		} else {
			s.take()
		}
	}
}

// vacuum walks VACUUM and ANALYZE.
func (s *scanner) vacuum() {
	s.take() // VACUUM, ANALYZE
	s.skipBalanced()
	for s.accept(kwFull) || s.accept(kwFreeze) || s.accept(kwVerbose) || s.accept(kwAnalyze) {
	}
	if s.ended() {
		s.partial() // every table
		return
	}
	for {
		q, ok := s.nameChain()
		if !ok {
			s.partial()
			return
		}
		s.relation(q, false, true, false, -1)
		s.group(groupPlain) // columns
		if !s.acceptKind(tComma) {
			return
		}
	}
}

// cluster walks CLUSTER [VERBOSE] [table [USING index]] and CLUSTER index
// ON table.
func (s *scanner) cluster() {
	s.take() // CLUSTER
	s.skipBalanced()
	s.accept(kwVerbose)
	q, ok := s.nameChain()
	if !ok {
		s.partial() // every clustered table
		return
	}
	if s.accept(kwOn) {
		if q, ok = s.nameChain(); !ok {
			s.partial()
			return
		}
	}
	s.relation(q, false, true, false, -1)
	s.drain()
}

// reindex walks REINDEX.
func (s *scanner) reindex() {
	s.take() // REINDEX
	s.skipBalanced()
	if !s.accept(kwIndex) && !s.accept(kwTable) {
		s.partial() // SCHEMA, DATABASE, SYSTEM
		return
	}
	s.accept(kwConcurrently)
	s.relationList(false)
}
