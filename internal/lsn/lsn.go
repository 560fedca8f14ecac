// Package lsn holds PostgreSQL's write-ahead log position type and the
// arithmetic switchyard needs on it.
package lsn

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// LSN is a position in PostgreSQL's write-ahead log (the pg_lsn type). The
// zero value is InvalidLSN, which every valid position is past.
type LSN uint64

// Invalid is the zero LSN, which PostgreSQL prints as 0/0 and which stands
// for "no position".
const Invalid LSN = 0

// ErrSyntax reports text that is not an LSN in PostgreSQL's X/Y form.
var ErrSyntax = errors.New("lsn: not of the form X/Y with hexadecimal X and Y")

// Parse reads an LSN in PostgreSQL's text form, two hexadecimal 32-bit halves
// separated by a slash ("16/B374D848").
func Parse(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q", ErrSyntax, s)
	}
	return LSN(h<<32 | l), nil
}

// String formats the LSN as PostgreSQL does.
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xFFFFFFFF)
}

// Scan implements database/sql.Scanner (which pgx also honours) so a pg_lsn
// value in text form scans into an LSN; NULL scans to Invalid.
func (l *LSN) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*l = Invalid
		return nil
	case string:
		p, err := Parse(v)
		if err != nil {
			return err
		}
		*l = p
		return nil
	case []byte:
		p, err := Parse(string(v))
		if err != nil {
			return err
		}
		*l = p
		return nil
	}
	return fmt.Errorf("lsn: cannot scan %T", src)
}

// pageHeaderMax is the size of the largest WAL page header (the long header
// at the start of a segment), so the gap in which no record can start.
const pageHeaderMax = 40

// RoundDownPageHeader returns l unchanged unless it falls just past the
// start of a WAL page, within the page header, where no record can begin.
// pg_current_wal_insert_lsn() can report such a position when the last
// record ended exactly at a page boundary; a standby's replay position never
// reaches it until the next record is replayed, so waiting for it could wait
// for ever. The page start is then the right target: everything written
// before it is replayed once the replica reaches it.
func RoundDownPageHeader(l LSN, blockSize uint64) LSN {
	if blockSize == 0 {
		return l
	}
	off := uint64(l) % blockSize
	if off > 0 && off <= pageHeaderMax {
		return LSN(uint64(l) - off)
	}
	return l
}
