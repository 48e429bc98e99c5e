// Package store owns all populi-db state and every transaction. Each exported
// write is one operation in a group commit (commit.go): every write waiting
// is folded into one batch, the batch is one record of the write-ahead log
// (store/wal) and is acknowledged after that record's fdatasync; bbolt, the
// store of record, takes the acknowledged writes in background commits.
package store

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"

	"populi-db/internal/clock"
	"populi-db/store/wal"
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

	// Background bbolt commits (etcd's backend batchInterval/batchLimit):
	// the log holds what bbolt does not yet, so these bound replay work
	// and the log's size, not durability.
	CommitIntervalDefault = 100 * time.Millisecond
	CommitLimitDefault    = 10000 // writes (keys) that force a commit before the interval
	// liveLimit bounds the acknowledged writes held in memory while bbolt
	// catches up; past it new batches wait for the background commit.
	liveLimit = 256 << 20
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

	// The write-ahead log (log.go). LogDir defaults to Path + "-wal".
	LogDir          string
	LogSegmentSize  int64  // 0: the wal package's default
	LogFS           wal.FS // nil: the OS; tests inject faults
	AllowCorruptLog bool   // start even when acknowledged log records are damaged (cuts the log there)
	CommitInterval  time.Duration
	CommitLimit     int
	// PipelineCommits hands a batch to the syncer goroutine whenever other
	// writes are waiting, so the writer builds the next batch during its
	// fsync. Off by default: on the 2-core machine we measure on, the extra
	// goroutine hand-off per batch costs more than the overlap gains
	// (README "Performance"); it may pay on machines with more cores.
	PipelineCommits bool

	// CrashPoint, when set, is called at the commit path's crash windows
	// ("fold-commit", "log-release", "close-fold"); the crash harness
	// kills the process from it. Nil in production.
	CrashPoint func(name string)

	OpenMode // tools: read-only, no index rebuild, no commit loop (openmode.go)

	// Etcd, when set, makes etcd the journal and the store of record
	// (etcd.go); Path is then a cache file rebuilt at every open.
	Etcd *EtcdConfig
}

// Store is the durable state of one populi-db server.
type Store struct {
	db    *bbolt.DB
	wal   journal // *wal.Log, or etcd (etcd.go)
	clock clock.Clock
	log   *slog.Logger
	cfg   Config

	wq         writeQueue     // inline commits (the default): commit.go
	writes     chan *writeReq // Config.PipelineCommits: to commitLoop
	stop       chan struct{}
	writerDone chan struct{}
	syncq      chan *batchJob
	syncDone   chan struct{}
	foldKick   chan struct{}
	foldStop   chan struct{}
	foldDone   chan struct{}

	mu       sync.RWMutex // guards closed
	closed   bool
	inflight sync.WaitGroup
	commits  atomic.Uint64 // commits since Open (observe.go)

	nodes    nodeCache    // decoded node records by stored bytes
	listHint atomic.Int64 // size of the last node listing (ListNodesJSON)
	index    *memIndex    // derived mailbox indexes (memidx.go); index.mu also guards the layers below

	// Layers of writes not yet in bbolt (kv.go), newest last in pending.
	pending  []*layer // batches whose log fsync is in flight: seen by the writer only
	live     *layer   // acknowledged, not yet handed to bbolt
	frozen   *layer   // being committed to bbolt
	foldTxid int      // bbolt txid of the last background commit (see snapshot)
	roomCond *sync.Cond

	// Writer-owned: log sequence of the last batch built, the epoch of
	// batches it builds (bumped by the syncer when a batch fails, so every
	// batch built on top of it fails too), id reservations (seq.go).
	lastSeq          uint64
	writerEpoch      uint64 // the epoch the writer last re-derived its state at
	epoch            atomic.Uint64
	batchesInFlight  sync.WaitGroup
	failMu           sync.Mutex
	failed           error // fatal storage error: writes refused until restart
	lastBatchErr     error // why the last failed batch failed (replied to the batches after it)
	msgSeq, tokenSeq seqBlock
	builtNum         uint64        // batches handed to the syncer (under index.mu)
	queued           atomic.Int64  // batches built and not yet finished (commit.go)
	pipelined        atomic.Uint64 // batches handed to the syncer (PipelineCommits)

	// Read waits (commit.go, view): durMu guards durableNum (batches the
	// syncer has answered) and indexEpoch (the epoch whose failures the
	// in-memory index has been re-derived after); durCond signals both.
	durMu      sync.Mutex
	durCond    *sync.Cond
	durableNum uint64
	indexEpoch uint64
	foldMu     sync.Mutex // one background commit at a time; Check pauses them

	fileSchema uint64     // schema version the file had at open (upgrade.go)
	soloMu     sync.Mutex // tools' writes (NoCommitLoop)

	watchMu  sync.Mutex
	watchers map[string]chan struct{} // receiver → closed when it may have a claimable row
}

// ErrClosed is returned by operations on a closed store.
var ErrClosed = errors.New("store: closed")

// ErrLocked means another process holds the db file.
var ErrLocked = errors.New("store: database file is locked by another process")

func (cfg *Config) defaults() {
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
	if cfg.LogDir == "" {
		cfg.LogDir = LogDirFor(cfg.Path)
	}
	if cfg.CommitInterval <= 0 {
		cfg.CommitInterval = CommitIntervalDefault
	}
	if cfg.CommitLimit <= 0 {
		cfg.CommitLimit = CommitLimitDefault
	}
}

// LogDirFor is the write-ahead log directory of a db file: the file's path
// with "-wal" appended. After a clean stop it does not exist.
func LogDirFor(dbPath string) string { return dbPath + "-wal" }

// Open opens (creating if needed) the db file, replays the write-ahead log
// into it and starts the commit loop. A ReadOnly open replays the log into
// memory only and never writes.
func Open(cfg Config) (*Store, error) {
	cfg.defaults()
	if err := preflight(cfg); err != nil {
		return nil, err
	}
	if !cfg.ReadOnly {
		if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o700); err != nil {
			return nil, fmt.Errorf("create db directory: %w", err)
		}
	}
	db, err := openBolt(cfg)
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
		syncq:      make(chan *batchJob, 1), // PipelineCommits: one batch builds while the previous one's fsync runs
		syncDone:   make(chan struct{}),
		foldKick:   make(chan struct{}, 1),
		foldStop:   make(chan struct{}),
		foldDone:   make(chan struct{}),
		watchers:   make(map[string]chan struct{}),
		index:      newMemIndex(),
		live:       newLayer(),
	}
	s.roomCond = sync.NewCond(&s.index.mu)
	s.durCond = sync.NewCond(&s.durMu)
	init, recover := s.initWrite, s.recoverLog // upgrade.go, commit.go
	if cfg.ReadOnly {
		init, recover = s.initReadOnly, s.loadLogReadOnly // openmode.go
	} else if cfg.Etcd != nil {
		recover = s.recoverEtcd
	}
	if err := init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open %s: %w", cfg.Path, err)
	}
	if err := recover(); err != nil {
		db.Close()
		return nil, err
	}
	if !cfg.NoIndexRebuild {
		if err := s.rebuildIndex(); err != nil {
			if s.wal != nil {
				s.wal.Close()
			}
			db.Close()
			return nil, err
		}
	}
	if cfg.ReadOnly || cfg.NoCommitLoop {
		// Tools: writes run in the caller's goroutine (solo), no background
		// commits; Close folds what they wrote.
		close(s.writerDone)
		close(s.syncDone)
		close(s.foldDone)
		return s, nil
	}
	go s.commitLoop()
	go s.syncLoop()
	go s.foldLoop()
	return s, nil
}

// Path is the db file.
func (s *Store) Path() string { return s.cfg.Path }

// LeaseTTL is the effective (clamped) lease TTL.
func (s *Store) LeaseTTL() time.Duration { return s.cfg.LeaseTTL }

// Close waits for in-flight writes, stops the commit loop, folds every
// acknowledged write into bbolt (one synced commit, with the exact id
// counters), removes the log and closes the file: after a clean Close the db
// file alone is the whole state.
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
	<-s.writerDone // the writer closes syncq after its last batch
	<-s.syncDone
	close(s.foldStop)
	<-s.foldDone
	if s.cfg.ReadOnly {
		return s.db.Close()
	}
	var errs []error
	if s.fatal() == nil {
		s.crashPoint("close-fold")
		s.saveSeqs()
		if err := s.fold(); err != nil {
			errs = append(errs, fmt.Errorf("fold the log into %s: %w", s.cfg.Path, err))
		}
	}
	if len(errs) == 0 && s.fatal() == nil {
		err := s.wal.RemoveAll()
		if err == nil && s.cfg.Etcd == nil {
			err = os.Remove(s.cfg.LogDir)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove the folded log %s: %w", s.cfg.LogDir, err))
		}
	} else {
		// Keep the log: the next Open replays what bbolt lacks.
		s.wal.Close()
	}
	if err := s.db.Close(); err != nil {
		errs = append(errs, err)
	}
	if s.cfg.Etcd != nil {
		_ = os.Remove(s.cfg.Path) // only a cache of etcd: never reopened
	}
	return errors.Join(errs...)
}

// Done is closed when Close begins stopping the store; long polls end on it.
func (s *Store) Done() <-chan struct{} { return s.stop }

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
	// bbolt's check compares a read snapshot with the live freelist: a
	// commit running meanwhile would show up as false damage.
	s.foldMu.Lock()
	defer s.foldMu.Unlock()
	var errs []error
	_ = s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	})
	return errs
}

func (s *Store) crashPoint(name string) {
	if s.cfg.CrashPoint != nil {
		s.cfg.CrashPoint(name)
	}
}
