package api_test

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"

	"populi-db/federation"
	"populi-db/wire"
)

const (
	pathDirectory = "/v1/populi/federation/directory"
	pathAnnounce  = "/v1/populi/federation/announce"
)

// fedEntry is a minimal unsigned entry body with only the required keys;
// extra keys are merged in. control_url is loopback: gossip may dial it.
func fedEntry(scope string, extra ...any) map[string]any {
	m := map[string]any{"scope_id": scope, "control_url": "http://127.0.0.1:1", "task_kinds": []string{"text_infer"}, "public": false}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func announce(entry any) map[string]any { return map[string]any{"entry": entry} }

// signedEntry returns a full entry signed with the key from seed byte s.
func signedEntry(t *testing.T, scope string, s byte) wire.MeshDirectoryEntry {
	t.Helper()
	depth, region := uint64(7), "eu-west <&> \u2028"
	prios := wire.ByteList{0, 128, 255}
	e := wire.MeshDirectoryEntry{ScopeID: scope, ControlURL: "http://127.0.0.1:2", RegionLabel: &region,
		TaskKinds: []wire.TaskKind{"embed", "text_infer"}, Public: true, CurrentQueueDepth: &depth, SupportedPriorities: &prios}
	federation.Sign(&e, key(s))
	return e
}

func key(s byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = s
	return ed25519.NewKeyFromSeed(seed)
}

func (b *bundle) directory() []wire.MeshDirectoryEntry {
	b.t.Helper()
	var d wire.FederationDirectory
	b.get(pathDirectory).decode(b.t, &d)
	if d.Entries == nil {
		b.t.Fatal("entries is null, want an array")
	}
	return d.Entries
}

func scopes(es []wire.MeshDirectoryEntry) string {
	var out []string
	for _, e := range es {
		out = append(out, e.ScopeID)
	}
	return strings.Join(out, ",")
}

func TestFederationEmptyDirectory(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	b.get(pathDirectory, as(testTokens.Worker)).expect(t, 200, `{"entries":[]}`)
}

// Nullable keys may be absent or null on input and are always emitted, as
// null, in the spec's key order.
func TestFederationNullableKeys(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	want := `{"entries":[{"scope_id":"a","control_url":"http://127.0.0.1:1","region_label":null,"task_kinds":["text_infer"],"public":false,"current_queue_depth":null,"supported_priorities":null,"signature":null,"public_key":null}]}`
	b.post(pathAnnounce, announce(fedEntry("a"))).expect(t, 200, want)
	b.get(pathDirectory).expect(t, 200, want)
	nulls := fedEntry("a", "region_label", nil, "current_queue_depth", nil, "supported_priorities", nil, "signature", nil, "public_key", nil)
	b.post(pathAnnounce, announce(nulls)).expect(t, 200, want)
	full := `{"scope_id":"a","control_url":"http://127.0.0.1:1","region_label":"r","task_kinds":[],"public":true,"current_queue_depth":3,"supported_priorities":[1,2],"signature":null,"public_key":null}`
	b.post(pathAnnounce, `{"entry":`+full+`}`).expect(t, 200, `{"entries":[`+full+`]}`)
}

// An entry replaces the one with its scope_id in place or is appended; the
// answer is the full directory.
func TestFederationReplaceOrAppend(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	var d wire.FederationDirectory
	b.post(pathAnnounce, announce(fedEntry("a"))).decode(t, &d)
	b.post(pathAnnounce, announce(fedEntry("b"))).decode(t, &d)
	b.post(pathAnnounce, announce(fedEntry("c"))).decode(t, &d)
	if got := scopes(d.Entries); got != "a,b,c" {
		t.Fatalf("after three announcements: %s", got)
	}
	b.post(pathAnnounce, announce(fedEntry("b", "control_url", "http://127.0.0.1:3", "public", true))).decode(t, &d)
	if got := scopes(d.Entries); got != "a,b,c" {
		t.Fatalf("replace moved or duplicated the entry: %s", got)
	}
	if e := d.Entries[1]; e.ControlURL != "http://127.0.0.1:3" || !e.Public {
		t.Fatalf("entry b not replaced: %+v", e)
	}
	// Scope ids are exact: case and spaces make a different scope.
	b.post(pathAnnounce, announce(fedEntry("B "))).decode(t, &d)
	if got := scopes(d.Entries); got != "a,b,c,B " {
		t.Fatalf("after announcing \"B \": %q", got)
	}
	if got := scopes(b.directory()); got != "a,b,c,B " {
		t.Fatalf("GET directory: %q", got)
	}
}

// SPEC 2.20's signature rules, each case over HTTP; a refused announcement
// changes nothing.
func TestFederationSignatures(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	good := signedEntry(t, "signed", 1)
	var d wire.FederationDirectory
	b.post(pathAnnounce, announce(good), as(testTokens.Worker)).decode(t, &d)
	if len(d.Entries) != 1 || d.Entries[0].Signature == nil || len(*d.Entries[0].PublicKey) != 32 {
		t.Fatalf("signed entry answered as %+v", d.Entries)
	}
	if raw := b.get(pathDirectory).body; !strings.Contains(raw, `"region_label":"eu-west <&> `+"\u2028"+`"`) {
		t.Fatalf("directory does not hold the signed bytes verbatim: %s", raw)
	}
	before := b.get(pathDirectory).body

	tampered := good
	tampered.ControlURL = "http://127.0.0.1:9"
	foreign := good
	other := signedEntry(t, "signed", 2)
	foreign.PublicKey = other.PublicKey
	short := good
	sig63 := append(wire.ByteList(nil), (*good.Signature)[:63]...)
	short.Signature = &sig63
	nonPoint := good
	np := make(wire.ByteList, 32)
	np[0] = 2 // y = 2 has no x on the curve
	nonPoint.PublicKey = &np
	sigOnly, keyOnly := good, good
	sigOnly.PublicKey, keyOnly.Signature = nil, nil
	smallOrder := good
	id := make(wire.ByteList, 32)
	id[0] = 1 // the identity point: every "signature" would verify
	smallOrder.PublicKey = &id
	// Length wins over the key check; the key check over verification.
	shortAndNonPoint := short
	shortAndNonPoint.PublicKey = &np

	for _, c := range []struct {
		name  string
		entry wire.MeshDirectoryEntry
		want  *wire.Error
	}{
		{"tampered field", tampered, wire.ErrFedSignature},
		{"foreign key", foreign, wire.ErrFedSignature},
		{"63-byte signature", short, wire.ErrFedSignatureLength},
		{"non-point key", nonPoint, wire.ErrFedPublicKey},
		{"short signature and non-point key", shortAndNonPoint, wire.ErrFedSignatureLength},
		{"signature without key", sigOnly, wire.ErrFedSignaturePair},
		{"key without signature", keyOnly, wire.ErrFedSignaturePair},
		{"small-order key", smallOrder, wire.ErrFedSignature},
	} {
		b.post(pathAnnounce, announce(c.entry)).expectErr(t, 400, c.want)
		if after := b.get(pathDirectory).body; after != before {
			t.Fatalf("%s: refused announcement changed the directory:\n%s", c.name, after)
		}
	}
	// A refused replacement of a known scope leaves the old entry.
	if d := b.directory(); len(d) != 1 || d[0].ControlURL != "http://127.0.0.1:2" {
		t.Fatalf("directory after refusals %+v", d)
	}
}

// Decoding errors: 422 for types, missing keys and a public key that is not
// 32 bytes; 400 for syntax; 415 and 413 — all before the role check.
func TestFederationDecoding(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	for name, body := range map[string]any{
		"no entry":            map[string]any{},
		"null entry":          map[string]any{"entry": nil},
		"no scope_id":         map[string]any{"entry": map[string]any{"control_url": "x", "task_kinds": []string{}, "public": false}},
		"no control_url":      map[string]any{"entry": map[string]any{"scope_id": "x", "task_kinds": []string{}, "public": false}},
		"no task_kinds":       map[string]any{"entry": map[string]any{"scope_id": "x", "control_url": "x", "public": false}},
		"no public":           map[string]any{"entry": map[string]any{"scope_id": "x", "control_url": "x", "task_kinds": []string{}}},
		"unknown task kind":   announce(fedEntry("x", "task_kinds", []string{"mine_coins"})),
		"byte over 255":       announce(fedEntry("x", "supported_priorities", []int{256})),
		"negative byte":       announce(fedEntry("x", "signature", []int{-1})),
		"base64 signature":    announce(fedEntry("x", "signature", "AAAA")),
		"31-byte public key":  announce(fedEntry("x", "public_key", make([]int, 31))),
		"33-byte public key":  announce(fedEntry("x", "public_key", make([]int, 33))),
		"negative depth":      announce(fedEntry("x", "current_queue_depth", -1)),
		"string public":       announce(fedEntry("x", "public", "yes")),
		"fractional priority": announce(fedEntry("x", "supported_priorities", []float64{1.5})),
	} {
		r := b.post(pathAnnounce, body, as(testTokens.Submitter))
		if r.status != 422 || !strings.HasPrefix(r.body, "Failed to deserialize the JSON body into the target type: ") {
			t.Errorf("%s: got %d %q, want 422", name, r.status, r.body)
		}
	}
	if r := b.post(pathAnnounce, `{"entry":`, as(testTokens.Submitter)); r.status != 400 {
		t.Errorf("truncated JSON: %d %q", r.status, r.body)
	}
	if r := b.post(pathAnnounce, `{}`, withHeader("Content-Type", "text/plain")); r.status != 415 {
		t.Errorf("text/plain: %d %q", r.status, r.body)
	}
	// The announce body is bounded below the server's limit.
	big := announce(fedEntry(strings.Repeat("s", federation.MaxAnnounceBodySize)))
	b.post(pathAnnounce, big).expect(t, 413, "Failed to buffer the request body: length limit exceeded")
	if d := b.directory(); len(d) != 0 {
		t.Fatalf("refused bodies stored entries: %+v", d)
	}
}

// Size limits and the directory cap, with their texts.
func TestFederationLimits(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{fedMax: 2})
	long := strings.Repeat("x", federation.MaxStringBytes+1)
	for name, e := range map[string]map[string]any{
		"scope_id":             fedEntry(long),
		"control_url":          fedEntry("a", "control_url", long),
		"region_label":         fedEntry("a", "region_label", long),
		"task_kinds":           fedEntry("a", "task_kinds", slicesRepeat("embed", federation.MaxTaskKinds+1)),
		"supported_priorities": fedEntry("a", "supported_priorities", make([]int, federation.MaxPriorities+1)),
	} {
		if r := b.post(pathAnnounce, announce(e)); r.status != 400 || r.body != wire.ErrFedEntryTooLarge.Message {
			t.Errorf("long %s: %d %q", name, r.status, r.body)
		}
	}
	at := fedEntry(strings.Repeat("x", federation.MaxStringBytes), "task_kinds", slicesRepeat("embed", federation.MaxTaskKinds),
		"supported_priorities", make([]int, federation.MaxPriorities))
	b.post(pathAnnounce, announce(at)).decode(t, &wire.FederationDirectory{})
	b.post(pathAnnounce, announce(fedEntry("b"))).decode(t, &wire.FederationDirectory{})
	// Full: a new scope is refused, a known one is still replaced.
	b.post(pathAnnounce, announce(fedEntry("c"))).expectErr(t, 409, wire.ErrFedDirectoryFull)
	var d wire.FederationDirectory
	b.post(pathAnnounce, announce(fedEntry("b", "public", true))).decode(t, &d)
	if len(d.Entries) != 2 || !d.Entries[1].Public {
		t.Fatalf("replace at the cap: %+v", d.Entries)
	}
	for _, text := range []string{wire.ErrFedDirectoryFull.Message} {
		if !strings.Contains(text, "10000") || federation.MaxEntries != 10000 {
			t.Errorf("cap text %q does not match federation.MaxEntries %d", text, federation.MaxEntries)
		}
	}
	if !strings.Contains(wire.ErrFedEntryTooLarge.Message, "512") || federation.MaxStringBytes != 512 {
		t.Error("size text does not match federation.MaxStringBytes")
	}
}

func slicesRepeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// The directory and its order survive a restart.
func TestFederationRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.post(pathAnnounce, announce(fedEntry("a"))).decode(t, &wire.FederationDirectory{})
	b.post(pathAnnounce, announce(signedEntry(t, "s", 3))).decode(t, &wire.FederationDirectory{})
	b.post(pathAnnounce, announce(fedEntry("c"))).decode(t, &wire.FederationDirectory{})
	b.post(pathAnnounce, announce(fedEntry("a", "public", true))).decode(t, &wire.FederationDirectory{})
	before := b.get(pathDirectory).body
	b.restart()
	if after := b.get(pathDirectory).body; after != before {
		t.Fatalf("directory after restart\n%s\nwant\n%s", after, before)
	}
	var d wire.FederationDirectory
	b.post(pathAnnounce, announce(fedEntry("d"))).decode(t, &d)
	if got := scopes(d.Entries); got != "a,s,c,d" {
		t.Fatalf("order after restart: %s", got)
	}
	if err := federation.Check(&d.Entries[1]); err != nil {
		t.Fatalf("signed entry no longer verifies after restart: %v", err)
	}
}

// The route table checks the role after decoding: a submitter with a bad
// body gets 422, with a good one 403, and the entry is not stored.
func TestFederationRoleAfterDecode(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	if r := b.post(pathAnnounce, map[string]any{}, as(testTokens.Submitter)); r.status != 422 {
		t.Fatalf("submitter with a bad body: %d %q, want 422", r.status, r.body)
	}
	b.post(pathAnnounce, announce(fedEntry("x")), as(testTokens.Submitter)).expect(t, 403, "populi: token required for federation/announce")
	b.get(pathDirectory, as(testTokens.Submitter)).expect(t, 403, "populi: token required for federation/directory")
	for _, tok := range []string{testTokens.Worker, testTokens.Mesh, testTokens.Admin} {
		var d wire.FederationDirectory
		b.post(pathAnnounce, announce(fedEntry("x")), as(tok)).decode(t, &d)
		if len(d.Entries) != 1 {
			t.Fatalf("as %s: %+v", tok, d.Entries)
		}
	}
	raw := b.get(pathDirectory, as(testTokens.Worker))
	if raw.header.Get("X-Populi-Feature") == "" || !strings.Contains(raw.header.Get("X-Populi-Feature"), "federation-persist-v1") {
		t.Fatalf("feature header %q", raw.header.Get("X-Populi-Feature"))
	}
	if !json.Valid([]byte(raw.body)) {
		t.Fatalf("directory is not JSON: %s", raw.body)
	}
}
