package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"populi-db/store"
	"populi-db/wire"
)

// bootstrapExchange answers POST /v1/populi/bootstrap/exchange (SPEC 4 with
// 16.5's fixes, applied atomically by the store). Unauthenticated. The body
// is decoded first (by the route adapter), so a missing field is 422 even
// when the feature is off.
func (s *Server) bootstrapExchange(w http.ResponseWriter, _ *http.Request, req *wire.BootstrapExchangeRequest) error {
	bc := s.cfg.Bootstrap
	if bc.Token == "" {
		s.metrics.BootstrapRefused(bootstrapReason(wire.ErrBootstrapDisabled))
		return wire.ErrBootstrapDisabled
	}
	presented := strings.TrimSpace(req.BootstrapToken)
	err := s.store.ExchangeBootstrap(store.BootstrapAttempt{
		TokenHash:     sha256.Sum256([]byte(bc.Token)),
		ExpiresUnixMs: bc.ExpiresUnixMs,
		TokenOK:       subtle.ConstantTimeCompare([]byte(presented), []byte(bc.Token)) == 1,
		MeshTokenSet:  s.cfg.Tokens.Mesh != "",
	})
	if err != nil {
		s.metrics.BootstrapRefused(bootstrapReason(err))
		return err
	}
	return writeJSON(w, wire.BootstrapExchangeResponse{MeshToken: s.cfg.Tokens.Mesh, ScopeID: s.cfg.ReportedScopeID})
}

// bootstrapReason is the metric label for a refused exchange (a fixed set).
func bootstrapReason(err error) string {
	switch {
	case errors.Is(err, wire.ErrBootstrapDisabled):
		return "disabled"
	case errors.Is(err, wire.ErrBootstrapInvalid):
		return "invalid"
	case errors.Is(err, wire.ErrBootstrapExpired):
		return "expired"
	case errors.Is(err, wire.ErrBootstrapConsumed):
		return "consumed"
	case errors.Is(err, wire.ErrBootstrapNoMesh):
		return "no_mesh_token"
	}
	return "other"
}
