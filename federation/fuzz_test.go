package federation

import (
	"bytes"
	"encoding/json"
	"testing"

	"populi-db/wire"
)

// FuzzAnnounce feeds arbitrary bodies to the announce decoder and the
// checks, as the route does. Properties: nothing panics; an accepted entry
// re-encodes canonically to bytes that decode to the same entry and pass
// the checks again; SigningBytes is valid JSON; and an accepted signed
// entry stops verifying when its scope_id changes. Seeds, including a
// validly signed entry, run as a normal test.
func FuzzAnnounce(f *testing.F) {
	signed := wire.MeshDirectoryEntry{ScopeID: "seed", ControlURL: "http://127.0.0.1:1", TaskKinds: []wire.TaskKind{"embed"}, Public: true}
	Sign(&signed, testKey(3))
	body, _ := json.Marshal(wire.AnnounceRequest{Entry: signed})
	for _, seed := range [][]byte{
		body,
		[]byte(`{"entry":{"scope_id":"a","control_url":"u","task_kinds":[],"public":false}}`),
		[]byte(`{"entry":{"scope_id":"a","control_url":"u","task_kinds":[],"public":false,"signature":[1],"public_key":null}}`),
		[]byte(`{"entry":{"scope_id":"a","control_url":"u","task_kinds":[],"public":false,"signature":null,"public_key":[` + zeros(32) + `]}}`),
		[]byte(`{"entry":{"scope_id":"\u2028<>","control_url":"\u0000","region_label":"\ud800","task_kinds":["text_infer"],"public":true,"current_queue_depth":18446744073709551615,"supported_priorities":[255,0],"signature":[` + zeros(64) + `],"public_key":[` + zeros(32) + `]}}`),
		[]byte(`{"entry":null}`), []byte(`{`), []byte(`[]`), []byte(`{"entry":{"signature":"AAAA"}}`),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var req wire.AnnounceRequest
		if json.Unmarshal(data, &req) != nil {
			return
		}
		e := req.Entry
		if !json.Valid(e.SigningBytes()) {
			t.Fatalf("signing bytes are not JSON: %q", e.SigningBytes())
		}
		if Check(&e) != nil {
			return
		}
		enc := e.AppendCanonical(nil)
		var back wire.MeshDirectoryEntry
		if err := json.Unmarshal(enc, &back); err != nil {
			t.Fatalf("accepted entry's canonical form does not decode: %v\n%s", err, enc)
		}
		if again := back.AppendCanonical(nil); !bytes.Equal(again, enc) {
			t.Fatalf("canonical form not stable\n%s\n%s", enc, again)
		}
		if err := Check(&back); err != nil {
			t.Fatalf("stored form of an accepted entry is refused: %v\n%s", err, enc)
		}
		if e.Signature != nil {
			e.ScopeID += "x"
			if Check(&e) == nil {
				t.Fatalf("signature still verifies after changing scope_id: %s", data)
			}
		}
	})
}

func zeros(n int) string {
	b := make([]byte, 0, 2*n)
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '0')
	}
	return string(b)
}
