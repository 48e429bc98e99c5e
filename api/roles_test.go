package api_test

import (
	"net/http"
	"testing"
)

type class int

const (
	workerPlane class = iota
	deliverRole
	adminRole
)

// routeCase is one authenticated route with a body that decodes.
type routeCase struct {
	method, path string
	body         any
	class        class
	denied       string
}

var authRoutes = []routeCase{
	{"GET", "/v1/populi/nodes", nil, workerPlane, "populi: worker/mesh/admin token required for node list"},
	{"POST", "/v1/populi/join", node("m1"), workerPlane, "populi: worker/mesh/admin token required for join"},
	{"POST", "/v1/populi/heartbeat", node("m1"), workerPlane, "populi: worker/mesh/admin token required for heartbeat"},
	{"POST", "/v1/populi/leave", map[string]any{"id": "zz"}, workerPlane, "populi: worker/mesh/admin token required for leave"},
	{"POST", "/v1/populi/a2a/deliver", msg("1", "2"), deliverRole, "populi: submitter/mesh/admin token required for a2a/deliver"},
	{"POST", "/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": "2"}, workerPlane, "populi: worker/mesh/admin token required for a2a/inbox"},
	{"POST", "/v1/populi/a2a/ack", map[string]any{"receiver_agent_id": "2", "message_id": 999}, workerPlane, "populi: worker/mesh/admin token required for a2a/ack"},
	{"POST", "/v1/populi/a2a/lease-renew", map[string]any{"receiver_agent_id": "2", "message_id": 999, "claimer_node_id": "m1"}, workerPlane, "populi: worker/mesh/admin token required for lease renew"},
	{"POST", "/v1/populi/a2a/nack", map[string]any{"receiver_agent_id": "2", "message_id": 999, "claimer_node_id": "m1"}, workerPlane, "populi: worker/mesh/admin token required for a2a/nack"},
	{"POST", "/v1/populi/exec/lease/grant", map[string]any{"claimer_node_id": "m1", "scope_key": "s"}, workerPlane, "populi: worker/mesh/admin token required for exec lease grant"},
	{"GET", "/v1/populi/exec/leases", nil, adminRole, "populi: mesh/admin bearer required for exec lease list"},
	{"POST", "/v1/populi/exec/lease/renew", map[string]any{"lease_id": "999", "claimer_node_id": "m1"}, workerPlane, "populi: worker/mesh/admin token required for exec lease renew"},
	{"POST", "/v1/populi/exec/lease/release", map[string]any{"lease_id": "999", "claimer_node_id": "m1"}, workerPlane, "populi: worker/mesh/admin token required for exec lease release"},
	{"POST", "/v1/populi/admin/quarantine", map[string]any{"node_id": "zz", "quarantined": false}, adminRole, "populi: mesh/admin bearer required for quarantine"},
	{"POST", "/v1/populi/admin/maintenance", map[string]any{"node_id": "zz", "maintenance": false}, adminRole, "populi: mesh/admin bearer required for maintenance"},
	{"POST", "/v1/populi/admin/exec-lease/revoke", map[string]any{"lease_id": "999"}, adminRole, "populi: mesh/admin bearer required for exec lease revoke"},
	{"POST", "/v1/populi/admin/a2a/dead", map[string]any{"receiver_agent_id": "2"}, adminRole, "populi: mesh/admin bearer required for dead letters"},
	{"POST", "/v1/populi/admin/a2a/requeue", map[string]any{"receiver_agent_id": "2", "message_id": 999}, adminRole, "populi: mesh/admin bearer required for requeue"},
	{"GET", "/v1/populi/queue/stats", nil, workerPlane, "populi: worker/mesh/admin token required for queue stats"},
	{"GET", "/metrics", nil, adminRole, "populi: mesh/admin bearer required for metrics"},
	{"GET", "/v1/populi/federation/directory", nil, workerPlane, "populi: token required for federation/directory"},
	{"POST", "/v1/populi/federation/announce", map[string]any{"entry": fedEntry("roles")}, workerPlane, "populi: token required for federation/announce"},
}

// TestRoleMatrix checks SPEC 3.5 on every authenticated route: each role
// class with each token, no bearer, a lowercase scheme, and open mode.
func TestRoleMatrix(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	open := setup(t, opts{})
	b.join("m1")
	open.join("m1")
	tokens := []struct {
		name, tok string
		allowed   map[class]bool
	}{
		{"mesh", testTokens.Mesh, map[class]bool{workerPlane: true, deliverRole: true, adminRole: true}},
		{"admin", testTokens.Admin, map[class]bool{workerPlane: true, deliverRole: true, adminRole: true}},
		{"worker", testTokens.Worker, map[class]bool{workerPlane: true}},
		{"submitter", testTokens.Submitter, map[class]bool{deliverRole: true}},
	}
	for _, rc := range authRoutes {
		for _, tk := range tokens {
			r := b.do(rc.method, rc.path, rc.body, as(tk.tok))
			if tk.allowed[rc.class] {
				if r.status == http.StatusUnauthorized || r.body == rc.denied {
					t.Errorf("%s %s as %s: denied (%d %q)", rc.method, rc.path, tk.name, r.status, r.body)
				}
				continue
			}
			if r.status != http.StatusForbidden || r.body != rc.denied {
				t.Errorf("%s %s as %s: got %d %q, want 403 %q", rc.method, rc.path, tk.name, r.status, r.body, rc.denied)
			}
		}
		if r := b.do(rc.method, rc.path, rc.body, as("")); r.status != 401 || r.body != "unauthorized" {
			t.Errorf("%s %s without bearer: %d %q", rc.method, rc.path, r.status, r.body)
		}
		if r := b.do(rc.method, rc.path, rc.body, withHeader("Authorization", "bearer "+testTokens.Mesh)); r.status != 401 {
			t.Errorf("%s %s with lowercase bearer: %d %q", rc.method, rc.path, r.status, r.body)
		}
		if r := open.do(rc.method, rc.path, rc.body, as("")); r.status == 401 || r.body == rc.denied {
			t.Errorf("%s %s in open mode: %d %q", rc.method, rc.path, r.status, r.body)
		}
	}
	// The two unauthenticated routes need no bearer.
	b.get("/health", as("")).expect(t, 200, "ok\n")
	if r := b.post("/v1/populi/bootstrap/exchange", map[string]any{"bootstrap_token": "x"}, as("")); r.status == 401 {
		t.Fatalf("bootstrap exchange demanded auth: %q", r.body)
	}
}

// A token configured for two roles gets the earlier one (mesh, worker,
// submitter, admin).
func TestTokenOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: apiTokens("same", "same", "", "")})
	b.get("/v1/populi/exec/leases", as("same")).expect(t, 200, `{"leases":[]}`)
	c := setup(t, opts{tokens: apiTokens("", "same", "", "same")})
	c.get("/v1/populi/exec/leases", as("same")).expect(t, 403, "populi: mesh/admin bearer required for exec lease list")
}
