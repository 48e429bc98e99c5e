package api

import (
	"net/http"

	"populi-db/wire"
)

// quarantine answers POST /v1/populi/admin/quarantine (SPEC 2.17, 8.1).
func (s *Server) quarantine(w http.ResponseWriter, r *http.Request, req *wire.QuarantineRequest) error {
	if err := s.store.SetQuarantine(req.NodeID, req.Quarantined); err != nil {
		return err
	}
	return noContent(w)
}

// maintenance answers POST /v1/populi/admin/maintenance (SPEC 2.18, 8.2).
func (s *Server) maintenance(w http.ResponseWriter, r *http.Request, req *wire.MaintenanceRequest) error {
	if err := s.store.SetMaintenance(req.NodeID, req.Maintenance, req.MaintenanceUntilUnixMs, req.MaintenanceForMs); err != nil {
		return err
	}
	return noContent(w)
}

// execRevoke answers POST /v1/populi/admin/exec-lease/revoke (SPEC 2.19).
func (s *Server) execRevoke(w http.ResponseWriter, r *http.Request, req *wire.RevokeRequest) error {
	if err := s.store.RevokeExecLease(req.LeaseID); err != nil {
		return err
	}
	return noContent(w)
}

// deadList answers POST /v1/populi/admin/a2a/dead (issue 9): a receiver's
// dead letters, paged like an inbox listing.
func (s *Server) deadList(w http.ResponseWriter, r *http.Request, req *wire.DeadListRequest) error {
	msgs, err := s.store.ListDead(req.ReceiverAgentID, req.MaxMessages, req.BeforeMessageID)
	if err != nil {
		return err
	}
	return writeJSON(w, wire.InboxResponse{Messages: msgs})
}

// requeue answers POST /v1/populi/admin/a2a/requeue (issue 9): a dead
// letter becomes claimable again with its delivery count reset.
func (s *Server) requeue(w http.ResponseWriter, r *http.Request, req *wire.RequeueRequest) error {
	if err := s.store.Requeue(req.ReceiverAgentID, req.MessageID); err != nil {
		return err
	}
	return noContent(w)
}
