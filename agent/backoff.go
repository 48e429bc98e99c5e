package agent

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter (SPEC 15.6): after the
// n-th consecutive failure (n >= 1) the wait is a uniform draw from
// [0, min(Cap, Base·2^(n-1))), raised to Floor so a low draw never turns
// into a tight loop. Callers reset n to 0 on success.
type Backoff struct {
	Base, Cap time.Duration
	// Floor is the smallest wait; it is capped at the ceiling of the draw.
	Floor time.Duration
	// Rand returns a uniform float64 in [0, 1); nil means math/rand/v2.
	Rand func() float64
}

// Ceiling is the upper bound of the n-th wait before jitter.
func (b Backoff) Ceiling(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	c := b.Base
	for i := 1; i < n && c < b.Cap; i++ {
		c *= 2
	}
	if b.Cap > 0 && c > b.Cap {
		c = b.Cap
	}
	return c
}

// Delay is the wait after the n-th consecutive failure.
func (b Backoff) Delay(n int) time.Duration {
	r := b.Rand
	if r == nil {
		r = rand.Float64
	}
	c := b.Ceiling(n)
	d := time.Duration(r() * float64(c))
	if f := min(b.Floor, c); d < f {
		d = f
	}
	return d
}
