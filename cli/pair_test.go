package cli

import (
	"encoding/json"
	"testing"

	"populi-db/api"
	"populi-db/client"
	"populi-db/internal/testserver"
)

func TestPair(t *testing.T) {
	t.Parallel()
	scope := "scope-abc"
	e := newCLIEnv(t, testserver.Options{Bootstrap: api.Bootstrap{Token: "boot-123"}, ReportedScopeID: &scope}, nil)
	noURL := map[string]string{client.EnvControlURL: ""}

	r := runCLI(t, map[string]string{EnvBootstrapToken: "boot-123"}, "", "pair", "--control-url", e.srv.URL)
	r.want(t, 0, "", "")
	want := "export VOX_ORCHESTRATOR_MESH_CONTROL_URL=" + e.srv.URL + "\nexport VOX_MESH_TOKEN=" + testserver.Tokens.Mesh + "\nexport VOX_MESH_SCOPE_ID=scope-abc\n"
	if r.stdout != want {
		t.Fatalf("pair printed:\n%s\nwant:\n%s", r.stdout, want)
	}
	// Once per token: the second exchange is refused.
	e.runWith(noURL, "boot-123\n", "pair", "--control-url", e.srv.URL).
		want(t, 1, "", "populi HTTP 410 (bootstrap_exchange): bootstrap token already consumed")
}

func TestPairStdinAndJSON(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, testserver.Options{Bootstrap: api.Bootstrap{Token: "boot-456"}}, nil)
	r := runCLI(t, map[string]string{client.EnvControlURL: e.srv.URL}, "wrong\n", "pair")
	if r.code != 1 || r.stderr != "populi-db: populi HTTP 401 (bootstrap_exchange): invalid bootstrap token\n" {
		t.Fatalf("wrong token: exit %d, stderr %q", r.code, r.stderr)
	}
	runCLI(t, map[string]string{client.EnvControlURL: e.srv.URL}, "", "pair").
		want(t, 2, "", "no bootstrap token: set VOX_MESH_BOOTSTRAP_TOKEN or pipe the token on stdin")
	r = runCLI(t, map[string]string{client.EnvControlURL: e.srv.URL}, "  boot-456  \n", "pair", "-o", "json")
	r.want(t, 0, "", "")
	var out map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("pair -o json: %v\n%s", err, r.stdout)
	}
	if out[EnvMeshToken] != testserver.Tokens.Mesh || out[client.EnvControlURL] != e.srv.URL || out[EnvScopeID] != "" {
		t.Fatalf("pair json %v", out)
	}
}
