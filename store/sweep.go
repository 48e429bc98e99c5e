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
		c := t.Bucket(bWaitByTime).Cursor()
		var ids []uint64
		for k, _ := c.First(); k != nil && len(ids) < limit && getU64(k[:8]) <= t.nowMs; k, _ = c.Next() {
			ids = append(ids, getU64(k[8:]))
		}
		for _, id := range ids {
			ok, err := t.promote(id)
			if err != nil {
				return err
			}
			if ok {
				n++
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
		for k, _ := c.First(); k != nil && len(ids) < limit && getU64(k[:8]) <= t.nowMs; k, _ = c.Next() {
			ids = append(ids, string(k[8:]))
		}
		for _, id := range ids {
			l, err := t.getLease(id)
			if err != nil {
				return err
			}
			if l == nil {
				continue
			}
			if l.lease.ExpiresUnixMs > t.nowMs {
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
