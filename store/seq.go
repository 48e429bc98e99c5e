package store

// Message ids and lease tokens must never repeat, across restarts and
// crashes, but persisting the counter in every commit dirties the meta page
// of every commit. So meta holds a reservation: the highest value that may
// have been issued. The commit loop hands out values from the reserved
// block in memory and writes a new reservation only when a block runs out;
// a crash skips at most one block, and a clean Close writes back the exact
// last value so a restart continues without a gap. Any rollback or failed
// commit drops the in-memory block (resetAfterFailure) so the next value is
// re-derived from what was committed.

const seqReserve = 1024

// seqBlock is an in-memory block of reserved values; next == 0 means none.
type seqBlock struct{ next, limit uint64 }

// nextReserved issues the next value of the counter stored under key.
func (t *txn) nextReserved(key []byte, a *seqBlock) (uint64, error) {
	if a.next == 0 || a.next > a.limit {
		meta := t.Bucket(bMeta)
		base := getU64(meta.Get(key)) // every value up to base may be in use
		if a.next > base+1 {
			base = a.next - 1
		}
		limit := base + seqReserve
		if err := meta.Put(key, u64(limit)); err != nil {
			return 0, err
		}
		a.next, a.limit = base+1, limit
	}
	v := a.next
	a.next++
	return v, nil
}

// saveSeqs puts the exact last issued values into the acknowledged layer at
// Close, for the final fold into bbolt (the writer has stopped).
func (s *Store) saveSeqs() {
	s.index.mu.Lock()
	defer s.index.mu.Unlock()
	for _, c := range []struct {
		key []byte
		a   seqBlock
	}{{mNextMessageID, s.msgSeq}, {mNextToken, s.tokenSeq}} {
		if c.a.next == 0 {
			continue
		}
		s.live.set(bMeta, kvItem{k: c.key, v: u64(c.a.next - 1)})
	}
}
