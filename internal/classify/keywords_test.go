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
