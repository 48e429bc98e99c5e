package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"populi-db/store/wal"
	"populi-db/wire"
)

// noSyncFS is the OS file system with fsync a no-op, for benchmarks of the
// store's CPU per operation: with a real fdatasync per commit the figures
// move by ±50% between runs on our machines and hide 5-10% CPU changes.
// Never use it where durability matters.
type noSyncFS struct{ wal.FS }

func (f noSyncFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	fl, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return noSyncFile{fl}, nil
}

func (f noSyncFS) Create(name string) (wal.File, error) {
	fl, err := f.FS.Create(name)
	if err != nil {
		return nil, err
	}
	return noSyncFile{fl}, nil
}

func (noSyncFS) SyncDir(string) error { return nil }

type noSyncFile struct{ wal.File }

func (noSyncFile) Sync(bool) error { return nil }

// BenchmarkStoreCPU is one operation at a time through the commit path
// with the log's fsync a no-op: ns/op is the store's CPU (and goroutine
// hand-offs) per operation, comparable between runs.
//
//	go test -run='^$' -bench=StoreCPU -benchtime=20000x ./store
func BenchmarkStoreCPU(b *testing.B) {
	open := func(b *testing.B) *Store {
		s, err := Open(Config{
			Path: filepath.Join(b.TempDir(), "bench.db"), Logger: quietLogger(),
			MaxMessages: MaxMessagesMax, LeaseTTL: time.Hour, LogFS: noSyncFS{wal.OS()},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("deliver", func(b *testing.B) {
		s := open(b)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			req := benchDelivery("1")
			key := fmt.Sprintf("k%d", i)
			req.IdempotencyKey = &key
			if _, err := s.Deliver(req, ""); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("claim-ack", func(b *testing.B) {
		// The rows to claim are delivered up front (1,000 + b.N), so the
		// timed loop holds nothing but claims and acks (StopTimer would
		// read memory statistics, a stop-the-world, every iteration).
		s := open(b)
		if _, err := s.Join(wire.NodeRecord{ID: "w", Version: "bench"}); err != nil {
			b.Fatal(err)
		}
		if err := s.bulkDeliver("1", 1000+b.N, 50_000); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			m, err := s.ClaimNext("1", "w")
			if err != nil || m == nil {
				b.Fatalf("claim: %v, %v", m, err)
			}
			if err := s.Ack("1", m.ID, m.LeaseToken); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("heartbeat", func(b *testing.B) {
		s := open(b)
		rec := wire.NodeRecord{ID: "node-1", Version: "0.1.0", ListenAddr: ptr("127.0.0.1:9000"),
			Visibility: ptr("hybrid"), GPUTotalCount: ptr(uint32(8)), CPUUsagePct: ptr(float32(12.5))}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Heartbeat(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
