package api_test

import (
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

// D1: open mode list, join, list, heartbeat.
func TestD1JoinListHeartbeat(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	r := b.get("/v1/populi/nodes")
	r.expect(t, 200, `{"schema_version":1,"nodes":[],"queue_depth":0}`)
	rec := b.join("node-a")
	if rec.ID != "node-a" || rec.LastSeenUnixMs != nowMs(b.clock) {
		t.Fatalf("join answered %+v", rec)
	}
	if n := b.nodes(); len(n) != 1 || n[0].ID != "node-a" {
		t.Fatalf("list %+v", n)
	}
	b.clock.Advance(time.Second)
	var hb wire.NodeRecord
	b.post("/v1/populi/heartbeat", node("node-a", "last_seen_unix_ms", 5)).decode(t, &hb)
	if hb.LastSeenUnixMs < rec.LastSeenUnixMs || hb.LastSeenUnixMs != nowMs(b.clock) {
		t.Fatalf("heartbeat last_seen %d, join's %d", hb.LastSeenUnixMs, rec.LastSeenUnixMs)
	}
}

// D2: leave, then leave again.
func TestD2Leave(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("gone")
	b.post("/v1/populi/leave", map[string]any{"id": "gone"}).expect(t, 204, "")
	if n := b.nodes(); len(n) != 0 {
		t.Fatalf("list after leave: %+v", n)
	}
	b.post("/v1/populi/leave", map[string]any{"id": "gone"}).expect(t, 404, "")
	// The id is compared exactly, not trimmed.
	b.join("x")
	b.post("/v1/populi/leave", map[string]any{"id": " x"}).expect(t, 404, "")
}

// D5: scope enforcement on join and heartbeat, after the role check.
func TestD5Scope(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens, scope: "cluster-a"})
	for _, path := range []string{"/v1/populi/join", "/v1/populi/heartbeat"} {
		b.post(path, node("n", "scope_id", "cluster-b")).expectErr(t, 403, wire.ErrScopeMismatch)
		b.post(path, node("n")).expectErr(t, 403, wire.ErrScopeMismatch)
		b.post(path, node("n", "scope_id", " cluster-a")).expectErr(t, 403, wire.ErrScopeMismatch)
		// Role check first.
		b.post(path, node("n", "scope_id", "cluster-b"), as(testTokens.Submitter)).expect(t, 403,
			"populi: worker/mesh/admin token required for "+strings.TrimPrefix(path, "/v1/populi/"))
	}
	b.join("n", "scope_id", "cluster-a")
	if n := b.nodes(); len(n) != 1 || wire.Str(n[0].ScopeID) != "cluster-a" {
		t.Fatalf("list %+v", n)
	}
	// Not enforced elsewhere.
	b.post("/v1/populi/leave", map[string]any{"id": "n"}).expect(t, 204, "")
}

// D6: the stale-prune window hides, never deletes.
func TestD6StalePrune(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{stalePruneMs: 5})
	b.join("n")
	b.clock.Advance(5 * time.Millisecond) // exactly at the window: still listed
	if len(b.nodes()) != 1 {
		t.Fatal("node hidden at the window boundary")
	}
	b.clock.Advance(time.Millisecond) // just past it
	if len(b.nodes()) != 0 {
		t.Fatal("stale node still listed")
	}
	b.post("/v1/populi/heartbeat", node("n")).decode(t, &wire.NodeRecord{})
	if len(b.nodes()) != 1 {
		t.Fatal("node did not reappear after heartbeat")
	}
}

func TestJoinBlankIDAndServerOwnedFields(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	for _, id := range []string{"", "   "} {
		b.post("/v1/populi/join", node(id)).expectErr(t, 400, wire.ErrNodeIDRequired)
		b.post("/v1/populi/heartbeat", node(id)).expectErr(t, 400, wire.ErrNodeIDRequired)
	}
	// Client quarantine and maintenance values are discarded (SPEC 1.1, 16.18).
	rec := b.join("n", "quarantined", true, "maintenance", true, "maintenance_until_unix_ms", 99)
	if rec.Quarantined != nil || rec.Maintenance != nil || rec.MaintenanceUntilUnixMs != nil {
		t.Fatalf("server-owned fields taken from client: %+v", rec)
	}
	if !strings.Contains(b.get("/v1/populi/nodes").body, `"memory_free_bytes":null`) {
		t.Fatal("memory_free_bytes not always present")
	}
}

func TestJoinReplacesHeartbeatMerges(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("n", "pool_id", "p1", "visibility", "hybrid")
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "n", "quarantined": true}).expect(t, 204, "")
	// Heartbeat keeps fields it does not carry and the server-owned flags.
	var hb wire.NodeRecord
	b.post("/v1/populi/heartbeat", node("n", "visibility", "public", "version", "2.0.0")).decode(t, &hb)
	if wire.Str(hb.PoolID) != "p1" || wire.Str(hb.Visibility) != "public" || hb.Version != "2.0.0" || hb.Quarantined == nil || !*hb.Quarantined {
		t.Fatalf("heartbeat merge: %+v", hb)
	}
	// Join replaces the record but restores the flags.
	rec := b.join("n")
	if rec.PoolID != nil || rec.Visibility != nil || rec.Quarantined == nil || !*rec.Quarantined {
		t.Fatalf("join replace: %+v", rec)
	}
	// Heartbeat from an unknown node upserts.
	b.post("/v1/populi/heartbeat", node("new")).decode(t, &hb)
	if len(b.nodes()) != 2 {
		t.Fatal("heartbeat did not insert an unknown node")
	}
	// First-insertion order is kept across upserts.
	b.join("n")
	if n := b.nodes(); n[0].ID != "n" || n[1].ID != "new" {
		t.Fatalf("order %v %v", n[0].ID, n[1].ID)
	}
}

func TestQuarantineSurvivesLeaveRejoin(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("q")
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "q", "quarantined": true}).expect(t, 204, "")
	b.post("/v1/populi/leave", map[string]any{"id": "q"}).expect(t, 204, "")
	if rec := b.join("q"); rec.Quarantined == nil || !*rec.Quarantined {
		t.Fatalf("re-join shed quarantine: %+v", rec)
	}
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "q", "quarantined": false}).expect(t, 204, "")
	if n := b.nodes(); n[0].Quarantined == nil || *n[0].Quarantined {
		t.Fatalf("unquarantine should store false: %+v", n[0])
	}
}

func TestAdminNodeRoutes(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	for _, path := range []string{"/v1/populi/admin/quarantine", "/v1/populi/admin/maintenance"} {
		b.post(path, map[string]any{"node_id": "  ", "quarantined": true, "maintenance": true}).expectErr(t, 400, wire.ErrNodeIDParamReq)
		b.post(path, map[string]any{"node_id": "ghost", "quarantined": true, "maintenance": true}).expect(t, 404, "")
	}
	b.join("n")
	now := nowMs(b.clock)
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": " n ", "maintenance": true, "maintenance_until_unix_ms": now + 1000}).expect(t, 204, "")
	if n := b.nodes()[0]; n.Maintenance == nil || !*n.Maintenance || *n.MaintenanceUntilUnixMs != now+1000 {
		t.Fatalf("maintenance until: %+v", n)
	}
	// A past absolute deadline falls through to the relative one (capped at 7 days).
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "n", "maintenance": true, "maintenance_until_unix_ms": now, "maintenance_for_ms": uint64(30 * 24 * time.Hour / time.Millisecond)}).expect(t, 204, "")
	if n := b.nodes()[0]; *n.MaintenanceUntilUnixMs != now+604_800_000 {
		t.Fatalf("maintenance for capped: %+v", n)
	}
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "n", "maintenance": true}).expect(t, 204, "")
	if n := b.nodes()[0]; n.MaintenanceUntilUnixMs != nil || !*n.Maintenance {
		t.Fatalf("indefinite maintenance: %+v", n)
	}
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "n", "maintenance": false}).expect(t, 204, "")
	if n := b.nodes()[0]; n.Maintenance == nil || *n.Maintenance || n.MaintenanceUntilUnixMs != nil {
		t.Fatalf("maintenance off: %+v", n)
	}
}
