package store

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// Inbox listing limits (SPEC 2.10).
const (
	ListDefault = 64
	ListMax     = 256
	// MaxWait caps a long-poll claim's wait_ms (issue 9).
	MaxWait = 30 * time.Second
)

const dedupeSep = "\x1f"

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidateDeliver normalizes and checks the agent ids of a delivery in SPEC
// 2.9's order (steps 1-3). The API calls it before attestation (step 4);
// Deliver calls it again. Errors: wire.ErrSender*, wire.ErrReceiver*.
func ValidateDeliver(req *wire.DeliverRequest) error {
	req.SenderAgentID = strings.TrimSpace(req.SenderAgentID)
	req.ReceiverAgentID = strings.TrimSpace(req.ReceiverAgentID)
	switch {
	case req.SenderAgentID == "":
		return wire.ErrSenderRequired
	case !isDigits(req.SenderAgentID):
		return wire.ErrSenderDigits
	case req.ReceiverAgentID == "":
		return wire.ErrReceiverRequired
	case !isDigits(req.ReceiverAgentID):
		return wire.ErrReceiverDigits
	}
	return nil
}

// Deliver stores a mailbox row (SPEC 6.2-6.4) and returns its id. A pending
// or leased row with the same (sender, receiver, idempotency key) answers
// with its id and stores nothing. senderNodeID is set only for node-signed
// deliveries. Errors: those of ValidateDeliver.
func (s *Store) Deliver(req wire.DeliverRequest, senderNodeID string) (uint64, error) {
	if err := ValidateDeliver(&req); err != nil {
		return 0, err
	}
	var dedupe string
	if req.IdempotencyKey != nil {
		if k := strings.TrimSpace(*req.IdempotencyKey); k != "" {
			dedupe = req.SenderAgentID + dedupeSep + req.ReceiverAgentID + dedupeSep + k
		}
	}
	var id uint64
	err := s.update(func(t *txn) error {
		idem := t.Bucket(bIdem)
		if dedupe != "" {
			if v := idem.Get(boundedKey(dedupe)); v != nil {
				id = getU64(v)
				return nil
			}
		}
		for t.rowCount() >= uint64(s.cfg.MaxMessages) {
			if ok, err := t.evictOne(); err != nil || !ok {
				return err
			}
		}
		var err error
		if id, err = t.nextReserved(mNextMessageID, &s.msgSeq); err != nil {
			return err
		}
		m := &wire.StoredMessage{
			ID: id, SenderAgentID: req.SenderAgentID, ReceiverAgentID: req.ReceiverAgentID,
			MessageType: req.MessageType, Payload: req.Payload, CreatedUnixMs: t.nowMs,
			PrivacyClass: req.PrivacyClass, PayloadBlake3Hex: req.PayloadBlake3Hex,
			WorkerEd25519SigB64: req.WorkerEd25519SigB64, JWEPayload: req.JWEPayload,
			Priority: wire.DefaultPriority, TaskKind: req.TaskKind, ModelID: req.ModelID,
			Traceparent: req.Traceparent, State: wire.StateReady,
		}
		if req.Priority != nil {
			m.Priority = *req.Priority
		}
		if senderNodeID != "" {
			m.SenderNodeID = ptr(senderNodeID)
		}
		if req.NotBeforeUnixMs != nil && *req.NotBeforeUnixMs > t.nowMs {
			m.State, m.NotBeforeUnixMs = wire.StateDelayed, ptr(min(*req.NotBeforeUnixMs, MaxUnixMs))
		}
		if dedupe != "" {
			m.IdempotencyDedupeKey = ptr(dedupe)
			if err := idem.Put(boundedKey(dedupe), u64(id)); err != nil {
				return err
			}
		}
		return t.saveRow(nil, m)
	})
	return id, err
}

// MaxUnixMs is the latest instant the store keeps: times are converted to
// time.Time (int64 milliseconds), so client values are clamped to it.
const MaxUnixMs = uint64(math.MaxInt64 / int64(time.Millisecond))

// addMs adds milliseconds to an instant, saturating at MaxUnixMs.
func addMs(at, ms uint64) uint64 {
	if ms >= MaxUnixMs-min(at, MaxUnixMs) {
		return MaxUnixMs
	}
	return at + ms
}

func clampList(max *uint64) int {
	l := uint64(ListDefault)
	if max != nil {
		l = *max
	}
	return int(min(max1(l), ListMax))
}

func max1(v uint64) uint64 {
	if v < 1 {
		return 1
	}
	return v
}

// ListInbox returns up to max (default 64, clamped to [1,256]) unacknowledged
// rows of receiver (exact match), newest first, with ids below before when
// given. Leases and delays are shown as they stand at now; dead letters are
// left out (they are listed by ListDead).
func (s *Store) ListInbox(receiver string, max, before *uint64) ([]wire.StoredMessage, error) {
	out := []wire.StoredMessage{}
	if !isDigits(receiver) { // no stored row can match a non-digit receiver
		return out, nil
	}
	limit := clampList(max)
	err := s.view(func(t *txn) error {
		return t.pageDesc(bByReceiver, receiver, before, func(id uint64) (bool, error) {
			m, err := t.getRow(id)
			if err != nil {
				return false, err
			}
			// The index may be ahead of this read transaction (a batch is
			// committing): a row not committed yet is skipped, and a row is
			// shown as committed.
			if m == nil || m.Acknowledged {
				return true, nil
			}
			if e := s.effective(m, t.nowMs); e.State != wire.StateDead {
				out = append(out, *e)
			}
			return len(out) < limit, nil
		})
	})
	return out, err
}

// pageDesc walks recv's entries of an (recv 0x00 id) index newest first,
// starting below before (when given), until fn says stop.
func (t *txn) pageDesc(bucket []byte, recv string, before *uint64, fn func(id uint64) (bool, error)) error {
	rp := recvPrefix(recv)
	c := t.idx(bucket).Cursor()
	var start []byte
	if before != nil {
		start = cat(rp, u64(*before))
	} else {
		start = cat(rp[:len(rp)-1], []byte{1}) // just past every key with prefix rp
	}
	k, _ := c.Seek(start)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, rp); k, _ = c.Prev() {
		more, err := fn(getU64(k[len(rp):]))
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// ClaimNext leases at most one row of receiver to claimer (SPEC 2.10, 6.5):
// the highest priority, then oldest, claimable row, counting rows claimer
// already holds; a fresh lease token and delivery count on each claim. A
// quarantined or draining claimer gets nil. Errors: wire.ErrUnknownClaimerJoin.
func (s *Store) ClaimNext(receiver, claimer string) (*wire.StoredMessage, error) {
	claimer = strings.TrimSpace(claimer)
	if !s.mayClaim(receiver, claimer) {
		return nil, nil
	}
	var out *wire.StoredMessage
	err := s.update(func(t *txn) error {
		out = nil
		node, err := t.getNode(claimer)
		if err != nil {
			return err
		}
		if node == nil {
			return wire.ErrUnknownClaimerJoin
		}
		expireMaintenance(&node.rec, t.nowMs)
		if quarantined(&node.rec) || blocksNewWork(&node.rec, t.nowMs) || !isDigits(receiver) {
			return nil
		}
		if err := t.promoteDue(receiver, promoteLimit); err != nil {
			return err
		}
		best, err := t.pickRow(receiver, &node.rec)
		if err != nil || best == nil {
			return err
		}
		token, err := t.nextReserved(mNextToken, &s.tokenSeq)
		if err != nil {
			return err
		}
		m := *best
		m.State = wire.StateLeased
		m.LeaseHolderNodeID = ptr(claimer)
		m.LeaseExpiresUnixMs = ptr(t.nowMs + uint64(s.cfg.LeaseTTL.Milliseconds()))
		m.LeaseToken = ptr(token)
		m.NotBeforeUnixMs = nil
		m.DeliveryCount++
		if err := t.saveRow(best, &m); err != nil {
			return err
		}
		out = &m
		return nil
	})
	return out, err
}

// mayClaim answers, from a read-only snapshot, whether a claim could find
// anything: an idle worker polling an empty inbox then costs no write and no
// fsync. It errs towards true (unknown claimer, rows policy may refuse); the
// claim transaction decides.
func (s *Store) mayClaim(receiver, claimer string) bool {
	may := true
	_ = s.view(func(t *txn) error {
		node, err := t.getNode(claimer)
		if err != nil || node == nil {
			return err // unknown: let the claim answer 403
		}
		expireMaintenance(&node.rec, t.nowMs)
		if quarantined(&node.rec) || blocksNewWork(&node.rec, t.nowMs) || !isDigits(receiver) {
			may = false
			return nil
		}
		rp := recvPrefix(receiver)
		if k, _ := t.idx(bReady).Cursor().Seek(rp); k != nil && bytes.HasPrefix(k, rp) {
			return nil
		}
		hp := holderPrefix(claimer, receiver)
		if k, _ := t.idx(bHeld).Cursor().Seek(hp); k != nil && bytes.HasPrefix(k, hp) {
			return nil
		}
		if k, _ := t.idx(bWait).Cursor().Seek(rp); k != nil && bytes.HasPrefix(k, rp) && getU64(k[len(rp):len(rp)+8]) <= t.nowMs {
			return nil
		}
		may = false
		return nil
	})
	return may
}

// pickRow returns the best claimable row: the first policy-allowed entry of
// the ready index (priority desc, id asc), or a row the claimer already
// holds if that one ranks higher.
func (t *txn) pickRow(recv string, node *wire.NodeRecord) (*wire.StoredMessage, error) {
	var best *wire.StoredMessage
	scan := func(bucket, prefix []byte) error {
		c := t.idx(bucket).Cursor()
		n := 0
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if n++; n > claimScanLimit {
				t.s.log.Debug("claim scan limit reached", "receiver_agent_id", recv, "claimer", node.ID)
				return nil
			}
			m, err := t.getRow(getU64(k[len(k)-8:]))
			if err != nil {
				return err
			}
			if m == nil || (m.State == wire.StateLeased && derefU64(m.LeaseExpiresUnixMs) <= t.nowMs) {
				continue
			}
			if !t.claimAllowed(m, node) {
				t.s.log.Debug("policy skip", "message_id", m.ID, "claimer", node.ID)
				continue
			}
			if best == nil || m.Priority > best.Priority || (m.Priority == best.Priority && m.ID < best.ID) {
				best = m
			}
			return nil
		}
		return nil
	}
	if err := scan(bReady, recvPrefix(recv)); err != nil {
		return nil, err
	}
	if err := scan(bHeld, holderPrefix(node.ID, recv)); err != nil {
		return nil, err
	}
	return best, nil
}

// claimAllowed is SPEC 6.6's claim policy.
func (t *txn) claimAllowed(m *wire.StoredMessage, node *wire.NodeRecord) bool {
	p := wire.Norm(m.PrivacyClass)
	v := wire.Norm(node.Visibility)
	if v == "" {
		v = "private"
	}
	tier := wire.Norm(node.TrustTier)
	if tier == "" {
		tier = "trusted"
	}
	if p == "" || p == "public" {
		if v == "private" {
			return false // R1
		}
		if pol := node.DonationPolicy; pol != nil {
			if !pol.PublicMeshOptIn || m.Priority < pol.MinPriority { // R2, R3
				return false
			}
			if m.TaskKind != nil {
				match := false
				for _, sl := range pol.Slots {
					if sl.TaskKind.Matches(*m.TaskKind) {
						match = true
						break
					}
				}
				if !match {
					return false // R4
				}
			}
			if pol.DeniedUsers != nil || pol.AllowedUsers != nil {
				owner := t.senderOwner(m)
				if pol.DeniedUsers != nil && owner != "" && containsNorm(pol.DeniedUsers, owner) {
					return false // R5
				}
				if pol.AllowedUsers != nil && (owner == "" || !containsNorm(pol.AllowedUsers, owner)) {
					return false // R6
				}
			}
		}
	}
	switch p {
	case "private", "trusted":
		return v != "public" // R7
	case "trusted_only":
		return v != "public" && tier != "new" // R8
	}
	return true // R9
}

func (t *txn) senderOwner(m *wire.StoredMessage) string {
	if m.SenderNodeID == nil {
		return ""
	}
	n, err := t.getNode(*m.SenderNodeID)
	if err != nil || n == nil {
		return ""
	}
	return wire.Norm(n.rec.OwnerVoxUserID)
}

func containsNorm(list []string, v string) bool {
	for _, x := range list {
		if strings.ToLower(strings.TrimSpace(x)) == v {
			return true
		}
	}
	return false
}

// ClaimWait is ClaimNext with a long poll (issue 9): when nothing is
// claimable it waits, up to wait (capped at MaxWait), for a commit that makes
// a row of receiver ready or for the receiver's next lease expiry or due
// time, then claims. Store shutdown or ctx end it with nil.
func (s *Store) ClaimWait(ctx context.Context, receiver, claimer string, wait time.Duration) (*wire.StoredMessage, error) {
	wait = min(wait, MaxWait)
	deadline := s.clock.Now().Add(wait)
	for {
		woken := s.watch(receiver)
		// Wait times up to here were due when the claim ran: one still
		// waiting is one this claimer could not take (it is quarantined or
		// draining), and must not turn the wait into a 1 ms polling loop.
		claimedAt := clock.UnixMs(s.clock.Now())
		m, err := s.ClaimNext(receiver, claimer)
		if err != nil || m != nil {
			return m, err
		}
		now := s.clock.Now()
		left := deadline.Sub(now)
		if left <= 0 {
			return nil, nil
		}
		if next, ok := s.nextWaitTime(receiver, claimedAt); ok {
			if d := time.UnixMilli(int64(next)).Sub(now); d < left {
				left = max(d, time.Millisecond)
			}
		}
		select {
		case <-woken:
		case <-s.clock.After(left):
		case <-ctx.Done():
			return nil, nil
		case <-s.stop:
			return nil, nil
		}
	}
}

// nextWaitTime is the earliest lease expiry or due time after `after`
// among receiver's rows.
func (s *Store) nextWaitTime(receiver string, after uint64) (uint64, bool) {
	var next uint64
	var ok bool
	_ = s.view(func(t *txn) error {
		rp := recvPrefix(receiver)
		k, _ := t.idx(bWait).Cursor().Seek(cat(rp, u64(after+1)))
		if k != nil && bytes.HasPrefix(k, rp) {
			next, ok = getU64(k[len(rp):len(rp)+8]), true
		}
		return nil
	})
	return next, ok
}

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

// ListDead pages a receiver's dead letters like ListInbox, newest first,
// including rows whose last lease ran out at the delivery limit.
func (s *Store) ListDead(receiver string, max, before *uint64) ([]wire.StoredMessage, error) {
	out := []wire.StoredMessage{}
	if !isDigits(receiver) {
		return out, nil
	}
	limit := clampList(max)
	err := s.view(func(t *txn) error {
		// Rows not yet promoted to dead are still under the live-row index;
		// merge both walks newest first.
		var dead, live []uint64
		_ = t.pageDesc(bDead, receiver, before, func(id uint64) (bool, error) {
			// Count only committed rows: the index may be ahead of this
			// read transaction (see ListInbox).
			if m, err := t.getRow(id); err != nil || m == nil {
				return err == nil, err
			}
			dead = append(dead, id)
			return len(dead) < limit, nil
		})
		if s.cfg.MaxDeliveries > 0 {
			c := t.idx(bWait).Cursor()
			rp := recvPrefix(receiver)
			for k, _ := c.Seek(rp); k != nil && bytes.HasPrefix(k, rp) && getU64(k[len(rp):len(rp)+8]) <= t.nowMs; k, _ = c.Next() {
				id := getU64(k[len(rp)+8:])
				if before != nil && id >= *before {
					continue
				}
				if m, _ := t.getRow(id); m != nil && s.effective(m, t.nowMs).State == wire.StateDead {
					live = append(live, id)
				}
			}
		}
		ids := mergeDesc(dead, live, limit)
		for _, id := range ids {
			m, err := t.getRow(id)
			if err != nil {
				return err
			}
			if m != nil {
				out = append(out, *s.effective(m, t.nowMs))
			}
		}
		return nil
	})
	return out, err
}

func mergeDesc(a, b []uint64, limit int) []uint64 {
	all := append(append([]uint64(nil), a...), b...)
	for i := 1; i < len(all); i++ { // small lists: insertion sort, descending
		for j := i; j > 0 && all[j] > all[j-1]; j-- {
			all[j], all[j-1] = all[j-1], all[j]
		}
	}
	if len(all) > limit {
		all = all[:limit]
	}
	return all
}

// Requeue makes a dead letter claimable again with its delivery count reset.
// Errors: wire.ErrNotFound, wire.ErrNotDead.
func (s *Store) Requeue(receiver string, id uint64) error {
	return s.update(func(t *txn) error {
		m, e, err := t.rowFor(receiver, id)
		if err != nil {
			return err
		}
		if m == nil {
			return wire.ErrNotFound
		}
		if e.State != wire.StateDead {
			return wire.ErrNotDead
		}
		r := *e
		r.State, r.DeliveryCount = wire.StateReady, 0
		return t.saveRow(m, &r)
	})
}
