package stdlib

import (
	"database/sql/driver"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// rows are a query's results as database/sql reads them. The conversion of
// each value, and the column types reported, are those of pgx's stdlib
// (github.com/jackc/pgx/v5/stdlib), so that code moving between the two
// sees the same values.
type rows struct {
	rows         pgx.Rows
	valueFuncs   []rowValueFunc
	skipNext     bool // QueryContext read the first row already
	skipNextMore bool // and this is what Next said
	columnNames  []string
}

var (
	_ driver.Rows                           = (*rows)(nil)
	_ driver.RowsColumnTypeDatabaseTypeName = (*rows)(nil)
	_ driver.RowsColumnTypeLength           = (*rows)(nil)
	_ driver.RowsColumnTypePrecisionScale   = (*rows)(nil)
	_ driver.RowsColumnTypeScanType         = (*rows)(nil)
)

type rowValueFunc func(src []byte) (driver.Value, error)

// Columns returns the names of the result's columns.
func (r *rows) Columns() []string {
	if r.columnNames == nil {
		fields := r.rows.FieldDescriptions()
		r.columnNames = make([]string, len(fields))
		for i, fd := range fields {
			r.columnNames[i] = fd.Name
		}
	}
	return r.columnNames
}

// ColumnTypeDatabaseTypeName returns the upper-case name of the column's
// type (INT4, TEXT, _INT4 for int4[], ...), or its OID if the type is not
// registered with pgx.
func (r *rows) ColumnTypeDatabaseTypeName(index int) string {
	oid := r.rows.FieldDescriptions()[index].DataTypeOID
	if m := r.rows.TypeMap(); m != nil {
		if dt, ok := m.TypeForOID(oid); ok {
			return strings.ToUpper(dt.Name)
		}
	}
	return strconv.FormatInt(int64(oid), 10)
}

const varHeaderSize = 4

// ColumnTypeLength returns the length of variable-length columns: text and
// bytea are unbounded, varchar(n), char(n) and varbit(n) have n.
func (r *rows) ColumnTypeLength(index int) (int64, bool) {
	fd := r.rows.FieldDescriptions()[index]
	switch fd.DataTypeOID {
	case pgtype.TextOID, pgtype.ByteaOID:
		return math.MaxInt64, true
	case pgtype.VarcharOID, pgtype.BPCharOID:
		return int64(fd.TypeModifier - varHeaderSize), true
	case pgtype.VarbitOID:
		return int64(fd.TypeModifier), true
	default:
		return 0, false
	}
}

// ColumnTypePrecisionScale returns the precision and scale of a numeric
// column.
func (r *rows) ColumnTypePrecisionScale(index int) (precision, scale int64, ok bool) {
	fd := r.rows.FieldDescriptions()[index]
	switch fd.DataTypeOID {
	case pgtype.NumericOID:
		mod := fd.TypeModifier - varHeaderSize
		precision = int64((mod >> 16) & 0xffff)
		scale = int64(mod & 0xffff)
		return precision, scale, true
	default:
		return 0, 0, false
	}
}

// ColumnTypeScanType returns the Go type that the column's values scan
// into.
func (r *rows) ColumnTypeScanType(index int) reflect.Type {
	switch r.rows.FieldDescriptions()[index].DataTypeOID {
	case pgtype.Float8OID:
		return reflect.TypeFor[float64]()
	case pgtype.Float4OID:
		return reflect.TypeFor[float32]()
	case pgtype.Int8OID:
		return reflect.TypeFor[int64]()
	case pgtype.Int4OID:
		return reflect.TypeFor[int32]()
	case pgtype.Int2OID:
		return reflect.TypeFor[int16]()
	case pgtype.BoolOID:
		return reflect.TypeFor[bool]()
	case pgtype.NumericOID:
		return reflect.TypeFor[float64]()
	case pgtype.DateOID, pgtype.TimestampOID, pgtype.TimestamptzOID:
		return reflect.TypeFor[time.Time]()
	case pgtype.ByteaOID:
		return reflect.TypeFor[[]byte]()
	default:
		return reflect.TypeFor[string]()
	}
}

// Close closes the rows, giving their connection back, and returns the
// query's error, if any.
func (r *rows) Close() error {
	r.rows.Close()
	return r.rows.Err()
}

// Next reads the next row into dest.
func (r *rows) Next(dest []driver.Value) error {
	var more bool
	if r.skipNext {
		more = r.skipNextMore
		r.skipNext = false
	} else {
		more = r.rows.Next()
	}
	if !more {
		if err := r.rows.Err(); err != nil {
			return err
		}
		return io.EOF
	}
	// Planned at the first row: an empty result has ended, and its
	// connection may be another query's by now (its type map with it).
	r.initValueFuncs()
	for i, rv := range r.rows.RawValues() {
		if rv == nil {
			dest[i] = nil
			continue
		}
		var err error
		if dest[i], err = r.valueFuncs[i](rv); err != nil {
			return fmt.Errorf("convert field %d failed: %w", i, err)
		}
	}
	return nil
}

// initValueFuncs plans the conversion of each column to its driver.Value,
// as pgx's stdlib does: bool, bytea, integers, floats, dates and timestamps
// to Go values, json, jsonb and xml to []byte, and everything else to the
// text PostgreSQL prints (numeric and uuid also when they came in binary;
// see shapes).
func (r *rows) initValueFuncs() {
	if r.valueFuncs != nil {
		return
	}
	m := r.rows.TypeMap()
	fields := r.rows.FieldDescriptions()
	r.valueFuncs = make([]rowValueFunc, len(fields))
	for i, fd := range fields {
		oid, format := fd.DataTypeOID, fd.Format
		switch oid {
		case pgtype.BoolOID:
			var d bool
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				err := plan.Scan(src, &d)
				return d, err
			}
		case pgtype.ByteaOID:
			var d []byte
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				err := plan.Scan(src, &d)
				return d, err
			}
		case pgtype.CIDOID, pgtype.OIDOID, pgtype.XIDOID:
			var d pgtype.Uint32
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				if err := plan.Scan(src, &d); err != nil {
					return nil, err
				}
				return d.Value()
			}
		case pgtype.DateOID:
			var d pgtype.Date
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				if err := plan.Scan(src, &d); err != nil {
					return nil, err
				}
				return d.Value()
			}
		case pgtype.Float4OID:
			var d float32
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				err := plan.Scan(src, &d)
				return float64(d), err
			}
		case pgtype.Float8OID:
			var d float64
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				err := plan.Scan(src, &d)
				return d, err
			}
		case pgtype.Int2OID:
			var d int16
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				err := plan.Scan(src, &d)
				return int64(d), err
			}
		case pgtype.Int4OID:
			var d int32
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				err := plan.Scan(src, &d)
				return int64(d), err
			}
		case pgtype.Int8OID:
			var d int64
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				err := plan.Scan(src, &d)
				return d, err
			}
		case pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
			var d []byte
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				if err := plan.Scan(src, &d); err != nil {
					return nil, err
				}
				return d, nil
			}
		case pgtype.TimestampOID:
			var d pgtype.Timestamp
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				if err := plan.Scan(src, &d); err != nil {
					return nil, err
				}
				return d.Value()
			}
		case pgtype.TimestamptzOID:
			var d pgtype.Timestamptz
			plan := m.PlanScan(oid, format, &d)
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				if err := plan.Scan(src, &d); err != nil {
					return nil, err
				}
				return d.Value()
			}
		case pgtype.NumericOID:
			var d string
			plan := m.PlanScan(oid, format, &d)
			binary := format == pgtype.BinaryFormatCode
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				if binary {
					// The text PostgreSQL prints, as pgx's stdlib gets it.
					if s, ok := numericText(src); ok {
						return s, nil
					}
				}
				err := plan.Scan(src, &d)
				return d, err
			}
		default:
			var d string
			plan := m.PlanScan(oid, format, &d)
			binary := format == pgtype.BinaryFormatCode && !exactBinary[oid]
			r.valueFuncs[i] = func(src []byte) (driver.Value, error) {
				if binary {
					// Only if the column's type changed since its SQL
					// text was last seen (see shapes): pgx's text for it.
					return binaryToText(m, oid, src)
				}
				err := plan.Scan(src, &d)
				return d, err
			}
		}
	}
}

// binaryToText decodes a value that came in binary and encodes it in text
// with pgx's codec for its type.
func binaryToText(m *pgtype.Map, oid uint32, src []byte) (driver.Value, error) {
	t, ok := m.TypeForOID(oid)
	if !ok {
		return nil, fmt.Errorf("type %d came in binary and is unknown to pgx", oid)
	}
	v, err := t.Codec.DecodeValue(m, oid, pgtype.BinaryFormatCode, src)
	if err != nil {
		return nil, err
	}
	text, err := m.Encode(oid, pgtype.TextFormatCode, v, nil)
	if err != nil {
		return nil, err
	}
	return string(text), nil
}
