package stdlib

import "testing"

func TestTransactionScoped(t *testing.T) {
	for q, want := range map[string]bool{
		"SAVEPOINT a":              true,
		"release savepoint a":      true,
		"ROLLBACK TO SAVEPOINT a;": true,
		"  /* x /* nested */ */ -- c\n set local work_mem = '1MB'": true,
		"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE":             true,
		"SET CONSTRAINTS ALL DEFERRED":                             true,
		"set\tlocal\nsearch_path = x ;  ":                          true,
		"SET work_mem = '1MB'":                                     false,
		"SET SESSION work_mem = '1MB'":                             false,
		"SET LOCAL work_mem = '1MB'; SET work_mem = '2MB'":         false,
		"SAVEPOINT a; LISTEN x":                                    false,
		"SELECT set_config('a.b', 'c', true)":                      false,
		"LISTEN x":                                                 false,
		"PREPARE p AS SELECT 1":                                    false,
		"CREATE TEMP TABLE t (x int)":                              false,
		"SETLOCAL x":                                               false,
		"/* unterminated SAVEPOINT a":                              false,
		"":                                                         false,
		"SET LOCAL x = ';'":                                        false, // conservative: any inner semicolon
	} {
		if got := transactionScoped(q); got != want {
			t.Errorf("transactionScoped(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestNumericText(t *testing.T) {
	// PostgreSQL's binary numerics: ndigits, weight, sign, dscale, then
	// base-10000 digits.
	num := func(weight, sign, dscale int, digits ...int) []byte {
		b := []byte{byte(len(digits) >> 8), byte(len(digits)), byte(weight >> 8), byte(weight), byte(sign >> 8), byte(sign), byte(dscale >> 8), byte(dscale)}
		for _, d := range digits {
			b = append(b, byte(d>>8), byte(d))
		}
		return b
	}
	for _, tc := range []struct {
		src  []byte
		want string
	}{
		{num(0, 0, 0), "0"},
		{num(0, 0, 2), "0.00"},
		{num(0, 0, 0, 1), "1"},
		{num(0, 0x4000, 2, 1, 5000), "-1.50"},
		{num(1, 0, 0, 1, 2345), "12345"},
		{num(-2, 0, 6, 100), "0.000001"},
		{num(7, 0, 0, 1), "1" + "0000000000000000000000000000"},
		{num(0, 0, 3, 3, 1415), "3.141"},
		{num(0, 0xC000, 0), "NaN"},
		{num(0, 0xD000, 0), "Infinity"},
		{num(0, 0xF000, 0), "-Infinity"},
	} {
		if got, ok := numericText(tc.src); !ok || got != tc.want {
			t.Errorf("numericText(% x) = %q, %v; want %q", tc.src, got, ok, tc.want)
		}
	}
	for _, bad := range [][]byte{nil, {0, 1, 0, 0, 0, 0, 0, 0}, num(0, 0x1234, 0), num(0, 0, 0, 10000)} {
		if _, ok := numericText(bad); ok {
			t.Errorf("numericText(% x) accepted a malformed numeric", bad)
		}
	}
}
