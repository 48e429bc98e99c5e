// Package federation holds the rules for mesh directory entries (SPEC 2.20):
// the checks an announced entry must pass, in the spec's order, and the
// signing of this server's own entry for gossip. The directory itself lives
// in the store; the gossip loop in package gossip.
package federation

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"populi-db/internal/edpoint"
	"populi-db/wire"
)

// Limits that keep one entry, and so the directory, small. They are
// populi-db's (issue 17); the original has none.
const (
	MaxEntries          = 10_000 // directory cap: a new scope past it is refused (409)
	MaxStringBytes      = 512    // scope_id, control_url, region_label
	MaxTaskKinds        = 64
	MaxPriorities       = 256
	SignatureSize       = ed25519.SignatureSize
	MaxAnnounceBodySize = 64 << 10 // announce bodies above this get 413
)

// Check applies the announce rules to e and returns nil or the *wire.Error
// to answer: first the size limits, then SPEC 2.20's signature rules in
// their order — both set: signature length 64, public key a curve point,
// signature valid over e.SigningBytes(); exactly one set: "provided
// together"; neither: accepted. Like result attestation, a small-order key
// or R counts as an invalid signature (anyone can forge under it).
func Check(e *wire.MeshDirectoryEntry) error {
	if err := checkSize(e); err != nil {
		return err
	}
	switch {
	case e.Signature == nil && e.PublicKey == nil:
		return nil
	case e.Signature == nil || e.PublicKey == nil:
		return wire.ErrFedSignaturePair
	}
	sig, pub := []byte(*e.Signature), []byte(*e.PublicKey)
	if len(sig) != SignatureSize {
		return wire.ErrFedSignatureLength
	}
	key, ok := edpoint.Decode(pub)
	if !ok {
		return wire.ErrFedPublicKey
	}
	if edpoint.HasSmallOrder(key) || edpoint.SmallOrderEncoding(sig[:32]) ||
		!ed25519.Verify(ed25519.PublicKey(pub), e.SigningBytes(), sig) {
		return wire.ErrFedSignature
	}
	return nil
}

func checkSize(e *wire.MeshDirectoryEntry) error {
	if len(e.ScopeID) > MaxStringBytes || len(e.ControlURL) > MaxStringBytes ||
		len(wire.Str(e.RegionLabel)) > MaxStringBytes || len(e.TaskKinds) > MaxTaskKinds ||
		(e.SupportedPriorities != nil && len(*e.SupportedPriorities) > MaxPriorities) {
		return wire.ErrFedEntryTooLarge
	}
	return nil
}

// Sign sets e's public_key and signature with key.
func Sign(e *wire.MeshDirectoryEntry, key ed25519.PrivateKey) {
	pub := wire.ByteList(key.Public().(ed25519.PublicKey))
	sig := wire.ByteList(ed25519.Sign(key, e.SigningBytes()))
	e.PublicKey, e.Signature = &pub, &sig
}

// ParseSigningKey reads VOX_MESH_FEDERATION_SIGNING_KEY: standard base64 of
// a 32-byte Ed25519 seed (trimmed). Errors never contain the value.
func ParseSigningKey(s string) (ed25519.PrivateKey, error) {
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, errors.New("not standard base64")
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("decodes to %d bytes, want a %d-byte Ed25519 seed", len(seed), ed25519.SeedSize)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
