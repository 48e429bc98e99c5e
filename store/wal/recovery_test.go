package wal_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"populi-db/store/wal"
)

// encodeRecord builds a record as the format comment in wal.go describes.
func encodeRecord(seq uint64, p []byte) []byte {
	b := make([]byte, 16+(len(p)+7)&^7)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(p)))
	binary.LittleEndian.PutUint64(b[8:], seq)
	copy(b[16:], p)
	crc := crc32.Update(0, crc32.MakeTable(crc32.Castagnoli), b[4:16])
	crc = crc32.Update(crc, crc32.MakeTable(crc32.Castagnoli), p)
	binary.LittleEndian.PutUint32(b[0:], crc)
	return b
}

// where records each appended record's file and offset.
type where struct {
	path string
	off  int64
}

func appendTracked(t testing.TB, l *wal.Log, rng *rand.Rand, n, maxLen int) ([]rec, []where) {
	t.Helper()
	var recs []rec
	var at []where
	for range n {
		p0, o0 := l.SyncedOffset()
		r := appendN(t, l, rng, 1, maxLen)
		p1, _ := l.SyncedOffset()
		if p1 != p0 {
			o0 = 32
		}
		recs = append(recs, r...)
		at = append(at, where{p1, o0})
	}
	return recs, at
}

func flipByte(t testing.TB, path string, off int64, mask byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= mask
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

// Power loss: everything at or beyond the synced offset may be lost, cut short
// or garbled. Open must succeed and replay exactly the acknowledged records,
// and the log must go on from there.
func TestPowerLossTornTail(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	iters := 400
	if testing.Short() {
		iters = 100
	}
	for iter := range iters {
		rng := rand.New(rand.NewPCG(7, uint64(iter)))
		var logs logBuf
		opts := wal.Options{Dir: filepath.Join(base, fmt.Sprint(iter)), SegmentSize: 8 << 10, Logger: newLogger(&logs)}
		l, _ := mustOpen(t, opts, 0)
		recs := appendN(t, l, rng, 1+rng.IntN(40), 1200)
		path, off := l.SyncedOffset()
		l.Close()
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		size := fi.Size()
		if size != opts.SegmentSize {
			t.Fatalf("segment of %d bytes", size)
		}
		mode := iter % 5
		// inFlight is a record whose Append had not returned; if every byte
		// of it reached the disk, it is as valid as any and may be replayed.
		var inFlight *rec
		switch mode {
		case 0: // cut anywhere at or beyond the synced offset
			err = f.Truncate(off + rng.Int64N(size-off+1))
		case 1: // garble bytes beyond it
			for range 1 + rng.IntN(8) {
				if size > off {
					o := off + rng.Int64N(min(size-off, 64))
					if rng.IntN(2) == 0 {
						o = off + rng.Int64N(size-off)
					}
					var b [1]byte
					f.ReadAt(b[:], o)
					b[0] ^= byte(1 + rng.IntN(255))
					_, err = f.WriteAt(b[:], o)
				}
			}
		case 2, 3: // the next record, in flight: only a prefix reached the disk, maybe then cut
			r := rec{recs[len(recs)-1].seq + 1, payload(rng, 0, 1000)}
			inFlight = &r
			next := encodeRecord(r.seq, r.payload)
			if off+int64(len(next)) > size {
				next = next[:size-off]
			}
			_, err = f.WriteAt(next[:rng.IntN(len(next)+1)], off)
			if err == nil && mode == 3 {
				err = f.Truncate(off + rng.Int64N(int64(len(next))+1))
			}
		case 4: // the next record complete but garbled
			if off+1032 <= size {
				p := payload(rng, 0, 1000)
				next := encodeRecord(recs[len(recs)-1].seq+1, p)
				next[rng.IntN(16+len(p))] ^= 0x10 // a byte the checksum covers
				_, err = f.WriteAt(next, off)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		if fi, err = os.Stat(path); err != nil {
			t.Fatal(err)
		}
		size = fi.Size() // after any cut
		l, got, err := openLog(t, opts, 0)
		if err != nil {
			t.Fatalf("iter %d mode %d: Open after power loss: %v", iter, mode, err)
		}
		if inFlight != nil && len(got) == len(recs)+1 {
			recs = append(recs, *inFlight)
		}
		sameRecs(t, got, recs)
		if s := logs.String(); strings.Contains(s, "torn tail") && !strings.Contains(s, fmt.Sprintf("file=%s offset=%d", path, off)) {
			t.Fatalf("iter %d: torn tail logged without file and offset %d: %s", iter, off, s)
		}
		recs = append(recs, appendN(t, l, rng, 1+rng.IntN(10), 1200)...)
		l.Close()
		if fi, err := os.Stat(path); err == nil && fi.Size() > size {
			t.Fatalf("iter %d: appends grew %s from %d to %d bytes", iter, path, size, fi.Size())
		}
		_, got = mustOpen(t, opts, 0)
		sameRecs(t, got, recs)
	}
}

// A damaged record followed by valid ones is acknowledged data lost: Open
// refuses, naming file and offset; AllowCorrupt cuts there and the log goes on.
func TestMidLogCorruption(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// damage returns the record index it damaged.
		damage func(t *testing.T, rng *rand.Rand, at []where) int
	}{
		{"payload byte", func(t *testing.T, rng *rand.Rand, at []where) int {
			k := rng.IntN(len(at) - 5)
			flipByte(t, at[k].path, at[k].off+16+1, 0x01) // payloads are >= 2 bytes here
			return k
		}},
		{"length field", func(t *testing.T, rng *rand.Rand, at []where) int {
			k := rng.IntN(len(at) - 5)
			flipByte(t, at[k].path, at[k].off+4, 0x40)
			return k
		}},
		{"checksum", func(t *testing.T, rng *rand.Rand, at []where) int {
			k := rng.IntN(len(at) - 5)
			flipByte(t, at[k].path, at[k].off, 0x80)
			return k
		}},
		{"last record of a segment", func(t *testing.T, rng *rand.Rand, at []where) int {
			for k := 0; k < len(at)-1; k++ {
				if at[k+1].path != at[k].path {
					flipByte(t, at[k].path, at[k].off+9, 0x01) // seq field
					return k
				}
			}
			t.Fatal("no segment boundary")
			return 0
		}},
		{"first record of a later segment", func(t *testing.T, rng *rand.Rand, at []where) int {
			for k := 1; k < len(at)-1; k++ {
				if at[k-1].path != at[k].path {
					flipByte(t, at[k].path, at[k].off+20, 0x01)
					return k
				}
			}
			t.Fatal("no segment boundary")
			return 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(8, uint64(len(tc.name))))
			var logs logBuf
			opts := wal.Options{Dir: t.TempDir(), SegmentSize: 8 << 10, Logger: newLogger(&logs)}
			l, _ := mustOpen(t, opts, 0)
			recs, at := appendTracked(t, l, rng, 60, 700)
			for i := range recs { // >= 2-byte payloads, so the payload flip hits payload
				if len(recs[i].payload) < 2 {
					t.Skip("seed gave a tiny payload")
				}
			}
			l.Close()
			k := tc.damage(t, rng, at)
			before := snapshot(t, opts.Dir)
			_, _, err := openLog(t, opts, 0)
			var cerr *wal.CorruptError
			if !errors.Is(err, wal.ErrCorrupt) || !errors.As(err, &cerr) {
				t.Fatalf("Open = %v, want ErrCorrupt", err)
			}
			if cerr.File != at[k].path || cerr.Offset != at[k].off {
				t.Fatalf("corruption reported at %s:%d, want %s:%d (%v)", cerr.File, cerr.Offset, at[k].path, at[k].off, err)
			}
			if !strings.Contains(err.Error(), at[k].path) || !strings.Contains(err.Error(), fmt.Sprint(at[k].off)) {
				t.Fatalf("error does not name file and offset: %v", err)
			}
			if after := snapshot(t, opts.Dir); !sameFiles(before, after) {
				t.Fatal("a refused Open modified the directory")
			}
			rep, verr := wal.Verify(opts.Dir, 0)
			if verr != nil || rep.Corrupt == nil || *rep.Corrupt != cerr.Position {
				t.Fatalf("Verify = %+v, %v; Open said %v", rep, verr, err)
			}

			opts.AllowCorrupt = true
			l, got := mustOpen(t, opts, 0)
			sameRecs(t, got, recs[:k])
			if !strings.Contains(logs.String(), "level=ERROR") {
				t.Fatal("cutting at corruption was not logged at error level")
			}
			recs = append(recs[:k], appendN(t, l, rng, 20, 700)...)
			l.Close()
			opts.AllowCorrupt = false
			_, got = mustOpen(t, opts, 0)
			sameRecs(t, got, recs)
		})
	}
}

// Damage to the header of a segment in the middle of the log.
func TestCorruptSegmentHeader(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 9))
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10}
	l, _ := mustOpen(t, opts, 0)
	recs, at := appendTracked(t, l, rng, 60, 700)
	l.Close()
	var mid string
	k := 0
	for i := 1; i < len(at); i++ {
		if at[i].path != at[i-1].path {
			mid, k = at[i].path, i
			break
		}
	}
	flipByte(t, mid, 20, 0x01) // segment number
	_, _, err := openLog(t, opts, 0)
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), mid) {
		t.Fatalf("Open = %v, want ErrCorrupt naming %s", err, mid)
	}
	opts.AllowCorrupt = true
	_, got := mustOpen(t, opts, 0)
	sameRecs(t, got, recs[:k])
}

// A deleted segment in the middle of the log.
func TestMissingSegment(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(10, 10))
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10}
	l, _ := mustOpen(t, opts, 0)
	_, at := appendTracked(t, l, rng, 60, 700)
	l.Close()
	for i := 1; i < len(at); i++ {
		if at[i].path != at[i-1].path {
			if err := os.Remove(at[i].path); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if _, _, err := openLog(t, opts, 0); !errors.Is(err, wal.ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(v) != string(w) {
			return false
		}
	}
	return true
}

// staleRecordAt reports whether a CRC-valid record with seq < below lies at
// some 8-byte aligned offset >= from in b.
func staleRecordAt(b []byte, from int64, below uint64) bool {
	tab := crc32.MakeTable(crc32.Castagnoli)
	for off := from; off+16 <= int64(len(b)); off += 8 {
		n := int64(binary.LittleEndian.Uint32(b[off+4:]))
		seq := binary.LittleEndian.Uint64(b[off+8:])
		if seq == 0 || seq >= below || off+16+n > int64(len(b)) {
			continue
		}
		crc := crc32.Update(crc32.Update(0, tab, b[off+4:off+16]), tab, b[off+16:off+16+n])
		if crc == binary.LittleEndian.Uint32(b[off:]) {
			return true
		}
	}
	return false
}

// In a recycled segment, the bytes after the last record are an older life's
// records. Even with the end marker destroyed, they read as the end of the
// log (their seqs are older), never as data nor as proof of corruption.
func TestStaleRecordsInRecycledSegment(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(16, 16))
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10}
	l, _ := mustOpen(t, opts, 0)
	var recs []rec
	checked := 0
	for i := 0; i < 3000 && checked < 20; i++ {
		recs = append(recs, appendN(t, l, rng, 1, 300)...)
		last := l.LastSeq()
		if err := l.Release(last - 1); err != nil {
			t.Fatal(err)
		}
		if i < 200 || i%7 != 0 {
			continue
		}
		path, off := l.SyncedOffset()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !staleRecordAt(b, off+16, recs[0].seq+uint64(len(recs))-5) {
			continue // no stale record behind the end here
		}
		l.Close()
		flipByte(t, path, off+rng.Int64N(16), 0x5a) // destroy the end marker
		var got []rec
		l, got = mustOpen(t, opts, last-1)
		sameRecs(t, got, after(recs, last-1))
		checked++
	}
	if checked < 5 {
		t.Fatalf("only %d checks with stale records behind the end", checked)
	}
}

// Crash windows of recycling: renames and removals are not synced, so after a
// crash a released segment may be back under its old name, possibly already
// rewritten with a new header by a roll whose rename was lost too; an
// unfinished spare (.tmp) may be left. None of it is data.
func TestCrashDuringRecycling(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// resurrect writes the released segment back, given its old path and bytes.
		resurrect func(t *testing.T, dir, path string, b []byte)
	}{
		{"rename to spare lost", func(t *testing.T, dir, path string, b []byte) {
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"rename lost, header already rewritten", func(t *testing.T, dir, path string, b []byte) {
			b = append([]byte(nil), b...)
			binary.LittleEndian.PutUint64(b[16:], 999) // a later segment's number (and a stale CRC)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"unfinished spare and extra spares", func(t *testing.T, dir, path string, b []byte) {
			for _, name := range []string{"spare-00000000000000aa.tmp", "spare-00000000000000ab", "spare-00000000000000ac", "spare-00000000000000ad"} {
				if err := os.WriteFile(filepath.Join(dir, name), b[:100], 0o600); err != nil {
					t.Fatal(err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(17, 17))
			opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10}
			l, _ := mustOpen(t, opts, 0)
			recs, at := appendTracked(t, l, rng, 40, 500)
			old := at[0].path
			b, err := os.ReadFile(old)
			if err != nil {
				t.Fatal(err)
			}
			released := uint64(30)
			if err := l.Release(released); err != nil {
				t.Fatal(err)
			}
			l.WaitIdle()
			l.Close()
			if _, err := os.Stat(old); !os.IsNotExist(err) {
				t.Fatalf("released segment %s still there: %v", old, err)
			}
			tc.resurrect(t, opts.Dir, old, b)
			rep, err := wal.Verify(opts.Dir, released)
			if err != nil || rep.Err() != nil || rep.Torn != nil {
				t.Fatalf("Verify = %+v, %v", rep, err)
			}
			l, got := mustOpen(t, opts, released)
			sameRecs(t, got, after(recs, released))
			names := files(t, opts.Dir)
			if countSuffix(names, ".tmp") != 0 || len(names)-countSuffix(names, ".wal") > 2 {
				t.Fatalf("after Open the dir holds %v", names)
			}
			recs = append(recs, appendN(t, l, rng, 40, 500)...)
			l.Close()
			_, got = mustOpen(t, opts, released)
			sameRecs(t, got, after(recs, released))
		})
	}
}
