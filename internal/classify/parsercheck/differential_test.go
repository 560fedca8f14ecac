package parsercheck

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/switchyard-db/switchyard/internal/classify"
)

// conservative lists corpus statements on which the classifier is allowed
// to say non-Read although the parser says Read, with the reason.
var conservative = map[string]string{}

func TestDifferential(t *testing.T) {
	user := NewUserFuncs(testUserFuncs)
	c := classify.New(testUserFuncs, 0)
	all := corpus()
	seen := map[string]bool{}
	var parsed, agree, kindAgree, unsafe, cons, allowed int
	mismatchKinds := map[string]int{}
	var examples []string
	var fc factCounts
	factExamples := map[string][]string{}
	for _, sql := range all {
		if seen[sql] {
			continue
		}
		seen[sql] = true
		want, err := Truth(sql, user)
		if err != nil {
			continue
		}
		parsed++
		facts, _ := TruthFacts(sql, user)
		st := c.Analyze(sql)
		tables, funcs, effects := fc.compare(st, facts)
		for _, d := range [][2]string{{"tables", tables}, {"funcs", funcs}, {"effects", effects}} {
			if d[1] != "" && len(factExamples[d[0]]) < 30 {
				factExamples[d[0]] = append(factExamples[d[0]], fmt.Sprintf("%s: %q", d[1], sql))
			}
		}
		got := c.Classify(sql)
		if got2 := c.Classify(sql); got2 != got {
			t.Errorf("cached result differs: %q: %v then %v", sql, got, got2)
		}
		switch {
		case got == classify.Read && want != classify.Read:
			unsafe++
			t.Errorf("UNSAFE: classifier says read, parser says %v: %q", want, sql)
		case got != classify.Read && want == classify.Read:
			if reason, ok := conservative[sql]; ok {
				allowed++
				t.Logf("allowed conservative: %q (%s)", sql, reason)
			} else {
				cons++
				t.Errorf("conservative: classifier says %v, parser says read: %q", got, sql)
			}
		default:
			agree++
		}
		if got == want {
			kindAgree++
		} else {
			key := fmt.Sprintf("got %v want %v", got, want)
			mismatchKinds[key]++
			if len(examples) < 40 {
				examples = append(examples, fmt.Sprintf("%s: %q", key, sql))
			}
		}
	}
	t.Logf("corpus: %d generated, %d distinct, %d parsed by pg_query", len(all), len(seen), parsed)
	t.Logf("read/non-read agreement: %d/%d (%.3f%%); unsafe %d, conservative %d (+%d allowed)",
		agree, parsed, 100*float64(agree)/float64(parsed), unsafe, cons, allowed)
	t.Logf("exact kind agreement: %d/%d (%.3f%%)", kindAgree, parsed, 100*float64(kindAgree)/float64(parsed))
	keys := make([]string, 0, len(mismatchKinds))
	for k := range mismatchKinds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		t.Logf("  kind mismatch %s: %d", k, mismatchKinds[k])
	}
	for _, e := range examples {
		t.Logf("  e.g. %s", e)
	}
	for _, l := range fc.report() {
		t.Log(l)
	}
	for _, k := range []string{"tables", "funcs", "effects"} {
		for _, e := range factExamples[k] {
			t.Logf("  %s differ: %s", k, e)
		}
	}
	// Partial false promises the parser's relations; calls may be
	// over-reported (policy.go) but never missed; effects are exact.
	if fc.tablesAgree != fc.complete || fc.lockAgree != fc.complete {
		t.Errorf("%d of %d complete statements disagree with the parser on relations or locking",
			fc.complete-fc.tablesAgree, fc.complete)
	}
	if fc.funcsMissed > 0 || fc.effectsAgree != fc.compared {
		t.Errorf("%d statements miss a call, %d have other effects than the parser's",
			fc.funcsMissed, fc.compared-fc.effectsAgree)
	}
	if parsed < 2000 {
		t.Errorf("only %d corpus statements parse; want at least 2000", parsed)
	}
}

// TestFuncPolicy checks that the classifier and this package agree on every
// listed function.
func TestFuncPolicy(t *testing.T) {
	for _, n := range append(append([]string{}, sessionFuncs...), writeFuncs...) {
		want := builtinKind(n)
		if got := classify.Classify("SELECT " + n + "()"); got != want {
			t.Errorf("%s: classifier %v, policy %v", n, got, want)
		}
		if got := classify.Classify("SELECT x." + strings.ToUpper(n) + " ()"); got != want {
			t.Errorf("%s upper: classifier %v, policy %v", n, got, want)
		}
	}
}

// check is the differential property: wherever the parser accepts sql, the
// classifier never calls a non-read a read.
func check(t *testing.T, c *classify.Classifier, user *UserFuncs, sql string) {
	got := c.Classify(sql)
	if got2 := classify.Classify(sql); got == classify.Read && got2 != classify.Read {
		// A user function list can only make the classifier stricter.
		t.Fatalf("default classifier says %v, classifier with user functions read: %q", got2, sql)
	}
	st := c.Analyze(sql) // never panics
	if st.Kind != got {
		t.Fatalf("Analyze says %v, Classify %v: %q", st.Kind, got, sql)
	}
	want, err := Truth(sql, user)
	if err != nil {
		return
	}
	if got == classify.Read && want != classify.Read {
		t.Fatalf("UNSAFE: classifier says read, parser says %v: %q", want, sql)
	}
	// Partial false is a promise: the relations are exactly the parser's.
	facts, _ := TruthFacts(sql, user)
	var fc factCounts
	if tables, funcs, _ := fc.compare(st, facts); tables != "" || fc.funcsMissed > 0 && !strings.ContainsRune(sql, 0) {
		t.Fatalf("Analyze (Partial %v) disagrees with the parser: %s %s: %q", st.Partial, tables, funcs, sql)
	}
}

func FuzzDifferential(f *testing.F) {
	for i, s := range corpus() {
		if i < len(reads)+len(writes) || i%40 == 0 {
			f.Add(s)
		}
	}
	user := NewUserFuncs(testUserFuncs)
	c := classify.New(testUserFuncs, 1024)
	f.Fuzz(func(t *testing.T, sql string) {
		check(t, c, user, sql)
		check(t, c, user, fromBytes(sql))
	})
}
