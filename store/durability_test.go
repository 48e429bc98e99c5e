package store

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"populi-db/store/wal"
	"populi-db/store/wal/faultfs"
	"populi-db/wire"
)

// Issue 13: the log-first commit path under faults, crashes and power loss.

// gateFS holds every log fdatasync while closed, so a test can look at the
// store while a batch's record is written but not yet durable.
type gateFS struct {
	wal.FS
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	waiting chan struct{} // a sync is held
}

func newGateFS() *gateFS { return &gateFS{FS: wal.OS(), waiting: make(chan struct{}, 64)} }

func (g *gateFS) close() {
	g.mu.Lock()
	g.gate = make(chan struct{})
	g.mu.Unlock()
}

func (g *gateFS) open() {
	g.mu.Lock()
	if g.gate != nil {
		close(g.gate)
		g.gate = nil
	}
	g.mu.Unlock()
}

func (g *gateFS) wrap(f wal.File, err error) (wal.File, error) {
	if err != nil {
		return nil, err
	}
	return &gateFile{File: f, g: g}, nil
}

func (g *gateFS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	return g.wrap(g.FS.OpenFile(name, flag, perm))
}
func (g *gateFS) Create(name string) (wal.File, error) { return g.wrap(g.FS.Create(name)) }

type gateFile struct {
	wal.File
	g *gateFS
}

func (f *gateFile) Sync(dataOnly bool) error {
	f.g.mu.Lock()
	gate := f.g.gate
	f.g.mu.Unlock()
	if gate != nil && dataOnly {
		f.g.waiting <- struct{}{}
		<-gate
	}
	return f.File.Sync(dataOnly)
}

func smallLog(c *Config) {
	c.LogSegmentSize = 64 << 10
}

// No reply reveals a write before its record is durable: while a
// delivery's fdatasync is held, a reader does not list the row, a claim
// (a write batched behind it) does not hand it out, and a repeated
// delivery with the same idempotency key waits too.
func TestReadsNeverSeeWritesBeforeTheirFsync(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	g := newGateFS()
	b := setup(t, smallLog, func(c *Config) { c.LogFS = g })
	t.Cleanup(g.open) // before Close (cleanups run last-in first-out)
	b.join("w")
	g.close()
	delivered := make(chan error, 1)
	go func() {
		_, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t", Payload: "p",
			IdempotencyKey: ptr("k1"), PrivacyClass: ptr("private")}, "")
		delivered <- err
	}()
	<-g.waiting // the record is written, its fdatasync held
	// Readers either answer without the row or wait for the fsync of the
	// batch their answer reflects; none may show the row before it.
	type readResult struct {
		what string
		saw  bool
		err  error
	}
	reads := make(chan readResult, 2)
	go func() {
		rows, err := b.s.ListInbox("7", nil, nil)
		reads <- readResult{"inbox", len(rows) > 0, err}
	}()
	go func() {
		st, err := b.s.QueueStats()
		reads <- readResult{"queue stats", st.ByState.Ready > 0, err}
	}()
	claimed := make(chan *wire.StoredMessage, 1)
	go func() {
		m, err := b.s.ClaimNext("7", "w")
		if err != nil {
			t.Errorf("claim: %v", err)
		}
		claimed <- m
	}()
	durable := false
	check := func(r readResult) {
		if r.err != nil {
			t.Fatalf("%s: %v", r.what, r.err)
		}
		if r.saw && !durable {
			t.Fatalf("%s showed the row before its fsync", r.what)
		}
	}
	deadline := time.After(50 * time.Millisecond) // the window in which nothing may reveal the row
wait:
	for {
		select {
		case r := <-reads:
			check(r)
		case m := <-claimed:
			t.Fatalf("a claim answered (%v) while the delivery it depends on was not durable", m)
		case err := <-delivered:
			t.Fatalf("deliver answered (%v) before its fdatasync", err)
		case <-deadline:
			break wait
		}
	}
	durable = true
	g.open()
	if err := <-delivered; err != nil {
		t.Fatalf("deliver: %v", err)
	}
	for len(reads) > 0 {
		check(<-reads)
	}
	// The claim was batched behind the delivery or ran after it: either way
	// it may only answer after the delivery's fsync, and it finds the row.
	if m := <-claimed; m == nil {
		t.Fatal("claim after the delivery became durable found nothing")
	}
}

// A failed log write or fdatasync fails the batch and every later write
// with a 503 naming the cause, until restart; reads keep answering from
// what was acknowledged, and nothing of the failed batch is visible then
// or after the restart.
func TestLogWriteFaultsRefuseWritesUntilRestart(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	for _, op := range []faultfs.Op{faultfs.OpWrite, faultfs.OpSync} {
		t.Run(op.String(), func(t *testing.T) {
			t.Parallel()
			ffs := faultfs.New(nil)
			b := setup(t, smallLog, func(c *Config) { c.LogFS = ffs })
			ok := b.deliver("7")
			ffs.Inject(faultfs.Fault{Op: op, Match: faultfs.Suffix(".wal"), Err: syscall.EIO})
			_, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t", Payload: "lost"}, "")
			if !errors.Is(err, ErrStorageFailed) {
				t.Fatalf("deliver during %s fault = %v, want ErrStorageFailed", op, err)
			}
			ffs.Clear() // the disk "recovers": the store must not believe it
			_, err = b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t", Payload: "later"}, "")
			if !errors.Is(err, ErrStorageFailed) {
				t.Fatalf("deliver after a failed %s = %v, want ErrStorageFailed until restart", op, err)
			}
			if _, err := b.s.Join(wire.NodeRecord{ID: "n"}); !errors.Is(err, ErrStorageFailed) {
				t.Fatalf("join after a failed %s = %v, want ErrStorageFailed", op, err)
			}
			if b.s.fatal() == nil || !strings.Contains(b.s.fatal().Error(), "write-ahead log") {
				t.Fatalf("fatal() = %v, want the log failure", b.s.fatal())
			}
			rows, err := b.s.ListInbox("7", nil, nil)
			if err != nil || len(rows) != 1 || rows[0].ID != ok {
				t.Fatalf("inbox after the fault = %v, %v; want only row %d", rows, err, ok)
			}
			// After a restart the acknowledged row is there and the writes
			// refused after the failure are not. The failed write itself
			// had an unknown outcome (503): its record may have reached
			// the disk before the failure (a failed fdatasync does not
			// take back a completed write), so it may be replayed.
			b.reopen()
			rows, err = b.s.ListInbox("7", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			seen := map[string]bool{}
			for _, r := range rows {
				seen[r.Payload] = true
			}
			if len(rows) == 0 || rows[len(rows)-1].ID != ok || seen["later"] {
				t.Fatalf("inbox after restart = %v; want row %d and never the refused later write", rows, ok)
			}
			if b.deliver("7") == 0 {
				t.Fatal("no id after restart")
			}
		})
	}
}

// A full disk is not fatal: the batch gets the disk-full 503, and writes
// resume by themselves once space returns.
func TestDiskFullRefusesThenResumes(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	ffs := faultfs.New(nil)
	b := setup(t, smallLog, func(c *Config) { c.LogFS = ffs })
	payload := strings.Repeat("x", 4096)
	var acked []uint64
	// Fill the log until it needs a new segment, with no space to make one.
	ffs.Inject(faultfs.Fault{Op: faultfs.OpCreate, Err: syscall.ENOSPC})
	ffs.Inject(faultfs.Fault{Op: faultfs.OpWrite, Match: faultfs.Suffix(".tmp"), Err: syscall.ENOSPC})
	refused := 0
	for i := 0; i < 200 && refused == 0; i++ {
		id, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t", Payload: payload}, "")
		switch {
		case err == nil:
			acked = append(acked, id)
		case errors.Is(err, ErrDiskFull):
			refused++
		default:
			t.Fatalf("deliver %d: %v, want success or ErrDiskFull", i, err)
		}
	}
	if refused == 0 {
		t.Fatal("the log never needed a new segment: make the test write more")
	}
	if _, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t", Payload: payload}, ""); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("deliver while still full = %v, want ErrDiskFull", err)
	}
	if b.s.fatal() != nil {
		t.Fatalf("a full disk made the store unhealthy: %v", b.s.fatal())
	}
	ffs.Clear()
	for range 20 {
		acked = append(acked, b.deliver("7"))
	}
	b.reopen()
	n, err := b.s.ListInbox("7", ptr(uint64(500)), nil)
	if err != nil || len(n) != len(acked) {
		t.Fatalf("after restart %d rows (%v), want the %d acknowledged", len(n), err, len(acked))
	}
}

// A clean Close folds the log into bbolt and removes it: the db file alone
// is the whole state (a backup is a copy of it).
func TestCleanCloseLeavesOneFile(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	b := setup(t, smallLog, func(c *Config) { c.CommitInterval = time.Hour })
	id := b.deliver("7")
	if _, err := os.Stat(LogDirFor(b.cfg.Path)); err != nil {
		t.Fatalf("log dir while open: %v", err)
	}
	if err := b.s.Close(); err != nil {
		t.Fatal(err)
	}
	b.s = nil
	if _, err := os.Stat(LogDirFor(b.cfg.Path)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("log dir after a clean close: %v, want it gone", err)
	}
	// Copy only the db file elsewhere and open the copy.
	cp := filepath.Join(t.TempDir(), "copy.db")
	copyFile(t, b.cfg.Path, cp)
	b.cfg.Path = cp
	b.open()
	if m := b.row(id); m == nil {
		t.Fatalf("row %d missing from a copy of the db file alone", id)
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyDir(t testing.TB, from, to string) {
	t.Helper()
	ents, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		copyFile(t, filepath.Join(from, e.Name()), filepath.Join(to, e.Name()))
	}
}

// Power loss, simulated: acknowledged writes, some folded into bbolt and
// some only in the log, then one more record written but its fdatasync
// never returning. The crash image (db file as synced, log directory as
// written) is damaged the ways a power cut can: the log cut at a random
// offset at or beyond the synced offset, random bytes flipped beyond it.
// Recovery must start and keep every acknowledged write.
func TestPowerLossKeepsAcknowledgedWrites(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := range 12 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			g := newGateFS()
			b := setup(t, smallLog, func(c *Config) {
				c.LogFS = g
				c.CommitInterval = []time.Duration{time.Hour, 5 * time.Millisecond}[round%2]
			})
			t.Cleanup(g.open)
			var acked []uint64
			for i := range 40 + rng.IntN(200) {
				req := wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t",
					Payload: strings.Repeat("p", rng.IntN(3000)), IdempotencyKey: ptr(fmt.Sprint("k", i))}
				id, err := b.s.Deliver(req, "")
				if err != nil {
					t.Fatal(err)
				}
				acked = append(acked, id)
			}
			// One more batch: written, never acknowledged.
			g.close()
			unacked := make(chan struct{})
			go func() {
				defer close(unacked)
				_, _ = b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t", Payload: "unacked"}, "")
			}()
			<-g.waiting
			seg, synced := b.s.wal.(*wal.Log).SyncedOffset()
			// The crash image, taken with background commits paused: bbolt's
			// commits are fully synced, so its file is what a power cut leaves.
			img := crashImage(t, b)
			g.open()
			<-unacked // quiet before the cleanup's invariant check
			damage(t, rng, filepath.Join(img, "populi.db-wal", filepath.Base(seg)), synced)

			s2, err := Open(Config{Path: filepath.Join(img, "populi.db"), Logger: quietLogger(), Clock: b.clk, LeaseTTL: testTTL})
			if err != nil {
				t.Fatalf("recovery refused a power-cut image (synced offset %d): %v", synced, err)
			}
			defer s2.Close()
			rows, err := s2.ListInbox("7", ptr(uint64(500)), nil)
			if err != nil {
				t.Fatal(err)
			}
			have := map[uint64]bool{}
			for _, r := range rows {
				have[r.ID] = true
			}
			for _, id := range acked {
				if !have[id] {
					t.Fatalf("acknowledged row %d lost (%d rows recovered of %d acknowledged)", id, len(rows), len(acked))
				}
			}
			for _, e := range checkIndexes(s2) {
				t.Errorf("index invariant after recovery: %v", e)
			}
		})
	}
}

// crashImage copies the db file and the log directory of a running store
// into a new directory, with background commits paused: bbolt's commits are
// fully synced, so its file is what a power cut leaves; the log is copied
// as written (the test then damages what was not synced).
func crashImage(t *testing.T, b *bundle) string {
	t.Helper()
	img := t.TempDir()
	b.s.foldMu.Lock()
	defer b.s.foldMu.Unlock()
	copyFile(t, b.cfg.Path, filepath.Join(img, "populi.db"))
	copyDir(t, LogDirFor(b.cfg.Path), filepath.Join(img, "populi.db-wal"))
	return img
}

// damage cuts the segment at a random offset >= synced, or flips bytes
// beyond it, or both.
func damage(t *testing.T, rng *rand.Rand, path string, synced int64) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if synced > int64(len(data)) {
		t.Fatalf("synced offset %d beyond the file (%d bytes)", synced, len(data))
	}
	mode := rng.IntN(3)
	if mode != 1 && int64(len(data)) > synced { // flip bytes in the unsynced tail
		for range 1 + rng.IntN(8) {
			i := synced + rng.Int64N(min(int64(len(data))-synced, 8192))
			data[i] ^= byte(1 + rng.IntN(255))
		}
	}
	if mode != 0 { // cut
		data = data[:synced+rng.Int64N(min(int64(len(data))-synced, 8192)+1)]
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// A damaged record followed by valid ones means acknowledged data is
// damaged: Open refuses, naming the file and offset, unless the operator
// allows cutting the log there.
func TestMidLogCorruptionRefusesToStart(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	b := setup(t, smallLog, func(c *Config) { c.CommitInterval = time.Hour })
	for range 10 {
		b.deliver("7")
	}
	img := crashImage(t, b)
	segs, _ := filepath.Glob(filepath.Join(img, "populi.db-wal", "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	data, _ := os.ReadFile(segs[0])
	data[32+16+3] ^= 0xff // inside the first record's payload (after the 32-byte segment header)
	if err := os.WriteFile(segs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Path: filepath.Join(img, "populi.db"), Logger: quietLogger(), Clock: b.clk, LeaseTTL: testTTL}
	_, err := Open(cfg)
	if !errors.Is(err, wal.ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(segs[0])) || !strings.Contains(err.Error(), "offset") {
		t.Fatalf("open = %v, want a corruption error naming %s and the offset", err, filepath.Base(segs[0]))
	}
	cfg.AllowCorruptLog = true
	s2, err := Open(cfg)
	if err != nil {
		t.Fatalf("open with AllowCorruptLog: %v", err)
	}
	s2.Close()
}

// Under steady writes with folds, the log directory stays bounded: the
// segment being written plus a few spares.
func TestLogStaysBounded(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	b := setup(t, smallLog, func(c *Config) { c.CommitInterval = 2 * time.Millisecond })
	payload := strings.Repeat("x", 2000)
	for i := range 600 {
		id := b.deliver("7", func(r *wire.DeliverRequest) { r.Payload = payload })
		wantErr(t, b.s.Ack("7", id, nil), nil)
		if i%100 == 99 {
			ents, _ := os.ReadDir(LogDirFor(b.cfg.Path))
			// 600 writes of 2 KB fill ~40 segments of 64 KiB; a fold that
			// lags under -race may keep a few more than current + 2 spares.
			if len(ents) > 10 {
				names := []string{}
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Fatalf("after %d writes the log holds %d files: %v", 2*(i+1), len(ents), names)
			}
		}
	}
}

// check (CheckFile) reads a crashed db together with its log, never writes
// either, and reports mid-log corruption as a finding; a torn tail is not one.
func TestCheckFileVerifiesTheLog(t *testing.T) {
	bboltOnly(t)
	t.Parallel()
	b := setup(t, smallLog, func(c *Config) { c.CommitInterval = time.Hour })
	for range 10 {
		b.deliver("7")
	}
	img := crashImage(t, b)
	db := filepath.Join(img, "populi.db")
	segs, _ := filepath.Glob(filepath.Join(img, "populi.db-wal", "*.wal"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	before := map[string][]byte{}
	for _, p := range append(segs, db) {
		before[p], _ = os.ReadFile(p)
	}
	rep, err := CheckFile(db, time.Second)
	if err != nil || !rep.OK() {
		t.Fatalf("check of a crash image with an intact log = %+v, %v; want clean", rep, err)
	}
	data := before[segs[0]]
	data = append([]byte(nil), data...)
	data[32+16+3] ^= 0xff // first record's payload; nine valid records follow
	if err := os.WriteFile(segs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	before[segs[0]] = data
	rep, err = CheckFile(db, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range rep.Findings {
		found = found || (f.Kind == "log" && strings.Contains(f.Message, filepath.Base(segs[0])) && strings.Contains(f.Message, "offset"))
	}
	if !found {
		t.Fatalf("check findings %+v: want the damaged log record named with file and offset", rep.Findings)
	}
	for p, want := range before {
		if got, _ := os.ReadFile(p); string(got) != string(want) {
			t.Fatalf("check changed %s", p)
		}
	}
}
