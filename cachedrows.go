package switchyard

import (
	"errors"
	"fmt"
	"reflect"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// cachedRows hands out a cached result as pgx's rows would: the same
// column descriptions, raw values, command tag, and Scan and Values
// decoding with pgx's default type map (a result is only kept when every
// column's type decodes with the same codec there as on the connection).
type cachedRows struct {
	e      *cacheEntry
	m      *pgtype.Map
	row    int // rows handed out so far
	cur    [][]byte
	err    error
	closed bool

	scanPlans []pgtype.ScanPlan
	scanTypes []reflect.Type
	plans     [4]pgtype.ScanPlan // scanPlans, for a few columns
	types     [4]reflect.Type
}

// typeMaps are pgx type maps for decoding cached rows; a map is not safe
// for concurrent use, and NewMap is costly.
var typeMaps = sync.Pool{New: func() any { return pgtype.NewMap() }}

var _ pgx.Rows = (*cachedRows)(nil)

func newCachedRows(e *cacheEntry) *cachedRows {
	return &cachedRows{e: e, m: typeMaps.Get().(*pgtype.Map)}
}

func (r *cachedRows) cols() int { return len(r.e.fields) }

func (r *cachedRows) Close() {
	if r.closed {
		return
	}
	r.closed = true
	r.cur = nil
	typeMaps.Put(r.m)
}

func (r *cachedRows) Err() error { return r.err }

func (r *cachedRows) CommandTag() pgconn.CommandTag { return r.e.tag }

func (r *cachedRows) FieldDescriptions() []pgconn.FieldDescription { return r.e.fields }

func (r *cachedRows) Next() bool {
	if r.closed {
		return false
	}
	n := r.cols()
	if n == 0 || r.row*n >= len(r.e.values) {
		r.Close()
		return false
	}
	r.cur = r.e.values[r.row*n : (r.row+1)*n : (r.row+1)*n]
	r.row++
	return true
}

// fatal ends the rows with err, as pgx's rows do after a failed Scan.
func (r *cachedRows) fatal(err error) {
	if r.err == nil {
		r.err = err
	}
	r.Close()
}

func (r *cachedRows) Scan(dest ...any) error {
	if r.cur == nil {
		err := errors.New("switchyard: Scan called without a row (call Next first)")
		r.fatal(err)
		return err
	}
	if len(dest) == 1 {
		if rs, ok := dest[0].(pgx.RowScanner); ok {
			err := rs.ScanRow(r)
			if err != nil {
				r.fatal(err)
			}
			return err
		}
	}
	fields := r.e.fields
	if len(fields) != len(dest) {
		err := fmt.Errorf("number of field descriptions must equal number of destinations, got %d and %d", len(fields), len(dest))
		r.fatal(err)
		return err
	}
	if r.scanPlans == nil {
		if len(fields) <= len(r.plans) {
			r.scanPlans, r.scanTypes = r.plans[:len(fields)], r.types[:len(fields)]
		} else {
			r.scanPlans = make([]pgtype.ScanPlan, len(fields))
			r.scanTypes = make([]reflect.Type, len(fields))
		}
	}
	for i, d := range dest {
		if d == nil {
			continue
		}
		if t := reflect.TypeOf(d); r.scanPlans[i] == nil || r.scanTypes[i] != t {
			r.scanPlans[i] = r.m.PlanScan(fields[i].DataTypeOID, fields[i].Format, d)
			r.scanTypes[i] = t
		}
		if err := r.scanPlans[i].Scan(r.cur[i], d); err != nil {
			err = pgx.ScanArgError{ColumnIndex: i, FieldName: fields[i].Name, Err: err}
			r.fatal(err)
			return err
		}
	}
	return nil
}

func (r *cachedRows) Values() ([]any, error) {
	if r.closed {
		return nil, errors.New("rows is closed")
	}
	values := make([]any, 0, len(r.e.fields))
	for i := range r.e.fields {
		buf, fd := r.cur[i], &r.e.fields[i]
		if buf == nil {
			values = append(values, nil)
			continue
		}
		if dt, ok := r.m.TypeForOID(fd.DataTypeOID); ok {
			v, err := dt.Codec.DecodeValue(r.m, fd.DataTypeOID, fd.Format, buf)
			if err != nil {
				r.fatal(err)
				return nil, err
			}
			values = append(values, v)
			continue
		}
		switch fd.Format {
		case pgx.TextFormatCode:
			values = append(values, string(buf))
		case pgx.BinaryFormatCode:
			values = append(values, append([]byte(nil), buf...))
		default:
			err := errors.New("unknown format code")
			r.fatal(err)
			return nil, err
		}
	}
	return values, nil
}

// RawValues returns the current row's values as the server sent them. The
// slices are the cache's: they must not be modified.
func (r *cachedRows) RawValues() [][]byte { return r.cur }

// Conn is nil: no connection served these rows.
func (r *cachedRows) Conn() *pgx.Conn { return nil }

func (r *cachedRows) TypeMap() *pgtype.Map { return r.m }

// cachedRow is QueryRow's result from the cache.
type cachedRow struct{ rows *cachedRows }

func (r cachedRow) Scan(dest ...any) error {
	for _, d := range dest {
		if _, ok := d.(*pgtype.DriverBytes); ok {
			r.rows.Close()
			return fmt.Errorf("cannot scan into *pgtype.DriverBytes from QueryRow")
		}
	}
	return pgxRow{r.rows}.Scan(dest...)
}
