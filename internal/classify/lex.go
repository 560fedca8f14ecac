package classify

import "strings"

// tokKind is the lexical class of a token.
type tokKind uint8

const (
	tEOF    tokKind = iota
	tIdent          // unquoted identifier or keyword
	tQIdent         // "quoted identifier"; s:e is the text between the quotes
	tUIdent         // U&"quoted identifier"; s:e is the text between the quotes
	tString         // any string constant; s:e is its body when plain
	tNumber         // numeric constant
	tParam          // $1
	tLParen         // (
	tRParen         // )
	tComma          // ,
	tSemi           // ;
	tDot            // .
	tOther          // operators and any other punctuation
	tError          // unterminated literal, comment or identifier: PostgreSQL rejects the text
)

// punctuation maps the one-byte tokens to their kinds (tEOF: not one).
var punctuation = [256]tokKind{'(': tLParen, ')': tRParen, ',': tComma, ';': tSemi, '.': tDot}

// Token flags.
const (
	// fPlain marks a string whose body s:e is its value (no escapes, doubled
	// quotes or continuation lines), or a quoted identifier without doubled
	// quotes.
	fPlain uint8 = 1 << iota
	// fUncertain marks a U&"identifier" whose value the lexer does not decode
	// (it contains escapes or is followed by UESCAPE).
	fUncertain
)

// token is one lexical token of the SQL text.
type token struct {
	kind  tokKind
	flags uint8 // fPlain, fUncertain
	kw    kw    // keyword code for tIdent (kwNone if not a keyword)
	s, e  int32 // byte range of the token text (for quoted tokens: the body)
}

// lexer splits PostgreSQL SQL text into tokens the way the server's scanner
// (src/backend/parser/scan.l) does, as far as token boundaries are concerned.
// It is a value type: copying it gives a cheap look-ahead.
type lexer struct {
	src string
	pos int
	// scsOff lexes '...' strings as if standard_conforming_strings were off
	// (backslash escapes in ordinary strings).
	scsOff bool
	// backslash is set when an ordinary '...' string (lexed with
	// standard_conforming_strings on) contains a backslash: such text means
	// something else to a server with standard_conforming_strings off.
	backslash bool
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || c >= '0' && c <= '9' || c == '$'
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isOpChar(c byte) bool {
	switch c {
	case '~', '!', '@', '#', '^', '&', '|', '`', '?', '+', '-', '*', '/', '%', '<', '>', '=':
		return true
	}
	return false
}

// String lexing modes.
const (
	modeStd = iota // '...': '' escapes a quote
	modeE          // E'...': '' and backslash escapes
	modeBit        // B'...', X'...': no escapes at all
)

// next returns the next token, skipping whitespace and comments.
func (l *lexer) next() token {
	src := l.src
	n := len(src)
	i := l.pos
	// Whitespace and comments. Block comments nest.
	for i < n {
		c := src[i]
		if isSpace(c) {
			i++
			continue
		}
		if c == '-' && i+1 < n && src[i+1] == '-' {
			i += 2
			for i < n && src[i] != '\n' && src[i] != '\r' {
				i++
			}
			continue
		}
		if c == '/' && i+1 < n && src[i+1] == '*' {
			depth := 1
			i += 2
			for depth > 0 {
				if i >= n {
					l.pos = n
					return token{kind: tError, s: int32(n), e: int32(n)}
				}
				switch {
				case src[i] == '/' && i+1 < n && src[i+1] == '*':
					depth++
					i += 2
				case src[i] == '*' && i+1 < n && src[i+1] == '/':
					depth--
					i += 2
				default:
					i++
				}
			}
			continue
		}
		break
	}
	if i >= n {
		l.pos = n
		return token{kind: tEOF, s: int32(n), e: int32(n)}
	}
	c := src[i]
	switch {
	case isIdentStart(c):
		if i+1 < n && src[i+1] == '\'' {
			switch c {
			case 'e', 'E':
				return l.str(i, i+2, modeE)
			case 'b', 'B', 'x', 'X':
				return l.str(i, i+2, modeBit)
			case 'n', 'N':
				if l.scsOff {
					return l.str(i, i+2, modeE)
				}
				return l.str(i, i+2, modeStd)
			}
		}
		if (c == 'u' || c == 'U') && i+2 < n && src[i+1] == '&' {
			if src[i+2] == '\'' {
				if l.scsOff {
					// The server rejects U&'' strings when
					// standard_conforming_strings is off.
					l.pos = n
					return token{kind: tError, s: int32(i), e: int32(n)}
				}
				return l.str(i, i+3, modeStd)
			}
			if src[i+2] == '"' {
				return l.uident(i)
			}
		}
		j := i + 1
		for j < n && isIdentCont(src[j]) {
			j++
		}
		l.pos = j
		return token{kind: tIdent, kw: lookupKw(src[i:j]), s: int32(i), e: int32(j)}
	case c == '"':
		return l.qident(i, i+1, tQIdent)
	case c == '\'':
		if l.scsOff {
			return l.str(i, i+1, modeE)
		}
		return l.str(i, i+1, modeStd)
	case c == '$':
		j := i + 1
		if j < n && isDigit(src[j]) {
			for j < n && isDigit(src[j]) {
				j++
			}
			l.pos = j
			return token{kind: tParam, s: int32(i), e: int32(j)}
		}
		if j < n && isIdentStart(src[j]) {
			j++
			for j < n && (isIdentStart(src[j]) || isDigit(src[j])) {
				j++
			}
		}
		if j < n && src[j] == '$' {
			// Dollar quote: $tag$ ... $tag$.
			tag := src[i : j+1]
			body := j + 1
			k := strings.Index(src[body:], tag)
			if k < 0 {
				l.pos = n
				return token{kind: tError, s: int32(i), e: int32(n)}
			}
			l.pos = body + k + len(tag)
			return token{kind: tString, flags: fPlain, s: int32(body), e: int32(body + k)}
		}
		l.pos = i + 1
		return token{kind: tOther, s: int32(i), e: int32(i + 1)}
	case isDigit(c) || c == '.' && i+1 < n && isDigit(src[i+1]):
		return l.number(i)
	case punctuation[c] != tEOF:
		l.pos = i + 1
		return token{kind: punctuation[c], s: int32(i), e: int32(i + 1)}
	case isOpChar(c):
		// An operator never contains "--" or "/*": a comment starts there.
		j := i + 1
		for j < n && isOpChar(src[j]) {
			if j+1 < n && (src[j] == '-' && src[j+1] == '-' || src[j] == '/' && src[j+1] == '*') {
				break
			}
			j++
		}
		l.pos = j
		return token{kind: tOther, s: int32(i), e: int32(j)}
	}
	l.pos = i + 1
	return token{kind: tOther, s: int32(i), e: int32(i + 1)}
}

// number lexes a numeric constant starting at i. It stops early rather than
// late: anything after the digits (0x1F, 1_000, 1e, 1abc) becomes further
// tokens, which can only make keywords more visible, never hide them.
func (l *lexer) number(i int) token {
	src := l.src
	n := len(src)
	j := i
	for j < n && isDigit(src[j]) {
		j++
	}
	if j < n && src[j] == '.' && !(j+1 < n && src[j+1] == '.') {
		j++
		for j < n && isDigit(src[j]) {
			j++
		}
	}
	if j < n && (src[j] == 'e' || src[j] == 'E') {
		k := j + 1
		if k < n && (src[k] == '+' || src[k] == '-') {
			k++
		}
		if k < n && isDigit(src[k]) {
			for k < n && isDigit(src[k]) {
				k++
			}
			j = k
		}
	}
	l.pos = j
	return token{kind: tNumber, s: int32(i), e: int32(j)}
}

// str lexes a string constant whose opening quote ends at body (start is the
// first byte of the token, e.g. the E of E'...').
func (l *lexer) str(start, body int, mode int) token {
	src := l.src
	n := len(src)
	i := body
	plain := true
	for {
		if i >= n {
			l.pos = n
			return token{kind: tError, s: int32(start), e: int32(n)}
		}
		c := src[i]
		switch {
		case c == '\'':
			if mode != modeBit && i+1 < n && src[i+1] == '\'' {
				plain = false
				i += 2
				continue
			}
			end := i
			i++
			// A string continues after whitespace that includes a newline
			// (and may include -- comments) followed by another quote.
			if j := continuation(src, i); j >= 0 {
				plain = false
				i = j + 1
				continue
			}
			l.pos = i
			f := uint8(0)
			if plain {
				f = fPlain
			}
			return token{kind: tString, flags: f, s: int32(body), e: int32(end)}
		case c == '\\' && mode == modeE:
			plain = false
			i += 2
		default:
			if c == '\\' && mode == modeStd && !l.scsOff {
				l.backslash = true
			}
			i++
		}
	}
}

// continuation returns the index of the quote that continues a string
// constant ending just before i, or -1.
func continuation(src string, i int) int {
	n := len(src)
	newline := false
	for i < n {
		c := src[i]
		switch {
		case c == '\n' || c == '\r':
			newline = true
			i++
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && src[i+1] == '-':
			for i < n && src[i] != '\n' && src[i] != '\r' {
				i++
			}
		case c == '\'' && newline:
			return i
		default:
			return -1
		}
	}
	return -1
}

// qident lexes a quoted identifier whose opening quote ends at body.
func (l *lexer) qident(start, body int, kind tokKind) token {
	src := l.src
	n := len(src)
	i := body
	plain := true
	for {
		if i >= n {
			l.pos = n
			return token{kind: tError, s: int32(start), e: int32(n)}
		}
		if src[i] == '"' {
			if i+1 < n && src[i+1] == '"' {
				plain = false
				i += 2
				continue
			}
			l.pos = i + 1
			if i == body {
				// Zero-length delimited identifier: a syntax error.
				return token{kind: tError, s: int32(start), e: int32(i + 1)}
			}
			f := uint8(0)
			if plain {
				f = fPlain
			}
			return token{kind: kind, flags: f, s: int32(body), e: int32(i)}
		}
		i++
	}
}

// uident lexes U&"..." [UESCAPE '...'] starting at i.
func (l *lexer) uident(i int) token {
	t := l.qident(i, i+3, tUIdent)
	if t.kind != tUIdent {
		return t
	}
	if strings.IndexByte(l.src[t.s:t.e], '\\') >= 0 {
		t.flags |= fUncertain
	}
	// UESCAPE 'c' belongs to the identifier.
	la := *l
	if u := la.next(); u.kind == tIdent && u.kw == kwUescape {
		if c := la.next(); c.kind == tString {
			*l = la
			t.flags |= fUncertain
		}
	}
	return t
}

// text returns the source text of t (for quoted tokens, the body).
func (l *lexer) text(t token) string { return l.src[t.s:t.e] }
