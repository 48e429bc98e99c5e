package wire

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Native fuzz targets for every JSON request decoder the API uses. The
// property: decoding never panics, and when it succeeds, the value
// re-encodes, that encoding decodes again, and encoding the second value
// gives the same bytes (a stable fixed point after one round). Seeds live
// in testdata/fuzz/<FuzzName>/ and run with plain `go test`.

func fuzzRoundTrip[T any](f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var first T
		if err := json.Unmarshal(data, &first); err != nil {
			return
		}
		enc1, err := json.Marshal(&first)
		if err != nil {
			t.Fatalf("decoded %q but cannot re-encode it: %v", data, err)
		}
		var second T
		if err := json.Unmarshal(enc1, &second); err != nil {
			t.Fatalf("re-encoding of %q does not decode: %v\nencoding: %s", data, err, enc1)
		}
		enc2, err := json.Marshal(&second)
		if err != nil {
			t.Fatalf("second encoding failed: %v", err)
		}
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("round trip not stable for %q\nfirst:  %s\nsecond: %s", data, enc1, enc2)
		}
	})
}

func FuzzNodeRecord(f *testing.F)               { fuzzRoundTrip[NodeRecord](f) }
func FuzzDeliverRequest(f *testing.F)           { fuzzRoundTrip[DeliverRequest](f) }
func FuzzInboxRequest(f *testing.F)             { fuzzRoundTrip[InboxRequest](f) }
func FuzzAckRequest(f *testing.F)               { fuzzRoundTrip[AckRequest](f) }
func FuzzLeaseRenewRequest(f *testing.F)        { fuzzRoundTrip[LeaseRenewRequest](f) }
func FuzzNackRequest(f *testing.F)              { fuzzRoundTrip[NackRequest](f) }
func FuzzExecGrantRequest(f *testing.F)         { fuzzRoundTrip[ExecGrantRequest](f) }
func FuzzExecLeaseRequest(f *testing.F)         { fuzzRoundTrip[ExecLeaseRequest](f) }
func FuzzRevokeRequest(f *testing.F)            { fuzzRoundTrip[RevokeRequest](f) }
func FuzzQuarantineRequest(f *testing.F)        { fuzzRoundTrip[QuarantineRequest](f) }
func FuzzMaintenanceRequest(f *testing.F)       { fuzzRoundTrip[MaintenanceRequest](f) }
func FuzzBootstrapExchangeRequest(f *testing.F) { fuzzRoundTrip[BootstrapExchangeRequest](f) }
func FuzzDeadListRequest(f *testing.F)          { fuzzRoundTrip[DeadListRequest](f) }
func FuzzRequeueRequest(f *testing.F)           { fuzzRoundTrip[RequeueRequest](f) }
