package security

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"log/slog"
	"strings"

	"github.com/zeebo/blake3"

	"populi-db/api"
	"populi-db/internal/edpoint"
	"populi-db/wire"
)

// VerifyKeyEnv names the attestation key variable; log lines name it, never
// its value.
const VerifyKeyEnv = "VOX_MESH_WORKER_RESULT_VERIFY_KEY"

// The SPEC 6.8 / Appendix B deliver-time attestation answers. wire's
// catalogue does not carry them, so they live here. The first three are also
// checked by the api layer before it calls the Attestor (api cannot import
// this package: it would be a cycle), and VerifyDelivery repeats them so it
// is correct on its own.
var (
	ErrAttestPairing     = &wire.Error{Code: wire.EINVALID, Message: "populi: payload_blake3_hex and worker_ed25519_sig_b64 must both be set or both omitted"}
	ErrAttestMessageType = &wire.Error{Code: wire.EINVALID, Message: "populi: attestation fields are only allowed for job_result and job_fail"}
	ErrAttestNoKey       = &wire.Error{Code: wire.EUNAVAILABLE, Message: "populi: VOX_MESH_WORKER_RESULT_VERIFY_KEY is not configured (required when attestation is present)"}
	ErrInvalidVerifyKey  = &wire.Error{Code: wire.EINVALID, Message: "populi: invalid configured worker verify key"}
	ErrDigestHex         = &wire.Error{Code: wire.EINVALID, Message: "invalid payload_blake3_hex"}
	ErrDigestLength      = &wire.Error{Code: wire.EINVALID, Message: "payload_blake3_hex must represent 32 bytes (64 hex chars)"}
	ErrDigestMismatch    = &wire.Error{Code: wire.EINVALID, Message: "populi: payload_blake3_hex does not match payload"}
	ErrSignatureB64      = &wire.Error{Code: wire.EINVALID, Message: "populi: invalid worker_ed25519_sig_b64"}
	ErrSignatureLength   = &wire.Error{Code: wire.EINVALID, Message: "populi: Ed25519 signature must be 64 bytes"}
	ErrSignatureInvalid  = &wire.Error{Code: wire.EINVALID, Message: "populi: worker_ed25519_sig_b64 verification failed"}
)

type attestor struct {
	key        ed25519.PublicKey
	keyIsPoint bool // the 32 key bytes decode to a curve point
	smallOrder bool // ... of order ≤ 8: no signature verifies under it
}

// NewAttestor returns the SPEC 6.8 result-attestation checker for the
// trimmed verifyKey: exactly 64 hex characters (any case), otherwise
// standard padded base64, either way 32 bytes. It returns nil when the key
// is blank (logged at info) or cannot be decoded (logged as a warning); the
// api then answers attested deliveries with 503. Log lines name
// VOX_MESH_WORKER_RESULT_VERIFY_KEY, never its value. Key bytes that decode
// but are not a curve point are kept: every attested delivery then gets
// 400 "populi: invalid configured worker verify key", as the spec orders.
func NewAttestor(verifyKey string, log *slog.Logger) api.Attestor {
	if log == nil {
		log = slog.Default()
	}
	key, ok := decodeVerifyKey(strings.TrimSpace(verifyKey))
	switch {
	case strings.TrimSpace(verifyKey) == "":
		log.Info("result attestation disabled: " + VerifyKeyEnv + " is not set; attested deliveries get 503")
		return nil
	case !ok:
		log.Warn("result attestation disabled: " + VerifyKeyEnv + " is not 64 hex characters or standard base64 of 32 bytes; attested deliveries get 503")
		return nil
	}
	p, isPoint := edpoint.Decode(key)
	a := &attestor{key: ed25519.PublicKey(key), keyIsPoint: isPoint, smallOrder: isPoint && edpoint.HasSmallOrder(p)}
	switch {
	case !a.keyIsPoint:
		log.Warn(VerifyKeyEnv + " is not a valid Ed25519 public key (not a curve point); attested deliveries will be rejected with 400")
	case a.smallOrder:
		log.Warn(VerifyKeyEnv + " is a small-order Ed25519 point; no attestation can verify against it")
	default:
		log.Info("result attestation enabled (" + VerifyKeyEnv + ")")
	}
	return a
}

func decodeVerifyKey(s string) ([]byte, bool) {
	var b []byte
	var err error
	if len(s) == 64 && isHex(s) {
		b, err = hex.DecodeString(s)
	} else {
		b, err = decodeStdBase64(s)
	}
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, false
	}
	return b, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// decodeStdBase64 is standard, padded, canonical base64. Unlike
// encoding/base64 on its own it refuses embedded CR/LF.
func decodeStdBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "\r\n") {
		return nil, base64.CorruptInputError(strings.IndexAny(s, "\r\n"))
	}
	return base64.StdEncoding.Strict().DecodeString(s)
}

// VerifyDelivery applies SPEC 6.8's deliver-time table in order and returns
// nil or one of the Err* values above. D and S are the trimmed
// payload_blake3_hex and worker_ed25519_sig_b64; the signature is over the
// raw 32 digest bytes. Small-order keys and R values are refused, as strict
// verification does; crypto/ed25519 already refuses a non-canonical S.
func (a *attestor) VerifyDelivery(req *wire.DeliverRequest) error {
	if req == nil {
		return nil
	}
	d := strings.TrimSpace(wire.Str(req.PayloadBlake3Hex))
	s := strings.TrimSpace(wire.Str(req.WorkerEd25519SigB64))
	switch {
	case d == "" && s == "":
		return nil
	case d == "" || s == "":
		return ErrAttestPairing
	}
	if mt := strings.ToLower(strings.TrimSpace(req.MessageType)); mt != "job_result" && mt != "job_fail" {
		return ErrAttestMessageType
	}
	if !a.keyIsPoint {
		return ErrInvalidVerifyKey
	}
	digest, err := hex.DecodeString(d)
	if err != nil {
		return ErrDigestHex
	}
	if len(digest) != 32 {
		return ErrDigestLength
	}
	if sum := blake3.Sum256([]byte(req.Payload)); !bytes.Equal(sum[:], digest) {
		return ErrDigestMismatch
	}
	sig, err := decodeStdBase64(s)
	if err != nil {
		return ErrSignatureB64
	}
	if len(sig) != ed25519.SignatureSize {
		return ErrSignatureLength
	}
	if a.smallOrder || edpoint.SmallOrderEncoding(sig[:32]) || !ed25519.Verify(a.key, digest, sig) {
		return ErrSignatureInvalid
	}
	return nil
}
