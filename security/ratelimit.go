package security

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"populi-db/api"
	"populi-db/internal/clock"
)

// Rate-limit defaults (SPEC 16.14): VOX_MESH_HTTP_RATE_LIMIT_PER_SEC and
// VOX_MESH_HTTP_RATE_LIMIT_BURST.
const (
	RateLimitPerSecDefault = 50
	RateLimitBurstFactor   = 2 // burst default = factor × rate
)

const (
	rateShards = 16
	// rateMaxBucketsPerShard bounds memory under a flood of source
	// addresses; clients beyond it share one overflow bucket per shard.
	rateMaxBucketsPerShard = 8192
	// rateSweepEvery is how often (on the limiter's clock) a shard drops
	// buckets that have refilled completely.
	rateSweepEvery = time.Minute
)

type rateLimiter struct {
	clk    clock.Clock
	rate   float64 // tokens per second
	burst  float64
	full   time.Duration // time an empty bucket takes to refill
	seed   maphash.Seed
	shards [rateShards]rateShard
}

type rateShard struct {
	mu        sync.Mutex
	buckets   map[string]*bucket
	overflow  *rate.Limiter
	lastSweep time.Time
}

// bucket is one client's token bucket and when it last spent a token (for
// idle eviction).
type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

// NewRateLimiter returns a token bucket per client (SPEC 16.14), a
// golang.org/x/time/rate limiter each: each client may make burst requests
// at once and perSec per second sustained. perSec ≤ 0 means
// RateLimitPerSecDefault; burst ≤ 0 means RateLimitBurstFactor × perSec.
// IPv4 clients are keyed by address, IPv6 clients by their /64 (one host
// usually holds a whole /64). Buckets that have refilled are dropped about
// once a minute; at most rateMaxBucketsPerShard × 16 clients get their own
// bucket, the rest share an overflow bucket per shard. Safe for concurrent
// use; starts no goroutine. A nil clk means the wall clock.
func NewRateLimiter(perSec, burst int, clk clock.Clock) api.RateLimiter {
	if clk == nil {
		clk = clock.Real{}
	}
	if perSec <= 0 {
		perSec = RateLimitPerSecDefault
	}
	if burst <= 0 {
		burst = RateLimitBurstFactor * perSec
	}
	l := &rateLimiter{
		clk:   clk,
		rate:  float64(perSec),
		burst: float64(burst),
		full:  time.Duration(float64(burst) / float64(perSec) * float64(time.Second)),
		seed:  maphash.MakeSeed(),
	}
	for i := range l.shards {
		l.shards[i].buckets = make(map[string]*bucket)
		l.shards[i].overflow = l.newLimiter()
	}
	return l
}

func (l *rateLimiter) newLimiter() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(l.rate), int(l.burst))
}

// Allow takes one token from clientIP's bucket and reports whether there
// was one.
func (l *rateLimiter) Allow(clientIP string) bool {
	key := rateKey(clientIP)
	now := l.clk.Now()
	sh := &l.shards[maphash.String(l.seed, key)%rateShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.lastSweep) >= rateSweepEvery || now.Before(sh.lastSweep) {
		sh.sweep(now, l.full)
		sh.lastSweep = now
	}
	b := sh.buckets[key]
	if b == nil {
		if len(sh.buckets) >= rateMaxBucketsPerShard {
			return sh.overflow.AllowN(now, 1)
		}
		b = &bucket{lim: l.newLimiter()}
		sh.buckets[key] = b
	}
	b.last = now
	return b.lim.AllowN(now, 1)
}

// sweep drops buckets untouched for at least full: they have refilled, so
// forgetting them changes no answer.
func (sh *rateShard) sweep(now time.Time, full time.Duration) {
	for k, b := range sh.buckets {
		if now.Sub(b.last) >= full {
			delete(sh.buckets, k)
		}
	}
}

// rateKey normalizes a client address: "ip", "ip:port" and "[ip]:port" all
// key the same client; IPv4-mapped IPv6 is IPv4; IPv6 is keyed by its /64.
// Anything unparsable is used verbatim.
func rateKey(clientIP string) string {
	addr, err := netip.ParseAddr(clientIP)
	if err != nil {
		ap, err := netip.ParseAddrPort(clientIP)
		if err != nil {
			return clientIP
		}
		addr = ap.Addr()
	}
	addr = addr.Unmap().WithZone("")
	if addr.Is6() {
		return netip.PrefixFrom(addr, 64).Masked().String()
	}
	return addr.String()
}
