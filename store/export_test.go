package store

import (
	"fmt"

	"populi-db/wire"
)

// bulkDeliver stores n ready rows for recv (sender "1", private, default
// priority, no idempotency key), batch rows per operation, straight
// through saveRow: the same rows, indexes and counters Deliver writes, but
// without one log record per row and without the cap. Benchmarks use it to
// build large backlogs quickly.
func (s *Store) bulkDeliver(recv string, n, batch int) error {
	for done := 0; done < n; {
		k := min(batch, n-done)
		err := s.update(func(t *txn) error {
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
