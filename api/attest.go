package api

import (
	"strings"

	"populi-db/wire"
)

// Result-attestation texts that need no key (SPEC 6.8, Appendix B).
var (
	errAttestPair = &wire.Error{Code: wire.EINVALID,
		Message: "populi: payload_blake3_hex and worker_ed25519_sig_b64 must both be set or both omitted"}
	errAttestType = &wire.Error{Code: wire.EINVALID,
		Message: "populi: attestation fields are only allowed for job_result and job_fail"}
	errAttestNoKey = &wire.Error{Code: wire.EUNAVAILABLE,
		Message: "populi: VOX_MESH_WORKER_RESULT_VERIFY_KEY is not configured (required when attestation is present)"}
)

// checkAttestation applies SPEC 6.8 to a delivery (step 4 of 2.9). The
// shape rules, which need no key, live here so they hold with or without an
// Attestor; the Attestor does the cryptography. Trimmed-empty fields count
// as absent.
func (s *Server) checkAttestation(req *wire.DeliverRequest) error {
	digest := strings.TrimSpace(wire.Str(req.PayloadBlake3Hex))
	sig := strings.TrimSpace(wire.Str(req.WorkerEd25519SigB64))
	switch {
	case digest == "" && sig == "":
		return nil
	case digest == "" || sig == "":
		return errAttestPair
	}
	switch strings.ToLower(strings.TrimSpace(req.MessageType)) {
	case "job_result", "job_fail":
	default:
		return errAttestType
	}
	if s.cfg.Attestor == nil {
		return errAttestNoKey
	}
	return s.cfg.Attestor.VerifyDelivery(req)
}
