package stdlib

import (
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// Result formats and routing
//
// pgx's stdlib asks for every result column in text, except for the types
// in resultFormats, and its driver values for those other types are the
// text PostgreSQL prints. Asking for that takes a per-query option
// (pgx.QueryResultFormatsByOID) that the DB cannot carry in the batch by
// which it checks a replica's freshness or captures the session's position
// after a write: a read with the option goes to the primary whenever the
// session needs either, and leaves it as it was. So the option is only sent
// where it changes a result: for each SQL text, the first execution sends
// it and notes whether any column would otherwise come back in a binary
// form whose text this package cannot reproduce exactly (arrays, interval,
// inet, ...); later executions of a text whose columns are all of types
// that come back in text anyway (text, varchar, json, jsonb, ...), in
// resultFormats, or in exactBinary, go without it.

// exactBinary are the types outside resultFormats whose binary form this
// package turns into exactly the text PostgreSQL prints.
var exactBinary = map[uint32]bool{
	pgtype.NumericOID: true, // numericText
	pgtype.UUIDOID:    true, // one canonical form
}

// needsFormats reports whether a result with these columns must be asked for
// with resultFormats to give pgx stdlib's values.
func needsFormats(fields []pgconn.FieldDescription, m *pgtype.Map) bool {
	for _, fd := range fields {
		oid := fd.DataTypeOID
		if _, ok := resultFormats[oid]; ok || exactBinary[oid] {
			continue
		}
		if m == nil || m.FormatCodeForOID(oid) != pgtype.TextFormatCode {
			return true
		}
	}
	return false
}

// shapeCacheSize bounds the SQL texts remembered: past it the cache starts
// over (ORMs make many texts, such as IN lists of every length).
const shapeCacheSize = 4096

// shapes remembers, per SQL text, whether its results need resultFormats.
type shapes struct {
	m atomic.Pointer[sync.Map] // string -> bool
	n atomic.Int64
}

// get returns what is known of sql: whether it needs resultFormats, and
// whether it is known at all.
func (s *shapes) get(sql string) (needs, known bool) {
	m := s.m.Load()
	if m == nil {
		return false, false
	}
	v, ok := m.Load(sql)
	if !ok {
		return false, false
	}
	return v.(bool), true
}

func (s *shapes) put(sql string, needs bool) {
	m := s.m.Load()
	if m == nil || s.n.Load() >= shapeCacheSize {
		fresh := new(sync.Map)
		if s.m.CompareAndSwap(m, fresh) {
			s.n.Store(0)
		}
		m = s.m.Load()
	}
	if _, loaded := m.LoadOrStore(sql, needs); !loaded {
		s.n.Add(1)
	}
}

// numericText turns a numeric in PostgreSQL's binary form into the text
// PostgreSQL's numeric_out prints for it (get_str_from_var): the integer
// part without leading zeros, and exactly dscale digits after the point.
func numericText(src []byte) (string, bool) {
	if len(src) < 8 {
		return "", false
	}
	be16 := func(i int) int { return int(src[i])<<8 | int(src[i+1]) }
	ndigits, weight, sign, dscale := be16(0), int(int16(be16(2))), be16(4), be16(6)
	switch sign {
	case 0xC000:
		return "NaN", true
	case 0xD000:
		return "Infinity", true
	case 0xF000:
		return "-Infinity", true
	case 0x0000, 0x4000:
	default:
		return "", false
	}
	if len(src) != 8+2*ndigits || dscale&0x3fff != dscale {
		return "", false
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return be16(8 + 2*i)
	}
	var b []byte
	if sign == 0x4000 {
		b = append(b, '-')
	}
	if weight < 0 {
		b = append(b, '0')
	} else {
		for i := 0; i <= weight; i++ {
			d := digit(i)
			if d > 9999 {
				return "", false
			}
			if i == 0 {
				b = appendInt(b, d)
			} else {
				b = append(b, byte('0'+d/1000), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
			}
		}
	}
	if dscale > 0 {
		b = append(b, '.')
		for i, n := weight+1, 0; n < dscale; i++ {
			d := digit(i)
			if d > 9999 {
				return "", false
			}
			for _, c := range [4]byte{byte('0' + d/1000), byte('0' + d/100%10), byte('0' + d/10%10), byte('0' + d%10)} {
				if n < dscale {
					b = append(b, c)
					n++
				}
			}
		}
	}
	return string(b), true
}

func appendInt(b []byte, d int) []byte {
	if d >= 10 {
		b = appendInt(b, d/10)
	}
	return append(b, byte('0'+d%10))
}
