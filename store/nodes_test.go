package store

import (
	"encoding/json"
	"testing"
	"time"

	"populi-db/wire"
)

func nodeIDs(reg wire.Registry) []string {
	out := make([]string, len(reg.Nodes))
	for i, n := range reg.Nodes {
		out[i] = n.ID
	}
	return out
}

func eqStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (b *bundle) nodeOrder() []string {
	b.t.Helper()
	reg, err := b.s.ListNodes(0)
	if err != nil {
		b.t.Fatalf("list nodes: %v", err)
	}
	return nodeIDs(reg)
}

func TestJoinBlankIDRejected(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"", "  ", "\t\n"} {
		_, err := b.s.Join(wire.NodeRecord{ID: id})
		wantErr(t, err, wire.ErrNodeIDRequired)
		_, err = b.s.Heartbeat(wire.NodeRecord{ID: id})
		wantErr(t, err, wire.ErrNodeIDRequired)
	}
	// Ids are kept verbatim otherwise (SPEC 16.17).
	rec := b.join(" a ")
	if rec.ID != " a " {
		t.Fatalf("id = %q, want it verbatim", rec.ID)
	}
}

func TestJoinNewDiscardsServerOwnedFields(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := b.join("a", func(r *wire.NodeRecord) {
		r.Quarantined, r.Maintenance, r.MaintenanceUntilUnixMs = ptr(true), ptr(true), ptr(b.nowMs()+60_000)
		r.LastSeenUnixMs = 42
	})
	if rec.Quarantined != nil || rec.Maintenance != nil || rec.MaintenanceUntilUnixMs != nil {
		t.Fatalf("client server-owned fields kept on first insert (SPEC 16.18): %+v", rec)
	}
	if rec.LastSeenUnixMs != b.nowMs() {
		t.Fatalf("last_seen = %d, want server now %d", rec.LastSeenUnixMs, b.nowMs())
	}
	if got := b.node("a"); got == nil || got.Quarantined != nil || got.Maintenance != nil {
		t.Fatalf("stored record: %+v", got)
	}
}

func TestJoinReplaceKeepsPositionAndServerFlags(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b", func(r *wire.NodeRecord) {
		r.ListenAddr, r.PoolID = ptr("10.0.0.2:9000"), ptr("gpu")
	})
	b.join("c")
	wantErr(t, b.s.SetQuarantine("b", true), nil)
	until := b.nowMs() + 60_000
	wantErr(t, b.s.SetMaintenance("b", true, &until, nil), nil)

	b.clk.Advance(time.Second)
	rec := b.join("b", func(r *wire.NodeRecord) {
		r.Version = "v2"
		r.Provider = ptr("runpod")
		r.Quarantined, r.Maintenance, r.MaintenanceUntilUnixMs = ptr(false), ptr(false), nil
	})
	if rec.ListenAddr != nil || rec.PoolID != nil {
		t.Fatalf("join must replace the whole record; omitted fields kept: %+v", rec)
	}
	if rec.Version != "v2" || wire.Str(rec.Provider) != "runpod" {
		t.Fatalf("new fields not stored: %+v", rec)
	}
	if rec.Quarantined == nil || !*rec.Quarantined {
		t.Fatalf("quarantined not preserved: %v", rec.Quarantined)
	}
	if rec.Maintenance == nil || !*rec.Maintenance || derefU64(rec.MaintenanceUntilUnixMs) != until {
		t.Fatalf("maintenance not preserved: %v %v", rec.Maintenance, rec.MaintenanceUntilUnixMs)
	}
	if rec.LastSeenUnixMs != b.nowMs() {
		t.Fatalf("last_seen = %d, want %d", rec.LastSeenUnixMs, b.nowMs())
	}
	if got := b.nodeOrder(); !eqStrings(got, []string{"a", "b", "c"}) {
		t.Fatalf("order after re-join = %v, want [a b c]", got)
	}
	// Absent server flags are restored as absent.
	rec = b.join("a", func(r *wire.NodeRecord) { r.Quarantined = ptr(true) })
	if rec.Quarantined != nil || rec.Maintenance != nil {
		t.Fatalf("re-join of an unflagged node gained flags: %+v", rec)
	}
}

func TestHeartbeatMergesPresentFieldsOnly(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a", func(r *wire.NodeRecord) {
		r.ListenAddr, r.PoolID, r.Visibility = ptr("10.0.0.1:1"), ptr("p1"), ptr("hybrid")
		r.GPUTotalCount, r.CPUUsagePct = ptr(uint32(4)), ptr(float32(10))
		r.Capabilities.GPUCuda = true
	})
	wantErr(t, b.s.SetQuarantine("a", true), nil)
	b.clk.Advance(5 * time.Second)
	rec, err := b.s.Heartbeat(wire.NodeRecord{
		ID: "a", Version: "v2", PoolID: ptr("p2"), CPUUsagePct: ptr(float32(55)),
		Quarantined: ptr(false), Maintenance: ptr(true), LastSeenUnixMs: 1,
	})
	wantErr(t, err, nil)
	switch {
	case wire.Str(rec.PoolID) != "p2", rec.CPUUsagePct == nil || *rec.CPUUsagePct != 55:
		t.Fatalf("present fields not merged: %+v", rec)
	case wire.Str(rec.ListenAddr) != "10.0.0.1:1", wire.Str(rec.Visibility) != "hybrid",
		rec.GPUTotalCount == nil || *rec.GPUTotalCount != 4:
		t.Fatalf("absent fields not kept: %+v", rec)
	case rec.Quarantined == nil || !*rec.Quarantined, rec.Maintenance != nil:
		t.Fatalf("server-owned flags changed by heartbeat: %+v", rec)
	case rec.LastSeenUnixMs != b.nowMs():
		t.Fatalf("last_seen = %d, want %d", rec.LastSeenUnixMs, b.nowMs())
	case rec.Version != "v2", rec.Capabilities.GPUCuda:
		// capabilities and version are required on the wire, so they are
		// always present and always merged (SPEC 16.7).
		t.Fatalf("required fields not merged: %+v", rec)
	}
	if got := b.node("a"); got == nil || wire.Str(got.PoolID) != "p2" || wire.Str(got.ListenAddr) != "10.0.0.1:1" {
		t.Fatalf("stored record: %+v", got)
	}

	// Unknown id: heartbeat upserts like join, at the end of the list.
	rec, err = b.s.Heartbeat(wire.NodeRecord{ID: "new", Version: "v", Quarantined: ptr(true)})
	wantErr(t, err, nil)
	if rec.Quarantined != nil || rec.LastSeenUnixMs != b.nowMs() {
		t.Fatalf("heartbeat insert: %+v", rec)
	}
	if got := b.nodeOrder(); !eqStrings(got, []string{"a", "new"}) {
		t.Fatalf("order = %v", got)
	}
}

func TestLeaveAndQuarantineTombstone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wantErr(t, b.s.Leave("nobody"), wire.ErrNotFound)
	wantErr(t, b.s.SetQuarantine("nobody", true), wire.ErrNotFound)
	wantErr(t, b.s.SetQuarantine("  ", true), wire.ErrNodeIDParamReq)

	// A node that was never quarantined leaves without a trace.
	b.join("plain")
	wantErr(t, b.s.Leave("plain"), nil)
	if b.node("plain") != nil {
		t.Fatal("leave did not remove the node")
	}
	if rec := b.join("plain"); rec.Quarantined != nil {
		t.Fatalf("rejoin of an unquarantined node: %+v", rec)
	}

	// Quarantine, leave, re-join: the tombstone re-applies (SPEC 16.9).
	b.join("q")
	wantErr(t, b.s.SetQuarantine("q", true), nil)
	wantErr(t, b.s.Leave("q"), nil)
	if b.node("q") != nil {
		t.Fatal("leave did not remove the quarantined node")
	}
	if rec := b.join("q"); rec.Quarantined == nil || !*rec.Quarantined {
		t.Fatalf("re-join after leave lost quarantine: %+v", rec)
	}
	b.mustClaimNone("5", "q")

	// Heartbeat of a left id re-applies it too.
	wantErr(t, b.s.Leave("q"), nil)
	rec, err := b.s.Heartbeat(wire.NodeRecord{ID: "q", Version: "v"})
	wantErr(t, err, nil)
	if rec.Quarantined == nil || !*rec.Quarantined {
		t.Fatalf("heartbeat after leave lost quarantine: %+v", rec)
	}

	// Clearing through the admin route clears the tombstone.
	wantErr(t, b.s.SetQuarantine("q", false), nil)
	if rec := b.node("q"); rec.Quarantined == nil || *rec.Quarantined {
		t.Fatalf("quarantine false must be stored as false: %+v", rec.Quarantined)
	}
	wantErr(t, b.s.Leave("q"), nil)
	if rec := b.join("q"); rec.Quarantined != nil {
		t.Fatalf("tombstone survived SetQuarantine(false): %+v", rec)
	}

	// Clearing works for an id that is currently gone.
	wantErr(t, b.s.SetQuarantine("q", true), nil)
	wantErr(t, b.s.Leave("q"), nil)
	wantErr(t, b.s.SetQuarantine("q", false), nil)
	if rec := b.join("q"); rec.Quarantined != nil {
		t.Fatalf("tombstone cleared while away still applied: %+v", rec)
	}
	// With no record and no tombstone there is nothing to clear.
	wantErr(t, b.s.SetQuarantine("gone", false), wire.ErrNotFound)
}

func TestQuarantineEffects(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("w")
	b.join("other")
	id := b.deliver("5")
	m := b.mustClaim("5", "w", id)
	lease, err := b.s.GrantExecLease("w", "scope")
	wantErr(t, err, nil)

	wantErr(t, b.s.SetQuarantine("w", true), nil)
	b.mustClaimNone("5", "w")
	b.deliver("5")
	b.mustClaimNone("5", "w")
	_, err = b.s.RenewInboxLease("5", id, "w", nil)
	wantErr(t, err, wire.ErrClaimerQuarantined)
	_, err = b.s.GrantExecLease("w", "scope2")
	wantErr(t, err, wire.ErrClaimerQuarantined)
	_, err = b.s.RenewExecLease(lease.LeaseID, "w", nil)
	wantErr(t, err, wire.ErrClaimerQuarantined)
	// Ack, heartbeat and exec release are unaffected (SPEC 8.1).
	wantErr(t, b.s.Ack("5", id, m.LeaseToken), nil)
	_, err = b.s.Heartbeat(wire.NodeRecord{ID: "w", Version: "v"})
	wantErr(t, err, nil)
	wantErr(t, b.s.ReleaseExecLease(lease.LeaseID, "w", nil), nil)
	// Other nodes still claim.
	if b.claim("5", "other") == nil {
		t.Fatal("an unquarantined node could not claim")
	}
}

func TestMaintenanceDeadlineSemantics(t *testing.T) {
	t.Parallel()
	week := uint64(MaxMaintenanceForMs)
	cases := []struct {
		name      string
		until     func(now uint64) *uint64
		forMs     *uint64
		wantUntil func(now uint64) *uint64 // nil = indefinite
	}{
		{"future until wins", func(n uint64) *uint64 { return ptr(n + 5000) }, ptr(uint64(1000)),
			func(n uint64) *uint64 { return ptr(n + 5000) }},
		{"until has no upper cap", func(n uint64) *uint64 { return ptr(n + 10*week) }, nil,
			func(n uint64) *uint64 { return ptr(n + 10*week) }},
		{"until equal to now falls through to for", func(n uint64) *uint64 { return ptr(n) }, ptr(uint64(3000)),
			func(n uint64) *uint64 { return ptr(n + 3000) }},
		{"past until falls through to for", func(n uint64) *uint64 { return ptr(n - 1) }, ptr(uint64(3000)),
			func(n uint64) *uint64 { return ptr(n + 3000) }},
		{"past until alone is indefinite", func(n uint64) *uint64 { return ptr(n - 1) }, nil, nil},
		{"for is capped at 7 days", nil, ptr(10 * week), func(n uint64) *uint64 { return ptr(n + week) }},
		{"for zero is indefinite", nil, ptr(uint64(0)), nil},
		{"neither is indefinite", nil, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.join("n")
			now := b.nowMs()
			var until *uint64
			if tc.until != nil {
				until = tc.until(now)
			}
			wantErr(t, b.s.SetMaintenance("n", true, until, tc.forMs), nil)
			rec := b.node("n")
			if rec.Maintenance == nil || !*rec.Maintenance {
				t.Fatalf("maintenance = %v, want true", rec.Maintenance)
			}
			var want *uint64
			if tc.wantUntil != nil {
				want = tc.wantUntil(now)
			}
			if (want == nil) != (rec.MaintenanceUntilUnixMs == nil) || (want != nil && *want != *rec.MaintenanceUntilUnixMs) {
				t.Fatalf("deadline = %v, want %v", fmtPtr(rec.MaintenanceUntilUnixMs), fmtPtr(want))
			}
			b.mustClaimNone("5", "n")
		})
	}
}

func fmtPtr(p *uint64) any {
	if p == nil {
		return "absent"
	}
	return *p
}

func TestMaintenanceOffAndErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("n")
	wantErr(t, b.s.SetMaintenance("", true, nil, nil), wire.ErrNodeIDParamReq)
	wantErr(t, b.s.SetMaintenance("ghost", true, nil, nil), wire.ErrNotFound)
	wantErr(t, b.s.SetMaintenance("n", true, nil, ptr(uint64(60_000))), nil)
	id := b.deliver("5")
	b.mustClaimNone("5", "n")
	// " n " is trimmed for the admin route.
	wantErr(t, b.s.SetMaintenance(" n ", false, nil, nil), nil)
	rec := b.node("n")
	if rec.Maintenance == nil || *rec.Maintenance || rec.MaintenanceUntilUnixMs != nil {
		t.Fatalf("after maintenance off: %v %v, want false and absent", rec.Maintenance, fmtPtr(rec.MaintenanceUntilUnixMs))
	}
	b.mustClaim("5", "n", id)
}

// setupDrained returns a store whose node "n" is drained until t0+1000 ms,
// with a row waiting and node "n" holding an exec lease and an inbox lease
// taken before the drain.
func setupDrained(t *testing.T) (b *bundle, held *wire.StoredMessage, lease wire.ExecLease, deadline uint64) {
	b = setup(t, func(c *Config) { c.LeaseTTL = time.Hour })
	b.join("n")
	held = b.mustClaim("5", "n", b.deliver("5"))
	var err error
	lease, err = b.s.GrantExecLease("n", "s")
	wantErr(t, err, nil)
	b.deliver("5")
	deadline = b.nowMs() + 1000
	wantErr(t, b.s.SetMaintenance("n", true, nil, ptr(uint64(1000))), nil)
	return b, held, lease, deadline
}

func TestMaintenanceJustBeforeDeadline(t *testing.T) {
	t.Parallel()
	b, held, lease, deadline := setupDrained(t)
	b.clk.Advance(999 * time.Millisecond)
	// Just before the deadline (now = deadline-1): still draining.
	if now := b.nowMs(); now != deadline-1 {
		t.Fatalf("now = %d, want deadline-1", now)
	}
	b.mustClaimNone("5", "n")
	_, err := b.s.RenewInboxLease("5", held.ID, "n", nil)
	wantErr(t, err, wire.ErrClaimerMaintenance)
	_, err = b.s.GrantExecLease("n", "s2")
	wantErr(t, err, wire.ErrClaimerMaintenance)
	_, err = b.s.RenewExecLease(lease.LeaseID, "n", nil)
	wantErr(t, err, wire.ErrClaimerMaintenance)
	rec := b.node("n")
	if rec.Maintenance == nil || !*rec.Maintenance || derefU64(rec.MaintenanceUntilUnixMs) != deadline {
		t.Fatalf("listing just before the deadline: %v %v", rec.Maintenance, fmtPtr(rec.MaintenanceUntilUnixMs))
	}
	if n, err := b.s.ClearExpiredMaintenance(100); err != nil || n != 0 {
		t.Fatalf("ClearExpiredMaintenance before the deadline = %d, %v; want 0", n, err)
	}
	// Release is allowed while draining (SPEC 7.4).
	wantErr(t, b.s.ReleaseExecLease(lease.LeaseID, "n", nil), nil)
}

func TestMaintenanceAtDeadline(t *testing.T) {
	t.Parallel()
	b, held, lease, deadline := setupDrained(t)
	b.clk.Advance(time.Second)
	// At the deadline (now = deadline): the drain is over, with no sweep run.
	if now := b.nowMs(); now != deadline {
		t.Fatalf("now = %d, want deadline", now)
	}
	rec := b.node("n")
	if rec.Maintenance != nil || rec.MaintenanceUntilUnixMs != nil {
		t.Fatalf("listing at the deadline: both fields must be absent, got %v %v", rec.Maintenance, fmtPtr(rec.MaintenanceUntilUnixMs))
	}
	if _, err := b.s.RenewInboxLease("5", held.ID, "n", nil); err != nil {
		t.Fatalf("renew at the deadline: %v", err)
	}
	if _, err := b.s.RenewExecLease(lease.LeaseID, "n", nil); err != nil {
		t.Fatalf("exec renew at the deadline: %v", err)
	}
	if b.claim("5", "n") == nil {
		t.Fatal("claim at the deadline got nothing")
	}
	if n, err := b.s.ClearExpiredMaintenance(100); err != nil || n != 1 {
		t.Fatalf("ClearExpiredMaintenance at the deadline = %d, %v; want 1", n, err)
	}
	if n, _ := b.s.ClearExpiredMaintenance(100); n != 0 {
		t.Fatalf("second ClearExpiredMaintenance = %d, want 0", n)
	}
	// A join after lazy expiry keeps the fields absent, not false.
	if rec := b.join("n"); rec.Maintenance != nil || rec.MaintenanceUntilUnixMs != nil {
		t.Fatalf("join after expiry: %+v", rec)
	}
}

func TestJoinExpiresLapsedMaintenance(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("n")
	wantErr(t, b.s.SetMaintenance("n", true, nil, ptr(uint64(500))), nil)
	b.clk.Advance(500 * time.Millisecond) // at the deadline
	if rec := b.join("n"); rec.Maintenance != nil || rec.MaintenanceUntilUnixMs != nil {
		t.Fatalf("join must drop a lapsed drain: %+v", rec)
	}
	// The sweeper has nothing left to do (the join wrote the record).
	if n, err := b.s.ClearExpiredMaintenance(10); err != nil || n != 0 {
		t.Fatalf("ClearExpiredMaintenance = %d, %v; want 0", n, err)
	}
}

func TestListNodesStaleFilter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("old")
	b.clk.Advance(10 * time.Second)
	b.join("fresh")
	reg, err := b.s.ListNodes(5000)
	wantErr(t, err, nil)
	if got := nodeIDs(reg); !eqStrings(got, []string{"fresh"}) {
		t.Fatalf("stale filter 5 s: %v", got)
	}
	reg, _ = b.s.ListNodes(10_000) // exactly 10 s old is not older than the window
	if got := nodeIDs(reg); !eqStrings(got, []string{"old", "fresh"}) {
		t.Fatalf("stale filter 10 s: %v", got)
	}
	reg, _ = b.s.ListNodes(0)
	if len(reg.Nodes) != 2 || reg.SchemaVersion != 1 || reg.QueueDepth == nil || *reg.QueueDepth != 0 {
		t.Fatalf("registry: %+v", reg)
	}
	// Stale nodes can still claim.
	b.clk.Advance(time.Hour)
	id := b.deliver("5")
	b.mustClaim("5", "old", id)
}

// The spliced listing is byte for byte what encoding the decoded registry
// gives, across plain, quarantined, drained (timed, expired, open-ended),
// stale and oddly labelled nodes, before and after time passes.
// The JSON a join or heartbeat answers is json.Marshal of the record it
// stored (the API sends those bytes as they are).
func TestUpsertJSONMatchesRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := wire.NodeRecord{ID: "n1", Version: "test"}
	rec.Capabilities.Labels = []string{`<"x"> & é`}
	for i, op := range []func(wire.NodeRecord) ([]byte, error){b.s.JoinJSON, b.s.HeartbeatJSON, b.s.HeartbeatJSON} {
		if i == 2 {
			wantErr(t, b.s.SetQuarantine("n1", true), nil)
			rec.Capabilities.Labels = nil
		}
		b.clk.Advance(time.Second)
		got, err := op(rec)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(b.node("n1"))
		if string(got) != string(want) {
			t.Fatalf("op %d answered\n%s\nstored\n%s", i, got, want)
		}
	}
}

func TestListNodesJSONMatchesListNodes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("plain")
	b.join("odd", func(r *wire.NodeRecord) {
		r.Capabilities.Labels = []string{`<"maintenance":true> & é`}
	})
	b.join("q")
	wantErr(t, b.s.SetQuarantine("q", true), nil)
	b.join("timed")
	wantErr(t, b.s.SetMaintenance("timed", true, nil, ptr(uint64(5000))), nil)
	b.join("open")
	wantErr(t, b.s.SetMaintenance("open", true, nil, nil), nil)
	b.clk.Advance(2 * time.Second)
	b.join("fresh")
	b.deliver("9")
	for _, step := range []time.Duration{0, 4 * time.Second} { // the timed drain ends in between
		b.clk.Advance(step)
		for _, staleMs := range []uint64{0, 1500, 1 << 40} {
			reg, err := b.s.ListNodes(staleMs)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := json.Marshal(reg)
			got, err := b.s.ListNodesJSON(staleMs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Fatalf("after %v, stale %d ms:\n got %s\nwant %s", step, staleMs, got, want)
			}
		}
	}
}
