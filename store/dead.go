package store

import (
	"bytes"

	"populi-db/wire"
)

// ListDead pages a receiver's dead letters like ListInbox, newest first,
// including rows whose last lease ran out at the delivery limit.
func (s *Store) ListDead(receiver string, max, before *uint64) ([]wire.StoredMessage, error) {
	out := []wire.StoredMessage{}
	if !IsAgentID(receiver) {
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
