package sweep

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"populi-db/store"
	"populi-db/wire"
)

// Lease expiry on a fake clock (issue 4), at the store level. Each case runs
// twice: with requests alone (expiry evaluated at read time) and with a sweep
// pass just after the deadline, which must not change any answer.

const ttl = 5 * time.Second

func forSweepModes(t *testing.T, fn func(t *testing.T, b *bundle, maybeSweep func())) {
	for _, withSweep := range []bool{false, true} {
		t.Run("sweep="+strconv.FormatBool(withSweep), func(t *testing.T) {
			t.Parallel()
			b := setup(t, store.Config{LeaseTTL: ttl})
			fn(t, b, func() {
				if withSweep {
					b.pass(t)
				}
			})
		})
	}
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// TestInboxLeaseExpiryReclaimRenew: claim by A → expire → reclaim by B →
// renew by A gets ErrRenewNotHolder (409), with or without a sweep between.
func TestInboxLeaseExpiryReclaimRenew(t *testing.T) {
	t.Parallel()
	forSweepModes(t, func(t *testing.T, b *bundle, maybeSweep func()) {
		b.join(t, "node-a")
		b.join(t, "node-b")
		id := b.deliver(t, "7", "idem")
		a := b.claim(t, "7", "node-a")
		if a == nil || a.ID != id || a.LeaseToken == nil {
			t.Fatalf("A's claim = %+v, want row %d with a token", a, id)
		}
		if want := uint64(t0.Add(ttl).UnixMilli()); *a.LeaseExpiresUnixMs != want {
			t.Fatalf("lease expires %d, want now+TTL %d", *a.LeaseExpiresUnixMs, want)
		}

		// 1ms before the deadline: still A's. B gets nothing, A may renew.
		b.clk.Advance(ttl - time.Millisecond)
		maybeSweep()
		if m := b.claim(t, "7", "node-b"); m != nil {
			t.Fatalf("B claimed %d while A's lease was live", m.ID)
		}
		if _, err := b.st.RenewInboxLease("7", id, "node-a", a.LeaseToken); err != nil {
			t.Fatalf("A renews its live lease: %v", err)
		}
		// A's lease now ends at t0 + 2*TTL - 1ms. Exactly at the deadline the
		// lease is over (expiry <= now).
		b.clk.Advance(ttl)
		maybeSweep()
		rows := b.inboxIDs(t, "7")
		if len(rows) != 1 || rows[0] != id {
			t.Fatalf("inbox after expiry = %v, want [%d]", rows, id)
		}
		page, _ := b.st.ListInbox("7", nil, nil)
		if page[0].LeaseHolderNodeID != nil || page[0].LeaseExpiresUnixMs != nil {
			t.Fatalf("expired row still shows a lease: %+v", page[0])
		}
		bm := b.claim(t, "7", "node-b")
		if bm == nil || bm.ID != id || wire.Str(bm.LeaseHolderNodeID) != "node-b" {
			t.Fatalf("B's reclaim = %+v, want row %d held by node-b", bm, id)
		}
		if *bm.LeaseToken <= *a.LeaseToken {
			t.Fatalf("B's token %d not above A's %d", *bm.LeaseToken, *a.LeaseToken)
		}
		if bm.DeliveryCount != 2 {
			t.Fatalf("delivery_count %d, want 2", bm.DeliveryCount)
		}

		// A's renew is refused (409), with or without its old token; B's works.
		_, err := b.st.RenewInboxLease("7", id, "node-a", nil)
		wantErr(t, "A renews after B reclaimed", err, wire.ErrRenewNotHolder)
		_, err = b.st.RenewInboxLease("7", id, "node-a", a.LeaseToken)
		wantErr(t, "A renews with its stale token", err, wire.ErrRenewNotHolder)
		if _, err := b.st.RenewInboxLease("7", id, "node-b", bm.LeaseToken); err != nil {
			t.Fatalf("B renews: %v", err)
		}
		// A fenced ack with A's token is refused; the row stays.
		wantErr(t, "A acks with a stale token", b.st.Ack("7", id, a.LeaseToken), wire.ErrStaleLeaseToken)
		// The row is still pending, so its idempotency key still dedupes.
		if got := b.deliver(t, "7", "idem"); got != id {
			t.Fatalf("re-deliver while leased got %d, want %d", got, id)
		}

		// B's lease expires too; with nobody holding it A's renew is still 409.
		b.clk.Advance(ttl)
		maybeSweep()
		_, err = b.st.RenewInboxLease("7", id, "node-a", nil)
		wantErr(t, "A renews an unheld row", err, wire.ErrRenewNotHolder)
		_, err = b.st.RenewInboxLease("7", id, "node-b", nil)
		wantErr(t, "B renews its expired lease", err, wire.ErrRenewNotHolder)
		if m := b.claim(t, "7", "node-a"); m == nil || m.ID != id {
			t.Fatalf("A reclaims after B's expiry: %+v", m)
		}
	})
}

// TestExecLeaseExpiryFreesScope: an exec lease that expires frees its scope
// for another holder; the old holder's lease id is gone (404) and is never
// handed out again.
func TestExecLeaseExpiryFreesScope(t *testing.T) {
	t.Parallel()
	forSweepModes(t, func(t *testing.T, b *bundle, maybeSweep func()) {
		b.join(t, "node-a")
		b.join(t, "node-b")
		la, err := b.st.GrantExecLease("node-a", "job/1")
		if err != nil {
			t.Fatal(err)
		}

		// 1ms before expiry: B is refused (409), A's renew works.
		b.clk.Advance(ttl - time.Millisecond)
		maybeSweep()
		_, err = b.st.GrantExecLease("node-b", "job/1")
		wantErr(t, "B grants a held scope", err, wire.ErrScopeKeyHeld)
		if la, err = b.st.RenewExecLease(la.LeaseID, "node-a", la.LeaseToken); err != nil {
			t.Fatalf("A renews: %v", err)
		}

		// Exactly at the renewed deadline the lease is dead (expiry <= now).
		b.clk.Advance(ttl)
		maybeSweep()
		if ls, _ := b.st.ListExecLeases(); len(ls) != 0 {
			t.Fatalf("list shows expired leases: %+v", ls)
		}
		lb, err := b.st.GrantExecLease("node-b", "job/1")
		if err != nil {
			t.Fatalf("B grants the freed scope: %v", err)
		}
		na, _ := strconv.ParseUint(la.LeaseID, 10, 64)
		nb, _ := strconv.ParseUint(lb.LeaseID, 10, 64)
		if nb <= na || lb.HolderNodeID != "node-b" || *lb.LeaseToken <= *la.LeaseToken {
			t.Fatalf("B's lease %+v does not follow A's %+v", lb, la)
		}

		// A's old lease: renew and release 404; A cannot take the scope back.
		_, err = b.st.RenewExecLease(la.LeaseID, "node-a", nil)
		wantErr(t, "A renews its expired lease", err, wire.ErrNotFound)
		wantErr(t, "A releases its expired lease", b.st.ReleaseExecLease(la.LeaseID, "node-a", nil), wire.ErrNotFound)
		wantErr(t, "revoke of the expired lease", b.st.RevokeExecLease(la.LeaseID), wire.ErrNotFound)
		_, err = b.st.GrantExecLease("node-a", "job/1")
		wantErr(t, "A grants B's scope", err, wire.ErrScopeKeyHeld)

		ls, err := b.st.ListExecLeases()
		if err != nil {
			t.Fatal(err)
		}
		if len(ls) != 1 || ls[0].LeaseID != lb.LeaseID || ls[0].HolderNodeID != "node-b" {
			t.Fatalf("list = %+v, want only B's lease %s", ls, lb.LeaseID)
		}
		// B releases; the scope is free for A with a fresh id.
		if err := b.st.ReleaseExecLease(lb.LeaseID, "node-b", lb.LeaseToken); err != nil {
			t.Fatal(err)
		}
		lc, err := b.st.GrantExecLease("node-a", "job/1")
		if err != nil {
			t.Fatal(err)
		}
		if nc, _ := strconv.ParseUint(lc.LeaseID, 10, 64); nc <= nb {
			t.Fatalf("lease id %s reused or out of order after %s", lc.LeaseID, lb.LeaseID)
		}
	})
}

// TestExpiryAcrossRestart: leases expire while the store is closed (SPEC
// 16.1) and the first pass after reopening sweeps them.
func TestExpiryAcrossRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{LeaseTTL: ttl})
	b.join(t, "node-a")
	b.join(t, "node-b")
	id := b.deliver(t, "7", "")
	b.claim(t, "7", "node-a")
	if _, err := b.st.GrantExecLease("node-a", "job/1"); err != nil {
		t.Fatal(err)
	}
	b.reopen(t, func(*store.Config) {})
	b.clk.Advance(ttl)
	sum := b.pass(t)
	if sum.Counts[InboxLeases].Items != 1 || sum.Counts[ExecLeases].Items != 1 {
		t.Fatalf("pass after restart: %+v", sum.Counts)
	}
	if m := b.claim(t, "7", "node-b"); m == nil || m.ID != id {
		t.Fatalf("B claims after restart + expiry: %+v", m)
	}
	if _, err := b.st.GrantExecLease("node-b", "job/1"); err != nil {
		t.Fatalf("B grants after restart + expiry: %v", err)
	}
}
