// Package wal is populi-db's write-ahead log: checksummed records appended to
// preallocated segment files, each acknowledged after one fdatasync, replayed
// on Open after the store's last applied sequence number.
//
// # On-disk format
//
// A log is a directory of segment files named %016x.wal by segment number,
// plus spare files (spare-%016x, preallocated or recycled, not part of the
// log) and, while one is being prepared, spare-%016x.tmp. Every segment file
// is preallocated: created by writing zeros to its full size and fsyncing it
// (and the directory), so appends are overwrites of allocated, synced blocks
// and fdatasync has no metadata to write.
//
// A segment starts with a 32-byte header (little endian):
//
//	0  [8]byte "POPULIWL"
//	8  uint32  format version (1)
//	12 uint32  CRC-32C (Castagnoli) of bytes 0..12 and 16..32
//	16 uint64  segment number (equals the file name's)
//	24 uint64  sequence number of the first record in the segment
//
// followed by records, each at an 8-byte aligned offset:
//
//	0  uint32  CRC-32C of bytes 4..16 and the payload
//	4  uint32  payload length
//	8  uint64  sequence number
//	16 payload, zero padded to a multiple of 8
//
// A record never spans segments. Each Append writes its record followed by 16
// zero bytes (when they fit), so the log ends cleanly at a zero header.
//
// A record is valid only if its length fits, its CRC matches and its seq is
// exactly the next one of the chain: the first record of a segment has the
// header's first seq, each next one the previous plus one, and the next
// segment's header continues the chain. Stale records left in a recycled
// segment carry older seqs, so they read as the end of the log, never as data.
//
// # Recovery
//
// Open walks the chain from the newest segment whose first seq is <= after+1
// (older segments are already in the store and are recycled). Where the chain
// stops on something other than a clean end, it looks ahead (every 8-byte
// aligned offset of the rest of that segment and of later segments) for a
// valid record with a seq beyond the chain, or a later segment header that
// starts beyond it. Found: a record that had been acknowledged is damaged
// (the store appends one record per fdatasync, so a later record proves the
// earlier fdatasync returned), and Open refuses with a CorruptError naming file
// and offset, unless Options.AllowCorrupt (then it logs at error level, zeroes
// the rest of that segment and removes later ones, so the records beyond can
// never rejoin the chain). Not found: a torn tail, whose fdatasync never
// returned; Open logs it and appends over it. A log whose first segment starts
// after after+1 misses records the store needs, and is refused the same way.
//
// # Use
//
// Open(opts, lastAppliedSeq, replay) at startup; Append(seq, record) once
// per group-commit batch, acknowledging the batch when it returns nil;
// Release(seq) after a bbolt commit holding everything up to seq is durable;
// RemoveAll after a clean stop folded the log into bbolt; Verify for an
// offline check. Every segment file is SegmentSize bytes; with Release keeping
// up, the directory holds the live segments and at most two spares.
//
// # Faults
//
// A failed write or fdatasync of a segment breaks the Log for good (ErrBroken):
// after a failed fdatasync the data's state on disk is unknown, and retrying it
// would report success for pages the kernel may have dropped (PostgreSQL's
// fsyncgate). Running out of space while preparing a new segment is not fatal
// (ErrNoSpace): nothing in the log changed, and the next Append tries again.
package wal

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
)

// Defaults and limits.
const (
	SegmentSizeDefault = 64 << 20
	SegmentSizeMin     = 1 << 10
	// maxSpares is how many spare segment files are kept for reuse.
	maxSpares = 2
	// zeroChunk is the write size used to preallocate a segment.
	zeroChunk = 1 << 20
)

var zeroHeader [recordHeaderSize]byte

// Sentinel errors (use errors.Is).
var (
	// ErrCorrupt: acknowledged records are damaged (see CorruptError).
	ErrCorrupt = errors.New("wal: corrupt")
	// ErrBroken: a segment write or fdatasync failed; the log refuses every
	// later Append until it is reopened.
	ErrBroken = errors.New("wal: broken by a failed write or fdatasync")
	// ErrNoSpace: the disk is full; the log is unchanged and still usable.
	ErrNoSpace = errors.New("wal: no space left on device")
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("wal: closed")
)

// Options configures Open.
type Options struct {
	Dir          string       // created 0700 if missing
	SegmentSize  int64        // bytes per segment file; default SegmentSizeDefault
	FS           FS           // nil = the OS
	Logger       *slog.Logger // nil = slog.Default()
	AllowCorrupt bool         // operator override: cut the log at a mid-log corruption instead of refusing
}

// segment is a live segment of the log.
type segment struct {
	num   uint64
	path  string
	first uint64 // seq of its first record
	size  int64
}

// Log is an open write-ahead log. Append, Release, LastSeq and SyncedOffset
// are safe for concurrent use.
type Log struct {
	fs      FS
	dir     string
	segSize int64
	log     *slog.Logger

	// mu guards the writer: the current segment and where the next record goes.
	mu     sync.Mutex
	cur    File // the segment being written (last of segs); nil until the first Append
	curSeg *segment
	off    int64 // next record's offset in cur
	synced int64 // end of the last record whose Append returned nil
	// syncedAt mirrors (curSeg.path, synced) for SyncedOffset, which must
	// answer while an Append holds mu in its fdatasync.
	syncedAt atomic.Pointer[syncedPos]
	broken   error // set by a failed write or fdatasync; wraps ErrBroken
	closed   bool
	shut     atomic.Bool // closed, for Release (which does not take mu)
	buf      []byte
	last     atomic.Uint64

	// segMu guards the lists of live segments and spares. Lock order: mu, prepMu, segMu.
	segMu   sync.Mutex
	segs    []*segment // live segments, oldest first
	spares  []string   // paths of ready spare files
	spareNo uint64     // next spare file number
	nextNum uint64     // next segment number

	// prepMu serializes preparing spares (background and on demand).
	prepMu  sync.Mutex
	kickCh  chan struct{}
	pending sync.WaitGroup // kicks not yet handled (for tests)
	bgDone  sync.WaitGroup
}

// Open scans opts.Dir, calls replay(seq, payload) in order for every valid
// record with seq > after (payload is only valid during the call), cuts a torn
// tail (logging file and offset) and refuses with a *CorruptError (wrapping
// ErrCorrupt) when a corrupt record is followed by valid data, unless
// opts.AllowCorrupt. The returned Log appends after the last valid record:
// LastSeq is the last record's seq, or after if the log holds nothing newer.
func Open(opts Options, after uint64, replay func(seq uint64, payload []byte) error) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("wal: no directory")
	}
	if opts.SegmentSize == 0 {
		opts.SegmentSize = SegmentSizeDefault
	}
	if opts.SegmentSize < SegmentSizeMin {
		return nil, fmt.Errorf("wal: segment size %d is below the minimum %d", opts.SegmentSize, SegmentSizeMin)
	}
	if opts.FS == nil {
		opts.FS = OS()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	l := &Log{
		fs:      opts.FS,
		dir:     opts.Dir,
		segSize: opts.SegmentSize &^ (recordAlign - 1),
		log:     opts.Logger,
		kickCh:  make(chan struct{}, 1),
	}
	if err := l.fs.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: create dir: %w", err)
	}
	st, err := scan(l.fs, l.dir, after)
	if err != nil {
		return nil, err
	}
	cut := false
	if st.bad != nil {
		if st.evidence != nil {
			cerr := &CorruptError{Position: *st.bad, Evidence: *st.evidence}
			if !opts.AllowCorrupt {
				return nil, cerr
			}
			l.log.Error("wal: cutting the log at mid-log corruption (override set): acknowledged writes after it are lost",
				"file", st.bad.File, "offset", st.bad.Offset, "reason", st.bad.Reason,
				"evidence_file", st.evidence.File, "evidence_offset", st.evidence.Offset)
			cut = true
		} else {
			l.log.Warn("wal: cutting torn tail (its fdatasync never returned)",
				"file", st.bad.File, "offset", st.bad.Offset, "reason", st.bad.Reason)
		}
	}
	if replay != nil && st.replay > 0 {
		if err := st.walk(l.fs, after, replay); err != nil {
			return nil, fmt.Errorf("wal: replay: %w", err)
		}
	}
	if err := l.adopt(st, after, cut); err != nil {
		if l.cur != nil {
			l.cur.Close()
		}
		return nil, err
	}
	l.bgDone.Add(1)
	go l.background()
	l.kick()
	return l, nil
}

// adopt sets the Log up on the scanned directory: recycles released segments,
// removes what lies after the cut and unfinished spares, and opens the
// segment to append to.
func (l *Log) adopt(st *scanState, after uint64, zeroTail bool) error {
	l.spares = st.spares
	l.spareNo = st.maxSpare + 1
	l.nextNum = 1
	for _, s := range st.segs {
		l.nextNum = max(l.nextNum, s.num+1)
	}
	changed := false
	for _, p := range st.tmps {
		if err := l.fs.Remove(p); err != nil {
			return fmt.Errorf("wal: remove unfinished spare: %w", err)
		}
		changed = true
	}
	// Live segments: from the chain's start through the one holding its end.
	last := st.next - 1
	fresh := st.endSeg < 0 || last < after // nothing beyond what the store holds: start afresh at after+1
	if fresh {
		last = after
	}
	for i, s := range st.segs {
		// Released (wholly in the store, no seq the log has yet to reach):
		// segments before the chain's start, and the chain's own when it ends
		// at or before after, except one with something invalid after its end.
		released := s.hdrErr == nil && (i < st.start ||
			fresh && i >= st.start && (i < st.endSeg || i == st.endSeg && st.bad == nil))
		var err error
		switch {
		case released:
			err = l.recycle(s.path, s.size)
		case !fresh && i >= st.start && i <= st.endSeg:
			l.segs = append(l.segs, &segment{num: s.num, path: s.path, first: s.hdr.first, size: s.size})
			continue
		default:
			// After the cut, or unreadable: never recycled, since it may hold
			// valid records with seqs the log has yet to reach.
			err = l.fs.Remove(s.path)
		}
		if err != nil {
			return err
		}
		changed = true
	}
	for len(l.spares) > maxSpares {
		if err := l.fs.Remove(l.spares[len(l.spares)-1]); err != nil {
			return fmt.Errorf("wal: remove spare: %w", err)
		}
		l.spares = l.spares[:len(l.spares)-1]
		changed = true
	}
	l.last.Store(last)
	if len(l.segs) > 0 {
		cs := l.segs[len(l.segs)-1]
		f, err := l.fs.OpenFile(cs.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("wal: open segment: %w", err)
		}
		l.cur, l.curSeg, l.off, l.synced = f, cs, st.endOff, st.endOff
		l.syncedAt.Store(&syncedPos{cs.path, l.synced})
		if zeroTail {
			// Overwrite everything after the cut: the valid records beyond the
			// corruption must never rejoin the chain.
			if err := zeroFill(f, st.endOff, cs.size); err != nil {
				return fmt.Errorf("wal: zero the log after the cut: %w", err)
			}
			if err := f.Sync(true); err != nil {
				return fmt.Errorf("wal: zero the log after the cut: %w", err)
			}
		}
	}
	if changed {
		// Removed segments must stay removed before anything is appended.
		if err := l.fs.SyncDir(l.dir); err != nil {
			return fmt.Errorf("wal: sync dir: %w", err)
		}
	}
	return nil
}

// LastSeq is the seq of the last appended record (or Open's after).
func (l *Log) LastSeq() uint64 { return l.last.Load() }

// maxPayload is the largest payload that fits in an empty segment.
func (l *Log) maxPayload() int {
	return int(min(MaxPayload, l.segSize-segHeaderSize-recordHeaderSize))
}

// Append writes one record holding payload with sequence number seq (which
// must be LastSeq()+1) and returns after one fdatasync of it. Errors wrap
// ErrBroken (a write or fdatasync failed: every later Append fails too),
// ErrNoSpace (disk full: nothing was acknowledged, the next Append retries) or
// say what is wrong with the call.
func (l *Log) Append(seq uint64, payload []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.broken != nil {
		return fmt.Errorf("wal: append seq %d: %w", seq, l.broken)
	}
	if last := l.last.Load(); seq != last+1 {
		return fmt.Errorf("wal: append seq %d: want seq %d", seq, last+1)
	}
	if len(payload) > l.maxPayload() {
		return fmt.Errorf("wal: append seq %d: payload of %d bytes exceeds the limit of %d", seq, len(payload), l.maxPayload())
	}
	size := recordSize(len(payload))
	if l.cur == nil || l.off+size > l.curSeg.size {
		if err := l.roll(seq); err != nil {
			return err
		}
	}
	l.buf = appendRecord(l.buf[:0], seq, payload)
	if l.off+size+recordHeaderSize <= l.curSeg.size {
		l.buf = append(l.buf, zeroHeader[:]...) // the clean-end marker
	}
	if _, err := l.cur.WriteAt(l.buf, l.off); err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			// No fdatasync was attempted and the offset stays: the next Append
			// rewrites this record.
			return fmt.Errorf("wal: append seq %d: %w: %w", seq, ErrNoSpace, err)
		}
		return l.breakWith(seq, err)
	}
	if err := l.cur.Sync(true); err != nil {
		return l.breakWith(seq, err)
	}
	l.off += size
	l.synced = l.off
	l.syncedAt.Store(&syncedPos{l.curSeg.path, l.synced})
	l.last.Store(seq)
	if cap(l.buf) > 1<<20 {
		l.buf = nil // don't pin a huge buffer
	}
	return nil
}

func (l *Log) breakWith(seq uint64, err error) error {
	l.broken = fmt.Errorf("%w: %w", ErrBroken, err)
	l.log.Error("wal: write failed; the log refuses writes until restarted", "seq", seq, "err", err)
	return fmt.Errorf("wal: append seq %d: %w", seq, l.broken)
}

// roll starts a new segment whose first record is seq, from a spare. Called
// with mu held. Failures before the new segment is named leave the log as it
// was; a failed directory sync after it breaks the log.
func (l *Log) roll(seq uint64) error {
	sparePath, f, err := l.takeSpare()
	if err != nil {
		return fmt.Errorf("wal: append seq %d: %w", seq, err)
	}
	num := l.nextNum
	s := &segment{num: num, path: filepath.Join(l.dir, segmentName(num)), first: seq, size: l.segSize}
	// The header, and a zero record header after it: a segment with no records
	// yet ends cleanly even over a recycled file's stale bytes.
	hdr := make([]byte, segHeaderSize+recordHeaderSize)
	encodeSegHeader(hdr, segHeader{num: num, first: seq})
	fail := func(what string, err error) error {
		f.Close()
		if rerr := l.fs.Remove(sparePath); rerr != nil {
			l.log.Warn("wal: remove failed spare", "file", sparePath, "err", rerr)
		}
		return fmt.Errorf("wal: append seq %d: %s new segment: %w", seq, what, prepErr(err))
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return fail("write header of", err)
	}
	if err := f.Sync(true); err != nil {
		return fail("sync", err)
	}
	if err := l.fs.Rename(sparePath, s.path); err != nil {
		return fail("name", err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		// The new name may or may not survive a crash: records in it could
		// vanish. Not retried (fsyncgate).
		f.Close()
		return l.breakWith(seq, fmt.Errorf("sync dir after naming %s: %w", s.path, err))
	}
	if l.cur != nil {
		if err := l.cur.Close(); err != nil {
			l.log.Warn("wal: close finished segment", "file", l.curSeg.path, "err", err)
		}
	}
	l.segMu.Lock()
	l.segs = append(l.segs, s)
	l.segMu.Unlock()
	l.nextNum++
	l.cur, l.curSeg, l.off, l.synced = f, s, segHeaderSize, segHeaderSize
	l.syncedAt.Store(&syncedPos{s.path, l.synced})
	l.kick()
	return nil
}

// takeSpare returns an open spare of the right size, preparing one if none is
// ready.
func (l *Log) takeSpare() (string, File, error) {
	for {
		l.segMu.Lock()
		var p string
		if len(l.spares) > 0 {
			p, l.spares = l.spares[0], l.spares[1:]
		}
		l.segMu.Unlock()
		if p == "" {
			l.prepMu.Lock()
			l.segMu.Lock()
			n := len(l.spares)
			l.segMu.Unlock()
			if n > 0 { // the background prepared one meanwhile
				l.prepMu.Unlock()
				continue
			}
			var err error
			p, err = l.prepareSpare()
			l.prepMu.Unlock()
			if err != nil {
				return "", nil, err
			}
		}
		f, err := l.fs.OpenFile(p, os.O_RDWR, 0)
		if err != nil {
			return "", nil, fmt.Errorf("open spare: %w", err)
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() == l.segSize {
			return p, f, nil
		}
		// Another segment size (the option changed) or unreadable: drop it.
		f.Close()
		if err := l.fs.Remove(p); err != nil {
			return "", nil, fmt.Errorf("remove spare: %w", err)
		}
	}
}

// prepErr marks a full disk as ErrNoSpace.
func prepErr(err error) error {
	if errors.Is(err, syscall.ENOSPC) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// prepareSpare creates a preallocated spare: zeros written to the full segment
// size and fsynced, renamed from .tmp into place, directory synced. A partial
// file is removed. Called with prepMu held.
func (l *Log) prepareSpare() (string, error) {
	l.segMu.Lock()
	n := l.spareNo
	l.spareNo++
	l.segMu.Unlock()
	final := filepath.Join(l.dir, spareName(n))
	tmp := final + tmpSuffix
	f, err := l.fs.Create(tmp)
	if err != nil {
		return "", fmt.Errorf("prepare segment: %w", prepErr(err))
	}
	fail := func(err error) (string, error) {
		f.Close()
		if rerr := l.fs.Remove(tmp); rerr != nil {
			l.log.Warn("wal: remove unfinished spare", "file", tmp, "err", rerr)
		}
		return "", fmt.Errorf("prepare segment: %w", prepErr(err))
	}
	if err := zeroFill(f, 0, l.segSize); err != nil {
		return fail(err)
	}
	if err := f.Sync(false); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := l.fs.Rename(tmp, final); err != nil {
		return fail(err)
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		if rerr := l.fs.Remove(final); rerr != nil {
			l.log.Warn("wal: remove unfinished spare", "file", final, "err", rerr)
		}
		return "", fmt.Errorf("prepare segment: sync dir: %w", prepErr(err))
	}
	return final, nil
}

// zeroFill writes zeros over [from, to) of f.
func zeroFill(f File, from, to int64) error {
	zeros := make([]byte, min(zeroChunk, max(to-from, 0)))
	for off := from; off < to; {
		n := min(int64(len(zeros)), to-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// kick asks the background goroutine to prepare a spare if none is ready.
// Called with mu held (or before Open returns), never after Close.
func (l *Log) kick() {
	l.pending.Add(1)
	select {
	case l.kickCh <- struct{}{}:
	default:
		l.pending.Done()
	}
}

// background keeps one spare ready, so Append normally never waits for a
// segment to be preallocated.
func (l *Log) background() {
	defer l.bgDone.Done()
	for range l.kickCh {
		l.prepMu.Lock()
		l.segMu.Lock()
		need := len(l.spares) == 0
		l.segMu.Unlock()
		if need {
			p, err := l.prepareSpare()
			if err != nil {
				l.log.Warn("wal: preparing the next segment failed; retried when it is needed", "err", err)
			} else {
				l.segMu.Lock()
				l.spares = append(l.spares, p)
				l.segMu.Unlock()
			}
		}
		l.prepMu.Unlock()
		l.pending.Done()
	}
}

// Release says every record with seq <= upTo is in the store: segments wholly
// covered are recycled as spares (at most two kept, the rest deleted). The
// segment being written is never released.
func (l *Log) Release(upTo uint64) error {
	l.segMu.Lock()
	defer l.segMu.Unlock()
	if l.shut.Load() {
		return ErrClosed
	}
	for len(l.segs) > 1 && l.segs[1].first-1 <= upTo {
		s := l.segs[0]
		if err := l.recycle(s.path, s.size); err != nil {
			return err
		}
		l.segs = l.segs[1:]
	}
	return nil
}

// recycle turns a released segment into a spare, or deletes it when enough
// spares are kept. Called with segMu held (or during Open). No directory sync:
// a rename lost in a crash leaves an old segment that Open sees as released.
func (l *Log) recycle(path string, size int64) error {
	if len(l.spares) < maxSpares && size == l.segSize {
		p := filepath.Join(l.dir, spareName(l.spareNo))
		l.spareNo++
		if err := l.fs.Rename(path, p); err != nil {
			return fmt.Errorf("wal: recycle segment: %w", err)
		}
		l.spares = append(l.spares, p)
		return nil
	}
	if err := l.fs.Remove(path); err != nil {
		return fmt.Errorf("wal: remove released segment: %w", err)
	}
	return nil
}

// SyncedOffset is, for tests, the current segment file's path and the offset
// up to which it is known fsynced: the end of the last record whose Append
// returned nil. The path is "" before the first segment exists.
func (l *Log) SyncedOffset() (path string, off int64) {
	if p := l.syncedAt.Load(); p != nil {
		return p.path, p.off
	}
	return "", 0
}

type syncedPos struct {
	path string
	off  int64
}

// Close stops the log and closes its files, leaving them in place.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.shut.Store(true)
	close(l.kickCh)
	l.mu.Unlock()
	l.bgDone.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur == nil {
		return nil
	}
	err := l.cur.Close()
	l.cur = nil
	if err != nil {
		return fmt.Errorf("wal: close: %w", err)
	}
	return nil
}

// RemoveAll closes the log and deletes every segment and spare file, then
// syncs the directory. For a clean stop after the store holds everything.
func (l *Log) RemoveAll() error {
	cerr := l.Close()
	ls, err := listDir(l.fs, l.dir)
	if err != nil {
		return err
	}
	var paths []string
	for _, s := range ls.segs {
		paths = append(paths, s.path)
	}
	paths = append(paths, ls.spares...)
	paths = append(paths, ls.tmps...)
	for _, p := range paths {
		if err := l.fs.Remove(p); err != nil {
			return fmt.Errorf("wal: remove: %w", err)
		}
	}
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("wal: sync dir: %w", err)
	}
	return cerr
}
