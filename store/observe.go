package store

import (
	"fmt"
	"os"
	"time"
)

// Observer is told about the store's commits, for metrics. Calls come from
// the commit path (the log syncer and the background bbolt commit), so
// implementations must be quick and must not call back into the store.
type Observer interface {
	// CommitDone reports one acknowledged group of batchSize writes and how
	// long it took from being handed to the log syncer until it was durable.
	CommitDone(batchSize int, d time.Duration)
	// SyncDone reports one durability flush of file ("wal": a write-ahead
	// log append and its fdatasync; "db": a background bbolt commit and its
	// fsyncs) and how long it took.
	SyncDone(file string, d time.Duration)
}

// nopObserver is the Observer of a store configured without one.
type nopObserver struct{}

func (nopObserver) CommitDone(int, time.Duration)  {}
func (nopObserver) SyncDone(string, time.Duration) {}

// observer returns the configured Observer, or one that does nothing.
func (s *Store) observer() Observer {
	if s.cfg.Observer == nil {
		return nopObserver{}
	}
	return s.cfg.Observer
}

// observeCommit reports a batch acknowledged after its log record was made
// durable; handed is when the writer gave it to the syncer.
func (s *Store) observeCommit(batchSize int, handed time.Time) {
	s.commits.Add(1)
	s.observer().CommitDone(batchSize, time.Since(handed))
}

// observeSync reports one flush of file that started at start.
func (s *Store) observeSync(file string, start time.Time) {
	s.observer().SyncDone(file, time.Since(start))
}

// StorageStats are read-only figures about the db file.
type StorageStats struct {
	FileSizeBytes int64  // size of the db file on disk
	FreePages     int    // pages on the freelist (free and pending)
	PageSizeBytes int    // bbolt page size
	Commits       uint64 // write batches acknowledged since Open
}

// StorageStats reads the db file's size and bbolt's page and commit
// counters. It takes no transaction and never blocks writers.
func (s *Store) StorageStats() (StorageStats, error) {
	if s.isClosed() {
		return StorageStats{}, ErrClosed
	}
	st := s.db.Stats()
	fi, err := os.Stat(s.cfg.Path)
	if err != nil {
		return StorageStats{}, fmt.Errorf("stat db file: %w", err)
	}
	return StorageStats{
		FileSizeBytes: fi.Size(),
		FreePages:     st.FreePageN + st.PendingPageN,
		PageSizeBytes: s.db.Info().PageSize,
		Commits:       s.commits.Load(),
	}, nil
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// Now is the store's clock reading (the instant its answers are computed at).
func (s *Store) Now() time.Time { return s.clock.Now() }
