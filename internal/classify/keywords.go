package classify

// kw identifies the few keywords the classifier cares about.
type kw uint8

const (
	kwNone kw = iota
	// statement heads: reads
	kwSelect
	kwValues
	kwTable
	kwWith
	kwShow
	kwExplain
	// statement heads: session state
	kwSet
	kwReset
	kwListen
	kwUnlisten
	kwPrepare
	kwDeallocate
	kwExecute
	kwDeclare
	kwFetch
	kwClose
	kwMove
	kwDiscard
	kwLoad
	kwBegin
	kwStart
	kwCommit
	kwEnd
	kwRollback
	kwAbort
	kwSavepoint
	kwRelease
	// statement heads: writes
	kwInsert
	kwUpdate
	kwDelete
	kwMerge
	kwCopy
	kwCreate
	kwAlter
	kwDrop
	kwTruncate
	kwGrant
	kwRevoke
	kwVacuum
	kwAnalyze // ANALYZE and ANALYSE
	kwCall
	kwDo
	kwLock
	kwRefresh
	kwCluster
	kwReindex
	kwComment
	kwSecurity
	kwImport
	kwNotify
	kwCheckpoint
	kwReassign
	// everything else
	kwVerbose
	kwFor
	kwShare
	kwNo
	kwKey
	kwInto
	kwRecursive
	kwAs
	kwNot
	kwMaterialized
	kwSearch
	kwBreadth
	kwDepth
	kwFirst
	kwBy
	kwCycle
	kwTo
	kwDefault
	kwUsing
	kwSubstring
	kwOverlay
	kwLocal
	kwGlobal
	kwTemp // TEMP and TEMPORARY
	kwUnlogged
	kwOr
	kwReplace
	kwUescape
	kwFalse
	kwOff
	kwFrom
	kwJoin
	kwOnly
	kwAtomic
	kwCase
	kwTreat
	kwDistinct
)

// maxKwLen is the length of the longest keyword in keywords.
const maxKwLen = 12

// lookupKw returns the keyword code of the identifier s (ASCII
// case-insensitive, as PostgreSQL folds unquoted identifiers), without
// allocating.
func lookupKw(s string) kw {
	if len(s) < 2 || len(s) > maxKwLen {
		return kwNone
	}
	var buf [maxKwLen]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		} else if c < 'a' || c > 'z' {
			return kwNone
		}
		buf[i] = c
	}
	switch string(buf[:len(s)]) {
	case "select":
		return kwSelect
	case "values":
		return kwValues
	case "table":
		return kwTable
	case "with":
		return kwWith
	case "show":
		return kwShow
	case "explain":
		return kwExplain
	case "set":
		return kwSet
	case "reset":
		return kwReset
	case "listen":
		return kwListen
	case "unlisten":
		return kwUnlisten
	case "prepare":
		return kwPrepare
	case "deallocate":
		return kwDeallocate
	case "execute":
		return kwExecute
	case "declare":
		return kwDeclare
	case "fetch":
		return kwFetch
	case "close":
		return kwClose
	case "move":
		return kwMove
	case "discard":
		return kwDiscard
	case "load":
		return kwLoad
	case "begin":
		return kwBegin
	case "start":
		return kwStart
	case "commit":
		return kwCommit
	case "end":
		return kwEnd
	case "rollback":
		return kwRollback
	case "abort":
		return kwAbort
	case "savepoint":
		return kwSavepoint
	case "release":
		return kwRelease
	case "insert":
		return kwInsert
	case "update":
		return kwUpdate
	case "delete":
		return kwDelete
	case "merge":
		return kwMerge
	case "copy":
		return kwCopy
	case "create":
		return kwCreate
	case "alter":
		return kwAlter
	case "drop":
		return kwDrop
	case "truncate":
		return kwTruncate
	case "grant":
		return kwGrant
	case "revoke":
		return kwRevoke
	case "vacuum":
		return kwVacuum
	case "analyze", "analyse":
		return kwAnalyze
	case "call":
		return kwCall
	case "do":
		return kwDo
	case "lock":
		return kwLock
	case "refresh":
		return kwRefresh
	case "cluster":
		return kwCluster
	case "reindex":
		return kwReindex
	case "comment":
		return kwComment
	case "security":
		return kwSecurity
	case "import":
		return kwImport
	case "notify":
		return kwNotify
	case "checkpoint":
		return kwCheckpoint
	case "reassign":
		return kwReassign
	case "verbose":
		return kwVerbose
	case "for":
		return kwFor
	case "share":
		return kwShare
	case "no":
		return kwNo
	case "key":
		return kwKey
	case "into":
		return kwInto
	case "recursive":
		return kwRecursive
	case "as":
		return kwAs
	case "not":
		return kwNot
	case "materialized":
		return kwMaterialized
	case "search":
		return kwSearch
	case "breadth":
		return kwBreadth
	case "depth":
		return kwDepth
	case "first":
		return kwFirst
	case "by":
		return kwBy
	case "cycle":
		return kwCycle
	case "to":
		return kwTo
	case "default":
		return kwDefault
	case "using":
		return kwUsing
	case "substring":
		return kwSubstring
	case "overlay":
		return kwOverlay
	case "local":
		return kwLocal
	case "global":
		return kwGlobal
	case "temp", "temporary":
		return kwTemp
	case "unlogged":
		return kwUnlogged
	case "or":
		return kwOr
	case "replace":
		return kwReplace
	case "uescape":
		return kwUescape
	case "false":
		return kwFalse
	case "off":
		return kwOff
	case "from":
		return kwFrom
	case "join":
		return kwJoin
	case "only":
		return kwOnly
	case "atomic":
		return kwAtomic
	case "case":
		return kwCase
	case "treat":
		return kwTreat
	case "distinct":
		return kwDistinct
	}
	return kwNone
}

// lowerASCII copies s into buf with ASCII letters folded to lower case, as
// PostgreSQL folds unquoted identifiers in UTF-8 databases, and clips it to
// at most 63 bytes (NAMEDATALEN-1) without splitting a UTF-8 character, as
// PostgreSQL truncates identifiers.
func lowerASCII(buf *[maxIdentLen]byte, s string, fold bool) []byte {
	if len(s) > maxIdentLen {
		n := maxIdentLen
		for n > 0 && s[n]&0xC0 == 0x80 { // s[n] continues a UTF-8 character
			n--
		}
		s = s[:n]
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if fold && c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return buf[:len(s)]
}

// maxIdentLen is NAMEDATALEN-1: PostgreSQL truncates longer identifiers.
const maxIdentLen = 63
