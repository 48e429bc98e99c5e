package store

import (
	"errors"
	"fmt"
)

// Ready reports whether a write can be acknowledged right now: it runs a
// no-op write through the normal group-commit path (writer and log syncer),
// so it fails like any request would once the write-ahead log has failed.
// The error names the cause (store closed, or the commit's own error).
func (s *Store) Ready() error {
	err := s.update(func(*txn) error { return nil })
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrClosed):
		return fmt.Errorf("store closed: %w", err)
	default:
		return fmt.Errorf("write probe failed: %w", err)
	}
}
