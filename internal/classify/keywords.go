package classify

// kw identifies a PostgreSQL keyword (kwlist.go has the codes).
type kw uint16

// kwCat is a keyword's category in PostgreSQL's grammar, which decides
// where it may stand for a name.
type kwCat uint8

const (
	// catUnreserved keywords (and non-keywords) may name anything.
	catUnreserved kwCat = iota
	// catColName keywords may name columns, tables and types but not
	// functions; followed by "(" they are SQL syntax (COALESCE, EXTRACT,
	// VALUES, a type with modifiers, ...).
	catColName
	// catTypeFunc keywords may name functions and types but not columns
	// or tables (JOIN, LEFT, LIKE, ...).
	catTypeFunc
	// catReserved keywords name nothing unless quoted.
	catReserved
)

// maxKwLen is the length of the longest keyword (current_timestamp).
const maxKwLen = 17

// keywordTable is an open-addressing hash table of keywordList, indexed by
// kwHash: a map costs more than lexing the word.
var (
	keywordTable [1024]struct {
		word string
		code kw
	}
	keywordCats [kwCount]kwCat
)

// kwHash continues the hash h with the byte c.
func kwHash(h uint32, c byte) uint32 { return (h ^ uint32(c)) * 16777619 }

const (
	kwHashSeed  = 2166136261
	kwTableMask = uint32(len(keywordTable) - 1)
)

func init() {
	for _, k := range keywordList {
		h := uint32(kwHashSeed)
		for i := 0; i < len(k.word); i++ {
			h = kwHash(h, k.word[i])
		}
		i := h & kwTableMask
		for keywordTable[i].word != "" {
			i = (i + 1) & kwTableMask
		}
		keywordTable[i].word, keywordTable[i].code = k.word, k.code
		keywordCats[k.code] = k.cat
	}
}

// lookupKw returns the keyword code of the identifier s (ASCII
// case-insensitive, as PostgreSQL folds unquoted identifiers), or kwNone,
// without allocating.
func lookupKw(s string) kw {
	if len(s) < 2 || len(s) > maxKwLen {
		return kwNone
	}
	var buf [maxKwLen]byte
	h := uint32(kwHashSeed)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		} else if (c < 'a' || c > 'z') && c != '_' {
			return kwNone
		}
		buf[i] = c
		h = kwHash(h, c)
	}
	for i := h & kwTableMask; ; i = (i + 1) & kwTableMask {
		switch e := &keywordTable[i]; e.word {
		case "":
			return kwNone
		case string(buf[:len(s)]):
			return e.code
		}
	}
}

// category returns the category of the keyword k (catUnreserved for kwNone).
func (k kw) category() kwCat {
	if k >= kwCount {
		return catUnreserved
	}
	return keywordCats[k]
}

// lowerASCII copies s into buf with ASCII letters folded to lower case, as
// PostgreSQL folds unquoted identifiers in UTF-8 databases, and clips it to
// at most 63 bytes (NAMEDATALEN-1) as PostgreSQL truncates identifiers.
func lowerASCII(buf *[maxIdentLen]byte, s string, fold bool) []byte {
	s = s[:clipIdent(s)]
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

// clipIdent returns the length PostgreSQL truncates the identifier s to:
// the characters that fit in 63 bytes, each as long as its UTF-8 lead byte
// says (pg_mbcliplen; a byte that leads nothing counts alone).
func clipIdent(s string) int {
	if len(s) <= maxIdentLen {
		return len(s)
	}
	n := 0
	for n < len(s) {
		l := 1
		switch c := s[n]; {
		case c&0xE0 == 0xC0:
			l = 2
		case c&0xF0 == 0xE0:
			l = 3
		case c&0xF8 == 0xF0:
			l = 4
		}
		if n+l > maxIdentLen {
			break
		}
		n += l
	}
	return n
}
