package wire

import (
	"encoding/json"
	"testing"
)

// The signed bytes are the original serializer's compact JSON: keys in
// order, nulls emitted, no HTML escaping, U+2028 raw, control characters
// as \b \t \n \f \r or lowercase \u00xx.
func TestSigningBytes(t *testing.T) {
	t.Parallel()
	region, depth := "<a&b>\u2028\"\\\b\t\n\f\r\x01\x1f\x7f é", uint64(18446744073709551615)
	sig, key := ByteList{1, 2}, make(ByteList, 32)
	prios := ByteList{0, 255}
	e := MeshDirectoryEntry{ScopeID: "s", ControlURL: "http://127.0.0.1:1/", RegionLabel: &region,
		TaskKinds: []TaskKind{"embed", "vox_script"}, Public: true, CurrentQueueDepth: &depth,
		SupportedPriorities: &prios, Signature: &sig, PublicKey: &key}
	want := `{"scope_id":"s","control_url":"http://127.0.0.1:1/","region_label":"<a&b>` + "\u2028" + `\"\\\b\t\n\f\r\u0001\u001f` + "\x7f" + ` é","task_kinds":["embed","vox_script"],"public":true,"current_queue_depth":18446744073709551615,"supported_priorities":[0,255],"signature":null,"public_key":null}`
	if got := string(e.SigningBytes()); got != want {
		t.Fatalf("signing bytes\n%s\nwant\n%s", got, want)
	}
	if e.Signature == nil || e.PublicKey == nil {
		t.Fatal("SigningBytes cleared the caller's signature")
	}
	enc, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back MeshDirectoryEntry
	if err := json.Unmarshal(enc, &back); err != nil {
		t.Fatalf("canonical form does not decode: %v\n%s", err, enc)
	}
	if again, _ := json.Marshal(back); string(again) != string(enc) {
		t.Fatalf("round trip changed the bytes\n%s\n%s", again, enc)
	}
	empty := MeshDirectoryEntry{}
	if got := string(empty.AppendCanonical(nil)); got != `{"scope_id":"","control_url":"","region_label":null,"task_kinds":[],"public":false,"current_queue_depth":null,"supported_priorities":null,"signature":null,"public_key":null}` {
		t.Fatalf("zero entry: %s", got)
	}
}
