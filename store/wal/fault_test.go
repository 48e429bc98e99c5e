package wal_test

import (
	"errors"
	"math/rand/v2"
	"syscall"
	"testing"

	"populi-db/store/wal"
	"populi-db/store/wal/faultfs"
)

// A failed write or fdatasync of a segment breaks the log: that Append and
// every later one fail with ErrBroken, even once the disk is healthy again.
// Reopening replays what was acknowledged.
func TestWriteFaultsBreakTheLog(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault faultfs.Fault
	}{
		{"EIO on write", faultfs.Fault{Op: faultfs.OpWrite, Match: faultfs.Suffix(".wal"), Count: 1, Err: syscall.EIO}},
		{"EIO on torn write", faultfs.Fault{Op: faultfs.OpWrite, Match: faultfs.Suffix(".wal"), Count: 1, Err: syscall.EIO, Partial: true}},
		{"EIO on fdatasync", faultfs.Fault{Op: faultfs.OpSync, Match: faultfs.Suffix(".wal"), Count: 1, Err: syscall.EIO}},
		{"ENOSPC on fdatasync", faultfs.Fault{Op: faultfs.OpSync, Match: faultfs.Suffix(".wal"), Count: 1, Err: syscall.ENOSPC}},
		{"directory sync when naming a new segment", faultfs.Fault{Op: faultfs.OpSyncDir, Count: 1, Err: syscall.EIO}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(11, 11))
			ffs := faultfs.New(nil)
			opts := wal.Options{Dir: t.TempDir(), SegmentSize: 4 << 10, FS: ffs}
			l, _ := mustOpen(t, opts, 0)
			recs := appendN(t, l, rng, 5, 500)
			l.WaitIdle()
			ffs.Inject(tc.fault)
			var err error
			for range 20 { // the directory sync fault needs a segment roll
				seq := l.LastSeq() + 1
				p := payload(rng, seq, 500)
				if err = l.Append(seq, p); err != nil {
					break
				}
				recs = append(recs, rec{seq, p})
				l.WaitIdle()
			}
			if !errors.Is(err, wal.ErrBroken) || !errors.Is(err, tc.fault.Err) {
				t.Fatalf("Append = %v, want ErrBroken wrapping %v", err, tc.fault.Err)
			}
			failed := l.LastSeq() + 1
			ffs.Clear()
			for range 3 {
				if err := l.Append(failed, []byte("again")); !errors.Is(err, wal.ErrBroken) {
					t.Fatalf("Append after the fault = %v, want ErrBroken", err)
				}
			}
			if l.LastSeq() != failed-1 {
				t.Fatalf("LastSeq moved to %d", l.LastSeq())
			}
			l.Close()
			_, got := mustOpen(t, wal.Options{Dir: opts.Dir, SegmentSize: opts.SegmentSize}, 0)
			// The failed record may have reached the disk whole (its
			// fdatasync failing says nothing either way): then it is replayed.
			if len(got) == len(recs)+1 && got[len(got)-1].seq == failed {
				got = got[:len(recs)]
			}
			sameRecs(t, got, recs)
		})
	}
}

// A full disk while preparing a new segment is not fatal: Append says
// ErrNoSpace, leaves no partial file, and works again once space returns.
func TestNoSpaceWhilePreparingSegment(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault faultfs.Fault
	}{
		{"zero-fill write", faultfs.Fault{Op: faultfs.OpWrite, Match: faultfs.Suffix(".tmp"), Err: syscall.ENOSPC, Partial: true}},
		{"zero-fill later write", faultfs.Fault{Op: faultfs.OpWrite, Match: faultfs.Suffix(".tmp"), Skip: 1, Err: syscall.ENOSPC}},
		{"create", faultfs.Fault{Op: faultfs.OpCreate, Err: syscall.ENOSPC}},
		{"fsync", faultfs.Fault{Op: faultfs.OpSync, Match: faultfs.Suffix(".tmp"), Err: syscall.ENOSPC}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(12, 12))
			ffs := faultfs.New(nil)
			// Several zero-fill chunks per segment only with large segments:
			// 3 MiB so the "later write" fault hits mid-file.
			opts := wal.Options{Dir: t.TempDir(), SegmentSize: 3 << 20, FS: ffs}
			if tc.fault.Skip == 0 {
				opts.SegmentSize = 8 << 10
			}
			ffs.Inject(tc.fault) // the disk is full from the start
			l, _ := mustOpen(t, opts, 0)
			l.WaitIdle()
			noSpace := func() {
				t.Helper()
				seq := l.LastSeq() + 1
				err := l.Append(seq, []byte("x"))
				if !errors.Is(err, wal.ErrNoSpace) || errors.Is(err, wal.ErrBroken) || !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("Append = %v, want ErrNoSpace (not broken)", err)
				}
				if l.LastSeq() != seq-1 {
					t.Fatal("LastSeq moved")
				}
				if n := countSuffix(files(t, opts.Dir), ".tmp"); n != 0 {
					t.Fatalf("%d partial segment files left", n)
				}
			}
			noSpace()
			noSpace()
			ffs.Clear()
			recs := appendN(t, l, rng, 3, 100) // space is back
			l.WaitIdle()
			// Full again, with the spare prepared above used up by the next roll:
			// the roll after it cannot get a segment.
			ffs.Inject(tc.fault)
			first, _ := l.SyncedOffset()
			rolls := 0
			for {
				p0, _ := l.SyncedOffset()
				seq := l.LastSeq() + 1
				p := payload(rng, seq, 3000)
				err := l.Append(seq, p)
				if errors.Is(err, wal.ErrNoSpace) {
					if rolls != 1 {
						t.Fatalf("ErrNoSpace after %d rolls (first segment %s)", rolls, first)
					}
					if errors.Is(err, wal.ErrBroken) || countSuffix(files(t, opts.Dir), ".tmp") != 0 {
						t.Fatalf("Append = %v, files %v", err, files(t, opts.Dir))
					}
					if err := l.Append(seq, p); !errors.Is(err, wal.ErrNoSpace) {
						t.Fatalf("Append again = %v, want ErrNoSpace", err)
					}
					ffs.Clear()
					if err := l.Append(seq, p); err != nil {
						t.Fatalf("Append once space is back: %v", err)
					}
					recs = append(recs, rec{seq, p})
					break
				}
				if err != nil {
					t.Fatalf("Append: %v", err)
				}
				recs = append(recs, rec{seq, p})
				if p1, _ := l.SyncedOffset(); p1 != p0 {
					rolls++
				}
				l.WaitIdle()
			}
			recs = append(recs, appendN(t, l, rng, 3, 3000)...)
			l.Close()
			_, got := mustOpen(t, opts, 0)
			sameRecs(t, got, recs)
		})
	}
}

// ENOSPC from the record write itself (which only overwrites preallocated
// space, so a file system would rarely say it) is not fatal either: no
// fdatasync was attempted, and the next Append rewrites the same offset.
func TestNoSpaceOnRecordWrite(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(13, 13))
	ffs := faultfs.New(nil)
	opts := wal.Options{Dir: t.TempDir(), SegmentSize: 8 << 10, FS: ffs}
	l, _ := mustOpen(t, opts, 0)
	recs := appendN(t, l, rng, 3, 500)
	_, off := l.SyncedOffset()
	ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, Match: faultfs.Suffix(".wal"), Count: 1, Err: syscall.ENOSPC, Partial: true})
	syncs := ffs.Calls(faultfs.OpSync)
	err := l.Append(4, []byte("a payload that is first torn by a full disk"))
	if !errors.Is(err, wal.ErrNoSpace) || errors.Is(err, wal.ErrBroken) {
		t.Fatalf("Append = %v, want ErrNoSpace", err)
	}
	if ffs.Calls(faultfs.OpSync) != syncs {
		t.Fatal("fdatasync attempted after a failed write")
	}
	if _, o := l.SyncedOffset(); o != off {
		t.Fatalf("synced offset moved %d -> %d", off, o)
	}
	recs = append(recs, rec{4, []byte("the retry")})
	if err := l.Append(4, []byte("the retry")); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, appendN(t, l, rng, 3, 500)...)
	l.Close()
	_, got := mustOpen(t, opts, 0)
	sameRecs(t, got, recs)
}
