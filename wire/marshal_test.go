package wire

import (
	"encoding/json"
	"testing"
)

// A record built in Go with nil required arrays must still read back.
func TestNilRequiredArraysRoundTrip(t *testing.T) {
	in := NodeRecord{
		ID:               "n",
		Version:          "v",
		DonationPolicy:   &WorkerDonationPolicy{},
		AdvertisedModels: &[]ModelAdvertisement{{ModelID: "m"}},
	}
	b, err := json.Marshal(&in)
	if err != nil {
		t.Fatal(err)
	}
	var out NodeRecord
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("stored form %s does not decode: %v", b, err)
	}
	if out.DonationPolicy == nil || out.DonationPolicy.Slots == nil || len(*out.AdvertisedModels) != 1 || (*out.AdvertisedModels)[0].TaskKinds == nil {
		t.Fatalf("round trip lost fields: %s", b)
	}
}
