package cli

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"populi-db/federation"
	"populi-db/wire"
)

// All control_url values here are loopback: gossip dials them.

func fedAnnounceBody(scope, controlURL string, public bool) map[string]any {
	return map[string]any{"entry": map[string]any{"scope_id": scope, "control_url": controlURL, "task_kinds": []string{}, "public": public}}
}

func directory(t *testing.T, base, token string) map[string]wire.MeshDirectoryEntry {
	t.Helper()
	var d wire.FederationDirectory
	if st, body := call(t, "GET", base+"/v1/populi/federation/directory", token, nil, &d); st != 200 {
		t.Fatalf("directory: %d %s", st, body)
	}
	m := map[string]wire.MeshDirectoryEntry{}
	for _, e := range d.Entries {
		m[e.ScopeID] = e
	}
	return m
}

// freeLoopbackURL reserves nothing: it finds a port that was free a moment
// ago, for a server whose control_url must be known before it starts.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Every announcement the server confirmed before a SIGKILL is in the
// directory after a restart on the same file, replacements included.
func TestServeFederationKill9(t *testing.T) {
	t.Parallel()
	const n = 60
	const token = "fed-kill9-token"
	env := map[string]string{EnvMeshToken: token}
	db := filepath.Join(t.TempDir(), "p.db")
	s := startServer(t, db, env, "--gossip-interval", "0")
	confirmed := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			scope := fmt.Sprintf("k9-mesh-%02d", i)
			st, _, err := tryCall("POST", s.URL+"/v1/populi/federation/announce", token, fedAnnounceBody(scope, "http://127.0.0.1:1", false), nil)
			if err == nil && st == 200 {
				mu.Lock()
				confirmed[scope] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// A replacement, confirmed just before the kill.
	if st, body := call(t, "POST", s.URL+"/v1/populi/federation/announce", token, fedAnnounceBody("k9-mesh-07", "http://127.0.0.1:2", true), nil); st != 200 {
		t.Fatalf("replace: %d %s", st, body)
	}
	if len(confirmed) != n {
		t.Fatalf("%d of %d announcements confirmed", len(confirmed), n)
	}
	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)

	s2 := startServer(t, db, env, "--gossip-interval", "0")
	dir := directory(t, s2.URL, token)
	for scope := range confirmed {
		if _, ok := dir[scope]; !ok {
			t.Errorf("confirmed announcement %s lost after kill -9", scope)
		}
	}
	if e := dir["k9-mesh-07"]; e.ControlURL != "http://127.0.0.1:2" || !e.Public {
		t.Errorf("confirmed replacement lost after kill -9: %+v", e)
	}
	if len(dir) != n {
		t.Errorf("directory has %d entries, want %d", len(dir), n)
	}
	s2.signal(syscall.SIGTERM)
	s2.wait(15 * time.Second)
}

// Two real `populi-db serve` processes gossip on loopback: B, started with
// A as its bootstrap peer and a signing key, announces itself; within
// seconds A holds B's signed entry and B holds the entries A answered with,
// but never one for its own scope.
func TestServeGossipTwoServers(t *testing.T) {
	t.Parallel()
	const token = "fed-gossip-token"
	a := startServer(t, filepath.Join(t.TempDir(), "a.db"), map[string]string{EnvMeshToken: token})
	// A already knows C (nobody listens there) and a stale entry for B's scope.
	for _, body := range []map[string]any{
		fedAnnounceBody("mesh-c", "http://"+freeLoopbackAddr(t), false),
		fedAnnounceBody("mesh-b", "http://127.0.0.1:1", false),
	} {
		if st, resp := call(t, "POST", a.URL+"/v1/populi/federation/announce", token, body, nil); st != 200 {
			t.Fatalf("seed A: %d %s", st, resp)
		}
	}
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = 42
	bAddr := freeLoopbackAddr(t)
	b := startServer(t, filepath.Join(t.TempDir(), "b.db"), map[string]string{
		EnvMeshToken: token, EnvScopeID: "mesh-b", EnvControlAddr: "http://" + bAddr, EnvVisibility: "public",
		EnvDonationPolicy: testPolicy, EnvFederationSigningKey: base64.StdEncoding.EncodeToString(seed),
	}, "--bind", bAddr, "--bootstrap-peers", a.URL)

	var atA wire.MeshDirectoryEntry
	deadline := time.Now().Add(10 * time.Second)
	for {
		atA = directory(t, a.URL, token)["mesh-b"]
		if atA.Signature != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A did not learn B's signed entry within 10 s; A holds %+v\nB's log:\n%s", atA, b.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := federation.Check(&atA); err != nil {
		t.Fatalf("B's entry at A does not verify: %v", err)
	}
	if pk := ed25519.PublicKey(*atA.PublicKey); !pk.Equal(ed25519.NewKeyFromSeed(seed).Public()) {
		t.Fatal("B's entry is signed with another key")
	}
	if atA.ControlURL != "http://"+bAddr || !atA.Public || len(atA.TaskKinds) != 2 || atA.CurrentQueueDepth == nil {
		t.Fatalf("B's entry at A: %+v", atA)
	}
	// B merges A's answer after A has committed B's entry: poll, as for A.
	var atB map[string]wire.MeshDirectoryEntry
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		atB = directory(t, b.URL, token)
		if _, ok := atB["mesh-c"]; ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B did not learn the entries A answered with within 10 s: %v", atB)
		}
	}
	if _, ok := atB["mesh-b"]; ok {
		t.Fatal("B added an entry for its own scope")
	}
	for _, s := range []*server{b, a} {
		s.signal(syscall.SIGTERM)
		if code := s.wait(15 * time.Second); code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, s.stderr)
		}
	}
}
