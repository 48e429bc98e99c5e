package agent_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"populi-db/agent"
	"populi-db/api"
	"populi-db/wire"
)

// A bootstrap token is exchanged once; the mesh token is kept in the state
// dir with mode 0600 and reused on restart without another exchange.
func TestBootstrapExchangedOnceAndKept(t *testing.T) {
	t.Parallel()
	scope := "cluster-a"
	srv := startServer(t, nil, api.Config{
		Tokens: api.Tokens{Mesh: "mesh-secret"}, Bootstrap: api.Bootstrap{Token: "boot-once"}, ReportedScopeID: &scope,
	}, 0)
	dir := filepath.Join(t.TempDir(), "state")
	log := slog.New(slog.DiscardHandler)
	env := agent.Env{BootstrapToken: "boot-once", Timeout: 5 * time.Second}
	resolve := func() (agent.Credentials, string, error) {
		st, err := agent.OpenState(dir)
		if err != nil {
			t.Fatal(err)
		}
		return agent.ResolveCredentials(context.Background(), env, st, newClient(t, srv.URL, ""), agent.Backoff{Base: 10 * time.Millisecond}, nil, log)
	}
	c, src, err := resolve()
	if err != nil || src != agent.TokenFromBootstrap || c.MeshToken != "mesh-secret" || wire.Str(c.ScopeID) != "cluster-a" {
		t.Fatalf("first resolve = %+v %q %v", c, src, err)
	}
	fi, err := os.Stat(filepath.Join(dir, "credentials.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi, err)
	}
	// Restart: the saved token is used; the server (which would now answer
	// 410) is not asked again.
	c, src, err = resolve()
	if err != nil || src != agent.TokenFromState || c.MeshToken != "mesh-secret" {
		t.Fatalf("second resolve = %+v %q %v", c, src, err)
	}
	if n := srv.requests("/v1/populi/bootstrap/exchange"); n != 1 {
		t.Fatalf("%d exchanges, want 1", n)
	}
	// The obtained token works for joining.
	if _, err := newClient(t, srv.URL, c.MeshToken).Join(context.Background(), wire.NodeRecord{ID: "b1", ScopeID: c.ScopeID}); err != nil {
		t.Fatalf("join with the exchanged token: %v", err)
	}

	// An environment token wins and nothing is exchanged.
	env2 := agent.Env{Token: "from-env", BootstrapToken: "boot-once"}
	if c, src, err := agent.ResolveCredentials(context.Background(), env2, nil, nil, agent.Backoff{}, nil, log); err != nil || src != agent.TokenFromEnv || c.MeshToken != "from-env" {
		t.Fatalf("env token = %+v %q %v", c, src, err)
	}

	// A consumed token on a fresh state dir is a clear error, not a retry loop.
	st, _ := agent.OpenState(filepath.Join(t.TempDir(), "fresh"))
	_, _, err = agent.ResolveCredentials(context.Background(), env, st, newClient(t, srv.URL, ""), agent.Backoff{Base: 10 * time.Millisecond}, nil, log)
	if err == nil || !strings.Contains(err.Error(), "410") || !strings.Contains(err.Error(), "fresh one") {
		t.Fatalf("consumed token: %v", err)
	}
}
