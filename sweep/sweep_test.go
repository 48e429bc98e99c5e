package sweep

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"populi-db/store"
	"populi-db/wire"
)

var bigBacklog = flag.Bool("sweep.big", false, "run the backlog test with 1,000,000 expired leases of each kind")

func TestPassSweepsEveryKind(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{LeaseTTL: 10 * time.Second, MaxMessages: 10})
	b.join(t, "drain")
	b.join(t, "worker")

	// Timed maintenance on "drain", ending in 500ms.
	if err := b.st.SetMaintenance("drain", true, nil, ptr(uint64(500))); err != nil {
		t.Fatal(err)
	}
	// An inbox lease and an exec lease held by "worker".
	leased := b.deliver(t, "7", "")
	if m := b.claim(t, "7", "worker"); m == nil || m.ID != leased {
		t.Fatalf("claim got %+v, want row %d", m, leased)
	}
	if _, err := b.st.GrantExecLease("worker", "scope-a"); err != nil {
		t.Fatal(err)
	}
	// One acknowledged row, to be evicted once the cap drops to 1.
	acked := b.deliver(t, "8", "")
	if err := b.st.Ack("8", acked, nil); err != nil {
		t.Fatal(err)
	}
	// A JWT id (purge time = exp + 60s) and a bootstrap record expiring in 1s.
	if err := b.st.ConsumeJTI("jti-1", t0.Unix()); err != nil {
		t.Fatal(err)
	}
	err := b.st.ExchangeBootstrap(store.BootstrapAttempt{
		TokenHash: tokenHash("boot"), ExpiresUnixMs: uint64(t0.UnixMilli()) + 1000, TokenOK: true, MeshTokenSet: true,
	})
	if err != nil {
		t.Fatal(err)
	}

	// Nothing is due yet: an idle pass changes nothing.
	if sum := b.pass(t); sum.Items() != 0 {
		t.Fatalf("pass before anything expired swept %+v", sum.Counts)
	}

	b.reopen(t, func(c *store.Config) { c.MaxMessages = 1 })
	b.clk.Advance(61 * time.Second) // past every deadline above, including the JTI's purge time

	sum := b.pass(t)
	for _, k := range Kinds {
		if got := sum.Counts[k].Items; got != 1 {
			t.Errorf("%s: swept %d, want 1 (summary %+v)", k, got, sum.Counts)
		}
		if got := sum.Counts[k].Transactions; got != 1 {
			t.Errorf("%s: %d transactions, want 1", k, got)
		}
	}
	lines := b.log.records(slog.LevelInfo, "sweep pass")
	if len(lines) != 1 {
		t.Fatalf("got %d summary lines, want 1", len(lines))
	}
	a := attrs(lines[0])
	for _, k := range Kinds {
		if v, ok := a[string(k)]; !ok || v.Int64() != 1 {
			t.Errorf("summary line %s = %v, want 1", k, v)
		}
	}

	// The data now matches: a second pass finds nothing and logs nothing.
	if sum := b.pass(t); sum.Items() != 0 {
		t.Fatalf("second pass swept %+v", sum.Counts)
	}
	if n := len(b.log.records(slog.LevelInfo, "")); n != 1 {
		t.Fatalf("%d info lines after an idle pass, want still 1", n)
	}
	// The acked row went, the leased row is back to ready and claimable.
	if ids := b.inboxIDs(t, "7"); len(ids) != 1 || ids[0] != leased {
		t.Fatalf("inbox of 7 = %v, want [%d]", ids, leased)
	}
	if m := b.claim(t, "7", "drain"); m == nil || m.ID != leased {
		t.Fatalf("drain (maintenance cleared) claimed %+v, want row %d", m, leased)
	}
	reg, err := b.st.ListNodes(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range reg.Nodes {
		if n.Maintenance != nil || n.MaintenanceUntilUnixMs != nil {
			t.Errorf("node %s keeps maintenance fields %v %v", n.ID, n.Maintenance, n.MaintenanceUntilUnixMs)
		}
	}
	if ls, _ := b.st.ListExecLeases(); len(ls) != 0 {
		t.Errorf("exec leases left: %+v", ls)
	}
	// The purged JWT id may be used again (its table entry is gone).
	if err := b.st.ConsumeJTI("jti-1", b.clk.Now().Unix()); err != nil {
		t.Errorf("re-consume purged jti: %v", err)
	}
	if got := b.sw.Batch; got != BatchDefault {
		t.Errorf("default batch %d, want %d", got, BatchDefault)
	}
}

func TestIdlePassLogsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	b.join(t, "worker")
	b.deliver(t, "7", "k")
	if _, err := b.st.GrantExecLease("worker", "scope"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		sum := b.pass(t)
		if sum.Items() != 0 || sum.More() {
			t.Fatalf("idle pass did %+v", sum.Counts)
		}
		if got, want := sum.Transactions(), len(Kinds); got != want {
			t.Fatalf("idle pass ran %d transactions, want one per kind (%d)", got, want)
		}
	}
	if n := b.log.len(); n != 0 {
		t.Fatalf("idle passes logged %d records: %v", n, b.log.records(slog.LevelInfo, ""))
	}
}

// TestRunOnFakeClock drives Run with the fake clock: no pass before the
// interval, a pass after it, and Run returns when ctx is cancelled.
func TestRunOnFakeClock(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{LeaseTTL: time.Second})
	b.join(t, "worker")
	if _, err := b.st.GrantExecLease("worker", "scope"); err != nil {
		t.Fatal(err)
	}
	var passes, swept atomic.Int64
	b.sw.OnPass = func(s Summary, _ error) {
		passes.Add(1)
		swept.Add(int64(s.Counts[ExecLeases].Items))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.sw.Run(ctx); close(done) }()

	b.clk.Advance(999 * time.Millisecond) // before the first tick and before the lease expires
	if passes.Load() != 0 {
		t.Fatal("a pass ran before the interval elapsed")
	}
	// Keep ticking until a pass has swept the lease (expired at t0+1s).
	eventually(t, "a pass sweeping the exec lease", func() bool {
		b.clk.Advance(time.Second)
		return swept.Load() == 1
	})
	if n := len(b.log.records(slog.LevelInfo, "sweep pass")); n != 1 {
		t.Fatalf("%d summary lines, want 1", n)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx was cancelled")
	}
	n := passes.Load()
	b.clk.Advance(10 * time.Second)
	if passes.Load() != n {
		t.Fatal("a pass ran after Run returned")
	}
}

// TestRunStopsWhenStoreCloses: a store closed under a running sweeper ends
// Run instead of logging an error every interval.
func TestRunStopsWhenStoreCloses(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{})
	done := make(chan struct{})
	go func() { b.sw.Run(context.Background()); close(done) }()
	if err := b.st.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Run to return after the store closed", func() bool {
		b.clk.Advance(time.Second)
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
	if n := len(b.log.records(slog.LevelError, "")); n != 0 {
		t.Fatalf("closing the store logged %d errors", n)
	}
}

// TestBacklogInSmallTransactions: a pass over a large backlog of expired
// inbox and exec leases works in many transactions of at most Batch items,
// and requests keep being served while it runs.
func TestBacklogInSmallTransactions(t *testing.T) {
	t.Parallel()
	n := 20_000
	if *bigBacklog {
		n = 1_000_000
	}
	if testing.Short() {
		n = 2_000
	}
	b := setup(t, store.Config{LeaseTTL: time.Second, MaxMessages: store.MaxMessagesMax + 1})
	if n > store.MaxMessagesMax {
		t.Logf("inbox backlog capped at MaxMessagesMax=%d rows", store.MaxMessagesMax)
	}
	inboxN := min(n, store.MaxMessagesMax)
	b.join(t, "worker")
	start := time.Now()
	// One receiver per row: a claimer re-claiming a receiver gets its own
	// row back, so distinct receivers give distinct leases.
	parallelDo(t, inboxN, 256, func(i int) error {
		recv := strconv.Itoa(1000 + i)
		if _, err := b.st.Deliver(privateRow(recv, ""), ""); err != nil {
			return err
		}
		m, err := b.st.ClaimNext(recv, "worker")
		if err == nil && m == nil {
			err = fmt.Errorf("claim %s: nothing claimable", recv)
		}
		return err
	})
	parallelDo(t, n, 256, func(i int) error {
		_, err := b.st.GrantExecLease("worker", "scope-"+strconv.Itoa(i))
		return err
	})
	t.Logf("built %d inbox leases and %d exec leases in %v", inboxN, n, time.Since(start))
	b.clk.Advance(2 * time.Second)

	const batch = 500
	b.sw.Batch = batch
	b.sw.MaxTxnsPerKind = 1 << 20

	// A request stream beside the pass: its slowest answer bounds how long
	// the sweep can stall a writer.
	stop := make(chan struct{})
	slowest := make(chan time.Duration)
	go func() {
		var worst time.Duration
		for {
			select {
			case <-stop:
				slowest <- worst
				return
			default:
			}
			t1 := time.Now()
			if _, err := b.st.Deliver(privateRow("42", ""), ""); err != nil {
				t.Error(err)
			}
			worst = max(worst, time.Since(t1))
		}
	}()
	sum := b.pass(t)
	close(stop)
	worst := <-slowest

	for _, k := range []Kind{InboxLeases, ExecLeases} {
		c := sum.Counts[k]
		want := inboxN
		if k == ExecLeases {
			want = n
		}
		if c.Items != want {
			t.Errorf("%s: swept %d, want %d", k, c.Items, want)
		}
		if min := want/batch + 1; c.Transactions < min {
			t.Errorf("%s: %d transactions, want at least %d", k, c.Transactions, min)
		}
		t.Logf("%s: %d items in %d transactions, slowest transaction %v", k, c.Items, c.Transactions, c.Slowest)
	}
	t.Logf("pass took %v; slowest concurrent deliver %v", sum.Elapsed, worst)
	if worst > 2*time.Second {
		t.Errorf("a deliver beside the sweep took %v", worst)
	}
	if sum := b.pass(t); sum.Items() != 0 {
		t.Errorf("second pass swept %+v", sum.Counts)
	}
	if errs := b.st.Check(); len(errs) != 0 {
		t.Fatalf("bbolt check: %v", errs)
	}
}

// TestPassCapAndRun: a pass stops at MaxTxnsPerKind with More set, and Run
// goes on with the next pass without waiting for the interval.
func TestPassCapAndRun(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{LeaseTTL: time.Second})
	b.join(t, "worker")
	for i := 0; i < 25; i++ {
		if _, err := b.st.GrantExecLease("worker", "scope-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	b.clk.Advance(2 * time.Second)
	b.sw.Batch, b.sw.MaxTxnsPerKind = 5, 2

	sum := b.pass(t)
	if c := sum.Counts[ExecLeases]; c.Items != 10 || c.Transactions != 2 || !c.More {
		t.Fatalf("capped pass: %+v, want 10 items in 2 transactions with More", c)
	}

	var total atomic.Int64
	passes := make(chan Summary, 16)
	b.sw.OnPass = func(s Summary, _ error) {
		total.Add(int64(s.Counts[ExecLeases].Items))
		passes <- s
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.sw.Run(ctx)
	eventually(t, "the first timed pass", func() bool {
		b.clk.Advance(time.Second)
		return total.Load() > 0
	})
	// The 15 left need 2 capped passes (10 items) and one more: the
	// follow-ups run without further clock advances.
	eventually(t, "the backlog to be worked off", func() bool { return total.Load() == 15 })
	if got := len(b.log.records(slog.LevelInfo, "sweep pass")); got < 3 {
		t.Errorf("%d summary lines, want one per changing pass (>= 3)", got)
	}
}

// TestRelayCapAfterReopen: after a restart with a lower MaxMessages a pass
// evicts acknowledged rows first, then the oldest pending rows with one warn
// line each, and idempotency keys of evicted rows are released.
func TestRelayCapAfterReopen(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{MaxMessages: 100})
	var ids []uint64
	for i := 0; i < 10; i++ {
		ids = append(ids, b.deliver(t, "7", "key-"+strconv.Itoa(i)))
	}
	// Ack three rows in the middle: they go first, before older pending rows.
	for _, id := range ids[4:7] {
		if err := b.st.Ack("7", id, nil); err != nil {
			t.Fatal(err)
		}
	}
	b.reopen(t, func(c *store.Config) { c.MaxMessages = 5 })

	sum := b.pass(t)
	if got := sum.Counts[RelayCap].Items; got != 5 {
		t.Fatalf("relay_cap swept %d, want 5 (3 acked + 2 oldest pending)", got)
	}
	// Left: the 5 newest unacked rows except the acked ones = ids 2,3,7,8,9 (0-based).
	want := []uint64{ids[9], ids[8], ids[7], ids[3], ids[2]}
	got := b.inboxIDs(t, "7")
	if len(got) != len(want) {
		t.Fatalf("inbox after cap = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("inbox after cap = %v, want %v", got, want)
		}
	}
	warns := b.storeLog.records(slog.LevelWarn, "")
	if len(warns) != 2 {
		t.Fatalf("%d warn lines, want one per evicted pending row (2)", len(warns))
	}
	for i, w := range warns {
		if id := attrs(w)["message_id"].Uint64(); id != ids[i] {
			t.Errorf("warn %d names message %d, want %d", i, id, ids[i])
		}
	}
	// A kept pending row's key still dedupes; an evicted row's key is free.
	if id := b.deliver(t, "7", "key-9"); id != ids[9] {
		t.Errorf("re-deliver of pending key-9 got %d, want %d", id, ids[9])
	}
	if id := b.deliver(t, "7", "key-0"); id <= ids[9] {
		t.Errorf("re-deliver of evicted key-0 got old id %d", id)
	}
	// Deliver itself keeps the store at the cap: nothing left for the sweep.
	if got := b.pass(t).Counts[RelayCap].Items; got != 0 {
		t.Errorf("second pass evicted %d", got)
	}
}

// TestErrorLoggedAndPassContinues: an error in one kind is logged with its
// kind and the other kinds still run.
func TestErrorLoggedAndPassContinues(t *testing.T) {
	t.Parallel()
	b := setup(t, store.Config{LeaseTTL: time.Second})
	b.join(t, "worker")
	if _, err := b.st.GrantExecLease("worker", "scope"); err != nil {
		t.Fatal(err)
	}
	b.clk.Advance(2 * time.Second)
	boom := &wire.Error{Message: "boom"}
	calls := 0
	b.sw.works[0].fn = func(int) (int, error) { calls++; return 0, boom }

	sum, err := b.sw.Pass()
	if err == nil {
		t.Fatal("pass hid the inbox error")
	}
	if calls != 1 {
		t.Fatalf("failing kind called %d times, want 1", calls)
	}
	if got := sum.Counts[ExecLeases].Items; got != 1 {
		t.Fatalf("exec leases swept %d after an earlier kind failed, want 1", got)
	}
	errs := b.log.records(slog.LevelError, "sweep failed")
	if len(errs) != 1 || attrs(errs[0])["kind"].String() != string(InboxLeases) {
		t.Fatalf("error lines %v, want one naming %s", errs, InboxLeases)
	}
}
