package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"populi-db/internal/clock"
	"populi-db/wire"
)

type claimResult struct {
	m   *wire.StoredMessage
	err error
	at  time.Time // real time of return
}

func (b *bundle) claimWaitAsync(ctx context.Context, recv, node string, wait time.Duration) <-chan claimResult {
	ch := make(chan claimResult, 1)
	go func() {
		m, err := b.s.ClaimWait(ctx, recv, node, wait)
		ch <- claimResult{m, err, time.Now()}
	}()
	return ch
}

// parkedAfter waits until the spy clock has seen n After calls in total: a
// long poll registers one each time it parks.
func (b *bundle) parkedAfter(n int64) {
	b.t.Helper()
	eventually(b.t, 5*time.Second, "a long poll to park on the clock", func() bool { return b.clk.afters.Load() >= n })
}

func recvResult(t *testing.T, ch <-chan claimResult) claimResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("long poll did not return")
		return claimResult{}
	}
}

func assertPending(t *testing.T, ch <-chan claimResult) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("long poll returned early: %+v", r)
	default:
	}
}

// Real clock: a waiting claim returns promptly after a delivery, woken by
// the commit rather than a poll.
func TestClaimWaitWakeLatencyRealClock(t *testing.T) {
	t.Parallel()
	b := setupSync(t, func(c *Config) { c.Clock = clock.Real{} })
	b.join("w")
	var worst time.Duration
	for range 5 {
		ch := b.claimWaitAsync(context.Background(), "2", "w", 10*time.Second)
		// Let the waiter reach its select; a delivery that lands earlier is
		// found by its claim and measures the same path end to end.
		eventually(t, 5*time.Second, "waiter registered", func() bool {
			b.s.watchMu.Lock()
			defer b.s.watchMu.Unlock()
			return b.s.watchers["2"] != nil
		})
		start := time.Now()
		id := b.deliver("2")
		r := recvResult(t, ch)
		if r.err != nil || r.m == nil || r.m.ID != id {
			t.Fatalf("ClaimWait = %+v, want row %d", r, id)
		}
		worst = max(worst, r.at.Sub(start))
		wantErr(t, b.s.Ack("2", id, r.m.LeaseToken), nil)
	}
	t.Logf("worst wake latency (deliver call to claim return, fsync included): %v", worst)
	if worst > time.Second {
		t.Fatalf("wake latency %v, want well under 1 s (issue 9 target: 50 ms)", worst)
	}
}

func TestClaimWaitWakesOnDeliver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("w")
	ch := b.claimWaitAsync(context.Background(), "2", "w", 20*time.Second)
	b.parkedAfter(1)
	if d := b.clk.lastAfter(); d != 20*time.Second {
		t.Fatalf("parked for %v, want the whole wait", d)
	}
	b.deliver("3") // another receiver: no wake-up
	b.deliver("2", withNotBefore(b.nowMs()+60_000))
	id := b.deliver("2")
	r := recvResult(t, ch)
	if r.err != nil || r.m == nil || r.m.ID != id {
		t.Fatalf("ClaimWait = %+v, want row %d", r, id)
	}
}

func TestClaimWaitWakesWhenDelayedRowIsDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("w")
	id := b.deliver("2", withNotBefore(b.nowMs()+5000))
	ch := b.claimWaitAsync(context.Background(), "2", "w", 30*time.Second)
	b.parkedAfter(1)
	if d := b.clk.lastAfter(); d != 5*time.Second {
		t.Fatalf("parked for %v, want until the row is due (5 s)", d)
	}
	b.clk.Advance(4999 * time.Millisecond) // just before due: still waiting
	assertPending(t, ch)
	b.clk.Advance(time.Millisecond) // due
	r := recvResult(t, ch)
	if r.err != nil || r.m == nil || r.m.ID != id {
		t.Fatalf("ClaimWait = %+v, want row %d", r, id)
	}
}

func TestClaimWaitWakesOnLeaseExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b")
	id := b.deliver("2")
	ma := b.mustClaim("2", "a", id)
	ch := b.claimWaitAsync(context.Background(), "2", "b", 30*time.Second)
	b.parkedAfter(1)
	if d := b.clk.lastAfter(); d != testTTL {
		t.Fatalf("parked for %v, want until the lease expires (%v)", d, testTTL)
	}
	b.clk.Advance(testTTL)
	r := recvResult(t, ch)
	if r.err != nil || r.m == nil || r.m.ID != id || *r.m.LeaseToken <= *ma.LeaseToken {
		t.Fatalf("ClaimWait = %+v, want row %d with a new token", r, id)
	}
}

func TestClaimWaitTimesOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("w")
	ch := b.claimWaitAsync(context.Background(), "2", "w", time.Hour)
	b.parkedAfter(1)
	if d := b.clk.lastAfter(); d != MaxWait {
		t.Fatalf("parked for %v, want the cap %v", d, MaxWait)
	}
	b.clk.Advance(MaxWait - time.Millisecond)
	assertPending(t, ch)
	b.clk.Advance(time.Millisecond)
	if r := recvResult(t, ch); r.m != nil || r.err != nil {
		t.Fatalf("timed-out ClaimWait = %+v, want empty", r)
	}
	// wait 0: one claim, no waiting.
	if m, err := b.s.ClaimWait(context.Background(), "2", "w", 0); m != nil || err != nil {
		t.Fatalf("wait 0 = %v, %v", m, err)
	}
	// Errors come back at once.
	if _, err := b.s.ClaimWait(context.Background(), "2", "ghost", time.Second); err == nil {
		t.Fatal("unknown claimer: no error")
	}
}

func TestClaimWaitEndsOnContextAndClose(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("w")
	ctx, cancel := context.WithCancel(context.Background())
	ch := b.claimWaitAsync(ctx, "2", "w", 10*time.Second)
	b.parkedAfter(1)
	cancel()
	if r := recvResult(t, ch); r.m != nil || r.err != nil {
		t.Fatalf("cancelled ClaimWait = %+v", r)
	}
	ch = b.claimWaitAsync(context.Background(), "2", "w", 10*time.Second)
	b.parkedAfter(2)
	b.reopen() // Close ends the waiter with an empty answer
	if r := recvResult(t, ch); r.m != nil || r.err != nil {
		t.Fatalf("ClaimWait across Close = %+v", r)
	}
}

// A claimer that may not take work (quarantined, draining) must not turn a
// due-but-untaken wait time into a polling loop: it parks for the whole
// wait like an idle claimer.
func TestClaimWaitBlockedClaimerDoesNotPoll(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("q")
	b.join("d")
	b.mustClaim("2", "a", b.deliver("2"))
	b.clk.Advance(testTTL) // a's lease is over but unswept: a due wait time
	wantErr(t, b.s.SetQuarantine("q", true), nil)
	wantErr(t, b.s.SetMaintenance("d", true, nil, nil), nil)
	for i, node := range []string{"q", "d"} {
		ch := b.claimWaitAsync(context.Background(), "2", node, 7*time.Second)
		b.parkedAfter(int64(i + 1))
		if d := b.clk.lastAfter(); d != 7*time.Second {
			t.Fatalf("%s parked for %v, want the whole wait (7 s)", node, d)
		}
		b.clk.Advance(7 * time.Second)
		if r := recvResult(t, ch); r.m != nil || r.err != nil {
			t.Fatalf("%s: ClaimWait = %+v", node, r)
		}
	}
}

// 1,000 idle waiters park once each and then cost nothing: no clock reads,
// no claims, until something happens (issue 9).
func TestClaimWaitIdleWaitersDoNotPoll(t *testing.T) {
	t.Parallel()
	const waiters = 1000
	b := setup(t)
	var wg sync.WaitGroup
	results := make(chan claimResult, waiters)
	for i := range waiters {
		node := fmt.Sprintf("w%d", i) // distinct: a re-claim by one node returns its row
		b.join(node)
		wg.Go(func() {
			m, err := b.s.ClaimWait(context.Background(), "2", node, 20*time.Second)
			results <- claimResult{m: m, err: err}
		})
	}
	b.parkedAfter(waiters)
	nows := b.clk.nows.Load()
	// An idle window of real time (not a wait for expiry): a polling loop
	// would read the clock or arm timers in it.
	time.Sleep(100 * time.Millisecond)
	if got := b.clk.nows.Load(); got != nows {
		t.Fatalf("idle waiters read the clock %d times (polling)", got-nows)
	}
	if got := b.clk.afters.Load(); got != waiters {
		t.Fatalf("idle waiters re-armed %d timers", got-waiters)
	}
	// One delivery: exactly one waiter gets it; the rest park again.
	id := b.deliver("2")
	b.parkedAfter(2*waiters - 1)
	b.reopen() // shutdown ends every waiter promptly
	wg.Wait()
	close(results)
	got := 0
	for r := range results {
		if r.err != nil {
			t.Fatalf("waiter error: %v", r.err)
		}
		if r.m != nil {
			if r.m.ID != id {
				t.Fatalf("waiter got row %d", r.m.ID)
			}
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d waiters got the row, want 1", got)
	}
}
