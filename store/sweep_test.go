package store

import (
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"populi-db/wire"
)

func TestExpireInboxLeasesRespectsLimit(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxDeliveries = 1 })
	for i := range 8 { // 8 leases by 8 nodes; each row dead at the limit on expiry
		node, recv := fmt.Sprintf("a%d", i), []string{"2", "3"}[i%2]
		b.join(node)
		b.mustClaim(recv, node, b.deliver(recv))
	}
	due := b.nowMs() + 5000
	for range 2 {
		b.deliver("4", withNotBefore(due))
	}
	live := b.deliver("5", withNotBefore(b.nowMs()+uint64(time.Hour.Milliseconds())))
	if n, err := b.s.ExpireInboxLeases(100); err != nil || n != 0 {
		t.Fatalf("nothing due yet: %d, %v", n, err)
	}
	b.clk.Advance(testTTL) // 8 leases over, 2 delays over
	before := b.snapshot("2", "3", "4", "5")
	total := 0
	for _, want := range []int{4, 4, 2, 0} {
		n, err := b.s.ExpireInboxLeases(4)
		wantErr(t, err, nil)
		if n != want {
			t.Fatalf("ExpireInboxLeases(4) = %d, want %d", n, want)
		}
		total += n
	}
	if total != 10 {
		t.Fatalf("promoted %d rows, want 10", total)
	}
	// Sweeping changes the data, never an answer.
	if after := b.snapshot("2", "3", "4", "5"); !reflect.DeepEqual(before, after) {
		t.Fatalf("sweep changed answers:\nbefore %+v\nafter  %+v", before, after)
	}
	st := b.stats()
	if st.ByState.Dead != 8 || st.ByState.Ready != 2 || st.ByState.Delayed != 1 || st.ByState.Leased != 0 {
		t.Fatalf("stats after sweep: %+v", st.ByState)
	}
	if r := b.row(live); r.State != wire.StateDelayed {
		t.Fatalf("a future delay was promoted: %s", fmtRow(*r))
	}
}

// snapshot is every read answer about some receivers, for comparing
// before and after a sweep.
type snap struct {
	Lists, Dead map[string][]wire.StoredMessage
	Stats       wire.QueueStats
	Nodes       wire.Registry
	Leases      []wire.ExecLease
}

func (b *bundle) snapshot(recvs ...string) snap {
	b.t.Helper()
	s := snap{Lists: map[string][]wire.StoredMessage{}, Dead: map[string][]wire.StoredMessage{}}
	for _, r := range recvs {
		s.Lists[r] = b.list(r)
		d, err := b.s.ListDead(r, ptr(uint64(ListMax)), nil)
		wantErr(b.t, err, nil)
		s.Dead[r] = d
	}
	s.Stats = b.stats()
	sortReceivers(s.Stats.Receivers)
	var err error
	s.Nodes, err = b.s.ListNodes(0)
	wantErr(b.t, err, nil)
	s.Leases, err = b.s.ListExecLeases()
	wantErr(b.t, err, nil)
	return s
}

func TestExpireExecLeasesRespectsLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	for _, s := range []string{"s1", "s2", "s3"} {
		b.grant("a", s)
	}
	b.clk.Advance(time.Second)
	keep := b.grant("a", "s4")
	b.clk.Advance(testTTL - time.Second) // s1-s3 at expiry, s4 one second before
	before := b.leaseIDs()
	for _, want := range []int{2, 1, 0} {
		if n, err := b.s.ExpireExecLeases(2); err != nil || n != want {
			t.Fatalf("ExpireExecLeases(2) = %d, %v; want %d", n, err, want)
		}
	}
	if after := b.leaseIDs(); !eqStrings(before, after) || !eqStrings(after, []string{keep.LeaseID}) {
		t.Fatalf("leases before %v after %v, want [%s]", before, after, keep.LeaseID)
	}
	// A scope freed by the sweeper can be granted again.
	b.join("b")
	if l := b.grant("b", "s1"); l.LeaseID != "5" {
		t.Fatalf("new lease id %s, want 5", l.LeaseID)
	}
}

func TestClearExpiredMaintenanceRespectsLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, n := range []string{"a", "b", "c", "later", "forever"} {
		b.join(n)
	}
	for _, n := range []string{"a", "b", "c"} {
		wantErr(t, b.s.SetMaintenance(n, true, nil, ptr(uint64(1000))), nil)
	}
	wantErr(t, b.s.SetMaintenance("later", true, nil, ptr(uint64(60_000))), nil)
	wantErr(t, b.s.SetMaintenance("forever", true, nil, nil), nil)
	b.clk.Advance(time.Second)
	before := b.snapshot()
	for _, want := range []int{2, 1, 0} {
		if n, err := b.s.ClearExpiredMaintenance(2); err != nil || n != want {
			t.Fatalf("ClearExpiredMaintenance(2) = %d, %v; want %d", n, err, want)
		}
	}
	if after := b.snapshot(); !reflect.DeepEqual(before.Nodes, after.Nodes) {
		t.Fatalf("sweep changed the listing:\n%+v\n%+v", before.Nodes, after.Nodes)
	}
	for _, n := range []string{"a", "b", "c"} {
		if rec := b.node(n); rec.Maintenance != nil || rec.MaintenanceUntilUnixMs != nil {
			t.Fatalf("%s: %+v", n, rec)
		}
	}
	if rec := b.node("later"); rec.Maintenance == nil || rec.MaintenanceUntilUnixMs == nil {
		t.Fatalf("future drain cleared: %+v", rec)
	}
	if rec := b.node("forever"); rec.Maintenance == nil || !*rec.Maintenance {
		t.Fatalf("indefinite drain cleared: %+v", rec)
	}
	// A node that left while draining leaves no index entry behind.
	wantErr(t, b.s.Leave("later"), nil)
	b.clk.Advance(time.Minute)
	if n, err := b.s.ClearExpiredMaintenance(10); err != nil || n != 0 {
		t.Fatalf("after leave: %d, %v", n, err)
	}
}

func TestEnforceCapAfterLoweringMaxMessages(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxMessages = 100; c.MaxDeliveries = 1 })
	b.join("a")
	var rows []uint64
	for i := range 10 {
		rows = append(rows, b.deliver("2", withPrio(uint8(i))))
	}
	wantErr(t, b.s.Ack("2", rows[7], nil), nil)
	wantErr(t, b.s.Ack("2", rows[8], nil), nil)
	m := b.mustClaim("2", "a", rows[9]) // highest priority
	wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: rows[9], ClaimerNodeID: "a", LeaseToken: m.LeaseToken}), nil)
	b.mustClaim("2", "a", rows[6])
	b.clk.Advance(testTTL) // rows[6] is dead at read time, unswept

	b.reopen(func(c *Config) { c.MaxMessages = 4 })
	if n, err := b.s.EnforceCap(3); err != nil || n != 3 {
		t.Fatalf("EnforceCap(3) = %d, %v", n, err)
	}
	// Acked (7, 8) went first, then the oldest dead letter.
	for _, id := range []uint64{rows[7], rows[8], rows[6]} {
		if b.row(id) != nil {
			t.Fatalf("row %d survived; evicted the wrong rows", id)
		}
	}
	if n, err := b.s.EnforceCap(100); err != nil || n != 3 {
		t.Fatalf("EnforceCap(100) = %d, %v; want 3", n, err)
	}
	for _, id := range []uint64{rows[9], rows[0], rows[1]} {
		if b.row(id) != nil {
			t.Fatalf("row %d survived the second pass", id)
		}
	}
	if n, err := b.s.EnforceCap(100); err != nil || n != 0 {
		t.Fatalf("EnforceCap at the cap = %d, %v", n, err)
	}
	if got := ids(b.list("2")); !slices.Equal(got, []uint64{rows[5], rows[4], rows[3], rows[2]}) {
		t.Fatalf("left %v", got)
	}
	// Deliveries now keep the store at the new cap.
	b.deliver("2")
	if st := b.stats(); st.ByState.Ready != 4 {
		t.Fatalf("after deliver at the cap: %+v", st.ByState)
	}
}

func TestJTIReplayAndPurge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	nowSec := b.clk.Now().Unix()
	wantErr(t, b.s.ConsumeJTI("j1", nowSec), nil)
	wantErr(t, b.s.ConsumeJTI("j1", nowSec), wire.ErrReplayed)
	// Purge time is max(exp, now) + 60 s: an exp in the past still waits
	// out the leeway.
	wantErr(t, b.s.ConsumeJTI("old", nowSec-3600), nil)
	wantErr(t, b.s.ConsumeJTI("late", nowSec+120), nil)
	for i := range 3 {
		wantErr(t, b.s.ConsumeJTI(fmt.Sprintf("x%d", i), nowSec), nil)
	}

	b.clk.Advance(59 * time.Second)
	// Just before j1's purge time (now = purge-1 s): still a replay.
	wantErr(t, b.s.ConsumeJTI("j1", nowSec), wire.ErrReplayed)
	wantErr(t, b.s.ConsumeJTI("old", nowSec-3600), wire.ErrReplayed)
	if n, err := b.s.PurgeJTIs(10); err != nil || n != 0 {
		t.Fatalf("PurgeJTIs before the purge time = %d, %v", n, err)
	}
	b.clk.Advance(time.Second)
	// At the purge time (exp+60 s): a JWT still verifies at that second, so
	// the entry still guards and is not purgeable yet.
	wantErr(t, b.s.ConsumeJTI("j1", nowSec), wire.ErrReplayed)
	if n, err := b.s.PurgeJTIs(10); err != nil || n != 0 {
		t.Fatalf("PurgeJTIs at the purge time = %d, %v", n, err)
	}
	b.clk.Advance(time.Second)
	// One second past the purge time: the entry no longer guards, purged or
	// not; using the id again records it afresh.
	wantErr(t, b.s.ConsumeJTI("j1", nowSec), nil)
	wantErr(t, b.s.ConsumeJTI("j1", nowSec), wire.ErrReplayed)
	// old, x0, x1, x2 are due; late is not. Limit 3 per pass.
	for _, want := range []int{3, 1, 0} {
		if n, err := b.s.PurgeJTIs(3); err != nil || n != want {
			t.Fatalf("PurgeJTIs(3) = %d, %v; want %d", n, err, want)
		}
	}
	wantErr(t, b.s.ConsumeJTI("late", nowSec+120), wire.ErrReplayed)
	wantErr(t, b.s.ConsumeJTI("old", nowSec-3600), nil)
	b.reopen()
	wantErr(t, b.s.ConsumeJTI("late", nowSec+120), wire.ErrReplayed)
	wantErr(t, b.s.ConsumeJTI("old", nowSec-3600), wire.ErrReplayed)
}

func TestJTICapacity(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.ReplayCapacity = 2 })
	nowSec := b.clk.Now().Unix()
	wantErr(t, b.s.ConsumeJTI("a", nowSec), nil)     // purge at +60 s
	wantErr(t, b.s.ConsumeJTI("b", nowSec+100), nil) // purge at +160 s
	// Full of live entries: new ids are refused, never forgotten.
	wantErr(t, b.s.ConsumeJTI("c", nowSec), wire.ErrReplayed)
	wantErr(t, b.s.ConsumeJTI("a", nowSec), wire.ErrReplayed)
	b.clk.Advance(time.Minute + time.Second)
	// "a" is past its purge time: a new id makes room by purging it.
	wantErr(t, b.s.ConsumeJTI("c", nowSec+60), nil)
	wantErr(t, b.s.ConsumeJTI("d", nowSec+60), wire.ErrReplayed)
	wantErr(t, b.s.ConsumeJTI("b", nowSec+100), wire.ErrReplayed)
}

func TestBootstrapState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h := [32]byte{1, 2, 3}
	exp := b.nowMs() + 60_000
	attempt := func(ok, mesh bool) error {
		return b.s.ExchangeBootstrap(BootstrapAttempt{TokenHash: h, ExpiresUnixMs: exp, TokenOK: ok, MeshTokenSet: mesh})
	}
	wantErr(t, attempt(true, false), wire.ErrBootstrapNoMesh) // does not consume
	for range BootstrapMaxFailures - 1 {
		wantErr(t, attempt(false, true), wire.ErrBootstrapInvalid)
	}
	b.reopen()
	wantErr(t, attempt(true, true), nil)
	wantErr(t, attempt(true, true), wire.ErrBootstrapConsumed)
	b.reopen()
	wantErr(t, attempt(true, true), wire.ErrBootstrapConsumed)

	// Failures consume the token after BootstrapMaxFailures.
	h2 := [32]byte{9}
	for range BootstrapMaxFailures {
		wantErr(t, b.s.ExchangeBootstrap(BootstrapAttempt{TokenHash: h2, TokenOK: false, MeshTokenSet: true}), wire.ErrBootstrapInvalid)
	}
	wantErr(t, b.s.ExchangeBootstrap(BootstrapAttempt{TokenHash: h2, TokenOK: true, MeshTokenSet: true}), wire.ErrBootstrapConsumed)

	// Expiry: at the expiry instant still valid, after it expired.
	h3 := [32]byte{7}
	exp3 := b.nowMs() + 1000
	b.clk.Advance(time.Second) // now = exp3: not yet past
	wantErr(t, b.s.ExchangeBootstrap(BootstrapAttempt{TokenHash: h3, ExpiresUnixMs: exp3, TokenOK: false, MeshTokenSet: true}), wire.ErrBootstrapInvalid)
	b.clk.Advance(time.Millisecond) // now = exp3+1: expired
	wantErr(t, b.s.ExchangeBootstrap(BootstrapAttempt{TokenHash: h3, ExpiresUnixMs: exp3, TokenOK: true, MeshTokenSet: true}), wire.ErrBootstrapExpired)
	if n, err := b.s.PurgeBootstrap(10); err != nil || n != 1 {
		t.Fatalf("PurgeBootstrap = %d, %v; want the expired record", n, err)
	}
}
