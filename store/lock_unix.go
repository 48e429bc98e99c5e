//go:build unix

package store

import (
	"os"
	"syscall"
	"time"
)

// lockFile takes bbolt's advisory lock (flock) on f, waiting up to wait; it
// is released when f is closed.
func lockFile(f *os.File, exclusive bool, wait time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // bbolt polls its lock the same way
	}
}
