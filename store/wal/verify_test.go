package wal_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"populi-db/store/wal"
)

// Verify reports what Open would do and modifies nothing.
func TestVerifyMatchesOpen(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		after  uint64
		damage func(t *testing.T, rng *rand.Rand, at []where, synced where)
		want   string // "clean", "torn", "corrupt"
	}{
		{"clean", 0, nil, "clean"},
		{"clean, after", 25, nil, "clean"},
		{"all released", 1000, nil, "clean"},
		{"torn tail", 0, func(t *testing.T, rng *rand.Rand, at []where, s where) {
			flipByte(t, s.path, s.off+3, 0xff)
		}, "torn"},
		{"truncated tail", 0, func(t *testing.T, rng *rand.Rand, at []where, s where) {
			if err := os.Truncate(s.path, s.off+5); err != nil { // no room for a record: a clean end
				t.Fatal(err)
			}
		}, "clean"},
		{"torn record", 0, func(t *testing.T, rng *rand.Rand, at []where, s where) {
			b := encodeRecord(51, []byte("in flight"))
			f, _ := os.OpenFile(s.path, os.O_RDWR, 0)
			f.WriteAt(b[:20], s.off)
			f.Close()
		}, "torn"},
		{"mid-log corruption", 0, func(t *testing.T, rng *rand.Rand, at []where, s where) {
			flipByte(t, at[10].path, at[10].off+2, 0x04)
		}, "corrupt"},
		{"mid-log corruption before after", 20, func(t *testing.T, rng *rand.Rand, at []where, s where) {
			flipByte(t, at[25].path, at[25].off+2, 0x04)
		}, "corrupt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(14, 14))
			var logs logBuf
			opts := wal.Options{Dir: t.TempDir(), SegmentSize: 8 << 10, Logger: newLogger(&logs)}
			l, _ := mustOpen(t, opts, 0)
			_, at := appendTracked(t, l, rng, 50, 600)
			l.WaitIdle()
			p, o := l.SyncedOffset()
			l.Close()
			if tc.damage != nil {
				tc.damage(t, rng, at, where{p, o})
			}
			before := snapshot(t, opts.Dir)
			rep, err := wal.Verify(opts.Dir, tc.after)
			if err != nil {
				t.Fatal(err)
			}
			if !sameFiles(before, snapshot(t, opts.Dir)) {
				t.Fatal("Verify modified the directory")
			}
			l, got, oerr := openLog(t, opts, tc.after)
			switch tc.want {
			case "corrupt":
				var cerr *wal.CorruptError
				if !errors.As(oerr, &cerr) || rep.Corrupt == nil || *rep.Corrupt != cerr.Position || rep.Err().Error() != oerr.Error() {
					t.Fatalf("Verify %+v, Open %v", rep, oerr)
				}
				return
			case "torn":
				if rep.Torn == nil || !strings.Contains(logs.String(), fmt.Sprintf("file=%s offset=%d", rep.Torn.File, rep.Torn.Offset)) {
					t.Fatalf("Verify torn %+v; Open logged %s", rep.Torn, logs.String())
				}
			case "clean":
				if rep.Torn != nil || rep.Corrupt != nil {
					t.Fatalf("Verify %+v on a clean log", rep)
				}
			}
			if oerr != nil || rep.Err() != nil {
				t.Fatalf("Open = %v, Verify = %+v", oerr, rep)
			}
			if rep.Replay != len(got) || rep.Records < rep.Replay || tc.after == 0 && tc.damage == nil && rep.Records != 50 {
				t.Fatalf("Verify says %d records, %d to replay; Open replayed %d", rep.Records, rep.Replay, len(got))
			}
			if len(got) > 0 && (rep.LastSeq != l.LastSeq() || rep.LastSeq != got[len(got)-1].seq) {
				t.Fatalf("Verify last seq %d, Open %d", rep.LastSeq, l.LastSeq())
			}
		})
	}
}

func TestVerifyMissingDir(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "none")
	rep, err := wal.Verify(dir, 7)
	if err != nil || rep.Records != 0 || rep.Err() != nil {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatal("Verify created the directory")
	}
}

// FuzzOpen: Open (and Verify) on arbitrary segment bytes never panic, and an
// opened log accepts the next record and replays it.
func FuzzOpen(f *testing.F) {
	// Seeds: a real segment, the same cut short, and an empty file.
	dir := f.TempDir()
	l, err := wal.Open(wal.Options{Dir: dir, SegmentSize: 2 << 10}, 0, nil)
	if err != nil {
		f.Fatal(err)
	}
	for seq := uint64(1); seq <= 6; seq++ {
		if err := l.Append(seq, []byte(strings.Repeat("p", int(seq*13)))); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	seg, err := os.ReadFile(filepath.Join(dir, "0000000000000001.wal"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seg, uint64(0), false)
	f.Add(seg[:300], uint64(2), false)
	f.Add(seg[:40], uint64(0), true)
	f.Add([]byte{}, uint64(0), false)
	f.Fuzz(func(t *testing.T, data []byte, after uint64, two bool) {
		after %= 16
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "0000000000000001.wal"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		if two && len(data) >= 32 {
			// A second segment: the same bytes with the header renumbered.
			d2 := append([]byte(nil), data...)
			binary.LittleEndian.PutUint64(d2[16:], 2)
			os.WriteFile(filepath.Join(dir, "0000000000000002.wal"), d2, 0o600)
		}
		rep, verr := wal.Verify(dir, after)
		var n int
		l, err := wal.Open(wal.Options{Dir: dir, SegmentSize: 2 << 10, FS: noSyncFS{wal.OS()}, Logger: newLogger(&logBuf{})}, after,
			func(uint64, []byte) error { n++; return nil })
		if verr == nil && (rep.Err() == nil) != (err == nil) {
			t.Fatalf("Verify %+v disagrees with Open %v", rep, err)
		}
		if err != nil {
			return
		}
		defer l.Close()
		if n != rep.Replay {
			t.Fatalf("Open replayed %d, Verify said %d", n, rep.Replay)
		}
		next := l.LastSeq() + 1
		if err := l.Append(next, []byte("next")); err != nil {
			t.Fatalf("Append(%d) on an opened log: %v", next, err)
		}
		l.Close()
		var last uint64
		l2, err := wal.Open(wal.Options{Dir: dir, SegmentSize: 2 << 10, FS: noSyncFS{wal.OS()}, Logger: newLogger(&logBuf{})}, after,
			func(seq uint64, _ []byte) error { last = seq; return nil })
		if err != nil {
			t.Fatalf("reopen after Append: %v", err)
		}
		l2.Close()
		if last != next {
			t.Fatalf("reopen replayed up to %d, want %d", last, next)
		}
	})
}

// noSyncFS skips fsyncs: the fuzz target is about parsing, and fsyncs would
// make it a hundred times slower.
type noSyncFS struct{ wal.FS }

func (noSyncFS) SyncDir(string) error { return nil }

func (f noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	return noSyncFile{file}, err
}

func (f noSyncFS) Create(name string) (wal.File, error) {
	file, err := f.FS.Create(name)
	return noSyncFile{file}, err
}

type noSyncFile struct{ wal.File }

func (noSyncFile) Sync(bool) error { return nil }
