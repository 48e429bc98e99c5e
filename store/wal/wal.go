// Package wal: TEMPORARY stub for compiling the store before the real log lands.
package wal

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
)

type FS interface{}

type Options struct {
	Dir          string
	SegmentSize  int64
	FS           FS
	Logger       *slog.Logger
	AllowCorrupt bool
}

var (
	ErrCorrupt = errors.New("wal: corrupt")
	ErrBroken  = errors.New("wal: broken")
	ErrNoSpace = errors.New("wal: no space")
)

type Log struct {
	dir  string
	f    *os.File
	off  int64
	last uint64
}

var tab = crc32.MakeTable(crc32.Castagnoli)

func Open(opts Options, after uint64, replay func(seq uint64, payload []byte) error) (*Log, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(opts.Dir, "log"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	l := &Log{dir: opts.Dir, f: f, last: after}
	data, _ := io.ReadAll(f)
	off := 0
	for off+16 <= len(data) {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		c := binary.LittleEndian.Uint32(data[off+4:])
		seq := binary.LittleEndian.Uint64(data[off+8:])
		if off+16+n > len(data) || crc32.Checksum(data[off+8:off+16+n], tab) != c || n == 0 {
			break
		}
		if seq > after {
			if err := replay(seq, data[off+16:off+16+n]); err != nil {
				return nil, err
			}
			l.last = seq
		}
		off += 16 + n
	}
	l.off = int64(off)
	return l, nil
}

func (l *Log) Append(seq uint64, p []byte) error {
	b := make([]byte, 16+len(p))
	binary.LittleEndian.PutUint32(b, uint32(len(p)))
	binary.LittleEndian.PutUint64(b[8:], seq)
	copy(b[16:], p)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:], tab))
	if _, err := l.f.WriteAt(b, l.off); err != nil {
		return errors.Join(ErrBroken, err)
	}
	if err := l.f.Sync(); err != nil {
		return errors.Join(ErrBroken, err)
	}
	l.off += int64(len(b))
	l.last = seq
	return nil
}
func (l *Log) LastSeq() uint64               { return l.last }
func (l *Log) Release(upTo uint64) error     { return nil }
func (l *Log) SyncedOffset() (string, int64) { return l.f.Name(), l.off }
func (l *Log) Close() error                  { return l.f.Close() }
func (l *Log) RemoveAll() error              { l.f.Close(); return os.RemoveAll(l.dir) }
