package sweep

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"populi-db/internal/clock"
	"populi-db/internal/etcdtest"
	"populi-db/store"
	"populi-db/wire"
)

// t0 is where every fake clock starts.
var t0 = time.UnixMilli(1_700_000_000_000)

// logRecorder is a slog.Handler that keeps every record, for assertions.
type logRecorder struct {
	mu   *sync.Mutex
	recs *[]slog.Record
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: &sync.Mutex{}, recs: &[]slog.Record{}}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r.Clone())
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// records returns the records at level lvl with message msg ("" = any).
func (h *logRecorder) records(lvl slog.Level, msg string) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range *h.recs {
		if r.Level == lvl && (msg == "" || r.Message == msg) {
			out = append(out, r)
		}
	}
	return out
}

func (h *logRecorder) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(*h.recs)
}

// attrs flattens a record's attributes.
func attrs(r slog.Record) map[string]slog.Value {
	m := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value
		return true
	})
	return m
}

// bundle is what a sweep test needs: a real store on a fake clock, a sweeper
// over it, and the log records of both.
type bundle struct {
	path     string
	clk      *clock.Fake
	st       *store.Store
	sw       *Sweeper
	log      *logRecorder // the sweeper's
	storeLog *logRecorder // the store's (eviction and dead-letter warnings)
	cfg      store.Config
}

// setup opens a store in t.TempDir() with cfg (Path, Clock and Logger are
// filled in) and a sweeper with a 1s interval.
func setup(t *testing.T, cfg store.Config) *bundle {
	t.Helper()
	b := &bundle{
		path:     filepath.Join(t.TempDir(), "populi.db"),
		clk:      clock.NewFake(t0),
		log:      newLogRecorder(),
		storeLog: newLogRecorder(),
	}
	cfg.Path, cfg.Clock, cfg.Logger = b.path, b.clk, slog.New(b.storeLog)
	if etcdtest.UseEtcd() {
		cfg.Etcd = etcdConfig(t) // the backend matrix
	}
	b.cfg = cfg
	b.open(t)
	t.Cleanup(func() { b.st.Close() })
	return b
}

// open (re)opens the store with b.cfg and builds a fresh sweeper over it.
func (b *bundle) open(t *testing.T) {
	t.Helper()
	st, err := store.Open(b.cfg)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	b.st = st
	b.sw = New(st, time.Second, slog.New(b.log))
	b.sw.Clock = b.clk
}

// reopen closes the store and opens it again with cfg changed by edit.
func (b *bundle) reopen(t *testing.T, edit func(*store.Config)) {
	t.Helper()
	if err := b.st.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	edit(&b.cfg)
	b.open(t)
}

func (b *bundle) pass(t *testing.T) Summary {
	t.Helper()
	sum, err := b.sw.Pass()
	if err != nil {
		t.Fatalf("pass: %v", err)
	}
	return sum
}

func (b *bundle) join(t *testing.T, id string) {
	t.Helper()
	if _, err := b.st.Join(wire.NodeRecord{ID: id, Version: "test"}); err != nil {
		t.Fatalf("join %s: %v", id, err)
	}
}

// privateRow is a delivery to recv that a default node may claim (SPEC 6.6
// R7); idemKey "" means none.
func privateRow(recv, idemKey string) wire.DeliverRequest {
	req := wire.DeliverRequest{
		SenderAgentID: "1", ReceiverAgentID: recv, MessageType: "task", Payload: "{}",
		PrivacyClass: ptr("private"),
	}
	if idemKey != "" {
		req.IdempotencyKey = &idemKey
	}
	return req
}

// deliver stores a private row for recv.
func (b *bundle) deliver(t testing.TB, recv, idemKey string) uint64 {
	t.Helper()
	id, err := b.st.Deliver(privateRow(recv, idemKey), "")
	if err != nil {
		t.Fatalf("deliver to %s: %v", recv, err)
	}
	return id
}

func (b *bundle) claim(t testing.TB, recv, claimer string) *wire.StoredMessage {
	t.Helper()
	m, err := b.st.ClaimNext(recv, claimer)
	if err != nil {
		t.Fatalf("claim %s by %s: %v", recv, claimer, err)
	}
	return m
}

// inboxIDs lists every unacknowledged row id of recv, newest first.
func (b *bundle) inboxIDs(t *testing.T, recv string) []uint64 {
	t.Helper()
	var ids []uint64
	var before *uint64
	for {
		page, err := b.st.ListInbox(recv, ptr(uint64(store.ListMax)), before)
		if err != nil {
			t.Fatalf("list inbox %s: %v", recv, err)
		}
		for _, m := range page {
			ids = append(ids, m.ID)
		}
		if len(page) < store.ListMax {
			return ids
		}
		before = ptr(page[len(page)-1].ID)
	}
}

func tokenHash(s string) [32]byte { return sha256.Sum256([]byte(s)) }

func ptr[T any](v T) *T { return &v }

// eventually polls cond every few milliseconds for up to 10 s; the only
// place a sweep test waits on real time.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// parallelDo runs fn(i) for i in [0,n) on workers goroutines and fails on the
// first error.
func parallelDo(t *testing.T, n, workers int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					select {
					case errs <- fmt.Errorf("item %d: %w", i, err):
					default:
					}
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
}

// etcdConfig is a fresh prefix on the package's shared embedded etcd
// (TestMain stops it), guarded by a key standing in for a won election.
func etcdConfig(t testing.TB) *store.EtcdConfig {
	t.Helper()
	p := etcdtest.FreshPrefix(t)
	return &store.EtcdConfig{Client: p.Client, Prefix: p.Prefix, GuardKey: p.GuardKey, GuardRev: p.GuardRev}
}
