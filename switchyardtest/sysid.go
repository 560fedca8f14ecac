package switchyardtest

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"time"
)

// A lab's nodes are copies of one initdb template, so without more they
// would share its system identifier with every other lab on the machine.
// Each lab gets a fresh one: it is written where PostgreSQL keeps it, in
// the control file (whose CRC-32C is then fixed, as pg_createsubscriber
// does) and in the long header that starts each WAL segment file (which the
// server checks against the control file when it reads the segment).
//
// pg_resetwal would rewrite the WAL for us, but it also records
// wal_level=minimal in the control file, and a standby refuses to start
// from such a checkpoint ("WAL was generated with wal_level=minimal"); the
// replicas are copies made before the primary first starts, so they would
// all refuse.

const (
	controlFileSize = 8192 // PG_CONTROL_FILE_SIZE
	controlCRCLimit = 512  // the CRC follows ControlFileData, a few hundred bytes
	walPageMagicMin = 0xD000
	xlpLongHeader   = 0x0002 // XLP_LONG_HEADER in xlp_info
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// newSystemIdentifier makes an identifier the way PostgreSQL does (the
// time in seconds in the high 32 bits), with random low bits, so that it
// stays positive as a bigint (pg_control_system().system_identifier).
func newSystemIdentifier() uint64 {
	var b [4]byte
	rand.Read(b[:])
	return uint64(time.Now().Unix())<<32 | uint64(binary.LittleEndian.Uint32(b[:]))
}

// controlCRCOffset finds the CRC in a control file: the offset, a multiple
// of 4, at which the 4 bytes (little-endian) are the CRC-32C of everything
// before them.
func controlCRCOffset(b []byte) (int, error) {
	if len(b) != controlFileSize {
		return 0, fmt.Errorf("pg_control is %d bytes, want %d", len(b), controlFileSize)
	}
	for off := 8; off+4 <= controlCRCLimit; off += 4 {
		if crc32.Checksum(b[:off], castagnoli) == binary.LittleEndian.Uint32(b[off:]) {
			return off, nil
		}
	}
	return 0, errors.New("no CRC-32C found in pg_control")
}

// systemIdentifier reads the system identifier of the data directory.
func systemIdentifier(dataDir string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "global", "pg_control"))
	if err != nil {
		return 0, err
	}
	if len(b) < 8 {
		return 0, errors.New("pg_control is too short")
	}
	return binary.LittleEndian.Uint64(b), nil
}

// setSystemIdentifier gives the data directory (a stopped, cleanly shut
// down server's) the system identifier id: in global/pg_control, whose
// first field it is, and in every WAL segment that carries the old one.
func setSystemIdentifier(dataDir string, id uint64) error {
	path := filepath.Join(dataDir, "global", "pg_control")
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	off, err := controlCRCOffset(b)
	if err != nil {
		return fmt.Errorf("switchyardtest: %s: %w", path, err)
	}
	old := binary.LittleEndian.Uint64(b)
	binary.LittleEndian.PutUint64(b, id)
	binary.LittleEndian.PutUint32(b[off:], crc32.Checksum(b[:off], castagnoli))
	if err := rewrite(path, b); err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	segs, err := filepath.Glob(filepath.Join(dataDir, "pg_wal", "[0-9A-F]*"))
	if err != nil {
		return fmt.Errorf("switchyardtest: %w", err)
	}
	patched := 0
	for _, seg := range segs {
		if len(filepath.Base(seg)) != 24 {
			continue // a .history or .partial file, no segment
		}
		ok, err := setSegmentIdentifier(seg, old, id)
		if err != nil {
			return fmt.Errorf("switchyardtest: %w", err)
		}
		if ok {
			patched++
		}
	}
	if patched == 0 {
		return fmt.Errorf("switchyardtest: %s: no WAL segment carries the system identifier %d", dataDir, old)
	}
	return nil
}

// setSegmentIdentifier replaces old by id in the long page header at the
// start of a WAL segment file (XLogLongPageHeaderData.xlp_sysid, right
// after the short header), checking the header's magic and flags and that
// it holds old. It reports whether it changed the file.
func setSegmentIdentifier(path string, old, id uint64) (bool, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var h [40]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return false, err
	}
	magic, info := binary.LittleEndian.Uint16(h[0:]), binary.LittleEndian.Uint16(h[2:])
	if magic < walPageMagicMin || info&xlpLongHeader == 0 {
		return false, nil // not (or no longer) a segment's start: zeros, say
	}
	// xlp_sysid follows the short header, which is 24 bytes where a
	// uint64 is 8-aligned and 20 where it is 4-aligned.
	var want [8]byte
	binary.LittleEndian.PutUint64(want[:], old)
	for _, at := range []int{24, 20} {
		if bytes.Equal(h[at:at+8], want[:]) {
			var b [8]byte
			binary.LittleEndian.PutUint64(b[:], id)
			if _, err := f.WriteAt(b[:], int64(at)); err != nil {
				return false, err
			}
			return true, f.Close()
		}
	}
	return false, nil
}

// rewrite replaces the contents of the file at path in place, keeping its
// owner and mode.
func rewrite(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
