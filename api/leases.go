package api

import (
	"net/http"

	"populi-db/wire"
)

// execGrant answers POST /v1/populi/exec/lease/grant (SPEC 2.13): the lease
// with its fencing token (issue 9).
func (s *Server) execGrant(w http.ResponseWriter, r *http.Request, req *wire.ExecGrantRequest) error {
	lease, err := s.store.GrantExecLease(req.ClaimerNodeID, req.ScopeKey)
	if err != nil {
		return err
	}
	return writeJSON(w, lease)
}

// execList answers GET /v1/populi/exec/leases (SPEC 2.14).
func (s *Server) execList(w http.ResponseWriter, r *http.Request) error {
	leases, err := s.store.ListExecLeases()
	if err != nil {
		return err
	}
	return writeJSON(w, wire.ExecLeaseList{Leases: leases})
}

// execRenew answers POST /v1/populi/exec/lease/renew (SPEC 2.15).
func (s *Server) execRenew(w http.ResponseWriter, r *http.Request, req *wire.ExecLeaseRequest) error {
	if _, err := s.store.RenewExecLease(req.LeaseID, req.ClaimerNodeID, req.LeaseToken); err != nil {
		return err
	}
	return noContent(w)
}

// execRelease answers POST /v1/populi/exec/lease/release (SPEC 2.16).
func (s *Server) execRelease(w http.ResponseWriter, r *http.Request, req *wire.ExecLeaseRequest) error {
	if err := s.store.ReleaseExecLease(req.LeaseID, req.ClaimerNodeID, req.LeaseToken); err != nil {
		return err
	}
	return noContent(w)
}
