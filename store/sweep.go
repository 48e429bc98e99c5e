package store

// Bounded maintenance passes for the sweeper (package sweep). Each is one
// short write transaction doing at most limit items, so a large backlog is
// worked off in many small commits that never stall requests.

// ExpireInboxLeases returns up to limit rows whose lease expired to ready
// (or dead at the delivery limit) and makes due delayed rows ready.
func (s *Store) ExpireInboxLeases(limit int) (int, error) {
	var n int
	err := s.update(func(t *txn) error {
		n = 0
		c := t.idx(bWaitByTime).Cursor()
		var keys [][]byte
		for k, _ := c.First(); k != nil && len(keys) < limit && getU64(k[:8]) <= t.nowMs; k, _ = c.Next() {
			keys = append(keys, append([]byte(nil), k...))
		}
		for _, k := range keys {
			ok, err := t.promote(getU64(k[8:]))
			if err != nil {
				return err
			}
			if ok {
				n++
				continue
			}
			// An entry that promotes nothing points at no waiting row:
			// drop it so it cannot wedge the sweep at the index head.
			if err := t.idx(bWaitByTime).Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// ExpireExecLeases deletes up to limit exec leases whose expiry passed.
func (s *Store) ExpireExecLeases(limit int) (int, error) {
	var n int
	err := s.update(func(t *txn) error {
		n = 0
		c := t.Bucket(bExecByExp).Cursor()
		var ids []string
		var keys [][]byte
		for k, _ := c.First(); k != nil && len(ids) < limit && getU64(k[:8]) <= t.nowMs; k, _ = c.Next() {
			ids = append(ids, string(k[8:]))
			keys = append(keys, append([]byte(nil), k...))
		}
		for i, id := range ids {
			l, err := t.getLease(id)
			if err != nil {
				return err
			}
			if l == nil || l.lease.ExpiresUnixMs > t.nowMs {
				// Dangling or stale index entry: drop it so it cannot
				// wedge the sweep at the index head.
				if err := t.Bucket(bExecByExp).Delete(keys[i]); err != nil {
					return err
				}
				continue
			}
			if err := t.deleteLease(l); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// EnforceCap evicts up to limit rows while the relay holds more than
// MaxMessages (after a restart with a lower cap, say): acknowledged first,
// then dead letters, then the oldest live rows, each logged at warn.
func (s *Store) EnforceCap(limit int) (int, error) {
	var n int
	err := s.update(func(t *txn) error {
		n = 0
		for n < limit && t.rowCount() > uint64(s.cfg.MaxMessages) {
			ok, err := t.evictOne()
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			n++
		}
		return nil
	})
	return n, err
}
