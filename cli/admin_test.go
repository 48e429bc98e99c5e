package cli

import (
	"context"
	"strconv"
	"testing"
	"time"

	"populi-db/client"
	"populi-db/internal/testserver"
	"populi-db/wire"
)

func TestAdminMaintenanceAndQuarantine(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, testserver.Options{}, map[string]string{client.EnvAdminToken: testserver.Tokens.Admin})
	e.join("n1")
	node := func() wire.NodeRecord {
		reg, err := e.adm.ListNodes(context.Background())
		if err != nil || len(reg.Nodes) != 1 {
			t.Fatalf("nodes %+v %v", reg, err)
		}
		return reg.Nodes[0]
	}

	e.run("admin", "maintenance", "--node", "n1", "--state", "on", "--for", "30m").want(t, 0, "ok\n", "")
	n := node()
	want := uint64(e.srv.Clk.Now().Add(30 * time.Minute).UnixMilli())
	if n.Maintenance == nil || !*n.Maintenance || n.MaintenanceUntilUnixMs == nil || *n.MaintenanceUntilUnixMs != want {
		t.Fatalf("after --for 30m: %+v", n)
	}
	e.run("nodes").want(t, 0, "maintenance (ends in 30m)", "")
	until := strconv.FormatUint(want+1000, 10)
	e.run("admin", "maintenance", "--node", "n1", "--state", "on", "--until-unix-ms", until, "-o", "json").want(t, 0, `"ok": true`, "")
	if n := node(); *n.MaintenanceUntilUnixMs != want+1000 {
		t.Fatalf("after --until-unix-ms: %+v", n)
	}
	e.run("admin", "maintenance", "--node", "n1", "--state", "off").want(t, 0, "ok", "")
	if n := node(); n.Maintenance != nil && *n.Maintenance {
		t.Fatalf("after off: %+v", n)
	}

	e.run("admin", "maintenance", "--node", "n1", "--state", "off", "--for", "1m").want(t, 2, "", "need --state on")
	e.run("admin", "maintenance", "--node", "n1", "--state", "on", "--for", "1m", "--until-unix-ms", "5").want(t, 2, "", "mutually exclusive")
	e.run("admin", "maintenance", "--node", " ", "--state", "on").want(t, 2, "", "--node is required")
	e.run("admin", "maintenance", "--node", "n1", "--state", "maybe").want(t, 2, "", "--state must be on or off")

	e.run("admin", "quarantine", "--node", "n1", "--state", "on").want(t, 0, "ok", "")
	if n := node(); n.Quarantined == nil || !*n.Quarantined {
		t.Fatalf("not quarantined: %+v", n)
	}
	e.run("admin", "quarantine", "--node", "nobody", "--state", "on").want(t, 1, "", "populi HTTP 404 (admin_quarantine): not found (check the id)")

	// A worker token may not run admin commands.
	e.runWith(map[string]string{client.EnvAdminToken: "", client.EnvMeshToken: testserver.Tokens.Worker}, "",
		"admin", "quarantine", "--node", "n1", "--state", "off").
		want(t, 1, "", "populi HTTP 403 (admin_quarantine): populi: mesh/admin bearer required for quarantine")
}

func TestAdminRevokeAndLeases(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, testserver.Options{}, map[string]string{client.EnvMeshToken: testserver.Tokens.Mesh})
	e.join("n1")
	l, err := e.adm.GrantExecLease(context.Background(), "n1", "build/42")
	if err != nil {
		t.Fatal(err)
	}
	e.run("leases").want(t, 0, l.LeaseID, "")
	r := e.run("leases", "-o", "json")
	var list wire.ExecLeaseList
	roundTrip(t, r.stdout, &list)
	if len(list.Leases) != 1 || list.Leases[0].ScopeKey != "build/42" {
		t.Fatalf("leases %+v", list)
	}
	e.run("admin", "exec-lease-revoke", "--lease-id", l.LeaseID).want(t, 0, "ok", "")
	e.run("admin", "exec-lease-revoke", "--lease-id", l.LeaseID).want(t, 1, "", "populi HTTP 404 (admin_exec_lease_revoke)")
	e.run("admin", "exec-lease-revoke", "--lease-id", "  ").want(t, 2, "", "--lease-id is required")
	r = e.run("leases", "-o", "json")
	roundTrip(t, r.stdout, &list)
	if len(list.Leases) != 0 {
		t.Fatalf("leases after revoke %+v", list)
	}
}

func TestAdminRequeueAndDead(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, testserver.Options{MaxDeliveries: 1}, map[string]string{client.EnvMeshToken: testserver.Tokens.Mesh})
	e.join("n1")
	id := e.deliver("7", "work")
	bg := context.Background()
	m, err := e.adm.Claim(bg, "7", "n1", 0)
	if err != nil || m == nil {
		t.Fatalf("claim %v %v", m, err)
	}
	e.run("admin", "requeue", "--receiver", "7", "--message-id", strconv.FormatUint(id, 10)).
		want(t, 1, "", "populi HTTP 409 (admin_a2a_requeue): populi: message is not dead-lettered")
	if err := e.adm.Nack(bg, wire.NackRequest{ReceiverAgentID: "7", MessageID: id, ClaimerNodeID: "n1", LeaseToken: m.LeaseToken}); err != nil {
		t.Fatal(err)
	}
	e.run("dead").want(t, 0, "1 dead letter(s) in all mailboxes", "")
	e.run("dead", "--receiver", "7").want(t, 0, "dead", "")
	r := e.run("dead", "--receiver", "7", "-o", "json")
	var dead wire.InboxResponse
	roundTrip(t, r.stdout, &dead)
	if len(dead.Messages) != 1 || dead.Messages[0].ID != id {
		t.Fatalf("dead %+v", dead)
	}
	e.run("admin", "requeue", "--receiver", "7", "--message-id", strconv.FormatUint(id, 10)).want(t, 0, "ok", "")
	e.run("admin", "requeue", "--receiver", "7").want(t, 2, "", "--message-id is required")
	e.run("dead", "--receiver", "7", "-o", "json").want(t, 0, `"messages": []`, "")
	if m, err := e.adm.Claim(bg, "7", "n1", 0); err != nil || m == nil || m.ID != id {
		t.Fatalf("requeued row not claimable: %v %v", m, err)
	}
}
