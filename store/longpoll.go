package store

import (
	"bytes"
	"context"
	"time"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// ClaimWait is ClaimNext with a long poll (issue 9): when nothing is
// claimable it waits, up to wait (capped at MaxWait), for a commit that makes
// a row of receiver ready or for the receiver's next lease expiry or due
// time, then claims. Store shutdown or ctx end it with nil.
func (s *Store) ClaimWait(ctx context.Context, receiver, claimer string, wait time.Duration) (*wire.StoredMessage, error) {
	wait = min(wait, MaxWait)
	deadline := s.clock.Now().Add(wait)
	for {
		woken := s.watch(receiver)
		// Wait times up to here were due when the claim ran: one still
		// waiting is one this claimer could not take (it is quarantined or
		// draining), and must not turn the wait into a 1 ms polling loop.
		claimedAt := clock.UnixMs(s.clock.Now())
		m, err := s.ClaimNext(receiver, claimer)
		if err != nil || m != nil {
			return m, err
		}
		now := s.clock.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return nil, nil
		}
		if next, ok := s.nextWaitTime(receiver, claimedAt); ok {
			if d := time.UnixMilli(int64(next)).Sub(now); d < left {
				left = max(d, time.Millisecond)
			}
		}
		select {
		case <-woken:
		case <-s.clock.After(left):
		case <-ctx.Done():
			return nil, nil
		case <-s.stop:
			return nil, nil
		}
	}
}

// nextWaitTime is the earliest lease expiry or due time after `after`
// among receiver's rows.
func (s *Store) nextWaitTime(receiver string, after uint64) (uint64, bool) {
	var next uint64
	var ok bool
	_ = s.view(func(t *txn) error {
		rp := recvPrefix(receiver)
		k, _ := t.idx(bWait).Cursor().Seek(cat(rp, u64(after+1)))
		if k != nil && bytes.HasPrefix(k, rp) {
			next, ok = getU64(k[len(rp):len(rp)+8]), true
		}
		return nil
	})
	return next, ok
}
