package store

import (
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

func sortReceivers(rs []wire.ReceiverStats) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].ReceiverAgentID < rs[j].ReceiverAgentID })
}

func TestQueueStatsByState(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxDeliveries = 2 })
	for _, n := range []string{"a", "b", "c"} {
		b.join(n)
	}
	kind := func(k string) func(*wire.DeliverRequest) {
		return func(r *wire.DeliverRequest) { r.TaskKind = ptr(k) }
	}
	empty := b.stats()
	if empty.PendingCount != 0 || empty.ByState != (wire.StateCounts{}) || len(empty.Receivers) != 0 ||
		empty.PendingByKind == nil || empty.PendingByPriority == nil || empty.Receivers == nil {
		t.Fatalf("empty stats: %+v", empty)
	}
	// t0: receiver 2 gets two ready rows and an acked one; receiver 3 a row
	// that c claims.
	r2ready := b.deliver("2", kind("embed"))
	b.deliver("2", withPrio(200))
	wantErr(t, b.s.Ack("2", b.deliver("2"), nil), nil)
	toDead := b.deliver("3", withPrio(9))
	b.mustClaim("3", "c", toDead)
	b.clk.Advance(5 * time.Second)
	// t0+5 s: b claims a row; its lease ends at t0+15 s.
	b.mustClaim("3", "b", b.deliver("3", kind("embed"), withPrio(7)))
	b.clk.Advance(5 * time.Second)
	// t0+10 s: c's lease lapsed; c claims the row again (delivery 2 of 2,
	// until t0+20 s). a leases a row of receiver 2 until t0+20 s. A row
	// delayed until t0+12 s.
	b.mustClaim("3", "c", toDead)
	b.mustClaim("2", "a", b.deliver("2", withPrio(250)))
	b.deliver("3", withNotBefore(b.nowMs()+2000), kind("text_infer"))
	b.clk.Advance(5 * time.Second)

	// t0+15 s: b's lease is over and the delayed row is due; neither is
	// swept. Stats count them as ready.
	st := b.stats()
	if want := (wire.StateCounts{Ready: 4, Leased: 2, Acked: 1}); st.ByState != want {
		t.Fatalf("by_state = %+v, want %+v", st.ByState, want)
	}
	wantKind := map[string]uint64{"embed": 2, "text_infer": 1}
	wantPrio := map[string]uint64{"128": 2, "200": 1, "7": 1}
	if st.PendingCount != 4 || !reflect.DeepEqual(st.PendingByKind, wantKind) || !reflect.DeepEqual(st.PendingByPriority, wantPrio) {
		t.Fatalf("pending: %d %v %v", st.PendingCount, st.PendingByKind, st.PendingByPriority)
	}
	sortReceivers(st.Receivers)
	wantRecv := []wire.ReceiverStats{
		{ReceiverAgentID: "2", Ready: 2, OldestReadyAgeMs: b.nowMs() - b.row(r2ready).CreatedUnixMs},
		{ReceiverAgentID: "3", Ready: 2, OldestReadyAgeMs: 10_000}, // b's row, created at t0+5 s
	}
	if !reflect.DeepEqual(st.Receivers, wantRecv) {
		t.Fatalf("receivers = %+v, want %+v", st.Receivers, wantRecv)
	}
	reg, err := b.s.ListNodes(0)
	wantErr(t, err, nil)
	if *reg.QueueDepth != st.PendingCount {
		t.Fatalf("queue_depth %d, stats pending %d", *reg.QueueDepth, st.PendingCount)
	}

	// t0+20 s: c's second lease ran out at the limit (dead), a's did not
	// (ready again). Still unswept.
	b.clk.Advance(5 * time.Second)
	st = b.stats()
	if want := (wire.StateCounts{Ready: 5, Dead: 1, Acked: 1}); st.ByState != want {
		t.Fatalf("by_state = %+v, want %+v", st.ByState, want)
	}
	wantPrio = map[string]uint64{"128": 2, "200": 1, "7": 1, "250": 1}
	if st.PendingCount != 5 || !reflect.DeepEqual(st.PendingByPriority, wantPrio) {
		t.Fatalf("pending: %d %v (a dead row is not pending)", st.PendingCount, st.PendingByPriority)
	}

	// Sweeping writes what stats already said.
	before := b.snapshot("2", "3")
	if n, err := b.s.ExpireInboxLeases(100); err != nil || n == 0 {
		t.Fatalf("ExpireInboxLeases = %d, %v", n, err)
	}
	after := b.snapshot("2", "3")
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("stats changed by the sweep:\n%+v\n%+v", before.Stats, after.Stats)
	}
}

// Receiver ids longer than maxKeyPart are hashed inside keys; stats must
// still name them.
func TestQueueStatsLongReceiverID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("w")
	long := strings.Repeat("9", maxKeyPart+1)
	b.deliver(long)
	b.mustClaim(long, "w", b.deliver(long, withPrio(200)))
	b.clk.Advance(testTTL) // one ready row, one unswept expired lease
	st := b.stats()
	if len(st.Receivers) != 1 || st.Receivers[0].ReceiverAgentID != long || st.Receivers[0].Ready != 2 {
		t.Fatalf("receivers = %d entries, first %.20q ready %d", len(st.Receivers), st.Receivers[0].ReceiverAgentID, st.Receivers[0].Ready)
	}
}
