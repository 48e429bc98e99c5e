package wal_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"populi-db/store/wal"
)

// BenchmarkAppend: one record + one fdatasync per op, on preallocated
// segments. Compare with BenchmarkRawOverwriteFdatasync, the disk's floor.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{256, 4 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			l, err := wal.Open(wal.Options{Dir: b.TempDir()}, 0, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			p := make([]byte, size)
			l.Append(1, p) // the first segment
			l.WaitIdle()   // and the spare after it
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				seq := l.LastSeq() + 1
				if err := l.Append(seq, p); err != nil {
					b.Fatal(err)
				}
				if seq%1024 == 0 {
					l.Release(seq - 1)
				}
			}
		})
	}
}

// BenchmarkRawOverwriteFdatasync: pwrite + fdatasync at increasing offsets of
// a file preallocated with zeros and fsynced, in the same kind of directory.
func BenchmarkRawOverwriteFdatasync(b *testing.B) {
	for _, size := range []int{256, 4 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			fsys := wal.OS()
			f, err := fsys.Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			const fileSize = 64 << 20
			zeros := make([]byte, 1<<20)
			for off := int64(0); off < fileSize; off += int64(len(zeros)) {
				if _, err := f.WriteAt(zeros, off); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Sync(false); err != nil {
				b.Fatal(err)
			}
			p := make([]byte, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			off := int64(0)
			for i := 0; i < b.N; i++ {
				if off+int64(size) > fileSize {
					off = 0
				}
				if _, err := f.WriteAt(p, off); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(true); err != nil {
					b.Fatal(err)
				}
				off += int64(size)
			}
		})
	}
}

// BenchmarkRawAppendFdatasync: pwrite + fdatasync growing a new file, what a
// log without preallocation pays (the file size changes on every write).
func BenchmarkRawAppendFdatasync(b *testing.B) {
	for _, size := range []int{256, 4 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			f, err := wal.OS().Create(filepath.Join(b.TempDir(), "raw"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			p := make([]byte, size)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := f.WriteAt(p, int64(i*size)); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
