package store

import (
	"errors"
	"fmt"
)

// Ready reports whether a write transaction can commit right now: it runs a
// no-op write through the normal group-commit path, so it exercises the
// commit loop, the page writes and the fsync like any request would. The
// error names the cause (store closed, or the commit's own error).
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
