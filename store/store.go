// Package store owns all populi-db state and every transaction. Each exported
// write is one bbolt transaction, run through a group-commit loop: concurrent
// writers share one fsync, and a lone writer never waits on a timer.
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// Defaults and clamps (SPEC 13.1, issue 9).
const (
	LeaseTTLDefault       = 120 * time.Second
	LeaseTTLMin           = time.Second
	LeaseTTLMax           = time.Hour
	MaxMessagesDefault    = 50000
	MaxMessagesMax        = 500000
	MaxDeliveriesDefault  = 10
	ReplayCapacityDefault = 1_000_000
	BootstrapMaxFailures  = 5
	JWTLeeway             = 60 * time.Second
	NackBackoffBase       = time.Second
	NackBackoffCap        = 5 * time.Minute
	OpenTimeoutDefault    = 2 * time.Second
	claimScanLimit        = 4096 // rows a claim examines for policy before giving up
	promoteLimit          = 10000
	maxBatch              = 512
	MaxMaintenanceForMs   = 604_800_000
)

// Config configures Open.
type Config struct {
	Path           string
	Clock          clock.Clock  // default clock.Real
	Logger         *slog.Logger // default slog.Default()
	LeaseTTL       time.Duration
	MaxMessages    int
	MaxDeliveries  int // 0 = unlimited
	ReplayCapacity int
	OpenTimeout    time.Duration // file lock wait
	Observer       Observer      // commit metrics (observe.go); nil = none
}

// Store is the durable state of one populi-db server.
type Store struct {
	db    *bbolt.DB
	clock clock.Clock
	log   *slog.Logger
	cfg   Config

	writes     chan *writeReq
	stop       chan struct{}
	writerDone chan struct{}

	mu       sync.RWMutex // guards closed
	closed   bool
	inflight sync.WaitGroup
	commits  atomic.Uint64 // commits since Open (observe.go)

	nodes nodeCache // decoded node records by stored bytes
	index *memIndex // derived mailbox indexes (memidx.go)

	// Message ids and lease tokens are reserved in blocks (seq.go); owned
	// by the commit loop.
	msgSeq, tokenSeq seqBlock

	watchMu  sync.Mutex
	watchers map[string]chan struct{} // receiver → closed when it may have a claimable row
}

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// ErrLocked means another process holds the db file.
var ErrLocked = errors.New("store: database file is locked by another process")

// Open opens (creating if needed) the db file and starts the commit loop.
func Open(cfg Config) (*Store, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = LeaseTTLDefault
	}
	cfg.LeaseTTL = min(max(cfg.LeaseTTL, LeaseTTLMin), LeaseTTLMax)
	if cfg.MaxMessages <= 0 {
		cfg.MaxMessages = MaxMessagesDefault
	}
	cfg.MaxMessages = min(cfg.MaxMessages, MaxMessagesMax)
	if cfg.MaxDeliveries < 0 {
		cfg.MaxDeliveries = 0
	}
	if cfg.ReplayCapacity <= 0 {
		cfg.ReplayCapacity = ReplayCapacityDefault
	}
	if cfg.OpenTimeout == 0 {
		cfg.OpenTimeout = OpenTimeoutDefault
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
		return nil, fmt.Errorf("create db directory: %w", err)
	}
	db, err := bbolt.Open(cfg.Path, 0o600, &bbolt.Options{
		Timeout:         cfg.OpenTimeout,
		NoFreelistSync:  true, // freelist is rebuilt at open; saves a page write per commit
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: 1 << 30, // remaps block readers; start big
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return nil, fmt.Errorf("open %s: %w (is another populi-db serving it?)", cfg.Path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	s := &Store{
		db: db, clock: cfg.Clock, log: cfg.Logger, cfg: cfg,
		writes:     make(chan *writeReq, 4096),
		stop:       make(chan struct{}),
		writerDone: make(chan struct{}),
		watchers:   make(map[string]chan struct{}),
		index:      newMemIndex(),
	}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.rebuildIndex(); err != nil {
		db.Close()
		return nil, err
	}
	go s.commitLoop()
	return s, nil
}

func (s *Store) init() error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bMeta)
		v := meta.Get(mSchemaVersion)
		if v == nil {
			return meta.Put(mSchemaVersion, u64(SchemaVersion))
		}
		if got := getU64(v); got != SchemaVersion {
			return fmt.Errorf("db schema version %d, this binary speaks %d", got, SchemaVersion)
		}
		return nil
	})
}

// Path is the db file.
func (s *Store) Path() string { return s.cfg.Path }

// LeaseTTL is the effective (clamped) lease TTL.
func (s *Store) LeaseTTL() time.Duration { return s.cfg.LeaseTTL }

// Close waits for in-flight writes, stops the commit loop and closes the file.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	close(s.stop)
	<-s.writerDone
	if err := s.saveSeqs(); err != nil {
		s.log.Error("saving id counters at close", "err", err)
	}
	return s.db.Close()
}

// Done is closed when Close begins stopping the store; long polls end on it.
func (s *Store) Done() <-chan struct{} { return s.stop }

// txn is what an operation sees: the write transaction and one instant.
type txn struct {
	*bbolt.Tx
	s     *Store
	now   time.Time
	nowMs uint64
	wakes map[string]struct{} // receivers that may have gained a claimable row
}

type writeReq struct {
	fn   func(*txn) error
	done chan error
}

// update runs fn in the next group commit and returns after the commit is
// fsync'd. fn must return a *wire.Error only before it writes anything:
// refusals are answers, not rollbacks, so the batch still commits.
func (s *Store) update(fn func(*txn) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	defer s.inflight.Done()
	r := &writeReq{fn: fn, done: make(chan error, 1)}
	s.writes <- r
	return <-r.done
}

// commitLoop folds every write that is waiting into one transaction, commits
// it (one fsync pair), then answers them all. No timer: a lone write commits
// at once, and writes that arrive during an fsync form the next batch.
func (s *Store) commitLoop() {
	defer close(s.writerDone)
	batch := make([]*writeReq, 0, maxBatch)
	errs := make([]error, 0, maxBatch)
	for {
		var first *writeReq
		select {
		case first = <-s.writes:
		case <-s.stop:
			return
		}
		batch, errs = batch[:0], errs[:0]
		wakes := map[string]struct{}{}
		tx, err := s.db.Begin(true)
		if err != nil {
			first.done <- fmt.Errorf("begin write transaction: %w", err)
			continue
		}
		failed := false
		run := func(r *writeReq) {
			batch = append(batch, r)
			err := s.runOp(tx, r.fn, wakes)
			errs = append(errs, err)
			if err != nil && !isDomain(err) {
				failed = true
			}
		}
		run(first)
	fill:
		for !failed && len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				run(r)
			default:
				break fill
			}
		}
		if failed {
			// An unexpected error may have left partial writes: discard the
			// whole batch and give every operation its own transaction.
			_ = tx.Rollback()
			s.mustRebuildIndex()
			for _, r := range batch {
				r.done <- s.solo(r.fn)
			}
			continue
		}
		commitStart := time.Now()
		if err := tx.Commit(); err != nil {
			err = fmt.Errorf("commit: %w", err)
			s.mustRebuildIndex()
			for _, r := range batch {
				r.done <- err
			}
			continue
		}
		s.observeCommit(len(batch), commitStart)
		s.wake(wakes)
		for i, r := range batch {
			r.done <- errs[i]
		}
	}
}

func (s *Store) solo(fn func(*txn) error) error {
	wakes := map[string]struct{}{}
	tx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("begin write transaction: %w", err)
	}
	if err := s.runOp(tx, fn, wakes); err != nil {
		_ = tx.Rollback()
		if !isDomain(err) {
			s.mustRebuildIndex()
		}
		return err
	}
	commitStart := time.Now()
	if err := tx.Commit(); err != nil {
		s.mustRebuildIndex()
		return fmt.Errorf("commit: %w", err)
	}
	s.observeCommit(1, commitStart)
	s.wake(wakes)
	return nil
}

func (s *Store) runOp(tx *bbolt.Tx, fn func(*txn) error, wakes map[string]struct{}) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("store operation panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("store operation panicked: %v", p)
		}
	}()
	s.index.mu.Lock()
	defer s.index.mu.Unlock()
	now := s.clock.Now()
	return fn(&txn{Tx: tx, s: s, now: now, nowMs: clock.UnixMs(now), wakes: wakes})
}

// mustRebuildIndex re-derives the mailbox indexes after a rollback or a
// failed commit left them ahead of the committed rows.
func (s *Store) mustRebuildIndex() {
	s.msgSeq, s.tokenSeq = seqBlock{}, seqBlock{} // re-read what was committed
	if err := s.rebuildIndex(); err != nil {
		s.log.Error("rebuilding mailbox indexes failed; mailbox answers may be wrong until restart", "err", err)
	}
}

// view runs a read-only transaction at one instant.
func (s *Store) view(fn func(*txn) error) error {
	return s.db.View(func(tx *bbolt.Tx) error {
		s.index.mu.RLock()
		defer s.index.mu.RUnlock()
		now := s.clock.Now()
		return fn(&txn{Tx: tx, s: s, now: now, nowMs: clock.UnixMs(now)})
	})
}

func isDomain(err error) bool {
	var e *wire.Error
	return errors.As(err, &e)
}

// watch returns a channel closed when receiver may have gained a claimable
// row (after the commit that made it so).
func (s *Store) watch(receiver string) <-chan struct{} {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	ch, ok := s.watchers[receiver]
	if !ok {
		ch = make(chan struct{})
		s.watchers[receiver] = ch
	}
	return ch
}

func (s *Store) wake(recvs map[string]struct{}) {
	if len(recvs) == 0 {
		return
	}
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for r := range recvs {
		if ch, ok := s.watchers[r]; ok {
			close(ch)
			delete(s.watchers, r)
		}
	}
}

// nextSeq increments and returns a meta counter (first value 1).
func (t *txn) nextSeq(key []byte) (uint64, error) {
	meta := t.Bucket(bMeta)
	v := getU64(meta.Get(key)) + 1
	if err := meta.Put(key, u64(v)); err != nil {
		return 0, fmt.Errorf("bump %s: %w", key, err)
	}
	return v, nil
}

// counterBucket is what addCount needs: a bbolt or an index bucket.
type counterBucket interface {
	Get([]byte) []byte
	Put(k, v []byte) error
	Delete([]byte) error
}

// addCount adds d (may be negative) to a counter; zero counters are deleted.
func addCount(b counterBucket, key []byte, d int64) error {
	v := int64(getU64(b.Get(key))) + d
	if v <= 0 {
		return b.Delete(key)
	}
	return b.Put(key, u64(uint64(v)))
}

// Check runs bbolt's consistency check and returns every problem found.
func (s *Store) Check() []error {
	var errs []error
	_ = s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	return errs
}
