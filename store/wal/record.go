package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Record layout (little endian), starting at an 8-byte aligned offset:
//
//	0  uint32  CRC-32C (Castagnoli) of bytes 4..16 and the payload
//	4  uint32  payload length
//	8  uint64  sequence number
//	16 payload, then zero padding to the next multiple of 8
const (
	recordHeaderSize = 16
	recordAlign      = 8

	// MaxPayload is the largest payload Append accepts (a segment may allow less:
	// a record must fit in an empty segment).
	MaxPayload = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func align8(n int64) int64 { return (n + recordAlign - 1) &^ (recordAlign - 1) }

// recordSize is the bytes a record with an n-byte payload occupies.
func recordSize(n int) int64 { return recordHeaderSize + align8(int64(n)) }

// appendRecord appends the encoded record to dst.
func appendRecord(dst []byte, seq uint64, payload []byte) []byte {
	start := len(dst)
	var h [recordHeaderSize]byte
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint64(h[8:], seq)
	crc := crc32.Update(0, castagnoli, h[4:])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.LittleEndian.PutUint32(h[0:], crc)
	dst = append(dst, h[:]...)
	dst = append(dst, payload...)
	for int64(len(dst)-start) < recordSize(len(payload)) {
		dst = append(dst, 0)
	}
	return dst
}

// checkRecord decodes the record at off in b (b holds a whole segment file). It
// checks the length and the checksum but not the sequence chain; reason is ""
// when the record is well formed and says what is wrong otherwise.
func checkRecord(b []byte, off int64) (seq uint64, payload []byte, size int64, reason string) {
	if off < 0 || off+recordHeaderSize > int64(len(b)) {
		return 0, nil, 0, "no room for a record header before the end of the file"
	}
	h := b[off : off+recordHeaderSize]
	n := binary.LittleEndian.Uint32(h[4:])
	seq = binary.LittleEndian.Uint64(h[8:])
	if n > MaxPayload {
		return seq, nil, 0, fmt.Sprintf("record length %d is larger than the limit", n)
	}
	size = recordSize(int(n))
	if off+size > int64(len(b)) {
		return seq, nil, 0, fmt.Sprintf("record length %d runs past the end of the file", n)
	}
	payload = b[off+recordHeaderSize : off+recordHeaderSize+int64(n)]
	crc := crc32.Update(0, castagnoli, h[4:])
	crc = crc32.Update(crc, castagnoli, payload)
	if crc != binary.LittleEndian.Uint32(h[0:]) {
		return seq, nil, 0, "checksum mismatch"
	}
	return seq, payload, size, ""
}

// cleanEnd reports whether off in b is where a log ends cleanly: every Append
// writes 16 zero bytes after its record (when they fit), so a clean end is a
// zero header or no room for a header at all. Anything else is a torn or
// corrupt record.
func cleanEnd(b []byte, off int64) bool {
	if off+recordHeaderSize > int64(len(b)) {
		return true
	}
	for _, c := range b[off : off+recordHeaderSize] {
		if c != 0 {
			return false
		}
	}
	return true
}
