package api

import (
	"net/http"

	"populi-db/federation"
	"populi-db/wire"
)

// federationDirectory answers GET /v1/populi/federation/directory (SPEC
// 2.20): every known entry, in announcement order.
func (s *Server) federationDirectory(w http.ResponseWriter, _ *http.Request) error {
	return s.writeDirectory(w)
}

// federationAnnounce answers POST /v1/populi/federation/announce (SPEC
// 2.20): the entry is checked (size, then the signature rules in order),
// replaces the entry with its scope_id or is appended, durably; the answer
// is the full directory. A refused entry changes nothing.
func (s *Server) federationAnnounce(w http.ResponseWriter, r *http.Request, req *wire.AnnounceRequest) error {
	e := &req.Entry
	if err := federation.Check(e); err != nil {
		return err
	}
	if e.Signature == nil && e.Public {
		s.log.Warn("unsigned public federation entry announced", append(logAttrs(r), "scope_id", e.ScopeID)...)
	}
	if err := s.store.AnnounceFederation(*e, s.fedMaxEntries); err != nil {
		return err
	}
	return s.writeDirectory(w)
}

func (s *Server) writeDirectory(w http.ResponseWriter) error {
	body, err := s.store.FederationDirectoryJSON()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}
