package parsercheck

import (
	"strings"
	"testing"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/switchyard-db/switchyard/internal/classify"
)

// TestKeywordCategories checks the classifier's keyword categories against
// libpg_query's scanner, through the quoting of names (a name is quoted
// if it is a keyword other than an unreserved one), for every word of the
// corpus.
func TestKeywordCategories(t *testing.T) {
	words := map[string]bool{}
	for _, sql := range corpus() {
		for _, f := range strings.FieldsFunc(strings.ToLower(sql), func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r == '_')
		}) {
			words[f] = true
		}
	}
	keywords := 0
	for w := range words {
		res, err := pg_query.Scan(w)
		if err != nil || len(res.Tokens) != 1 {
			continue
		}
		kind := res.Tokens[0].KeywordKind
		if kind != pg_query.KeywordKind_NO_KEYWORD {
			keywords++
		}
		wantQuoted := kind == pg_query.KeywordKind_COL_NAME_KEYWORD ||
			kind == pg_query.KeywordKind_TYPE_FUNC_NAME_KEYWORD || kind == pg_query.KeywordKind_RESERVED_KEYWORD
		if quoted := (classify.Table{Name: w}).String() != w; quoted != wantQuoted {
			t.Errorf("%q: quoted %v, libpg_query says %v", w, quoted, kind)
		}
	}
	if keywords < 150 {
		t.Errorf("only %d keywords in the corpus", keywords)
	}
	t.Logf("%d words, %d keywords", len(words), keywords)
}
