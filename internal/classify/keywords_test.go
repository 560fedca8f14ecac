package classify

import "testing"

// keywords is every word lookupKw knows.
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
	"join": kwJoin, "only": kwOnly, "atomic": kwAtomic, "case": kwCase, "treat": kwTreat,
	"distinct": kwDistinct,
}

func TestKeywords(t *testing.T) {
	if len(keywords) < int(kwDistinct)-1 {
		t.Errorf("keywords has %d words for %d codes", len(keywords), kwDistinct)
	}
	seen := map[kw]bool{}
	for w, k := range keywords {
		if len(w) > maxKwLen {
			t.Errorf("%q is longer than maxKwLen", w)
		}
		if got := lookupKw(w); got != k {
			t.Errorf("lookupKw(%q) = %d, want %d", w, got, k)
		}
		seen[k] = true
	}
	for k := kwNone + 1; k <= kwDistinct; k++ {
		if !seen[k] {
			t.Errorf("keyword code %d has no word", k)
		}
	}
	for _, w := range []string{"SELECT", "Distinct", "mAtErIaLiZeD"} {
		if lookupKw(w) == kwNone {
			t.Errorf("lookupKw(%q) = none", w)
		}
	}
	for _, w := range []string{"", "x", "selects", "sel", "selec t", "sélect", "materializedx"} {
		if lookupKw(w) != kwNone {
			t.Errorf("lookupKw(%q) = %d", w, lookupKw(w))
		}
	}
}
