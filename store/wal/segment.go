package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Segment header layout (little endian), 32 bytes at offset 0:
//
//	0  [8]byte "POPULIWL"
//	8  uint32  format version (1)
//	12 uint32  CRC-32C of bytes 0..12 and 16..32
//	16 uint64  segment number (the file is named %016x.wal after it)
//	24 uint64  sequence number of the first record the segment holds
const (
	segHeaderSize = 32
	segMagic      = "POPULIWL"
	formatVersion = 1

	segSuffix   = ".wal"
	sparePrefix = "spare-"
	tmpSuffix   = ".tmp"
)

type segHeader struct {
	num   uint64
	first uint64
}

func encodeSegHeader(b []byte, h segHeader) {
	copy(b[0:8], segMagic)
	binary.LittleEndian.PutUint32(b[8:], formatVersion)
	binary.LittleEndian.PutUint64(b[16:], h.num)
	binary.LittleEndian.PutUint64(b[24:], h.first)
	binary.LittleEndian.PutUint32(b[12:], segHeaderCRC(b))
}

func segHeaderCRC(b []byte) uint32 {
	crc := crc32.Update(0, castagnoli, b[0:12])
	return crc32.Update(crc, castagnoli, b[16:segHeaderSize])
}

func decodeSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderSize {
		return segHeader{}, fmt.Errorf("file is %d bytes, shorter than a segment header", len(b))
	}
	if string(b[0:8]) != segMagic {
		return segHeader{}, errors.New("bad magic")
	}
	if binary.LittleEndian.Uint32(b[12:]) != segHeaderCRC(b) {
		return segHeader{}, errors.New("header checksum mismatch")
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return segHeader{}, fmt.Errorf("format version %d, want %d", v, formatVersion)
	}
	return segHeader{num: binary.LittleEndian.Uint64(b[16:]), first: binary.LittleEndian.Uint64(b[24:])}, nil
}

func segmentName(num uint64) string { return fmt.Sprintf("%016x%s", num, segSuffix) }
func spareName(num uint64) string   { return fmt.Sprintf("%s%016x", sparePrefix, num) }

// parseHex16 parses exactly 16 lower-case hex digits.
func parseHex16(s string) (uint64, bool) {
	if len(s) != 16 || strings.ToLower(s) != s {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 16, 64)
	return n, err == nil
}

// segFile is one segment file found in the directory.
type segFile struct {
	num    uint64
	path   string
	size   int64
	hdr    segHeader
	hdrErr error // header unreadable or inconsistent with the name
}

// dirListing is what a log directory holds.
type dirListing struct {
	segs     []segFile // by number
	spares   []string  // paths
	tmps     []string  // paths of unfinished spares
	maxSpare uint64    // highest spare number seen (spares and tmps)
}

// listDir reads dir and the header of every segment in it. A missing dir is an
// empty log. Nothing is modified.
func listDir(fsys FS, dir string) (dirListing, error) {
	var l dirListing
	ents, err := fsys.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return l, fmt.Errorf("wal: read dir: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		path := filepath.Join(dir, name)
		switch {
		case strings.HasSuffix(name, segSuffix):
			num, ok := parseHex16(strings.TrimSuffix(name, segSuffix))
			if !ok || !e.Type().IsRegular() {
				continue
			}
			s := segFile{num: num, path: path}
			s.size, s.hdr, s.hdrErr, err = readSegHeader(fsys, path)
			if err != nil {
				return l, err
			}
			if s.hdrErr == nil && s.hdr.num != num {
				s.hdrErr = fmt.Errorf("header says segment %d", s.hdr.num)
			}
			l.segs = append(l.segs, s)
		case strings.HasPrefix(name, sparePrefix):
			base := strings.TrimPrefix(name, sparePrefix)
			tmp := strings.HasSuffix(base, tmpSuffix)
			num, ok := parseHex16(strings.TrimSuffix(base, tmpSuffix))
			if !ok {
				continue
			}
			l.maxSpare = max(l.maxSpare, num)
			if tmp {
				l.tmps = append(l.tmps, path)
			} else {
				l.spares = append(l.spares, path)
			}
		}
	}
	sort.Slice(l.segs, func(i, j int) bool { return l.segs[i].num < l.segs[j].num })
	sort.Strings(l.spares)
	return l, nil
}

// readSegHeader returns a segment's size and header; hdrErr describes a bad
// header, err an I/O failure.
func readSegHeader(fsys FS, path string) (size int64, h segHeader, hdrErr, err error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, h, nil, fmt.Errorf("wal: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, h, nil, fmt.Errorf("wal: stat segment: %w", err)
	}
	var b [segHeaderSize]byte
	n, err := f.ReadAt(b[:], 0)
	if err != nil && err != io.EOF {
		return 0, h, nil, fmt.Errorf("wal: read segment header %s: %w", path, err)
	}
	h, hdrErr = decodeSegHeader(b[:n])
	return fi.Size(), h, hdrErr, nil
}

// readFile reads a whole file into buf (reused when large enough).
func readFile(fsys FS, path string, buf []byte) ([]byte, error) {
	f, err := fsys.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return buf, fmt.Errorf("wal: open segment: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, fmt.Errorf("wal: stat segment: %w", err)
	}
	size := int(fi.Size())
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	n, err := f.ReadAt(buf, 0)
	if err != nil && err != io.EOF {
		return buf, fmt.Errorf("wal: read segment %s: %w", path, err)
	}
	return buf[:n], nil
}
