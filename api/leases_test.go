package api_test

import (
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

const (
	pathGrant   = "/v1/populi/exec/lease/grant"
	pathLeases  = "/v1/populi/exec/leases"
	pathERenew  = "/v1/populi/exec/lease/renew"
	pathRelease = "/v1/populi/exec/lease/release"
	pathRevoke  = "/v1/populi/admin/exec-lease/revoke"
)

func (b *bundle) grant(claimer, scope string) wire.ExecLease {
	b.t.Helper()
	var l wire.ExecLease
	b.post(pathGrant, map[string]any{"claimer_node_id": claimer, "scope_key": scope}).decode(b.t, &l)
	return l
}

func (b *bundle) leases() []wire.ExecLease {
	b.t.Helper()
	var out wire.ExecLeaseList
	b.get(pathLeases).decode(b.t, &out)
	return out.Leases
}

func leaseBody(id, claimer string, extra ...any) map[string]any {
	m := map[string]any{"lease_id": id, "claimer_node_id": claimer}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

// D15, D16: grant, renew, release, list; renew after release is 404.
func TestD15D16ExecLeaseHappyPath(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("gpu-a")
	l := b.grant(" gpu-a ", " task:abc ")
	if l.LeaseID != "1" || l.ScopeKey != "task:abc" || l.HolderNodeID != "gpu-a" ||
		l.ExpiresUnixMs != nowMs(b.clock)+120_000 || l.LeaseToken == nil {
		t.Fatalf("grant %+v", l)
	}
	if got := b.leases(); len(got) != 1 || got[0].LeaseID != l.LeaseID || got[0].ScopeKey != l.ScopeKey ||
		got[0].HolderNodeID != l.HolderNodeID || got[0].ExpiresUnixMs != l.ExpiresUnixMs || *got[0].LeaseToken != *l.LeaseToken {
		t.Fatalf("list %+v", got)
	}
	b.clock.Advance(time.Minute)
	b.post(pathERenew, leaseBody(" 1 ", "gpu-a")).expect(t, 204, "")
	if got := b.leases(); got[0].ExpiresUnixMs != nowMs(b.clock)+120_000 {
		t.Fatalf("renew did not extend: %+v", got[0])
	}
	b.post(pathRelease, leaseBody("1", "gpu-a")).expect(t, 204, "")
	b.post(pathERenew, leaseBody("1", "gpu-a")).expect(t, 404, "")
	if got := b.leases(); len(got) != 0 {
		t.Fatalf("list after release %+v", got)
	}
	// Ids are never reused; "01" is not "1".
	if l2 := b.grant("gpu-a", "task:abc"); l2.LeaseID != "2" {
		t.Fatalf("second lease id %q", l2.LeaseID)
	}
	b.post(pathERenew, leaseBody("02", "gpu-a")).expect(t, 404, "")
}

// D17: revoke regardless of holder; a second revoke is 404.
func TestD17Revoke(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("a")
	l := b.grant("a", "s")
	b.post(pathRevoke, map[string]any{"lease_id": " "}).expectErr(t, 400, wire.ErrLeaseIDRequired)
	b.post(pathRevoke, map[string]any{"lease_id": l.LeaseID}).expect(t, 204, "")
	if len(b.leases()) != 0 {
		t.Fatal("revoked lease listed")
	}
	b.post(pathRevoke, map[string]any{"lease_id": l.LeaseID}).expect(t, 404, "")
}

// D18: release works under maintenance and quarantine; renew does not.
func TestD18ReleaseUnderMaintenance(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("a")
	l1, l2 := b.grant("a", "s1"), b.grant("a", "s2")
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "a", "maintenance": true}).expect(t, 204, "")
	b.post(pathERenew, leaseBody(l1.LeaseID, "a")).expectErr(t, 403, wire.ErrClaimerMaintenance)
	b.post(pathGrant, map[string]any{"claimer_node_id": "a", "scope_key": "s3"}).expectErr(t, 403, wire.ErrClaimerMaintenance)
	b.post(pathRelease, leaseBody(l1.LeaseID, "a")).expect(t, 204, "")
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "a", "maintenance": false}).expect(t, 204, "")
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "a", "quarantined": true}).expect(t, 204, "")
	b.post(pathERenew, leaseBody(l2.LeaseID, "a")).expectErr(t, 403, wire.ErrClaimerQuarantined)
	b.post(pathGrant, map[string]any{"claimer_node_id": "a", "scope_key": "s3"}).expectErr(t, 403, wire.ErrClaimerQuarantined)
	b.post(pathRelease, leaseBody(l2.LeaseID, "a")).expect(t, 204, "")
}

// D19, D20: same-holder re-grant keeps the id; other nodes get 409.
func TestD19D20ExecLeaseHolders(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("a")
	b.join("b")
	first := b.grant("a", "s")
	b.clock.Advance(time.Second)
	again := b.grant("a", "s")
	if again.LeaseID != first.LeaseID || again.ExpiresUnixMs < first.ExpiresUnixMs || *again.LeaseToken != *first.LeaseToken {
		t.Fatalf("re-grant %+v after %+v", again, first)
	}
	b.post(pathERenew, leaseBody(first.LeaseID, "b")).expectErr(t, 409, wire.ErrExecRenewNotHolder)
	b.post(pathRelease, leaseBody(first.LeaseID, "b")).expectErr(t, 409, wire.ErrExecRelNotHolder)
	b.post(pathGrant, map[string]any{"claimer_node_id": "b", "scope_key": "s"}).expectErr(t, 409, wire.ErrScopeKeyHeld)
	// Once the lease expires, another node may take the scope (new id).
	b.clock.Advance(120 * time.Second)
	if l := b.grant("b", "s"); l.LeaseID == first.LeaseID || l.HolderNodeID != "b" {
		t.Fatalf("grant after expiry %+v", l)
	}
}

func TestExecLeaseValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{leaseTTL: 5 * time.Second})
	b.join("a")
	grant := func(claimer, scope string) response {
		return b.post(pathGrant, map[string]any{"claimer_node_id": claimer, "scope_key": scope})
	}
	grant("a", "  ").expectErr(t, 400, wire.ErrScopeKeyRequired)
	grant("", "").expectErr(t, 400, wire.ErrScopeKeyRequired) // scope checked first
	grant("a", strings.Repeat("k", 2049)).expectErr(t, 400, wire.ErrScopeKeyTooLong)
	grant(" ", "s").expectErr(t, 400, wire.ErrClaimerRequired)
	grant("ghost", "s").expectErr(t, 403, wire.ErrUnknownClaimerJoin)
	if l := grant("a", " "+strings.Repeat("k", 2048)+" "); l.status != 200 {
		t.Fatalf("2048-byte scope: %d %q", l.status, l.body)
	}
	for _, path := range []string{pathERenew, pathRelease} {
		b.post(path, leaseBody(" ", "a")).expectErr(t, 400, wire.ErrLeaseIDRequired)
		b.post(path, leaseBody("1", " ")).expectErr(t, 400, wire.ErrClaimerRequired)
		b.post(path, leaseBody("1", "ghost")).expectErr(t, 403, wire.ErrUnknownClaimerJoin)
		b.post(path, leaseBody("999", "a")).expect(t, 404, "")
	}
	// An expired lease is 404 for renew, release and revoke, and gone from the list.
	l := b.grant("a", "e")
	b.clock.Advance(5*time.Second - time.Millisecond) // before expiry
	if len(b.leases()) != 2 {
		t.Fatal("live lease missing")
	}
	b.clock.Advance(time.Millisecond) // expires_unix_ms <= now: dead
	b.post(pathERenew, leaseBody(l.LeaseID, "a")).expect(t, 404, "")
	b.post(pathRelease, leaseBody(l.LeaseID, "a")).expect(t, 404, "")
	b.post(pathRevoke, map[string]any{"lease_id": l.LeaseID}).expect(t, 404, "")
	if len(b.leases()) != 0 {
		t.Fatal("dead leases listed")
	}
}
