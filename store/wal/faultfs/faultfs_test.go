package faultfs_test

import (
	"errors"
	"path/filepath"
	"syscall"
	"testing"

	"populi-db/store/wal/faultfs"
)

func TestSkipCountAndRenames(t *testing.T) {
	dir := t.TempDir()
	ffs := faultfs.New(nil)
	ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, Match: faultfs.Suffix(".wal"), Skip: 1, Count: 2, Err: syscall.EIO})
	f, err := ffs.Create(filepath.Join(dir, "a.tmp"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	write := func() error { _, err := f.WriteAt([]byte("x"), 0); return err }
	if err := write(); err != nil {
		t.Fatalf("write to a non-matching file: %v", err)
	}
	if err := ffs.Rename(filepath.Join(dir, "a.tmp"), filepath.Join(dir, "a.wal")); err != nil {
		t.Fatal(err)
	}
	// Now the open file matches: 1 skipped, 2 failed, then healthy again.
	want := []error{nil, syscall.EIO, syscall.EIO, nil, nil}
	for i, w := range want {
		if err := write(); !errors.Is(err, w) || (w == nil) != (err == nil) {
			t.Fatalf("write %d = %v, want %v", i, err, w)
		}
	}
	if ffs.Failed(faultfs.OpWrite) != 2 || ffs.Calls(faultfs.OpWrite) != 6 {
		t.Fatalf("failed %d of %d", ffs.Failed(faultfs.OpWrite), ffs.Calls(faultfs.OpWrite))
	}
	ffs.Inject(faultfs.Fault{Op: faultfs.OpSync, Err: syscall.ENOSPC})
	if err := f.Sync(true); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync = %v", err)
	}
	ffs.Clear()
	if err := f.Sync(true); err != nil {
		t.Fatal(err)
	}
}
