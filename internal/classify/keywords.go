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
)

var keywords = map[string]kw{
	"select": kwSelect, "values": kwValues, "table": kwTable, "with": kwWith,
	"show": kwShow, "explain": kwExplain,

	"set": kwSet, "reset": kwReset, "listen": kwListen, "unlisten": kwUnlisten,
	"prepare": kwPrepare, "deallocate": kwDeallocate, "execute": kwExecute,
	"declare": kwDeclare, "fetch": kwFetch, "close": kwClose, "move": kwMove,
	"discard": kwDiscard, "load": kwLoad, "begin": kwBegin, "start": kwStart,
	"commit": kwCommit, "end": kwEnd, "rollback": kwRollback, "abort": kwAbort,
	"savepoint": kwSavepoint, "release": kwRelease,

	"insert": kwInsert, "update": kwUpdate, "delete": kwDelete, "merge": kwMerge,
	"copy": kwCopy, "create": kwCreate, "alter": kwAlter, "drop": kwDrop,
	"truncate": kwTruncate, "grant": kwGrant, "revoke": kwRevoke,
	"vacuum": kwVacuum, "analyze": kwAnalyze, "analyse": kwAnalyze,
	"call": kwCall, "do": kwDo, "lock": kwLock, "refresh": kwRefresh,
	"cluster": kwCluster, "reindex": kwReindex, "comment": kwComment,
	"security": kwSecurity, "import": kwImport, "notify": kwNotify,
	"checkpoint": kwCheckpoint, "reassign": kwReassign,

	"verbose": kwVerbose, "for": kwFor, "share": kwShare, "no": kwNo, "key": kwKey,
	"into": kwInto, "recursive": kwRecursive, "as": kwAs, "not": kwNot,
	"materialized": kwMaterialized, "search": kwSearch, "breadth": kwBreadth,
	"depth": kwDepth, "first": kwFirst, "by": kwBy, "cycle": kwCycle, "to": kwTo,
	"default": kwDefault, "using": kwUsing, "substring": kwSubstring,
	"overlay": kwOverlay, "local": kwLocal, "global": kwGlobal, "temp": kwTemp,
	"temporary": kwTemp, "unlogged": kwUnlogged, "or": kwOr, "replace": kwReplace,
	"uescape": kwUescape, "false": kwFalse, "off": kwOff, "from": kwFrom,
	"join": kwJoin, "only": kwOnly, "atomic": kwAtomic, "case": kwCase,
}

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
	return keywords[string(buf[:len(s)])]
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
