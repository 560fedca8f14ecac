package classify

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// identValue returns the identifier t of src as PostgreSQL folds it:
// unquoted ASCII letters lower-cased, quoted ones exact with doubled quotes
// undone, U&"..." escapes decoded, all truncated to 63 bytes (clipIdent). It returns a
// substring of src when it can. ok is false for a U&"..." identifier whose
// escapes do not decode.
func identValue(src string, t token) (v string, ok bool) {
	body := src[t.s:t.e]
	switch t.kind {
	case tIdent:
		if !hasUpperASCII(body) && len(body) <= maxIdentLen {
			return body, true
		}
		var buf [maxIdentLen]byte
		return string(lowerASCII(&buf, body, true)), true
	case tQIdent, tUIdent:
		if t.flags&fPlain == 0 {
			body = strings.ReplaceAll(body, `""`, `"`)
		}
		if t.kind == tUIdent && t.flags&fUncertain != 0 {
			if body, ok = decodeUnicodeEscapes(body, uescape(src, t)); !ok {
				return "", false
			}
		}
		return truncateIdent(body), true
	}
	return "", false
}

func hasUpperASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// truncateIdent clips s as PostgreSQL truncates identifiers.
func truncateIdent(s string) string { return s[:clipIdent(s)] }

// uescape returns the escape character of the U&"..." identifier t: the
// one its UESCAPE clause names, or a backslash.
func uescape(src string, t token) byte {
	l := lexer{src: src, pos: int(t.e) + 1}
	if u := l.next(); u.kind == tIdent && u.kw == kwUescape {
		if c := l.next(); c.kind == tString && c.e-c.s == 1 {
			return src[c.s]
		}
	}
	return '\\'
}

// decodeUnicodeEscapes decodes the escapes of a U&"..." body: esc esc is
// esc, esc followed by 4 hex digits or by + and 6 hex digits is that code
// point (UTF-16 surrogate pairs combine).
func decodeUnicodeEscapes(s string, esc byte) (string, bool) {
	var b strings.Builder
	var high rune
	for i := 0; i < len(s); {
		c := s[i]
		if c != esc {
			if high != 0 {
				return "", false
			}
			b.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == esc {
			b.WriteByte(esc)
			i += 2
			continue
		}
		n, start := 4, i+1
		if start < len(s) && s[start] == '+' {
			n, start = 6, start+1
		}
		if start+n > len(s) {
			return "", false
		}
		v, err := strconv.ParseUint(s[start:start+n], 16, 32)
		if err != nil {
			return "", false
		}
		r := rune(v)
		switch {
		case r >= 0xD800 && r <= 0xDBFF:
			if high != 0 {
				return "", false
			}
			high = r
		case r >= 0xDC00 && r <= 0xDFFF:
			if high == 0 {
				return "", false
			}
			b.WriteRune((high-0xD800)<<10 + (r - 0xDC00) + 0x10000)
			high = 0
		default:
			if high != 0 || r == 0 || !utf8.ValidRune(r) {
				return "", false
			}
			b.WriteRune(r)
		}
		i = start + n
	}
	if high != 0 {
		return "", false
	}
	return b.String(), true
}

// identEqual reports whether the identifier tokens a and b of src name the
// same thing once folded.
func identEqual(src string, a, b token) bool {
	if isPlainName(a) && isPlainName(b) {
		var ab, bb [maxIdentLen]byte
		return string(lowerASCII(&ab, src[a.s:a.e], a.kind == tIdent)) ==
			string(lowerASCII(&bb, src[b.s:b.e], b.kind == tIdent))
	}
	av, aok := identValue(src, a)
	bv, bok := identValue(src, b)
	return aok && bok && av == bv
}

// identIs reports whether the identifier token t of src folds to the
// lower-case word w.
func identIs(src string, t token, w string) bool {
	if isPlainName(t) {
		var buf [maxIdentLen]byte
		return string(lowerASCII(&buf, src[t.s:t.e], t.kind == tIdent)) == w
	}
	v, ok := identValue(src, t)
	return ok && v == w
}

// isPlainName reports whether t is an unquoted identifier or a quoted one
// whose body is its value.
func isPlainName(t token) bool {
	return t.kind == tIdent || t.kind == tQIdent && t.flags&fPlain != 0
}
