package store

import (
	"fmt"

	"go.etcd.io/bbolt"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// bulkDeliver stores n ready rows for recv (sender "1", private, default
// priority, no idempotency key), batch rows per transaction, straight
// through saveRow: the same rows, indexes and counters Deliver writes, but
// without one commit per row and without the cap. Benchmarks use it to
// build large backlogs quickly; it bypasses the commit loop, which is safe
// because bbolt serializes writers.
func (s *Store) bulkDeliver(recv string, n, batch int) error {
	for done := 0; done < n; {
		k := min(batch, n-done)
		err := s.db.Update(func(tx *bbolt.Tx) error {
			now := s.clock.Now()
			t := &txn{Tx: tx, s: s, now: now, nowMs: clock.UnixMs(now), wakes: map[string]struct{}{}}
			for _, b := range allBuckets {
				// Keys arrive in ascending order: pack pages full.
				tx.Bucket(b).FillPercent = 1.0
			}
			for range k {
				id, err := t.nextSeq(mNextMessageID)
				if err != nil {
					return err
				}
				m := &wire.StoredMessage{
					ID: id, SenderAgentID: "1", ReceiverAgentID: recv, MessageType: "job_submit",
					Payload: `{"job":"bench"}`, CreatedUnixMs: t.nowMs, PrivacyClass: ptr("private"),
					Priority: wire.DefaultPriority, State: wire.StateReady,
				}
				if err := t.saveRow(nil, m); err != nil {
					return fmt.Errorf("bulk row %d: %w", id, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		done += k
	}
	return nil
}
