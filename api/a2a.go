package api

import (
	"context"
	"net/http"
	"strings"
	"time"

	"populi-db/store"
	"populi-db/wire"
)

// deliver answers POST /v1/populi/a2a/deliver (SPEC 2.9).
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, req *wire.DeliverRequest) error {
	if err := store.ValidateDeliver(req); err != nil { // steps 1-3, trims the ids
		return err
	}
	if err := s.checkAttestation(req); err != nil { // step 4
		return err
	}
	id, err := s.store.Deliver(*req, "") // step 5 (idempotency) and storage
	if err != nil {
		return err
	}
	return writeJSON(w, wire.DeliverResponse{Accepted: true, MessageID: id})
}

// inbox answers POST /v1/populi/a2a/inbox (SPEC 2.10): a listing without a
// claimer, else a claim, which may long-poll for wait_ms (issue 9).
func (s *Server) inbox(w http.ResponseWriter, r *http.Request, req *wire.InboxRequest) error {
	claimer := strings.TrimSpace(wire.Str(req.ClaimerNodeID))
	if claimer == "" {
		msgs, err := s.store.ListInbox(req.ReceiverAgentID, req.MaxMessages, req.BeforeMessageID)
		if err != nil {
			return err
		}
		return writeJSON(w, wire.InboxResponse{Messages: msgs})
	}
	var m *wire.StoredMessage
	var err error
	if wait := s.waitFor(req.WaitMs); wait > 0 {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(s.drainCtx, cancel) // Drain ends the wait
		defer stop()
		s.metrics.WaiterStarted()
		m, err = s.store.ClaimWait(ctx, req.ReceiverAgentID, claimer, wait)
		s.metrics.WaiterDone()
	} else {
		m, err = s.store.ClaimNext(req.ReceiverAgentID, claimer)
	}
	if err != nil {
		return err
	}
	msgs := []wire.StoredMessage{}
	if m != nil {
		msgs = append(msgs, *m)
	}
	return writeJSON(w, wire.InboxResponse{Messages: msgs})
}

// waitFor turns wait_ms into a duration capped at the configured maximum.
func (s *Server) waitFor(ms *uint64) time.Duration {
	if ms == nil || *ms == 0 {
		return 0
	}
	if *ms >= uint64(s.maxWait/time.Millisecond) {
		return s.maxWait
	}
	return time.Duration(*ms) * time.Millisecond
}

// ack answers POST /v1/populi/a2a/ack (SPEC 2.11; lease_token fencing,
// issue 9).
func (s *Server) ack(w http.ResponseWriter, r *http.Request, req *wire.AckRequest) error {
	if err := s.store.Ack(req.ReceiverAgentID, req.MessageID, req.LeaseToken); err != nil {
		return err
	}
	return noContent(w)
}

// leaseRenew answers POST /v1/populi/a2a/lease-renew (SPEC 2.12).
func (s *Server) leaseRenew(w http.ResponseWriter, r *http.Request, req *wire.LeaseRenewRequest) error {
	if _, err := s.store.RenewInboxLease(req.ReceiverAgentID, req.MessageID, req.ClaimerNodeID, req.LeaseToken); err != nil {
		return err
	}
	return noContent(w)
}

// nack answers POST /v1/populi/a2a/nack (issue 9): the holder gives a row
// back, claimable again after retry_after_ms or the default backoff.
func (s *Server) nack(w http.ResponseWriter, r *http.Request, req *wire.NackRequest) error {
	if err := s.store.Nack(*req); err != nil {
		return err
	}
	return noContent(w)
}

func ptr[T any](v T) *T { return &v }
