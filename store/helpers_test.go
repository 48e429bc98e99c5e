package store

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// t0 is where every fake clock starts: a round instant far from zero.
var t0 = time.UnixMilli(1_700_000_000_000)

const testTTL = 10 * time.Second

// bundle is what a store test needs (river's test bundle): a store on a real
// file in t.TempDir(), the fake clock it reads, and the config to reopen it.
type bundle struct {
	t   testing.TB
	s   *Store
	clk *spyClock
	cfg Config
	// fsync: commit with fsync as production does. Off by default: logic
	// tests gain nothing from it, and a clean Close makes every commit
	// visible to the next Open either way.
	fsync bool
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup opens a store with a fake clock and a 10 s lease TTL; edit adjusts
// the config. Cleanup checks the index invariants and bbolt's own
// consistency check, then closes the store.
func setup(t testing.TB, edit ...func(*Config)) *bundle {
	t.Helper()
	return setupBundle(t, false, edit...)
}

// setupSync is setup with real fsyncs.
func setupSync(t testing.TB, edit ...func(*Config)) *bundle {
	t.Helper()
	return setupBundle(t, true, edit...)
}

func setupBundle(t testing.TB, fsync bool, edit ...func(*Config)) *bundle {
	t.Helper()
	clk := newSpyClock(t0)
	cfg := Config{
		Path:     filepath.Join(t.TempDir(), "populi.db"),
		Clock:    clk,
		Logger:   quietLogger(),
		LeaseTTL: testTTL,
	}
	if testEtcd != nil {
		cfg.Etcd = etcdConfig(t)
	}
	// POPULI_TEST_PIPELINE=1 runs the suite with PipelineCommits (the
	// syncer goroutine takes batches while the writer builds the next).
	cfg.PipelineCommits = os.Getenv("POPULI_TEST_PIPELINE") != ""
	for _, e := range edit {
		e(&cfg)
	}
	b := &bundle{t: t, clk: clk, cfg: cfg, fsync: fsync}
	b.open()
	t.Cleanup(func() {
		if b.s == nil {
			return
		}
		if !t.Failed() {
			b.checkInvariants()
		}
		if err := b.s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b
}

func (b *bundle) open() {
	b.t.Helper()
	s, err := Open(b.cfg)
	if err != nil {
		b.t.Fatalf("open: %v", err)
	}
	b.s = s
}

// reopen closes the store and opens the same file again, as a restart does;
// edit may change the config for the new process.
func (b *bundle) reopen(edit ...func(*Config)) {
	b.t.Helper()
	b.checkInvariants()
	if err := b.s.Close(); err != nil {
		b.t.Fatalf("close: %v", err)
	}
	b.s = nil
	for _, e := range edit {
		e(&b.cfg)
	}
	b.open()
}

// checkInvariants runs the index checker and bbolt's Check.
func (b *bundle) checkInvariants() {
	b.t.Helper()
	for _, err := range checkIndexes(b.s) {
		b.t.Errorf("index invariant: %v", err)
	}
	for _, err := range b.s.Check() {
		b.t.Errorf("bbolt check: %v", err)
	}
}

func (b *bundle) nowMs() uint64 { return clock.UnixMs(b.clk.Now()) }

// join registers a node with default (private) visibility; mods edit the record.
func (b *bundle) join(id string, mods ...func(*wire.NodeRecord)) wire.NodeRecord {
	b.t.Helper()
	rec := wire.NodeRecord{ID: id, Version: "test"}
	for _, m := range mods {
		m(&rec)
	}
	out, err := b.s.Join(rec)
	if err != nil {
		b.t.Fatalf("join %q: %v", id, err)
	}
	return out
}

// deliver stores a private row (claimable by default-visibility nodes)
// from sender "1"; mods edit the request.
func (b *bundle) deliver(recv string, mods ...func(*wire.DeliverRequest)) uint64 {
	b.t.Helper()
	req := wire.DeliverRequest{
		SenderAgentID: "1", ReceiverAgentID: recv, MessageType: "job_submit",
		Payload: `{"n":1}`, PrivacyClass: ptr("private"),
	}
	for _, m := range mods {
		m(&req)
	}
	id, err := b.s.Deliver(req, "")
	if err != nil {
		b.t.Fatalf("deliver: %v", err)
	}
	return id
}

func withPrio(p uint8) func(*wire.DeliverRequest) {
	return func(r *wire.DeliverRequest) { r.Priority = ptr(p) }
}

func withKey(k string) func(*wire.DeliverRequest) {
	return func(r *wire.DeliverRequest) { r.IdempotencyKey = ptr(k) }
}

func withNotBefore(ms uint64) func(*wire.DeliverRequest) {
	return func(r *wire.DeliverRequest) { r.NotBeforeUnixMs = ptr(ms) }
}

// claim claims for node and fails the test on an error.
func (b *bundle) claim(recv, node string) *wire.StoredMessage {
	b.t.Helper()
	m, err := b.s.ClaimNext(recv, node)
	if err != nil {
		b.t.Fatalf("claim %s by %s: %v", recv, node, err)
	}
	return m
}

// mustClaim claims and requires row id.
func (b *bundle) mustClaim(recv, node string, id uint64) *wire.StoredMessage {
	b.t.Helper()
	m := b.claim(recv, node)
	if m == nil {
		b.t.Fatalf("claim %s by %s: got nothing, want row %d", recv, node, id)
	}
	if m.ID != id {
		b.t.Fatalf("claim %s by %s: got row %d, want %d", recv, node, m.ID, id)
	}
	return m
}

func (b *bundle) mustClaimNone(recv, node string) {
	b.t.Helper()
	if m := b.claim(recv, node); m != nil {
		b.t.Fatalf("claim %s by %s: got row %d, want nothing", recv, node, m.ID)
	}
}

// list returns the whole listing of recv (up to ListMax rows).
func (b *bundle) list(recv string) []wire.StoredMessage {
	b.t.Helper()
	out, err := b.s.ListInbox(recv, ptr(uint64(ListMax)), nil)
	if err != nil {
		b.t.Fatalf("list %s: %v", recv, err)
	}
	return out
}

func (b *bundle) stats() wire.QueueStats {
	b.t.Helper()
	st, err := b.s.QueueStats()
	if err != nil {
		b.t.Fatalf("stats: %v", err)
	}
	return st
}

func (b *bundle) node(id string) *wire.NodeRecord {
	b.t.Helper()
	reg, err := b.s.ListNodes(0)
	if err != nil {
		b.t.Fatalf("list nodes: %v", err)
	}
	for i := range reg.Nodes {
		if reg.Nodes[i].ID == id {
			return &reg.Nodes[i]
		}
	}
	return nil
}

// row reads a stored row as bbolt holds it (no read-time evaluation).
func (b *bundle) row(id uint64) *wire.StoredMessage {
	b.t.Helper()
	var m *wire.StoredMessage
	err := b.s.view(func(t *txn) error {
		var err error
		m, err = t.getRow(id)
		return err
	})
	if err != nil {
		b.t.Fatalf("row %d: %v", id, err)
	}
	return m
}

func ids(ms []wire.StoredMessage) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func wantErr(t testing.TB, got error, want *wire.Error) {
	t.Helper()
	if want == nil {
		if got != nil {
			t.Fatalf("got error %v, want none", got)
		}
		return
	}
	if !errors.Is(got, want) {
		t.Fatalf("got error %v, want %q (%s)", got, want.Message, want.Code)
	}
}

// eventually polls cond for up to d of real time; it is the only place
// tests poll.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// spyClock is a fake clock that also counts Now and After calls, so a test
// can wait until a long poll is parked on the clock and prove idle waiters
// do not poll.
type spyClock struct {
	*clock.Fake
	nows   atomic.Int64
	afters atomic.Int64

	mu      sync.Mutex
	waiting []time.Duration
}

func newSpyClock(t time.Time) *spyClock { return &spyClock{Fake: clock.NewFake(t)} }

func (c *spyClock) Now() time.Time {
	c.nows.Add(1)
	return c.Fake.Now()
}

func (c *spyClock) After(d time.Duration) <-chan time.Time {
	ch := c.Fake.After(d) // registered before it is counted
	c.mu.Lock()
	c.waiting = append(c.waiting, d)
	c.mu.Unlock()
	c.afters.Add(1)
	return ch
}

// lastAfter is the duration of the most recent After call.
func (c *spyClock) lastAfter() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.waiting) == 0 {
		return 0
	}
	return c.waiting[len(c.waiting)-1]
}

func fmtRow(m wire.StoredMessage) string {
	j, _ := json.Marshal(m)
	return string(j)
}

func fmtRows(ms []wire.StoredMessage) string {
	j, _ := json.Marshal(ms)
	return string(j)
}

// rowsEqual compares two rows field by field (pointers by value).
func rowsEqual(a, b wire.StoredMessage) bool { return reflect.DeepEqual(a, b) }
