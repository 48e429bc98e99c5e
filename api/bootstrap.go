package api

import (
	"crypto/sha256"
	"crypto/subtle"
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
		return err
	}
	return writeJSON(w, wire.BootstrapExchangeResponse{MeshToken: s.cfg.Tokens.Mesh, ScopeID: s.cfg.ReportedScopeID})
}
