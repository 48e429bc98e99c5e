package security

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"populi-db/internal/clock"
)

func newTestLimiter(perSec, burst int) (*rateLimiter, *clock.Fake) {
	clk := clock.NewFake(t0)
	return NewRateLimiter(perSec, burst, clk).(*rateLimiter), clk
}

func allowN(l *rateLimiter, ip string, n int) int {
	ok := 0
	for range n {
		if l.Allow(ip) {
			ok++
		}
	}
	return ok
}

func TestRateLimitBurstThenRefill(t *testing.T) {
	t.Parallel()
	l, clk := newTestLimiter(10, 5)
	if got := allowN(l, "10.0.0.1", 8); got != 5 {
		t.Fatalf("burst: %d allowed, want 5", got)
	}
	clk.Advance(99 * time.Millisecond) // just before one token refills
	if l.Allow("10.0.0.1") {
		t.Fatal("allowed before a token refilled")
	}
	clk.Advance(time.Millisecond) // 100 ms at 10/s: exactly one token
	if !l.Allow("10.0.0.1") || l.Allow("10.0.0.1") {
		t.Fatal("want exactly one request after 100 ms")
	}
	clk.Advance(time.Hour) // refill caps at burst
	if got := allowN(l, "10.0.0.1", 10); got != 5 {
		t.Fatalf("after idling: %d allowed, want burst 5", got)
	}
}

func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(1, 2)
	allowN(l, "192.0.2.1", 2)
	if l.Allow("192.0.2.1") {
		t.Fatal("192.0.2.1 over its burst")
	}
	for _, same := range []string{"192.0.2.1:5555", "::ffff:192.0.2.1", "[::ffff:192.0.2.1]:80"} {
		if l.Allow(same) {
			t.Fatalf("%s is 192.0.2.1 and should share its bucket", same)
		}
	}
	if !l.Allow("192.0.2.2") {
		t.Fatal("another client was limited")
	}
	// IPv6 clients share a bucket per /64.
	allowN(l, "2001:db8:1:2::1", 2)
	if l.Allow("2001:db8:1:2:ffff::9") {
		t.Fatal("same /64 should share a bucket")
	}
	if !l.Allow("[2001:db8:1:3::1]:443") {
		t.Fatal("another /64 was limited")
	}
	// Unparsable keys are used verbatim.
	allowN(l, "unix-socket", 2)
	if l.Allow("unix-socket") || !l.Allow("other") {
		t.Fatal("verbatim keys not limited independently")
	}
}

func TestRateLimitDefaults(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(0, 0)
	if l.rate != RateLimitPerSecDefault || l.burst != RateLimitBurstFactor*RateLimitPerSecDefault {
		t.Fatalf("rate %v burst %v", l.rate, l.burst)
	}
	if got := allowN(l, "10.1.1.1", 1000); got != 100 {
		t.Fatalf("%d allowed at once, want default burst 100", got)
	}
	l, _ = newTestLimiter(7, 0)
	if l.burst != 14 {
		t.Fatalf("burst %v, want 2 × 7", l.burst)
	}
}

func TestRateLimitSweepsIdleBuckets(t *testing.T) {
	t.Parallel()
	l, clk := newTestLimiter(10, 20) // refills completely in 2 s
	for i := range 200 {
		l.Allow(fmt.Sprintf("10.2.%d.%d", i/256, i%256))
	}
	if n := l.buckets(); n != 200 {
		t.Fatalf("%d buckets, want 200", n)
	}
	clk.Advance(rateSweepEvery)
	// 1000 fresh clients touch every shard (all but certainly); each
	// shard's first touch sweeps out its old, refilled buckets.
	for i := range 1000 {
		l.Allow(fmt.Sprintf("10.3.%d.%d", i/256, i%256))
	}
	if n := l.buckets(); n != 1000 {
		t.Fatalf("%d buckets after sweep, want only the 1000 fresh ones", n)
	}
}

func TestRateLimitOverflowBucket(t *testing.T) {
	t.Parallel()
	l, _ := newTestLimiter(1, 1)
	// Fill every shard to its cap, then new clients share the shard's
	// overflow bucket instead of growing the map.
	for i := 0; l.buckets() < rateShards*rateMaxBucketsPerShard; i++ {
		l.Allow(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if i > 10*rateShards*rateMaxBucketsPerShard {
			t.Fatal("shards never filled")
		}
	}
	allowed := 0
	for i := range 64 {
		if l.Allow(fmt.Sprintf("172.16.0.%d", i)) {
			allowed++
		}
	}
	if l.buckets() != rateShards*rateMaxBucketsPerShard {
		t.Fatalf("map grew past its cap: %d", l.buckets())
	}
	if allowed > rateShards {
		t.Fatalf("%d newcomers allowed, want at most one per shard's overflow bucket", allowed)
	}
}

func TestRateLimitConcurrent(t *testing.T) {
	t.Parallel()
	l, clk := newTestLimiter(100, 50)
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				if l.Allow("10.9.9.9") {
					allowed.Add(1)
				}
				l.Allow(fmt.Sprintf("10.8.0.%d", g))
			}
		}()
	}
	wg.Wait()
	if got := allowed.Load(); got != 50 {
		t.Fatalf("%d allowed for one client under contention, want burst 50", got)
	}
	clk.Advance(time.Second)
	if got := allowN(l, "10.9.9.9", 200); got != 50 {
		t.Fatalf("after 1 s: %d allowed, want 50 (burst cap)", got)
	}
}

func (l *rateLimiter) buckets() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].buckets)
		l.shards[i].mu.Unlock()
	}
	return n
}

// BenchmarkRateLimitAllow is one Allow over a spread of clients, in
// parallel: the limiter's cost per request.
func BenchmarkRateLimitAllow(b *testing.B) {
	l := NewRateLimiter(1_000_000, 1_000_000, nil)
	ips := make([]string, 1024)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.7.%d.%d", i/256, i%256)
	}
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(ips[i%len(ips)])
			i++
		}
	})
}
