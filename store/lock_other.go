//go:build !unix

package store

import (
	"os"
	"time"
)

// lockFile is a no-op where flock does not exist; bbolt.Open still locks.
func lockFile(*os.File, bool, time.Duration) error { return nil }
