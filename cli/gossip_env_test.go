package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"slices"
	"strings"
	"testing"

	"populi-db/wire"
)

const testPolicy = `{"slots":[{"task_kind":"embed","max_concurrent":1,"weight_pct":50},{"task_kind":"text_infer","max_concurrent":1,"weight_pct":25},{"task_kind":"embed","max_concurrent":2,"weight_pct":25}],"nsfw_allowed":false,"max_job_duration_secs":60,"public_mesh_opt_in":true,"min_priority":0}`

func TestParseGossipEnv(t *testing.T) {
	t.Parallel()
	seed := make([]byte, 32)
	seed[0] = 4
	g := ParseGossipEnv(MapLookup(map[string]string{
		EnvScopeID: " mesh-x ", EnvControlAddr: "http://127.0.0.1:7000", EnvVisibility: " public ",
		EnvMeshToken: "tok", EnvFederationPeers: " http://127.0.0.1:1 ,, http://127.0.0.1:2/ ",
		EnvDonationPolicy: testPolicy, EnvFederationSigningKey: base64.StdEncoding.EncodeToString(seed),
	}), "")
	if g.Self.ScopeID != "mesh-x" || g.Self.ControlURL != "http://127.0.0.1:7000" || !g.Self.Public || g.Token != "tok" {
		t.Fatalf("self %+v token %q", g.Self, g.Token)
	}
	if !slices.Equal(g.Peers, []string{"http://127.0.0.1:1", "http://127.0.0.1:2/"}) {
		t.Fatalf("peers %q", g.Peers)
	}
	if !slices.Equal(g.Self.TaskKinds, []wire.TaskKind{"embed", "text_infer"}) {
		t.Fatalf("task kinds %v", g.Self.TaskKinds)
	}
	if !g.Self.SigningKey.Public().(ed25519.PublicKey).Equal(ed25519.NewKeyFromSeed(seed).Public()) {
		t.Fatal("signing key not loaded from the seed")
	}
	if len(g.Warnings) != 0 {
		t.Fatalf("warnings %q", g.Warnings)
	}

	// The flag replaces the variable; defaults; bad values warn without
	// repeating the key.
	badKey := "c2VjcmV0LXNlZWQ=" // 11 bytes
	g = ParseGossipEnv(MapLookup(map[string]string{
		EnvFederationPeers: "http://127.0.0.1:1", EnvVisibility: "Public",
		EnvDonationPolicy: `{"slots":[]}`, EnvFederationSigningKey: badKey,
	}), "http://127.0.0.1:9")
	if !slices.Equal(g.Peers, []string{"http://127.0.0.1:9"}) {
		t.Fatalf("flag did not replace the variable: %q", g.Peers)
	}
	if g.Self.Public || g.Self.SigningKey != nil || g.Self.TaskKinds != nil || g.Self.ScopeID != "unknown" || g.Self.ControlURL != "http://127.0.0.1:9847" {
		t.Fatalf("self %+v", g.Self)
	}
	if len(g.Warnings) != 2 {
		t.Fatalf("want 2 warnings, got %q", g.Warnings)
	}
	for _, w := range g.Warnings {
		if strings.Contains(w, badKey) {
			t.Fatalf("warning repeats the signing key: %s", w)
		}
	}
}
