package parsercheck

import (
	"fmt"
	"slices"

	"github.com/switchyard-db/switchyard/internal/classify"
)

// factCounts accumulates how far Analyze agrees with the parser.
type factCounts struct {
	compared     int // statements the parser accepts
	complete     int // ... that Analyze does not call Partial
	tablesAgree  int // ... of those, with the parser's Reads and Writes
	opaqueMissed int // the policy says Partial, Analyze does not
	partialSuper int // Partial statements whose tables include the parser's
	funcsAgree   int // statements with exactly the parser's Funcs
	funcsMissed  int // statements where Analyze misses a call the parser sees
	effectsAgree int // statements with the parser's Effects and transaction modes
	lockAgree    int // complete statements with the parser's Locking
}

// compare checks st against f, counting into c, and returns what
// disagrees ("" if nothing).
func (c *factCounts) compare(st *classify.Statement, f *Facts) (tables, funcs, effects string) {
	c.compared++
	if !st.Partial {
		c.complete++
		if f.Opaque {
			c.opaqueMissed++
			tables = "the policy says partial"
		} else if slices.Equal(st.Reads, f.Reads) && slices.Equal(st.Writes, f.Writes) && len(f.Unhandled) == 0 {
			c.tablesAgree++
		} else {
			tables = fmt.Sprintf("reads %v writes %v, parser reads %v writes %v", st.Reads, st.Writes, f.Reads, f.Writes)
			if len(f.Unhandled) > 0 {
				tables += fmt.Sprintf(" (unhandled %v)", f.Unhandled)
			}
		}
		if st.Locking == f.Locking {
			c.lockAgree++
		} else if tables == "" {
			tables = fmt.Sprintf("locking %v, parser %v", st.Locking, f.Locking)
		}
	} else if subset(f.Reads, st.Reads) && subset(f.Writes, st.Writes) {
		c.partialSuper++
	}
	if sameSet(st.Funcs, f.Funcs) {
		c.funcsAgree++
	} else {
		if !subset(f.Funcs, st.Funcs) {
			c.funcsMissed++
		}
		funcs = fmt.Sprintf("funcs %v, parser %v", st.Funcs, f.Funcs)
	}
	if st.Effects == f.Effects && st.TxAccess == f.TxAccess && st.TxIsolation == f.TxIsolation && st.TxDeferrable == f.TxDeferrable {
		c.effectsAgree++
	} else {
		effects = fmt.Sprintf("effects %v %v %v %v, parser %v %v %v %v", st.Effects, st.TxAccess, st.TxIsolation, st.TxDeferrable,
			f.Effects, f.TxAccess, f.TxIsolation, f.TxDeferrable)
	}
	return tables, funcs, effects
}

func subset[T comparable](a, b []T) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func sameSet[T comparable](a, b []T) bool { return subset(a, b) && subset(b, a) }

func pct(n, d int) float64 {
	if d == 0 {
		return 100
	}
	return 100 * float64(n) / float64(d)
}

// report returns the figures.
func (c *factCounts) report() []string {
	return []string{
		fmt.Sprintf("analysis: %d statements compared, %d complete (Partial false, %.1f%%)", c.compared, c.complete, pct(c.complete, c.compared)),
		fmt.Sprintf("tables: %d/%d complete statements agree (%.3f%%); %d complete where the policy says partial; %d/%d partial ones include the parser's tables",
			c.tablesAgree, c.complete, pct(c.tablesAgree, c.complete), c.opaqueMissed, c.partialSuper, c.compared-c.complete),
		fmt.Sprintf("locking: %d/%d complete statements agree (%.3f%%)", c.lockAgree, c.complete, pct(c.lockAgree, c.complete)),
		fmt.Sprintf("funcs: %d/%d agree exactly (%.3f%%); %d miss a call", c.funcsAgree, c.compared, pct(c.funcsAgree, c.compared), c.funcsMissed),
		fmt.Sprintf("effects: %d/%d agree (%.3f%%)", c.effectsAgree, c.compared, pct(c.effectsAgree, c.compared)),
	}
}
