package classify

import "testing"

func TestKeywords(t *testing.T) {
	seen := map[kw]bool{}
	for _, k := range keywordList {
		if len(k.word) > maxKwLen {
			t.Errorf("%q is longer than maxKwLen", k.word)
		}
		if got := lookupKw(k.word); got != k.code {
			t.Errorf("lookupKw(%q) = %d, want %d", k.word, got, k.code)
		}
		if got := k.code.category(); got != k.cat {
			t.Errorf("%q: category %d, want %d", k.word, got, k.cat)
		}
		seen[k.code] = true
	}
	// PostgreSQL 17 has 78 reserved, 23 type or function name, 63 column
	// name and 327 unreserved keywords.
	counts := map[kwCat]int{}
	for _, k := range keywordList {
		counts[k.cat]++
	}
	if counts[catReserved] != 78 || counts[catTypeFunc] != 23 || counts[catColName] != 63 || counts[catUnreserved] != 327 {
		t.Errorf("keyword categories: %v", counts)
	}
	for k := kwNone + 1; k < kwCount; k++ {
		if !seen[k] {
			t.Errorf("keyword code %d has no word", k)
		}
	}
	for w, k := range map[string]kw{"SELECT": kwSelect, "Distinct": kwDistinct, "mAtErIaLiZeD": kwMaterialized,
		"temporary": kwTemp, "ANALYSE": kwAnalyze, "Current_Timestamp": kwCurrentTimestamp} {
		if got := lookupKw(w); got != k {
			t.Errorf("lookupKw(%q) = %d, want %d", w, got, k)
		}
	}
	for _, w := range []string{"", "x", "selects", "sel", "selec t", "sélect", "materializedx", "current_timestampx", "_"} {
		if lookupKw(w) != kwNone {
			t.Errorf("lookupKw(%q) = %d", w, lookupKw(w))
		}
	}
}
