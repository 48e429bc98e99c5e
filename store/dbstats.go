package store

import (
	"fmt"
	"os"

	"go.etcd.io/bbolt"

	"populi-db/wire"
)

// DBStats counts what the file holds in one read transaction: keys per
// bucket, rows per state (read from the rows, so it needs no index), the
// oldest pending row, file size and free pages.
func (s *Store) DBStats() (wire.DBStats, error) {
	out := wire.DBStats{
		Path: s.cfg.Path, PageSize: s.db.Info().PageSize,
		Buckets: map[string]int{}, States: map[string]uint64{},
	}
	if st, err := os.Stat(s.cfg.Path); err == nil {
		out.FileBytes = st.Size()
	}
	out.FreePages = s.db.Stats().FreePageN
	err := s.db.View(func(tx *bbolt.Tx) error {
		if meta := tx.Bucket(bMeta); meta != nil {
			out.SchemaVersion = getU64(meta.Get(mSchemaVersion))
		}
		for _, name := range allBuckets {
			if b := tx.Bucket(name); b != nil {
				out.Buckets[string(name)] = b.Stats().KeyN
			}
		}
		rows := tx.Bucket(bRows)
		if rows == nil {
			return nil
		}
		return rows.ForEach(func(k, v []byte) error {
			var f wire.StoredMessage
			if err := decodeRow(v, &f); err != nil {
				return fmt.Errorf("decode a2a row %d: %w", getU64(k), err)
			}
			out.States[f.State]++
			pending := f.State == wire.StateReady || f.State == wire.StateLeased || f.State == wire.StateDelayed
			if pending && out.OldestPending == nil { // rows are in id order
				out.OldestPending = &wire.OldestPending{MessageID: f.ID, ReceiverAgentID: f.ReceiverAgentID, State: f.State, CreatedUnixMs: f.CreatedUnixMs}
			}
			return nil
		})
	})
	return out, err
}
