package api

import (
	"errors"
	"net/http"

	"populi-db/store"
)

// ready answers GET /readyz: 200 when the db is open and a write goes
// through (a no-op write through the group commit, store.Ready), else 503
// with a short reason. The detail is logged, not sent: the route is
// unauthenticated.
func (s *Server) ready(w http.ResponseWriter, r *http.Request) error {
	reason := ""
	if s.drainCtx.Err() != nil {
		reason = "shutting down"
	} else if err := s.store.Ready(); err != nil {
		reason = "write transaction failed"
		if errors.Is(err, store.ErrClosed) {
			reason = "store closed"
		} else {
			s.log.Warn("readiness probe failed", append(logAttrs(r), "error", err.Error())...)
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if reason != "" {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + reason + "\n"))
		return nil
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ready\n"))
	return nil
}

// openAPI answers GET /openapi.yaml with the document the binary was built
// with (embedded by main), byte for byte.
func (s *Server) openAPI(w http.ResponseWriter, _ *http.Request) error {
	if len(s.cfg.OpenAPI) == 0 {
		writeEmpty(w, http.StatusNotFound)
		return nil
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(s.cfg.OpenAPI)
	return nil
}
