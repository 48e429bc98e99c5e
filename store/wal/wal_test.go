package wal_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"populi-db/store/wal"
	"populi-db/store/wal/faultfs"
)

func TestAppendReopenReplay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		segSize int64
		n       int
		maxLen  int
		after   uint64
	}{
		{"one segment", 64 << 10, 20, 1000, 0},
		{"skips seq <= after", 64 << 10, 20, 1000, 7},
		{"after = last", 64 << 10, 20, 1000, 20},
		{"many segments", 16 << 10, 300, 2000, 0},
		{"many segments, after", 16 << 10, 300, 2000, 250},
		{"empty payloads", 4 << 10, 500, 0, 3},
		{"largest payloads", 4 << 10, 10, 4 << 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(tc.n)))
			opts := wal.Options{Dir: filepath.Join(t.TempDir(), "wal"), SegmentSize: tc.segSize}
			l, got := mustOpen(t, opts, 0)
			sameRecs(t, got, nil)
			maxLen := tc.maxLen
			if maxLen > int(tc.segSize)-48 {
				maxLen = int(tc.segSize) - 48
			}
			recs := appendN(t, l, rng, tc.n, maxLen)
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l, got = mustOpen(t, opts, tc.after)
			sameRecs(t, got, after(recs, tc.after))
			if l.LastSeq() != uint64(tc.n) {
				t.Fatalf("LastSeq = %d, want %d", l.LastSeq(), tc.n)
			}
			recs = append(recs, appendN(t, l, rng, 5, maxLen)...)
			l.Close()
			_, got = mustOpen(t, opts, tc.after)
			sameRecs(t, got, after(recs, tc.after))
			if fi, err := os.Stat(opts.Dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Fatalf("dir mode: %v %v", fi.Mode(), err)
			}
		})
	}
}

func TestAppendRefusesWrongSeqAndHugePayload(t *testing.T) {
	t.Parallel()
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10}
	l, _ := mustOpen(t, opts, 10)
	if l.LastSeq() != 10 {
		t.Fatalf("LastSeq = %d, want 10", l.LastSeq())
	}
	for _, seq := range []uint64{0, 10, 12} {
		if err := l.Append(seq, []byte("x")); err == nil || errors.Is(err, wal.ErrBroken) {
			t.Fatalf("Append(%d) = %v, want a plain refusal", seq, err)
		}
	}
	if err := l.Append(11, make([]byte, 4<<10)); err == nil || errors.Is(err, wal.ErrBroken) {
		t.Fatalf("Append(huge) = %v, want a plain refusal", err)
	}
	if err := l.Append(11, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := l.Append(12, nil); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := l.Release(11); !errors.Is(err, wal.ErrClosed) {
		t.Fatalf("Release after Close = %v", err)
	}
	_, got := mustOpen(t, opts, 10)
	sameRecs(t, got, []rec{{11, []byte("ok")}})
}

// With Release after every append, the directory holds the current segment
// and at most two spares, and segments are recycled, not re-created. Reopening
// at any point replays exactly the unreleased records: stale records in the
// recycled segments never come back.
func TestRolloverRecyclingBounded(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(2, 2))
	ffs := faultfs.New(nil)
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 8 << 10, FS: ffs}
	l, _ := mustOpen(t, opts, 0)
	const keep = 10 // records not yet released
	var recs []rec
	released := uint64(0)
	rolls := 0
	lastPath := ""
	for i := 0; i < 2000; i++ {
		recs = append(recs, appendN(t, l, rng, 1, 900)...)
		if p, _ := l.SyncedOffset(); p != lastPath {
			rolls++
			lastPath = p
		}
		if last := l.LastSeq(); last > keep {
			released = last - keep
			if err := l.Release(released); err != nil {
				t.Fatal(err)
			}
		}
		l.WaitIdle()
		names := files(t, opts.Dir)
		for _, name := range names { // preallocated, never grown
			if fi, err := os.Stat(filepath.Join(opts.Dir, name)); err != nil || fi.Size() != opts.SegmentSize {
				t.Fatalf("%s: %v, %v", name, fi.Size(), err)
			}
		}
		// current + possibly the previous one (holding unreleased records) + 2 spares
		if len(names) > 4 || countSuffix(names, ".wal") > 2 {
			t.Fatalf("after %d appends the dir holds %v", i+1, names)
		}
		if i%97 == 96 {
			l.Close()
			var got []rec
			l, got = mustOpen(t, opts, released)
			sameRecs(t, got, after(recs, released))
		}
	}
	if rolls < 100 {
		t.Fatalf("only %d segment rolls; the test wants many", rolls)
	}
	// Segments were recycled: few files were ever created.
	if c := ffs.Calls(faultfs.OpCreate); c > 10 {
		t.Fatalf("%d files created for %d segments; recycling does not work", c, rolls)
	}
}

// A log whose records are all <= after (the store folded them in) restarts
// at after+1 in a fresh segment, and the chain stays valid across reopen.
func TestLogBehindStore(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 3))
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 8 << 10}
	l, _ := mustOpen(t, opts, 0)
	appendN(t, l, rng, 30, 500)
	l.Close()
	l, got := mustOpen(t, opts, 100)
	sameRecs(t, got, nil)
	if l.LastSeq() != 100 {
		t.Fatalf("LastSeq = %d, want 100", l.LastSeq())
	}
	recs := appendN(t, l, rng, 30, 500)
	l.Close()
	_, got = mustOpen(t, opts, 100)
	sameRecs(t, got, recs)
}

// A log that starts after after+1 misses records the store needs.
func TestGapBeforeLog(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(4, 4))
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 8 << 10}
	l, _ := mustOpen(t, opts, 50)
	appendN(t, l, rng, 10, 100)
	l.Close()
	_, _, err := openLog(t, opts, 40)
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), "0000000000000001.wal") {
		t.Fatalf("Open(after=40) = %v, want ErrCorrupt naming the segment", err)
	}
	opts.AllowCorrupt = true
	l, got := mustOpen(t, opts, 40)
	sameRecs(t, got, nil)
	if l.LastSeq() != 40 {
		t.Fatalf("LastSeq = %d", l.LastSeq())
	}
}

func TestRemoveAll(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 5))
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10}
	l, _ := mustOpen(t, opts, 0)
	appendN(t, l, rng, 50, 500)
	l.WaitIdle()
	if len(files(t, opts.Dir)) < 2 {
		t.Fatal("expected segment files")
	}
	if err := l.RemoveAll(); err != nil {
		t.Fatal(err)
	}
	if names := files(t, opts.Dir); len(names) != 0 {
		t.Fatalf("left %v", names)
	}
	l, got := mustOpen(t, opts, 50)
	sameRecs(t, got, nil)
	if l.LastSeq() != 50 {
		t.Fatalf("LastSeq = %d", l.LastSeq())
	}
}

// Spares of another size (the option changed) are dropped, not used.
func TestSegmentSizeChange(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(6, 6))
	dir := t.TempDir()
	l, _ := mustOpen(t, wal.Options{Dir: dir, SegmentSize: 16 << 10}, 0)
	recs := appendN(t, l, rng, 40, 1000)
	l.Close()
	l, got := mustOpen(t, wal.Options{Dir: dir, SegmentSize: 4 << 10}, 0)
	sameRecs(t, got, recs)
	recs = append(recs, appendN(t, l, rng, 40, 1000)...)
	l.Close()
	_, got = mustOpen(t, wal.Options{Dir: dir, SegmentSize: 4 << 10}, 0)
	sameRecs(t, got, recs)
	for _, name := range files(t, dir) {
		fi, _ := os.Stat(filepath.Join(dir, name))
		if strings.HasPrefix(name, "spare-") && fi.Size() != 4<<10 {
			t.Fatalf("spare %s of %d bytes kept", name, fi.Size())
		}
	}
}

func segNum(t testing.TB, path string) uint64 {
	n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), ".wal"), 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Append and Release from different goroutines (the store's log writer and
// its bbolt committer), with readers of LastSeq and SyncedOffset; run with -race.
func TestConcurrentAppendRelease(t *testing.T) {
	t.Parallel()
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10}
	l, _ := mustOpen(t, opts, 0)
	done := make(chan struct{})
	errc := make(chan error, 2)
	go func() {
		defer close(done)
		rng := rand.New(rand.NewPCG(15, 15))
		for range 1500 {
			seq := l.LastSeq() + 1
			if err := l.Append(seq, payload(rng, seq, 600)); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	go func() {
		for {
			select {
			case <-done:
				errc <- nil
				return
			default:
			}
			if last := l.LastSeq(); last > 5 {
				if err := l.Release(last - 5); err != nil {
					errc <- err
					return
				}
			}
			l.SyncedOffset()
		}
	}()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	<-done
	last := l.LastSeq()
	if err := l.Release(1495); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if last != 1500 {
		t.Fatalf("LastSeq = %d", last)
	}
	if n := countSuffix(files(t, opts.Dir), ".wal"); n > 3 {
		t.Fatalf("%d segments left with Release running", n)
	}
	_, got := mustOpen(t, opts, 1495)
	if len(got) != 5 || got[4].seq != 1500 {
		t.Fatalf("replayed %s", seqs(got))
	}
}
