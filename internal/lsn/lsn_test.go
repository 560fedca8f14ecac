package lsn

import (
	"errors"
	"testing"
)

func TestParseAndString(t *testing.T) {
	for _, tc := range []struct {
		text string
		want LSN
	}{
		{"0/0", 0},
		{"0/1", 1},
		{"16/B374D848", 0x16_B374D848},
		{"FFFFFFFF/FFFFFFFF", 1<<64 - 1},
		{"a/b", 0xA_0000000B},
	} {
		got, err := Parse(tc.text)
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.text, got, err, tc.want)
		}
		if back, _ := Parse(got.String()); back != got {
			t.Errorf("%v does not survive String/Parse", got)
		}
	}
	if s := LSN(0x16_B374D848).String(); s != "16/B374D848" {
		t.Errorf("String = %q", s)
	}
	for _, bad := range []string{"", "/", "1/", "/1", "1", "1/2/3", "x/1", "1/-2", "100000000/0", "0/100000000", " 1/2"} {
		if _, err := Parse(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q): %v, want ErrSyntax", bad, err)
		}
	}
}

func TestOrder(t *testing.T) {
	a, _ := Parse("1/FFFFFFFF")
	b, _ := Parse("2/0")
	if !(a < b) {
		t.Error("1/FFFFFFFF is not before 2/0")
	}
}

func TestScan(t *testing.T) {
	var l LSN
	if err := l.Scan("0/3000060"); err != nil || l != 0x3000060 {
		t.Errorf("Scan string: %v, %v", l, err)
	}
	if err := l.Scan([]byte("1/0")); err != nil || l != 1<<32 {
		t.Errorf("Scan bytes: %v, %v", l, err)
	}
	if err := l.Scan(nil); err != nil || l != Invalid {
		t.Errorf("Scan nil: %v, %v", l, err)
	}
	if err := l.Scan(42); err == nil {
		t.Error("Scan int: no error")
	}
}

func TestRoundDownPageHeader(t *testing.T) {
	const block = 8192
	for _, tc := range []struct{ in, want LSN }{
		{0, 0},
		{8192, 8192},           // a page start: nothing to round
		{8192 + 24, 8192},      // past a short page header
		{8192 + 40, 8192},      // past a long (segment-start) header
		{8192 + 41, 8192 + 41}, // a record position
		{16*1024*1024 + 40, 16 * 1024 * 1024},
		{8191, 8191},
	} {
		if got := RoundDownPageHeader(tc.in, block); got != tc.want {
			t.Errorf("RoundDownPageHeader(%d) = %d, want %d", tc.in, got, tc.want)
		}
	}
	if got := RoundDownPageHeader(8192+24, 0); got != 8192+24 {
		t.Errorf("block size 0 changed the LSN: %d", got)
	}
}
