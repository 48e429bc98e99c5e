package store

import (
	"bytes"
	"strings"

	"populi-db/wire"
)

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
		if quarantined(&node.rec) || blocksNewWork(&node.rec, t.nowMs) || !IsAgentID(receiver) {
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
		if quarantined(&node.rec) || blocksNewWork(&node.rec, t.nowMs) || !IsAgentID(receiver) {
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
