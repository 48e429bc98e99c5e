package store

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"go.etcd.io/bbolt"

	"populi-db/internal/clock"
	"populi-db/store/wal"
	"populi-db/wire"
)

// The commit path:
//
//   - The single writer takes every write waiting, runs the operations
//     into a fresh layer (kv.go) and encodes the layer as one log record.
//     By default (inline) the writer is whichever caller of update finds
//     no batch in progress (lead: LevelDB's writer queue): it syncs the
//     record itself (finishBatch), and the writes that arrive meanwhile
//     form the next batch, led by the first of them. A lone write so runs
//     in its own goroutine from decode to answer. With
//     Config.PipelineCommits the writer is a goroutine (commitLoop), and a
//     batch with writes waiting behind it goes to syncLoop instead while
//     the writer builds the next batch during that record's fsync (its
//     operations see the pending layers).
//   - finishBatch (on the writer, or on syncLoop for a pipelined batch)
//     appends the record to the log (one fdatasync), then, under
//     index.mu, moves the layer into s.live — from then on every reader
//     sees it — and only then answers the batch's callers. So a 2xx is
//     durable, and no reply (a read, a refusal, a claim) can depend on a
//     write that is not: readers never see pending layers, and a batch's
//     answers are sent after its own fsync, which follows every earlier
//     batch's.
//   - foldLoop commits s.live into bbolt every CommitInterval (or sooner
//     past CommitLimit writes) as one fully synced bbolt transaction that
//     also records the last log sequence it holds (meta applied_log_seq),
//     then lets the log recycle the segments that commit covers.
//
// bbolt commits stay fully synced (never NoSync): the file the log replays
// onto after a power loss is always bbolt's last synced commit.
//
// Failures. A batch whose log write or fdatasync fails is answered with an
// error, and so is every batch built on top of it (epoch). After a failed
// fdatasync the log's state on disk is unknown (PostgreSQL's fsyncgate), so
// the store refuses writes until restarted; reads keep working from the
// acknowledged state. A full disk is not fatal: the batch is refused with a
// "disk full" 503 and the next batch tries again.

// ErrStorageFailed answers writes after a failed log write/fdatasync or a
// failed background commit.
var ErrStorageFailed = &wire.Error{Code: wire.EUNAVAILABLE, Message: "populi: storage failed (write or fsync error); writes are refused until populi-db is restarted — see the server log"}

// ErrDiskFull answers writes while the log cannot get disk space.
var ErrDiskFull = &wire.Error{Code: wire.EUNAVAILABLE, Message: "populi: disk full; write not stored — free space on the db's filesystem and retry"}

// txn is what an operation sees: the merged view at one instant.
type txn struct {
	s      *Store
	w      *layer   // where writes go; nil in a read transaction
	layers []*layer // older writes not in rtx's snapshot, newest first
	rtx    *bbolt.Tx
	now    time.Time
	nowMs  uint64
	wakes  map[string]struct{} // receivers that may have gained a claimable row
}

type writeReq struct {
	fn   func(*txn) error
	done chan error
}

// batchJob is one batch handed from the writer to the syncer.
type batchJob struct {
	reqs    []*writeReq
	errs    []error
	wakes   map[string]struct{}
	w       *layer
	payload []byte // log record; nil when the batch wrote nothing
	rtx     *bbolt.Tx
	epoch   uint64
	num     uint64 // builtNum of this batch
	// handed is when the writer handed the batch to the syncer (observe.go).
	handed time.Time
}

// update runs fn in the next group commit and returns after the batch's log
// record is fsync'd. fn must return a *wire.Error only before it writes
// anything: refusals are answers, not rollbacks, so the batch still commits.
func (s *Store) update(fn func(*txn) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	defer s.inflight.Done()
	if s.cfg.ReadOnly {
		return fmt.Errorf("store opened read-only: %w", errReadOnly)
	}
	if s.cfg.NoCommitLoop {
		return s.solo(fn)
	}
	r := &writeReq{fn: fn, done: make(chan error, 1)}
	if s.cfg.PipelineCommits {
		s.writes <- r
		return <-r.done
	}
	return s.lead(r)
}

// errLead, sent on a waiting write's done channel, makes its caller the
// next leader (writeQueue).
var errLead = errors.New("store: lead the next batch")

// writeQueue holds the writes waiting for the next batch when the store
// commits inline (the default): the caller that finds no leader becomes
// the single writer for one batch — everything waiting, its own write
// first — then hands the lead to the first write that queued meanwhile
// (LevelDB's writer queue). A lone write thus runs, syncs and answers in
// its own goroutine with no hand-off at all; under load each batch costs
// one wake-up of the next leader.
type writeQueue struct {
	mu      sync.Mutex
	waiting []*writeReq
	leading bool
}

// lead queues r and waits for its answer, leading a batch when it is r's
// turn.
func (s *Store) lead(r *writeReq) error {
	q := &s.wq
	q.mu.Lock()
	q.waiting = append(q.waiting, r)
	if q.leading {
		q.mu.Unlock()
		if err := <-r.done; err != errLead {
			return err
		}
		q.mu.Lock()
	} else {
		// Let goroutines that are already runnable (requests read and
		// decoded, about to write) queue first: they join this batch and
		// share its fsync. Measured in the bench's deep-backlog consume
		// shape (4 clients): median batch 1 → 2 writes, claim+ack +11%.
		q.leading = true
		q.mu.Unlock()
		runtime.Gosched()
		q.mu.Lock()
	}
	q.leading = true
	n := min(len(q.waiting), maxBatch)
	batch := make([]*writeReq, n)
	copy(batch, q.waiting)
	q.waiting = append(q.waiting[:0], q.waiting[n:]...)
	q.mu.Unlock()

	s.writeBatch(batch)
	// If the batch failed, re-derive the writer's state before handing on
	// the lead, so reads waiting for a clean index go on.
	s.catchUpEpoch()

	q.mu.Lock()
	if len(q.waiting) > 0 {
		q.waiting[0].done <- errLead
	} else {
		q.leading = false
	}
	q.mu.Unlock()
	return <-r.done // answered by its batch
}

// catchUpEpoch runs on the writer: after a failed batch, it lets every
// batch built on it fail too, then re-derives what the writer holds from
// the acknowledged state.
func (s *Store) catchUpEpoch() {
	if e := s.epoch.Load(); e != s.writerEpoch {
		s.batchesInFlight.Wait()
		s.resetAfterFailure()
		s.writerEpoch = e
	}
}

// writeBatch is the single writer's step: one batch built, synced and
// answered (inline), or handed to syncLoop (pipelined).
func (s *Store) writeBatch(batch []*writeReq) {
	s.catchUpEpoch()
	if err := s.fatal(); err != nil {
		for _, r := range batch {
			r.done <- ErrStorageFailed
		}
		return
	}
	s.waitForRoom()
	s.runBatch(batch, s.writerEpoch)
}

// snapshotLayers returns the layers rtx lacks. The caller holds index.mu
// (either way) and began rtx before taking it: bbolt's transaction first
// (lock order: a bbolt remap waits for readers, so nobody may wait for
// bbolt while holding index.mu); if a background commit finished between
// Begin and the caller taking index.mu, the layer it committed may already
// be gone from the list while rtx predates it: ok is false, try again.
func (s *Store) snapshotLayers(rtx *bbolt.Tx, withPending bool) (layers []*layer, ok bool) {
	if rtx.ID() < s.foldTxid {
		return nil, false
	}
	if withPending {
		for i := len(s.pending) - 1; i >= 0; i-- {
			layers = append(layers, s.pending[i])
		}
	}
	if s.live.n > 0 {
		layers = append(layers, s.live)
	}
	if s.frozen != nil {
		layers = append(layers, s.frozen)
	}
	return layers, true
}

// view runs a read-only transaction at one instant over acknowledged state.
//
// Row contents come from durable layers only (etcd's read buffer). The
// in-memory mailbox index and counters, though, are changed by operations
// as they run, so a read may reflect a batch whose log fsync is still in
// flight; such a read answers only after that batch is durable (Redis's
// rule: a reply waits for the fsync of what it reflects). If that batch
// fails instead, the read fails with the batch's error; later reads wait
// until the index has been re-derived without it.
func (s *Store) view(fn func(*txn) error) error {
	s.waitIndexClean()
	want, epoch, err := s.readOnce(fn)
	if want == 0 {
		return err
	}
	s.durMu.Lock()
	for s.durableNum < want {
		s.durCond.Wait()
	}
	s.durMu.Unlock()
	if s.epoch.Load() != epoch {
		s.failMu.Lock()
		defer s.failMu.Unlock()
		return s.lastBatchErr
	}
	return err
}

// viewNoWait is view for the writer itself, with no batch in flight.
func (s *Store) viewNoWait(fn func(*txn) error) error {
	_, _, err := s.readOnce(fn)
	return err
}

// readOnce runs fn over a snapshot; want is the newest batch in flight
// whose effects on the index fn may have seen (0: none).
func (s *Store) readOnce(fn func(*txn) error) (want, epoch uint64, err error) {
	for {
		rtx, berr := s.db.Begin(false)
		if berr != nil {
			return 0, 0, fmt.Errorf("begin read transaction: %w", berr)
		}
		s.index.mu.RLock()
		layers, ok := s.snapshotLayers(rtx, false)
		if !ok {
			s.index.mu.RUnlock()
			_ = rtx.Rollback()
			continue
		}
		if len(s.pending) > 0 {
			want = s.builtNum
		}
		epoch = s.epoch.Load()
		now := s.clock.Now()
		err = fn(&txn{s: s, layers: layers, rtx: rtx, now: now, nowMs: clock.UnixMs(now)})
		s.index.mu.RUnlock()
		_ = rtx.Rollback()
		return want, epoch, err
	}
}

// waitIndexClean waits while the index may hold effects of a failed batch
// (the writer re-derives it promptly: syncLoop nudges it).
func (s *Store) waitIndexClean() {
	s.durMu.Lock()
	for s.indexEpoch != s.epoch.Load() {
		s.durCond.Wait()
	}
	s.durMu.Unlock()
}

// commitLoop is the single writer with Config.PipelineCommits (see the top
// of this file); inline stores use lead instead.
func (s *Store) commitLoop() {
	defer close(s.writerDone)
	defer close(s.syncq)
	for {
		var first *writeReq
		select {
		case first = <-s.writes:
		case <-s.stop:
			return
		}
		batch := make([]*writeReq, 1, 16) // the syncer answers it after this loop moves on
		batch[0] = first
	fill:
		for len(batch) < maxBatch {
			select {
			case r := <-s.writes:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.writeBatch(batch)
	}
}

// runBatch builds one batch and hands it to the syncer. An operation that
// fails unexpectedly may have left partial writes: the batch's layer is
// discarded and each operation runs again as a batch of its own.
func (s *Store) runBatch(reqs []*writeReq, epoch uint64) {
	job, bad := s.buildBatch(reqs, epoch)
	if job != nil {
		s.batchesInFlight.Add(1)
		job.handed = time.Now()
		if s.queued.Add(1) == 1 && !(s.cfg.PipelineCommits && len(s.writes) > 0) {
			// Nothing is ahead of this batch: sync it here and save two
			// goroutine hand-offs. The writer is blocked meanwhile, and
			// the writes that arrive form the next batch (Redis's loop).
			// With PipelineCommits, a batch with writes waiting behind it
			// goes to the syncer instead, and the writer builds the next
			// batch during its fsync (depth 2: syncq holds one more).
			s.finishBatch(job)
			return
		}
		s.pipelined.Add(1)
		s.syncq <- job
		return
	}
	s.batchesInFlight.Wait()
	s.resetAfterFailure()
	if len(reqs) == 1 {
		reqs[0].done <- bad
		return
	}
	for _, r := range reqs {
		s.runBatch([]*writeReq{r}, epoch)
	}
}

func (s *Store) buildBatch(reqs []*writeReq, epoch uint64) (*batchJob, error) {
	w := newLayer()
	job := &batchJob{reqs: reqs, errs: make([]error, len(reqs)), wakes: map[string]struct{}{}, w: w, epoch: epoch}
	var layers []*layer
	for {
		rtx, err := s.db.Begin(false)
		if err != nil {
			return nil, fmt.Errorf("begin read transaction: %w", err) // runBatch answers
		}
		s.index.mu.Lock()
		var ok bool
		layers, ok = s.snapshotLayers(rtx, true)
		if ok {
			s.pending = append(s.pending, w)
			s.builtNum++
			job.num = s.builtNum
			s.index.mu.Unlock()
			job.rtx = rtx
			break
		}
		s.index.mu.Unlock()
		_ = rtx.Rollback()
	}
	for i, r := range reqs {
		err := s.runOp(&txn{s: s, w: w, layers: layers, rtx: job.rtx, wakes: job.wakes}, r.fn)
		if err != nil && !isDomain(err) {
			s.index.mu.Lock()
			s.pending = s.pending[:len(s.pending)-1]
			s.index.mu.Unlock()
			_ = job.rtx.Rollback()
			s.log.Error("store operation failed; its batch is discarded and rerun one by one", "err", err)
			return nil, err
		}
		job.errs[i] = err
	}
	if w.n > 0 {
		s.lastSeq++
		w.seq = s.lastSeq
		job.payload = w.encode(make([]byte, 0, 64+w.size+8*w.n))
	}
	return job, nil
}

func (s *Store) runOp(t *txn, fn func(*txn) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("store operation panicked", "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("store operation panicked: %v", p)
		}
	}()
	s.index.mu.Lock()
	defer s.index.mu.Unlock()
	t.now = s.clock.Now()
	t.nowMs = clock.UnixMs(t.now)
	return fn(t)
}

// syncLoop makes each batch durable in order and answers it.
func (s *Store) syncLoop() {
	defer close(s.syncDone)
	for job := range s.syncq {
		s.finishBatch(job)
	}
}

// finishBatch makes one batch durable and answers it (syncLoop, or the
// writer itself when nothing is ahead of the batch).
func (s *Store) finishBatch(job *batchJob) {
	err := s.syncBatch(job)
	s.index.mu.Lock()
	s.pending = s.pending[1:]
	if err == nil && job.w.n > 0 {
		s.live.absorb(job.w)
	}
	liveN := s.live.n
	s.index.mu.Unlock()
	_ = job.rtx.Rollback()
	if err == nil {
		s.observeCommit(len(job.reqs), job.handed) // before the answers: a caller then sees its commit counted
		s.wake(job.wakes)
	}
	for i, r := range job.reqs {
		if err != nil {
			r.done <- err
		} else {
			r.done <- job.errs[i]
		}
	}
	s.batchesInFlight.Done()
	s.durMu.Lock()
	s.durableNum = job.num
	s.durCond.Broadcast()
	s.durMu.Unlock()
	if err != nil {
		s.nudgeWriter()
	}
	if liveN >= s.cfg.CommitLimit {
		s.kickFold()
	}
	s.queued.Add(-1)
}

// syncBatch appends the batch's record (one fdatasync) unless an earlier
// batch it was built on failed.
func (s *Store) syncBatch(job *batchJob) error {
	if job.epoch != s.epoch.Load() {
		s.failMu.Lock()
		defer s.failMu.Unlock()
		return s.lastBatchErr
	}
	if job.payload == nil {
		return nil
	}
	start := time.Now()
	err := s.wal.Append(job.w.seq, job.payload)
	s.observeSync("wal", start)
	if err == nil {
		return nil
	}
	answer := ErrStorageFailed
	if errors.Is(err, wal.ErrNoSpace) {
		answer = ErrDiskFull
		s.log.Error("write-ahead log: disk full; batch refused, later writes will try again", "dir", s.cfg.LogDir, "err", err)
	} else {
		s.setFatal(fmt.Errorf("%s: %w", s.journalName(), err))
	}
	s.failMu.Lock()
	s.lastBatchErr = answer
	s.failMu.Unlock()
	s.epoch.Add(1)
	return answer
}

// nudgeWriter queues a no-op write so the writer re-derives its state after
// a failed batch even if no other write comes.
func (s *Store) nudgeWriter() {
	if !s.cfg.PipelineCommits {
		return // the leader re-derives it before handing on the lead
	}
	go func() {
		select {
		case s.writes <- &writeReq{fn: func(*txn) error { return nil }, done: make(chan error, 1)}:
		case <-s.stop:
		}
	}()
}

// resetAfterFailure runs on the writer with no batch in flight: the index
// and the id reservations may hold effects of batches that failed, so both
// are re-derived from the acknowledged state.
func (s *Store) resetAfterFailure() {
	s.msgSeq, s.tokenSeq = seqBlock{}, seqBlock{}
	s.lastSeq = s.wal.LastSeq()
	if err := s.rebuildIndexFrom(true); err != nil {
		s.log.Error("rebuilding mailbox indexes failed; mailbox answers may be wrong until restart", "err", err)
	}
	s.durMu.Lock()
	s.indexEpoch = s.epoch.Load()
	s.durCond.Broadcast()
	s.durMu.Unlock()
}

func (s *Store) setFatal(err error) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failed == nil {
		s.failed = err
		s.log.Error("storage failed: refusing writes until restart (reads keep working)", "err", err)
	}
}

// fatal is the error that stopped writes, or nil.
func (s *Store) fatal() error {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failed
}

// waitForRoom holds the writer while the acknowledged writes bbolt has not
// taken yet exceed liveLimit (the background commit is behind).
func (s *Store) waitForRoom() {
	s.index.mu.Lock()
	for s.live.size > liveLimit && s.fatal() == nil {
		s.kickFold()
		s.roomCond.Wait()
	}
	s.index.mu.Unlock()
}

func (s *Store) kickFold() {
	select {
	case s.foldKick <- struct{}{}:
	default:
	}
}

// foldLoop commits acknowledged writes into bbolt in the background.
func (s *Store) foldLoop() {
	defer close(s.foldDone)
	tick := time.NewTicker(s.cfg.CommitInterval)
	defer tick.Stop()
	for {
		select {
		case <-s.foldStop:
			return
		case <-tick.C:
		case <-s.foldKick:
		}
		if s.fatal() != nil {
			continue
		}
		if err := s.fold(); err != nil {
			s.setFatal(fmt.Errorf("background commit to %s: %w", s.cfg.Path, err))
		}
	}
}

// fold commits s.live into bbolt (one synced transaction recording the last
// log sequence it holds), then releases the log segments it covers.
func (s *Store) fold() error {
	s.foldMu.Lock()
	defer s.foldMu.Unlock()
	s.index.mu.Lock()
	if s.live.n == 0 || s.frozen != nil {
		s.index.mu.Unlock()
		return nil
	}
	f := s.live
	s.frozen, s.live = f, newLayer()
	s.roomCond.Broadcast()
	s.index.mu.Unlock()

	var txid int
	if fj, ok := s.wal.(folder); ok {
		if err := fj.Fold(f); err != nil {
			return err // f stays frozen (visible); the store goes fatal
		}
	}
	s.crashPoint("fold-commit")
	start := time.Now()
	err := s.db.Update(func(tx *bbolt.Tx) error {
		if err := f.applyTo(tx); err != nil {
			return err
		}
		if f.seq > 0 {
			if err := tx.Bucket(bMeta).Put(mAppliedLogSeq, u64(f.seq)); err != nil {
				return err
			}
		}
		txid = tx.ID()
		return nil
	})
	s.observeSync("db", start)
	if err != nil {
		// bbolt rolled back; f stays visible as the frozen layer, and the
		// log still holds it for the next start.
		return err
	}
	s.index.mu.Lock()
	s.frozen = nil
	s.foldTxid = txid
	s.roomCond.Broadcast()
	s.index.mu.Unlock()
	if f.seq > 0 {
		s.crashPoint("log-release")
		err = s.wal.Release(f.seq) // safe beside a running Append
		if err != nil {
			s.log.Warn("releasing the journal records the background commit covers failed (they are replayed at the next start)", "journal", s.journalName(), "err", err)
		}
	}
	return nil
}

// solo runs one operation in the caller's goroutine as its own synced bbolt
// transaction (tools opened with NoCommitLoop: one import is one
// transaction, all or nothing, tried once).
func (s *Store) solo(fn func(*txn) error) error {
	s.soloMu.Lock()
	defer s.soloMu.Unlock()
	rtx, err := s.db.Begin(false)
	if err != nil {
		return fmt.Errorf("begin read transaction: %w", err)
	}
	w := newLayer()
	s.index.mu.RLock()
	layers, _ := s.snapshotLayers(rtx, false) // no background commits here
	s.index.mu.RUnlock()
	t := &txn{s: s, w: w, layers: layers, rtx: rtx, wakes: map[string]struct{}{}}
	err = s.runOp(t, fn)
	_ = rtx.Rollback()
	if err != nil {
		if !isDomain(err) {
			s.resetAfterFailure()
		}
		return err
	}
	if w.n == 0 {
		return nil
	}
	if err := s.db.Update(w.applyTo); err != nil {
		s.resetAfterFailure()
		return fmt.Errorf("commit: %w", err)
	}
	s.wake(t.wakes)
	return nil
}

// appliedLogSeq is the last log record bbolt's last commit holds.
func (s *Store) appliedLogSeq() (applied uint64, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		applied = getU64(tx.Bucket(bMeta).Get(mAppliedLogSeq))
		return nil
	})
	return applied, err
}

// loadLogReadOnly replays the log's records after bbolt's last applied one
// into memory (s.live), modifying nothing: read-only tools then see every
// acknowledged write, including those a crash left only in the log.
func (s *Store) loadLogReadOnly() error {
	applied, err := s.appliedLogSeq()
	if err != nil {
		return err
	}
	_, err = wal.ReadOnlyReplay(s.cfg.LogDir, applied, func(seq uint64, payload []byte) error {
		if err := s.live.decodeInto(payload); err != nil {
			return fmt.Errorf("log record %d: %w", seq, err)
		}
		s.live.seq = seq
		return nil
	})
	if errors.Is(err, wal.ErrCorrupt) {
		// Nothing was loaded; `check` reports it (checkLog), and a
		// read-write open refuses it.
		s.log.Warn("write-ahead log is damaged; reading the db file without it", "dir", s.cfg.LogDir, "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("read write-ahead log %s: %w", s.cfg.LogDir, err)
	}
	return nil
}

// PendingLogWrites is how many acknowledged writes a read-only open found
// only in the write-ahead log (not yet folded into the db file).
func (s *Store) PendingLogWrites() int {
	s.index.mu.RLock()
	defer s.index.mu.RUnlock()
	return s.live.n
}

// recoverLog opens the log and replays into bbolt every record after the
// last one bbolt holds, in one synced commit.
func (s *Store) recoverLog() error {
	applied, err := s.appliedLogSeq()
	if err != nil {
		return err
	}
	rec := newLayer()
	records := 0
	w, err := wal.Open(wal.Options{
		Dir: s.cfg.LogDir, SegmentSize: s.cfg.LogSegmentSize, FS: s.cfg.LogFS,
		Logger: s.log, AllowCorrupt: s.cfg.AllowCorruptLog,
	}, applied, func(seq uint64, payload []byte) error {
		want := applied + 1
		if rec.seq > 0 {
			want = rec.seq + 1
		}
		if seq != want {
			return fmt.Errorf("log record %d does not continue %s (expected %d): is this log from another db file? "+
				"move %s away to start without it", seq, s.cfg.Path, want, s.cfg.LogDir)
		}
		if err := rec.decodeInto(payload); err != nil {
			return fmt.Errorf("log record %d: %w", seq, err)
		}
		rec.seq = seq
		records++
		return nil
	})
	if err != nil {
		return fmt.Errorf("open write-ahead log for %s: %w", s.cfg.Path, err)
	}
	s.wal = w
	s.lastSeq = w.LastSeq()
	if records == 0 {
		return nil
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if err := rec.applyTo(tx); err != nil {
			return err
		}
		return tx.Bucket(bMeta).Put(mAppliedLogSeq, u64(rec.seq))
	})
	if err != nil {
		w.Close()
		return fmt.Errorf("replay write-ahead log into %s: %w", s.cfg.Path, err)
	}
	s.log.Info("replayed the write-ahead log", "records", records, "writes", rec.n, "through_seq", rec.seq, "dir", s.cfg.LogDir)
	if err := w.Release(rec.seq); err != nil {
		s.log.Warn("write-ahead log: recycling replayed segments failed", "err", err)
	}
	return nil
}

func isDomain(err error) bool {
	var e *wire.Error
	return errors.As(err, &e)
}
