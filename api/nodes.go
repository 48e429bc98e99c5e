package api

import (
	"net/http"

	"populi-db/wire"
)

// health answers GET /health (SPEC 2.3): never authenticated.
func (s *Server) health(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
	return nil
}

// listNodes answers GET /v1/populi/nodes (SPEC 2.4, 10).
func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) error {
	body, err := s.store.ListNodesJSON(s.cfg.StalePruneMs)
	if err != nil {
		return err
	}
	return writeRawJSON(w, body)
}

// join answers POST /v1/populi/join (SPEC 2.5, 9.1).
func (s *Server) join(w http.ResponseWriter, _ *http.Request, rec *wire.NodeRecord) error {
	return s.upsertNode(w, rec, s.store.JoinJSON)
}

// heartbeat answers POST /v1/populi/heartbeat (SPEC 2.6, 9.2).
func (s *Server) heartbeat(w http.ResponseWriter, _ *http.Request, rec *wire.NodeRecord) error {
	return s.upsertNode(w, rec, s.store.HeartbeatJSON)
}

func (s *Server) upsertNode(w http.ResponseWriter, rec *wire.NodeRecord, op func(wire.NodeRecord) ([]byte, error)) error {
	if err := s.checkScope(rec.ScopeID); err != nil {
		return err
	}
	out, err := op(*rec) // rejects a blank id (SPEC 16.17)
	if err != nil {
		return err
	}
	return writeRawJSON(w, out)
}

// checkScope is SPEC 5: with a required scope, the record's scope_id must be
// present and exactly equal (the client value is not trimmed).
func (s *Server) checkScope(scope *string) error {
	if s.cfg.ScopeID == "" {
		return nil
	}
	if scope == nil || *scope != s.cfg.ScopeID {
		return wire.ErrScopeMismatch
	}
	return nil
}

// leave answers POST /v1/populi/leave (SPEC 2.7): exact id, 204 or empty 404.
func (s *Server) leave(w http.ResponseWriter, r *http.Request, req *wire.LeaveRequest) error {
	if err := s.store.Leave(req.ID); err != nil {
		return err
	}
	return noContent(w)
}
