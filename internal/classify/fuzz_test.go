package classify

import (
	"slices"
	"testing"
)

// FuzzClassify checks properties that need no parser: the classifier never
// panics, the cache agrees with the uncached classifier, and edits that
// cannot turn text into a read never do.
func FuzzClassify(f *testing.F) {
	for _, tc := range cases {
		f.Add(tc.sql)
	}
	for _, q := range benchQueries {
		f.Add(q)
	}
	for _, s := range []string{
		"SELECT '", "SELECT E'\\", "SELECT $a$", "SELECT $$ $a$ $$", "SELECT /* /* */", "SELECT \"",
		"SELECT 1 --", "SELECT U&\"a\" UESCAPE '!'", "SELECT U&'", "WITH", "WITH x AS (", "EXPLAIN (",
		"SELECT substring(", "SELECT 1 FOR", "((((((((((((((((((((((((((((((((((SELECT 1))))))))))))))))))))))))))))))))))",
		"CREATE FUNCTION f() BEGIN ATOMIC SELECT 1;", "SELECT 'a'\n", "SELECT 'a' --\n'b'",
	} {
		f.Add(s)
	}
	c := New([]string{"app.f", "g"}, 64)
	f.Fuzz(func(t *testing.T, s string) {
		k := Classify(s)
		if k > Session {
			t.Fatalf("Classify(%q) = %d: no such kind", s, k)
		}
		// Analyze never panics, and agrees with Classify.
		st := Analyze(s)
		if st.Kind != k {
			t.Fatalf("Analyze(%q).Kind = %v, Classify %v", s, st.Kind, k)
		}
		if k == Unknown && !st.Partial {
			t.Fatalf("Analyze(%q) is Unknown but not Partial", s)
		}
		if cs := c.Analyze(s); cs.Kind != c.Classify(s) || c.Analyze(s) != cs && len(s) <= maxCachedLen {
			t.Fatalf("cached Analyze(%q) is not stable", s)
		}
		if pst := Analyze("/* c */ " + s + "\n;"); pst.Statements != st.Statements || pst.Partial != st.Partial ||
			!slices.Equal(pst.Reads, st.Reads) || !slices.Equal(pst.Writes, st.Writes) {
			t.Fatalf("Analyze(%q) = %+v, but with a comment and a ';' %+v", s, st, pst)
		}
		// The cache returns what the uncached classifier does (a user
		// function list can only make a read something else).
		if ck := c.Classify(s); ck != k && !((k == Read || k == Unknown) && ck == Write) {
			t.Fatalf("cached Classify(%q) = %v, uncached %v", s, ck, k)
		}
		if ck1, ck2 := c.Classify(s), c.Classify(s); ck1 != ck2 {
			t.Fatalf("cached Classify(%q) = %v, then %v", s, ck1, ck2)
		}
		// Leading blanks and comments change nothing.
		for _, p := range []string{" ", "\n\t", "/* c */", "/* /* c */ */ ", "-- c\n"} {
			if pk := Classify(p + s); pk != k {
				t.Fatalf("Classify(%q) = %v but Classify(%q) = %v", s, k, p+s, pk)
			}
		}
		// Neither does a trailing empty statement.
		if sk := Classify(s + "\n;"); sk != k {
			t.Fatalf("Classify(%q) = %v but with a trailing ';' %v", s, k, sk)
		}
		// Appending a write never yields a read; appending a locking
		// clause to a read never does either.
		if Classify(s+"\n;DELETE FROM t") == Read {
			t.Fatalf("Classify(%q + DELETE) = read", s)
		}
		if k == Read {
			for _, suffix := range []string{"\nFOR UPDATE", "\nFOR NO KEY UPDATE", "\n;SET x = 1", "\nUNION SELECT nextval('s')"} {
				if Classify(s+suffix) == Read {
					t.Fatalf("Classify(%q) = read", s+suffix)
				}
			}
			// A read is still a read with its keywords in another case,
			// unless that case matters (quoted text, or a quoted name).
			// (Only ASCII: strings.ToUpper turns "ſhare" into "SHARE".)
			if !containsAny(s, "'\"$\\") {
				if uk := Classify(upperASCII(s)); uk != Read {
					t.Fatalf("Classify(%q) = read but upper case %v", s, uk)
				}
			}
		}
	})
}

func upperASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

func containsAny(s, chars string) bool {
	for i := 0; i < len(s); i++ {
		for j := 0; j < len(chars); j++ {
			if s[i] == chars[j] {
				return true
			}
		}
	}
	return false
}
