package security

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"math/big"
	"strings"
	"testing"

	"github.com/zeebo/blake3"

	"populi-db/api"
	"populi-db/internal/edpoint"
	"populi-db/wire"
)

const okPayload = `{"status":"ok"}`

type attestBundle struct {
	seed   []byte
	priv   ed25519.PrivateKey
	pub    ed25519.PublicKey
	att    api.Attestor
	digest [32]byte // BLAKE3-256 of okPayload
	sig    []byte   // priv's signature over digest
}

func setupAttest(t *testing.T) *attestBundle {
	t.Helper()
	b := &attestBundle{seed: bytes.Repeat([]byte{7}, ed25519.SeedSize)}
	b.priv = ed25519.NewKeyFromSeed(b.seed)
	b.pub = b.priv.Public().(ed25519.PublicKey)
	b.att = NewAttestor(hex.EncodeToString(b.pub), slog.New(slog.DiscardHandler))
	if b.att == nil {
		t.Fatal("NewAttestor returned nil for a valid key")
	}
	b.digest = blake3.Sum256([]byte(okPayload))
	b.sig = ed25519.Sign(b.priv, b.digest[:])
	return b
}

func ptr(s string) *string { return &s }

func deliver(msgType, payload string, d, s *string) *wire.DeliverRequest {
	return &wire.DeliverRequest{
		SenderAgentID: "1", ReceiverAgentID: "2", MessageType: msgType, Payload: payload,
		PayloadBlake3Hex: d, WorkerEd25519SigB64: s,
	}
}

func (b *attestBundle) good() (d, s *string) {
	return ptr(hex.EncodeToString(b.digest[:])), ptr(base64.StdEncoding.EncodeToString(b.sig))
}

func TestAttestHappyPath(t *testing.T) {
	t.Parallel()
	b := setupAttest(t)
	d, s := b.good()
	upper := ptr(strings.ToUpper(*d))
	padded := ptr("  " + *d + "\n")
	paddedSig := ptr("\t" + *s + " ")
	for name, req := range map[string]*wire.DeliverRequest{
		"job_result":           deliver("job_result", okPayload, d, s),
		"job_fail, any case":   deliver(" JOB_Fail ", okPayload, d, s),
		"upper-case digest":    deliver("job_result", okPayload, upper, s),
		"whitespace trimmed":   deliver("job_result", okPayload, padded, paddedSig),
		"no attestation":       deliver("text", "anything", nil, nil),
		"blank attestation":    deliver("text", "anything", ptr(" "), ptr("")),
		"no attestation, job":  deliver("job_result", "x", nil, nil),
		"empty payload signed": b.signed("job_result", ""),
	} {
		if err := b.att.VerifyDelivery(req); err != nil {
			t.Errorf("%s: VerifyDelivery = %v, want nil", name, err)
		}
	}
}

func (b *attestBundle) signed(msgType, payload string) *wire.DeliverRequest {
	sum := blake3.Sum256([]byte(payload))
	return deliver(msgType, payload, ptr(hex.EncodeToString(sum[:])), ptr(base64.StdEncoding.EncodeToString(ed25519.Sign(b.priv, sum[:]))))
}

func TestAttestKeyEncodings(t *testing.T) {
	t.Parallel()
	b := setupAttest(t)
	d, s := b.good()
	req := deliver("job_result", okPayload, d, s)
	for name, key := range map[string]string{
		"hex lower":         hex.EncodeToString(b.pub),
		"hex upper":         strings.ToUpper(hex.EncodeToString(b.pub)),
		"std base64":        base64.StdEncoding.EncodeToString(b.pub),
		"base64 whitespace": "  " + base64.StdEncoding.EncodeToString(b.pub) + "\n",
	} {
		a := NewAttestor(key, slog.New(slog.DiscardHandler))
		if a == nil {
			t.Errorf("%s: NewAttestor = nil", name)
			continue
		}
		if err := a.VerifyDelivery(req); err != nil {
			t.Errorf("%s: VerifyDelivery = %v", name, err)
		}
	}
}

func TestNewAttestorDisabled(t *testing.T) {
	t.Parallel()
	pub := setupAttest(t).pub
	for name, key := range map[string]string{
		"empty":              "",
		"blank":              " \t\n",
		"63 hex chars":       hex.EncodeToString(pub)[:63],
		"66 hex chars":       hex.EncodeToString(append(pub, 0)),
		"base64 of 31 bytes": base64.StdEncoding.EncodeToString(pub[:31]),
		"base64 of 33 bytes": base64.StdEncoding.EncodeToString(append(pub, 1)),
		"unpadded base64":    base64.RawStdEncoding.EncodeToString(pub),
		"url-safe base64":    base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)),
		"64 chars, not hex":  strings.Repeat("g", 64),
		"garbage":            "not a key at all",
		"newline inside":     base64.StdEncoding.EncodeToString(pub)[:20] + "\n" + base64.StdEncoding.EncodeToString(pub)[20:],
		"non-canonical pad":  base64.StdEncoding.EncodeToString(pub)[:42] + "B=",
		"hex with 0x prefix": "0x" + hex.EncodeToString(pub)[:62],
	} {
		var logs bytes.Buffer
		if a := NewAttestor(key, slog.New(slog.NewTextHandler(&logs, nil))); a != nil {
			t.Errorf("%s: NewAttestor = %v, want nil", name, a)
		}
		out := logs.String()
		if !strings.Contains(out, VerifyKeyEnv) {
			t.Errorf("%s: log does not name %s: %q", name, VerifyKeyEnv, out)
		}
		if strings.TrimSpace(key) != "" && strings.Contains(out, strings.TrimSpace(key)) {
			t.Errorf("%s: log carries the key value: %q", name, out)
		}
		if strings.TrimSpace(key) != "" && !strings.Contains(out, "level=WARN") {
			t.Errorf("%s: undecodable key not logged as a warning: %q", name, out)
		}
	}
}

func TestAttestRejects(t *testing.T) {
	t.Parallel()
	b := setupAttest(t)
	d, s := b.good()
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))
	otherSum := blake3.Sum256([]byte(`{"status":"fail"}`))
	sigB64 := func(sig []byte) *string { return ptr(base64.StdEncoding.EncodeToString(sig)) }
	nonCanonicalS := append([]byte(nil), b.sig...)
	addL(nonCanonicalS[32:])

	cases := []struct {
		name string
		req  *wire.DeliverRequest
		want *wire.Error
	}{
		{"only digest", deliver("job_result", okPayload, d, nil), ErrAttestPairing},
		{"only signature", deliver("job_result", okPayload, ptr("  "), s), ErrAttestPairing},
		{"wrong message type", deliver("text", okPayload, d, s), ErrAttestMessageType},
		{"job_results", deliver("job_results", okPayload, d, s), ErrAttestMessageType},
		{"digest not hex", deliver("job_result", okPayload, ptr(strings.Repeat("zz", 32)), s), ErrDigestHex},
		{"digest odd length", deliver("job_result", okPayload, ptr((*d)[:63]), s), ErrDigestHex},
		{"digest 0x prefix", deliver("job_result", okPayload, ptr("0x"+(*d)[:62]), s), ErrDigestHex},
		{"digest 31 bytes", deliver("job_result", okPayload, ptr((*d)[:62]), s), ErrDigestLength},
		{"digest 33 bytes", deliver("job_result", okPayload, ptr(*d+"00"), s), ErrDigestLength},
		{"digest of another payload", deliver("job_result", okPayload, ptr(hex.EncodeToString(otherSum[:])), s), ErrDigestMismatch},
		{"payload changed", deliver("job_result", okPayload+" ", d, s), ErrDigestMismatch},
		{"sha256-sized zero digest", deliver("job_result", okPayload, ptr(strings.Repeat("0", 64)), s), ErrDigestMismatch},
		{"signature not base64", deliver("job_result", okPayload, d, ptr("!!!not-base64!!!")), ErrSignatureB64},
		{"signature unpadded", deliver("job_result", okPayload, d, ptr(base64.RawStdEncoding.EncodeToString(b.sig))), ErrSignatureB64},
		{"signature url-safe", deliver("job_result", okPayload, d, ptr(base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 64)))), ErrSignatureB64},
		{"signature with newline", deliver("job_result", okPayload, d, ptr((*s)[:40]+"\n"+(*s)[40:])), ErrSignatureB64},
		{"signature 63 bytes", deliver("job_result", okPayload, d, sigB64(b.sig[:63])), ErrSignatureLength},
		{"signature 65 bytes", deliver("job_result", okPayload, d, sigB64(append(append([]byte(nil), b.sig...), 0))), ErrSignatureLength},
		{"signature by another key", deliver("job_result", okPayload, d, sigB64(ed25519.Sign(other, b.digest[:]))), ErrSignatureInvalid},
		{"signature over the hex string", deliver("job_result", okPayload, d, sigB64(ed25519.Sign(b.priv, []byte(*d)))), ErrSignatureInvalid},
		{"signature over the payload", deliver("job_result", okPayload, d, sigB64(ed25519.Sign(b.priv, []byte(okPayload)))), ErrSignatureInvalid},
		{"zero signature", deliver("job_result", okPayload, d, sigB64(make([]byte, 64))), ErrSignatureInvalid},
		{"non-canonical S (S + L)", deliver("job_result", okPayload, d, sigB64(nonCanonicalS)), ErrSignatureInvalid},
		{"small-order R", deliver("job_result", okPayload, d, sigB64(smallOrderRSig(b.seed, b.pub, b.digest[:]))), ErrSignatureInvalid},
	}
	for _, tc := range cases {
		if err := b.att.VerifyDelivery(tc.req); err != tc.want {
			t.Errorf("%s: VerifyDelivery = %v, want %v", tc.name, err, tc.want)
		}
	}
}

// The table is applied in order: with an invalid configured key, a broken
// digest still answers "invalid configured worker verify key".
func TestAttestInvalidConfiguredKey(t *testing.T) {
	t.Parallel()
	b := setupAttest(t)
	bad := notAPoint(t)
	var logs bytes.Buffer
	a := NewAttestor(hex.EncodeToString(bad), slog.New(slog.NewTextHandler(&logs, nil)))
	if a == nil {
		t.Fatal("NewAttestor = nil for decodable key bytes that are not a point; want an attestor that answers 400")
	}
	if !strings.Contains(logs.String(), "level=WARN") || strings.Contains(strings.ToLower(logs.String()), hex.EncodeToString(bad)) {
		t.Fatalf("want a warning without the key: %q", logs.String())
	}
	d, s := b.good()
	for _, req := range []*wire.DeliverRequest{
		deliver("job_result", okPayload, d, s),
		deliver("job_fail", okPayload, ptr("zz"), ptr("??")),
	} {
		if err := a.VerifyDelivery(req); err != ErrInvalidVerifyKey {
			t.Errorf("VerifyDelivery = %v, want %v", err, ErrInvalidVerifyKey)
		}
	}
	// Rows above the key check still come first.
	if err := a.VerifyDelivery(deliver("text", okPayload, d, s)); err != ErrAttestMessageType {
		t.Errorf("VerifyDelivery = %v, want %v", err, ErrAttestMessageType)
	}
	if err := a.VerifyDelivery(deliver("job_result", okPayload, nil, nil)); err != nil {
		t.Errorf("unattested delivery: VerifyDelivery = %v, want nil", err)
	}
}

// crypto/ed25519 accepts B‖1 as a signature of anything under the identity
// key (cofactorless check [S]B − [k]A = R with A = 0). Strict verification
// refuses every small-order key.
func TestAttestSmallOrderKey(t *testing.T) {
	t.Parallel()
	identity := make([]byte, 32)
	identity[0] = 1
	forged := append(edBasePoint(), make([]byte, 32)...)
	forged[32] = 1
	sum := blake3.Sum256([]byte(okPayload))
	if !ed25519.Verify(identity, sum[:], forged) {
		t.Fatal("premise: crypto/ed25519 no longer accepts the forged signature; test needs revisiting")
	}
	a := NewAttestor(base64.StdEncoding.EncodeToString(identity), slog.New(slog.DiscardHandler))
	req := deliver("job_result", okPayload, ptr(hex.EncodeToString(sum[:])), ptr(base64.StdEncoding.EncodeToString(forged)))
	if err := a.VerifyDelivery(req); err != ErrSignatureInvalid {
		t.Fatalf("VerifyDelivery = %v, want %v", err, ErrSignatureInvalid)
	}
}

// notAPoint returns 32 bytes with no x on the curve for their y.
func notAPoint(t *testing.T) []byte {
	t.Helper()
	for y := 2; y < 1000; y++ {
		b := make([]byte, 32)
		b[0], b[1] = byte(y), byte(y>>8)
		if !edpoint.IsPoint(b) {
			return b
		}
	}
	t.Fatal("no non-point found")
	return nil
}

var edOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10) // L

func leToInt(b []byte) *big.Int {
	be := make([]byte, len(b))
	for i := range b {
		be[len(b)-1-i] = b[i]
	}
	return new(big.Int).SetBytes(be)
}

func intToLE32(n *big.Int) []byte {
	be := n.FillBytes(make([]byte, 32))
	le := make([]byte, 32)
	for i := range be {
		le[31-i] = be[i]
	}
	return le
}

// addL adds the group order L to a little-endian 32-byte scalar in place.
func addL(s []byte) { copy(s, intToLE32(new(big.Int).Add(leToInt(s), edOrder))) }

// smallOrderRSig signs msg with R = identity: S = k·a mod L with
// k = H(R‖A‖M). crypto/ed25519's cofactorless check accepts it.
func smallOrderRSig(seed []byte, pub ed25519.PublicKey, msg []byte) []byte {
	h := sha512.Sum512(seed)
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	a := leToInt(h[:32])
	r := make([]byte, 32)
	r[0] = 1 // identity
	kh := sha512.New()
	kh.Write(r)
	kh.Write(pub)
	kh.Write(msg)
	k := leToInt(kh.Sum(nil))
	s := new(big.Int).Mul(k, a)
	s.Mod(s, edOrder)
	sig := append(r, intToLE32(s)...)
	if !ed25519.Verify(pub, msg, sig) {
		panic("premise: small-order-R signature does not pass crypto/ed25519.Verify")
	}
	return sig
}

// edBasePoint is the encoding of the Ed25519 base point B (y = 4/5).
func edBasePoint() []byte {
	b := make([]byte, 32)
	b[0] = 0x58
	for i := 1; i < 32; i++ {
		b[i] = 0x66
	}
	return b
}
