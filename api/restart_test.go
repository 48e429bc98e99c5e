package api_test

import (
	"slices"
	"testing"

	"populi-db/wire"
)

// Restart survival at the HTTP level: close the server and the store,
// reopen the same file, and find everything where it was.
func TestRestartSurvival(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	b.join("q", "pool_id", "p")
	b.join("m")
	b.join("w")
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "q", "quarantined": true}).expect(t, 204, "")
	until := nowMs(b.clock) + 3_600_000
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "m", "maintenance": true, "maintenance_until_unix_ms": until}).expect(t, 204, "")
	p1 := b.deliver("1", "2", "idempotency_key", "k1")
	p2 := b.deliver("1", "2")
	leased := b.deliver("1", "4")
	claimed := b.claim("4", "w")[0]
	acked := b.deliver("1", "2")
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": acked}).expect(t, 204, "")
	lease := b.grant("w", "task:abc")

	b.restart()

	nodes := b.nodes()
	if len(nodes) != 3 || nodes[0].ID != "q" || nodes[1].ID != "m" || nodes[2].ID != "w" {
		t.Fatalf("nodes after restart %+v", nodes)
	}
	if q := nodes[0]; q.Quarantined == nil || !*q.Quarantined || wire.Str(q.PoolID) != "p" {
		t.Fatalf("quarantined node %+v", q)
	}
	if m := nodes[1]; m.Maintenance == nil || !*m.Maintenance || *m.MaintenanceUntilUnixMs != until {
		t.Fatalf("maintenance node %+v", m)
	}
	if len(b.claim("2", "q")) != 0 || len(b.claim("2", "m")) != 0 {
		t.Fatal("flags lost: quarantined or draining node claimed")
	}
	// Pending rows, their idempotency keys, and the live inbox lease.
	if got := b.list("2"); !slices.Equal(ids(got), []uint64{p2, p1}) {
		t.Fatalf("pending after restart %v", ids(got))
	}
	if again := b.deliver("1", "2", "idempotency_key", "k1"); again != p1 {
		t.Fatalf("idempotency forgotten: %d, want %d", again, p1)
	}
	l := b.list("4")
	if len(l) != 1 || l[0].ID != leased || wire.Str(l[0].LeaseHolderNodeID) != "w" || *l[0].LeaseToken != *claimed.LeaseToken {
		t.Fatalf("leased row after restart %+v", l)
	}
	b.post(pathRenew, map[string]any{"receiver_agent_id": "4", "message_id": leased, "claimer_node_id": "w", "lease_token": *claimed.LeaseToken}).expect(t, 204, "")
	// Ids never reused, fencing tokens keep increasing.
	if next := b.deliver("1", "2"); next <= acked {
		t.Fatalf("message id %d reused (max before restart %d)", next, acked)
	}
	if c := b.claim("2", "w")[0]; *c.LeaseToken <= *lease.LeaseToken {
		t.Fatalf("token %d not above %d", *c.LeaseToken, *lease.LeaseToken)
	}
	// D25: the exec lease survives and its holder can renew it.
	got := b.leases()
	if len(got) != 1 || got[0].LeaseID != lease.LeaseID || got[0].HolderNodeID != "w" {
		t.Fatalf("exec leases after restart %+v", got)
	}
	b.join("w") // re-join, as in the original test
	b.post(pathERenew, leaseBody(lease.LeaseID, "w")).expect(t, 204, "")
	b.post(pathRelease, leaseBody(lease.LeaseID, "w")).expect(t, 204, "")
	if l := b.grant("w", "task:abc"); l.LeaseID == lease.LeaseID {
		t.Fatal("lease id reused after restart")
	}
}

// Dead letters and a quarantine tombstone survive a restart too.
func TestRestartDeadLettersAndTombstone(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{maxDeliveries: 1})
	b.join("w")
	b.join("q")
	id := b.deliver("1", "2")
	b.claim("2", "w")
	b.post(pathNack, nackBody("2", id, "w")).expect(t, 204, "")
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "q", "quarantined": true}).expect(t, 204, "")
	b.post("/v1/populi/leave", map[string]any{"id": "q"}).expect(t, 204, "")

	b.restart()

	if d := b.dead("2"); !slices.Equal(ids(d), []uint64{id}) {
		t.Fatalf("dead after restart %v", ids(d))
	}
	if rec := b.join("q"); rec.Quarantined == nil || !*rec.Quarantined {
		t.Fatal("tombstone lost across restart")
	}
}
