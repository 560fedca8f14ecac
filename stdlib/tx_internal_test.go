package stdlib

import "testing"

// TestSessionStateInTx checks which statements run in a transaction on a
// pooled connection make Commit clean the session before it goes back.
func TestSessionStateInTx(t *testing.T) {
	for q, want := range map[string][2]bool{ // session, prepared
		"SAVEPOINT a":              {},
		"release savepoint a":      {},
		"ROLLBACK TO SAVEPOINT a;": {},
		"  /* x /* nested */ */ -- c\n set local work_mem = '1MB'": {},
		"SET TRANSACTION ISOLATION LEVEL SERIALIZABLE":             {},
		"SET CONSTRAINTS ALL DEFERRED":                             {},
		"set\tlocal\nsearch_path = x ;  ":                          {},
		"SET LOCAL x.y = ';'":                                      {},
		"SELECT set_config('a.b', 'c', true)":                      {},
		"SELECT pg_advisory_xact_lock(1)":                          {},
		"DECLARE c CURSOR FOR SELECT 1":                            {},
		"SELECT 1":                                                 {},
		"":                                                         {},
		"SET work_mem = '1MB'":                                     {true, false},
		"SET SESSION work_mem = '1MB'":                             {true, false},
		"SET LOCAL work_mem = '1MB'; SET work_mem = '2MB'":         {true, false},
		"SAVEPOINT a; LISTEN x":                                    {true, false},
		"SELECT set_config('a.b', 'c', false)":                     {true, false},
		"SELECT pg_advisory_lock(1)":                               {true, false},
		"LISTEN x":                                                 {true, false},
		"CREATE TEMP TABLE t (x int)":                              {true, false},
		"DECLARE c CURSOR WITH HOLD FOR SELECT 1":                  {true, false},
		"PREPARE p AS SELECT 1":                                    {true, true},
		"select 1; prepare p as select 2":                          {true, true},
	} {
		var tx tx
		tx.saw(classifier.Analyze(q))
		if got := [2]bool{tx.session, tx.prepared}; got != want {
			t.Errorf("saw(%q): session, prepared = %v, want %v", q, got, want)
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
