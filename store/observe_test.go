package store

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// recordingObserver keeps every call, for the observer tests.
type recordingObserver struct {
	mu      sync.Mutex
	batches []int
	syncs   map[string]int
}

func (o *recordingObserver) CommitDone(n int, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.batches = append(o.batches, n)
}

func (o *recordingObserver) SyncDone(file string, d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.syncs == nil {
		o.syncs = map[string]int{}
	}
	o.syncs[file]++
}

func (o *recordingObserver) snapshot() (writes, commits, walSyncs, dbSyncs int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, n := range o.batches {
		writes += n
	}
	return writes, len(o.batches), o.syncs["wal"], o.syncs["db"]
}

func TestObserverSeesEveryCommittedWrite(t *testing.T) {
	t.Parallel()
	obs := &recordingObserver{}
	b := setup(t, func(c *Config) { c.Observer = obs })
	before, _ := b.s.StorageStats()
	b.join("n1")
	b.deliver("7")
	b.deliver("7")
	writes, commits, walSyncs, _ := obs.snapshot()
	if writes != 3 || commits < 1 || commits > 3 || walSyncs != commits {
		t.Fatalf("observer saw %d writes in %d commits with %d log syncs, want 3 writes, 1-3 commits, one log sync per commit", writes, commits, walSyncs)
	}
	after, err := b.s.StorageStats()
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Commits - before.Commits; got != uint64(commits) {
		t.Errorf("StorageStats.Commits moved by %d, observer saw %d commits", got, commits)
	}
	if after.FileSizeBytes <= 0 || after.PageSizeBytes <= 0 {
		t.Errorf("storage stats %+v: want a positive file and page size", after)
	}
	// bbolt is committed in the background; a clean close folds the rest.
	s := b.s
	b.s = nil
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, _, dbSyncs := obs.snapshot(); dbSyncs < 1 {
		t.Errorf("observer saw %d db syncs after a clean close, want the fold's commit", dbSyncs)
	}
}

func TestNilObserverIsFine(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.deliver("7")
	if st, err := b.s.StorageStats(); err != nil || st.Commits == 0 {
		t.Fatalf("StorageStats = %+v, %v; want a commit counted", st, err)
	}
}

func TestReadyCommitsThenFailsAfterClose(t *testing.T) {
	t.Parallel()
	obs := &recordingObserver{}
	b := setup(t, func(c *Config) { c.Observer = obs })
	if err := b.s.Ready(); err != nil {
		t.Fatalf("Ready on an open store: %v", err)
	}
	if _, commits, _, _ := obs.snapshot(); commits != 1 {
		t.Fatalf("Ready committed %d times, want once (a real write probe)", commits)
	}
	s := b.s
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b.s = nil
	err := s.Ready()
	if !errors.Is(err, ErrClosed) || err.Error() != "store closed: store: closed" {
		t.Fatalf("Ready after Close = %v, want a store-closed error", err)
	}
	if _, err := s.StorageStats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("StorageStats after Close = %v, want ErrClosed", err)
	}
}
