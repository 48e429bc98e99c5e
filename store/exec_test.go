package store

import (
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

func (b *bundle) grant(claimer, scope string) wire.ExecLease {
	b.t.Helper()
	l, err := b.s.GrantExecLease(claimer, scope)
	if err != nil {
		b.t.Fatalf("grant %q to %q: %v", scope, claimer, err)
	}
	return l
}

func (b *bundle) leaseIDs() []string {
	b.t.Helper()
	ls, err := b.s.ListExecLeases()
	if err != nil {
		b.t.Fatalf("list exec leases: %v", err)
	}
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.LeaseID
	}
	return out
}

func TestExecLeaseValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	_, err := b.s.GrantExecLease("a", "  ")
	wantErr(t, err, wire.ErrScopeKeyRequired)
	_, err = b.s.GrantExecLease("a", strings.Repeat("x", MaxScopeKeyBytes+1))
	wantErr(t, err, wire.ErrScopeKeyTooLong)
	_, err = b.s.GrantExecLease("a", " "+strings.Repeat("é", MaxScopeKeyBytes/2)+" ") // 2048 bytes after trim
	wantErr(t, err, nil)
	_, err = b.s.GrantExecLease("a", strings.Repeat("é", MaxScopeKeyBytes/2)+"x") // bytes, not runes
	wantErr(t, err, wire.ErrScopeKeyTooLong)
	_, err = b.s.GrantExecLease(" ", "s")
	wantErr(t, err, wire.ErrClaimerRequired)
	_, err = b.s.GrantExecLease("ghost", "s")
	wantErr(t, err, wire.ErrUnknownClaimerJoin)

	_, err = b.s.RenewExecLease(" ", "a", nil)
	wantErr(t, err, wire.ErrLeaseIDRequired)
	_, err = b.s.RenewExecLease("1", "", nil)
	wantErr(t, err, wire.ErrClaimerRequired)
	_, err = b.s.RenewExecLease("1", "ghost", nil)
	wantErr(t, err, wire.ErrUnknownClaimerJoin)
	wantErr(t, b.s.ReleaseExecLease("", "a", nil), wire.ErrLeaseIDRequired)
	wantErr(t, b.s.ReleaseExecLease("1", " ", nil), wire.ErrClaimerRequired)
	wantErr(t, b.s.ReleaseExecLease("1", "ghost", nil), wire.ErrUnknownClaimerJoin)
	wantErr(t, b.s.RevokeExecLease(" "), wire.ErrLeaseIDRequired)
}

func TestExecLeaseLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b")
	l := b.grant(" a ", "  job-1 ")
	if l.LeaseID != "1" || l.ScopeKey != "job-1" || l.HolderNodeID != "a" || l.ExpiresUnixMs != b.nowMs()+uint64(testTTL.Milliseconds()) || l.LeaseToken == nil {
		t.Fatalf("grant: %+v", l)
	}
	// Another node: 409. The same node: the same id and token, a fresh expiry.
	_, err := b.s.GrantExecLease("b", "job-1")
	wantErr(t, err, wire.ErrScopeKeyHeld)
	b.clk.Advance(time.Second)
	again := b.grant("a", "job-1")
	if again.LeaseID != l.LeaseID || *again.LeaseToken != *l.LeaseToken || again.ExpiresUnixMs != b.nowMs()+uint64(testTTL.Milliseconds()) {
		t.Fatalf("re-grant: %+v, first %+v", again, l)
	}
	other := b.grant("b", "job-2")
	if other.LeaseID != "2" || *other.LeaseToken <= *l.LeaseToken {
		t.Fatalf("second lease: %+v", other)
	}
	if got := b.leaseIDs(); !eqStrings(got, []string{"1", "2"}) {
		t.Fatalf("list = %v", got)
	}

	// Renew.
	b.clk.Advance(time.Second)
	r, err := b.s.RenewExecLease(" 1 ", "a", l.LeaseToken)
	wantErr(t, err, nil)
	if r.ExpiresUnixMs != b.nowMs()+uint64(testTTL.Milliseconds()) {
		t.Fatalf("renew expiry %d", r.ExpiresUnixMs)
	}
	_, err = b.s.RenewExecLease("1", "b", nil)
	wantErr(t, err, wire.ErrExecRenewNotHolder)
	stale := *l.LeaseToken + 1
	_, err = b.s.RenewExecLease("1", "a", &stale)
	wantErr(t, err, wire.ErrStaleLeaseToken)
	_, err = b.s.RenewExecLease("01", "a", nil) // exact string match
	wantErr(t, err, wire.ErrNotFound)
	_, err = b.s.RenewExecLease("99", "a", nil)
	wantErr(t, err, wire.ErrNotFound)

	// Release: holder only, token checked, quarantine no obstacle.
	wantErr(t, b.s.ReleaseExecLease("1", "b", nil), wire.ErrExecRelNotHolder)
	wantErr(t, b.s.ReleaseExecLease("1", "a", &stale), wire.ErrStaleLeaseToken)
	wantErr(t, b.s.SetQuarantine("a", true), nil)
	wantErr(t, b.s.ReleaseExecLease("1", "a", l.LeaseToken), nil)
	_, err = b.s.RenewExecLease("1", "b", nil)
	wantErr(t, err, wire.ErrNotFound)
	wantErr(t, b.s.ReleaseExecLease("1", "a", nil), wire.ErrNotFound)
	if got := b.leaseIDs(); !eqStrings(got, []string{"2"}) {
		t.Fatalf("list after release = %v", got)
	}
	// The released scope is free; ids are never reused.
	if l3 := b.grant("b", "job-1"); l3.LeaseID != "3" {
		t.Fatalf("new lease id %q, want 3", l3.LeaseID)
	}

	// Revoke removes whoever holds it; a second revoke is 404.
	wantErr(t, b.s.RevokeExecLease(" 2 "), nil)
	wantErr(t, b.s.RevokeExecLease("2"), wire.ErrNotFound)
	if got := b.leaseIDs(); !eqStrings(got, []string{"3"}) {
		t.Fatalf("list after revoke = %v", got)
	}
}

func TestExecLeaseExpiryFreesScope(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b")
	l := b.grant("a", "s")
	b.clk.Advance(testTTL - time.Millisecond)
	// Just before expiry (now = expires-1): still held.
	_, err := b.s.GrantExecLease("b", "s")
	wantErr(t, err, wire.ErrScopeKeyHeld)
	if got := b.leaseIDs(); len(got) != 1 {
		t.Fatalf("list just before expiry = %v", got)
	}
	b.clk.Advance(time.Millisecond)
	// At expiry (now = expires): dead, with no sweep run.
	if got := b.leaseIDs(); len(got) != 0 {
		t.Fatalf("list at expiry = %v", got)
	}
	_, err = b.s.RenewExecLease(l.LeaseID, "a", nil)
	wantErr(t, err, wire.ErrNotFound)
	wantErr(t, b.s.ReleaseExecLease(l.LeaseID, "a", nil), wire.ErrNotFound)
	wantErr(t, b.s.RevokeExecLease(l.LeaseID), wire.ErrNotFound)
	nl := b.grant("b", "s")
	if nl.LeaseID == l.LeaseID || *nl.LeaseToken <= *l.LeaseToken || nl.HolderNodeID != "b" {
		t.Fatalf("grant after expiry: %+v (old %+v)", nl, l)
	}
	// The old holder's token cannot touch the new lease.
	_, err = b.s.RenewExecLease(nl.LeaseID, "b", l.LeaseToken)
	wantErr(t, err, wire.ErrStaleLeaseToken)
	// Same holder re-granting after its own lease expired gets a new id.
	b.clk.Advance(testTTL)
	if l2 := b.grant("b", "s"); l2.LeaseID == nl.LeaseID {
		t.Fatalf("re-grant after expiry kept id %s", l2.LeaseID)
	}
}

func TestLeaseTokensIncreaseAcrossKinds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	var last uint64
	next := func(tok *uint64) {
		t.Helper()
		if tok == nil || *tok <= last {
			t.Fatalf("token %v not above %d", tok, last)
		}
		last = *tok
	}
	for i := range 10 {
		if i%2 == 0 {
			b.deliver("2")
			next(b.claim("2", "a").LeaseToken) // a new row, or a re-claim

		} else {
			next(b.grant("a", "scope-"+string(rune('a'+i))).LeaseToken)
		}
		if i == 4 {
			b.reopen()
		}
	}
}
