package store

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"populi-db/wire"
)

// Benchmarks run on a real file in b.TempDir() with the real clock and real
// fsyncs (commit = fsync, as in production):
//
//	go test -run='^$' -bench=. -benchtime=2s ./store
//
// BenchmarkClaimAck/backlog=1000000 first builds a one-million-row backlog
// (about half a minute).

func openBench(b *testing.B, dir string) *Store {
	b.Helper()
	s, err := Open(Config{
		Path: filepath.Join(dir, "bench.db"), Logger: quietLogger(),
		MaxMessages: MaxMessagesMax, LeaseTTL: time.Hour,
	})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func benchDelivery(recv string) wire.DeliverRequest {
	return wire.DeliverRequest{
		SenderAgentID: "1", ReceiverAgentID: recv, MessageType: "job_submit",
		Payload: `{"job":"bench","args":[1,2,3]}`, PrivacyClass: ptr("private"),
	}
}

func BenchmarkDeliver(b *testing.B) {
	s := openBench(b, b.TempDir())
	defer s.Close()
	req := benchDelivery("1")
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Deliver(req, ""); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimAck claims and acks one row of a receiver holding a backlog
// of pending rows. Each op is two commits (claim, ack); a row is refilled
// outside the timer so the backlog stays at its size. Claim selection and
// ack go through indexes only, so the cost must not grow with the backlog.
func BenchmarkClaimAck(b *testing.B) {
	for _, backlog := range []int{1000, 1_000_000} {
		var s *Store // built once, shared by the runs for each b.N
		dir := b.TempDir()
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			if s == nil {
				s = openBench(b, dir)
				if _, err := s.Join(wire.NodeRecord{ID: "w", Version: "bench"}); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := s.bulkDeliver("1", backlog, 50_000); err != nil {
					b.Fatal(err)
				}
				if backlog >= 100_000 {
					b.Logf("built a backlog of %d rows in %v", backlog, time.Since(start).Round(time.Millisecond))
				}
			}
			b.ResetTimer()
			for range b.N {
				m, err := s.ClaimNext("1", "w")
				if err != nil || m == nil {
					b.Fatalf("claim: %v, %v", m, err)
				}
				if err := s.Ack("1", m.ID, m.LeaseToken); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := s.bulkDeliver("1", 1, 1); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
		if s != nil {
			if st, err := s.QueueStats(); err == nil && st.ByState.Ready != uint64(backlog) {
				b.Errorf("backlog drifted to %d", st.ByState.Ready)
			}
			s.Close()
		}
	}
}

func BenchmarkHeartbeat(b *testing.B) {
	s := openBench(b, b.TempDir())
	defer s.Close()
	const nodes = 100
	recs := make([]wire.NodeRecord, nodes)
	for i := range recs {
		recs[i] = wire.NodeRecord{
			ID: fmt.Sprintf("node-%03d", i), Version: "0.1.0", ListenAddr: ptr("10.0.0.1:9000"),
			Visibility: ptr("hybrid"), GPUTotalCount: ptr(uint32(8)), CPUUsagePct: ptr(float32(12.5)),
			MemoryFreeBytes: ptr(uint64(64 << 30)),
		}
		if _, err := s.Join(recs[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		if _, err := s.Heartbeat(recs[i%nodes]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkDeliverParallel compares one deliverer with 32 concurrent ones:
// group commit lets concurrent writers share each fsync. msgs/s is the
// aggregate throughput; ns/op is wall time per delivery.
func BenchmarkDeliverParallel(b *testing.B) {
	for _, conc := range []int{1, 32} {
		b.Run(fmt.Sprintf("conc=%d", conc), func(b *testing.B) {
			s := openBench(b, b.TempDir())
			defer s.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for g := range conc {
				req := benchDelivery(fmt.Sprint(g + 1))
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := s.Deliver(req, ""); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// Listing a 10,000-node registry (the peer bench's scenario D): decoding
// and re-encoding every record against splicing the stored bytes.
func BenchmarkListNodes10k(b *testing.B) {
	bd := setup(b)
	for i := range 10000 {
		bd.join(fmt.Sprintf("node-%05d", i), func(r *wire.NodeRecord) {
			r.Capabilities.Labels = []string{"zone=a", "hb=1"}
		})
	}
	b.Run("decode-encode", func(b *testing.B) {
		for range b.N {
			reg, err := bd.s.ListNodes(0)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(reg); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("spliced", func(b *testing.B) {
		for range b.N {
			if _, err := bd.s.ListNodesJSON(0); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOpenRebuildIndex is start-up with 100,000 mailbox rows: open
// rebuilds the in-memory indexes from every row (then a clean close).
func BenchmarkOpenRebuildIndex(b *testing.B) {
	dir := b.TempDir()
	s := openBench(b, dir)
	if err := s.bulkDeliver("1", 100_000, 50_000); err != nil {
		b.Fatal(err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s := openBench(b, dir)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
