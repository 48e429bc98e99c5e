package federation

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"populi-db/wire"
)

func testKey(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = b
	return ed25519.NewKeyFromSeed(seed)
}

func TestSignThenCheck(t *testing.T) {
	t.Parallel()
	e := wire.MeshDirectoryEntry{ScopeID: "s", ControlURL: "http://127.0.0.1:1", TaskKinds: []wire.TaskKind{}}
	if err := Check(&e); err != nil {
		t.Fatalf("unsigned entry: %v", err)
	}
	Sign(&e, testKey(1))
	if err := Check(&e); err != nil {
		t.Fatalf("signed entry: %v", err)
	}
	// The signature covers every field.
	for name, mutate := range map[string]func(*wire.MeshDirectoryEntry){
		"scope_id":    func(e *wire.MeshDirectoryEntry) { e.ScopeID = "t" },
		"control_url": func(e *wire.MeshDirectoryEntry) { e.ControlURL += "/" },
		"public":      func(e *wire.MeshDirectoryEntry) { e.Public = true },
		"task_kinds":  func(e *wire.MeshDirectoryEntry) { e.TaskKinds = []wire.TaskKind{"embed"} },
		"depth":       func(e *wire.MeshDirectoryEntry) { d := uint64(0); e.CurrentQueueDepth = &d },
		"region":      func(e *wire.MeshDirectoryEntry) { r := ""; e.RegionLabel = &r },
		"priorities":  func(e *wire.MeshDirectoryEntry) { p := wire.ByteList{}; e.SupportedPriorities = &p },
	} {
		c := e
		mutate(&c)
		if err := Check(&c); err != wire.ErrFedSignature {
			t.Errorf("changed %s: %v, want %v", name, err, wire.ErrFedSignature)
		}
	}
}

// A signature made by hand over the documented bytes verifies: the check
// does not depend on how this package builds them.
func TestCheckAgainstDocumentedBytes(t *testing.T) {
	t.Parallel()
	k := testKey(9)
	msg := []byte(`{"scope_id":"x<y","control_url":"http://127.0.0.1:5","region_label":null,"task_kinds":["text_infer"],"public":true,"current_queue_depth":0,"supported_priorities":null,"signature":null,"public_key":null}`)
	sig, pub := wire.ByteList(ed25519.Sign(k, msg)), wire.ByteList(k.Public().(ed25519.PublicKey))
	var e wire.MeshDirectoryEntry
	if err := json.Unmarshal(msg, &e); err != nil {
		t.Fatal(err)
	}
	e.Signature, e.PublicKey = &sig, &pub
	if err := Check(&e); err != nil {
		t.Fatalf("hand-signed entry: %v", err)
	}
}

func TestParseSigningKey(t *testing.T) {
	t.Parallel()
	seed := bytes.Repeat([]byte{7}, 32)
	k, err := ParseSigningKey("  " + base64.StdEncoding.EncodeToString(seed) + "\n")
	if err != nil || !bytes.Equal(k.Seed(), seed) {
		t.Fatalf("valid seed: %v", err)
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString(seed[:31]), base64.RawURLEncoding.EncodeToString(append(seed, 0xff))} {
		_, err := ParseSigningKey(bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), bad) {
			t.Errorf("error repeats the secret: %v", err)
		}
	}
}
