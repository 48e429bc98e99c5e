package store

import (
	"math/rand/v2"
	"strings"
	"time"

	"populi-db/wire"
)

// rowFor loads message id if it belongs to receiver (exact match), as it
// stands at now.
func (t *txn) rowFor(receiver string, id uint64) (stored, eff *wire.StoredMessage, err error) {
	m, err := t.getRow(id)
	if err != nil || m == nil || m.ReceiverAgentID != receiver {
		return nil, nil, err
	}
	return m, t.s.effective(m, t.nowMs), nil
}

func tokenOK(token *uint64, m *wire.StoredMessage) bool {
	return token == nil || (m.LeaseToken != nil && *m.LeaseToken == *token)
}

// Ack marks a row acknowledged, clears its lease and releases its dedupe key
// (SPEC 2.11). Any caller may ack; with a lease_token the ack is fenced: it
// must be the live lease's token (issue 9). Re-acking is a no-op.
// Errors: wire.ErrNotFound, wire.ErrStaleLeaseToken.
func (s *Store) Ack(receiver string, id uint64, token *uint64) error {
	return s.update(func(t *txn) error {
		m, e, err := t.rowFor(receiver, id)
		if err != nil {
			return err
		}
		if m == nil {
			return wire.ErrNotFound
		}
		if token != nil && !(tokenOK(token, e) && (e.State == wire.StateLeased || e.State == wire.StateAcked)) {
			return wire.ErrStaleLeaseToken
		}
		if m.State == wire.StateAcked {
			return nil
		}
		if err := t.releaseDedupe(m); err != nil {
			return err
		}
		a := *m
		a.State, a.Acknowledged = wire.StateAcked, true
		a.LeaseHolderNodeID, a.LeaseExpiresUnixMs, a.IdempotencyDedupeKey, a.NotBeforeUnixMs = nil, nil, nil, nil
		return t.saveRow(m, &a)
	})
}

// RenewInboxLease extends the claimer's live lease on a row to now + TTL
// (SPEC 2.12). Errors: wire.ErrClaimerRequired, wire.ErrUnknownClaimer,
// wire.ErrClaimerQuarantined, wire.ErrClaimerMaintenance, wire.ErrNotFound,
// wire.ErrRenewNotHolder, wire.ErrStaleLeaseToken.
func (s *Store) RenewInboxLease(receiver string, id uint64, claimer string, token *uint64) (uint64, error) {
	claimer = strings.TrimSpace(claimer)
	if claimer == "" {
		return 0, wire.ErrClaimerRequired
	}
	var exp uint64
	err := s.update(func(t *txn) error {
		if _, err := t.claimerGate(claimer, wire.ErrUnknownClaimer); err != nil {
			return err
		}
		m, e, err := t.rowFor(receiver, id)
		if err != nil {
			return err
		}
		if m == nil || m.Acknowledged {
			return wire.ErrNotFound
		}
		if e.State != wire.StateLeased || wire.Str(e.LeaseHolderNodeID) != claimer {
			return wire.ErrRenewNotHolder
		}
		if !tokenOK(token, e) {
			return wire.ErrStaleLeaseToken
		}
		r := *m
		exp = t.nowMs + uint64(s.cfg.LeaseTTL.Milliseconds())
		r.LeaseExpiresUnixMs = ptr(exp)
		return t.saveRow(m, &r)
	})
	return exp, err
}

// NackBackoff is the default redelivery delay after the n-th delivery:
// exponential from NackBackoffBase, capped at NackBackoffCap, with the upper
// half jittered so a crowd of failures spreads out.
func NackBackoff(n uint32) time.Duration {
	d := NackBackoffBase
	for i := uint32(1); i < n && d < NackBackoffCap; i++ {
		d *= 2
	}
	d = min(d, NackBackoffCap)
	return d/2 + rand.N(d/2+1)
}

// Nack releases the claimer's live lease on a row (issue 9). The row becomes
// claimable again after retryAfterMs (default NackBackoff of its delivery
// count), or is dead-lettered once it reached the delivery limit.
// Errors: wire.ErrClaimerRequired, wire.ErrUnknownClaimer, wire.ErrNotFound,
// wire.ErrNackNotHolder, wire.ErrStaleLeaseToken.
func (s *Store) Nack(req wire.NackRequest) error {
	claimer := strings.TrimSpace(req.ClaimerNodeID)
	if claimer == "" {
		return wire.ErrClaimerRequired
	}
	return s.update(func(t *txn) error {
		n, err := t.getNode(claimer)
		if err != nil {
			return err
		}
		if n == nil {
			return wire.ErrUnknownClaimer
		}
		m, e, err := t.rowFor(req.ReceiverAgentID, req.MessageID)
		if err != nil {
			return err
		}
		if m == nil || m.Acknowledged {
			return wire.ErrNotFound
		}
		if e.State != wire.StateLeased || wire.Str(e.LeaseHolderNodeID) != claimer {
			return wire.ErrNackNotHolder
		}
		if !tokenOK(req.LeaseToken, e) {
			return wire.ErrStaleLeaseToken
		}
		r := *m
		r.LeaseHolderNodeID, r.LeaseExpiresUnixMs = nil, nil
		switch {
		case s.cfg.MaxDeliveries > 0 && int(r.DeliveryCount) >= s.cfg.MaxDeliveries:
			r.State = wire.StateDead
		default:
			delayMs := uint64(NackBackoff(r.DeliveryCount).Milliseconds())
			if req.RetryAfterMs != nil {
				delayMs = *req.RetryAfterMs
			}
			r.State = wire.StateReady
			if delayMs > 0 {
				r.State, r.NotBeforeUnixMs = wire.StateDelayed, ptr(addMs(t.nowMs, delayMs))
			}
		}
		return t.saveRow(m, &r)
	})
}
