package store

import (
	"slices"
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

func TestDeliverValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cases := []struct {
		sender, receiver string
		want             *wire.Error
	}{
		{"", "1", wire.ErrSenderRequired},
		{"  ", "1", wire.ErrSenderRequired},
		{"bad", "1", wire.ErrSenderDigits},
		{"-1", "1", wire.ErrSenderDigits},
		{"+1", "1", wire.ErrSenderDigits},
		{"1 2", "1", wire.ErrSenderDigits},
		{"1.0", "1", wire.ErrSenderDigits},
		{"١", "1", wire.ErrSenderDigits}, // Arabic-Indic one: digits are ASCII only
		{"1", "", wire.ErrReceiverRequired},
		{"1", "  ", wire.ErrReceiverRequired},
		{"1", "r", wire.ErrReceiverDigits},
		{"1", "-1", wire.ErrReceiverDigits},
		{"1", "+1", wire.ErrReceiverDigits},
		{"1", "1 2", wire.ErrReceiverDigits},
		{"1", "1.0", wire.ErrReceiverDigits},
		{"bad", "r", wire.ErrSenderDigits}, // sender is checked first
	}
	for _, tc := range cases {
		_, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: tc.sender, ReceiverAgentID: tc.receiver}, "")
		if err == nil {
			t.Errorf("deliver %q→%q: accepted, want %q", tc.sender, tc.receiver, tc.want.Message)
			continue
		}
		wantErr(t, err, tc.want)
	}
	if st := b.stats(); st.ByState != (wire.StateCounts{}) {
		t.Fatalf("refused deliveries stored rows: %+v", st.ByState)
	}
	// Ids are trimmed and kept with leading zeros; no length limit.
	long := strings.Repeat("9", 2000)
	id, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: " 007 ", ReceiverAgentID: "\t" + long + " "}, "")
	wantErr(t, err, nil)
	rows := b.list(long)
	if len(rows) != 1 || rows[0].ID != id || rows[0].SenderAgentID != "007" || rows[0].ReceiverAgentID != long {
		t.Fatalf("normalized row: %+v", rows)
	}
	if got := b.list(" " + long); len(got) != 0 {
		t.Fatalf("listing matches the receiver exactly, got %d rows for an untrimmed id", len(got))
	}
}

func TestDeliverStoresFields(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.clk.Advance(1234 * time.Millisecond)
	req := wire.DeliverRequest{
		SenderAgentID: "1", ReceiverAgentID: "2", MessageType: "", Payload: "p",
		PrivacyClass: ptr(" Private "), PayloadBlake3Hex: ptr("ab"), WorkerEd25519SigB64: ptr("sig"),
		JWEPayload: ptr("jwe"), TaskKind: ptr("embed"), ModelID: ptr("m"), Traceparent: ptr("tp"),
	}
	id1, err := b.s.Deliver(req, "node-7")
	wantErr(t, err, nil)
	id2 := b.deliver("2")
	if id1 != 1 || id2 != 2 {
		t.Fatalf("ids = %d, %d; want 1, 2 on an empty store", id1, id2)
	}
	got := b.list("2")[1]
	want := wire.StoredMessage{
		ID: 1, SenderAgentID: "1", ReceiverAgentID: "2", MessageType: "", Payload: "p",
		CreatedUnixMs: b.nowMs(), PrivacyClass: ptr(" Private "), PayloadBlake3Hex: ptr("ab"),
		WorkerEd25519SigB64: ptr("sig"), JWEPayload: ptr("jwe"), Priority: 128, TaskKind: ptr("embed"),
		ModelID: ptr("m"), SenderNodeID: ptr("node-7"), Traceparent: ptr("tp"), State: wire.StateReady,
	}
	if !rowsEqual(got, want) {
		t.Fatalf("stored row\n got %s\nwant %s", fmtRow(got), fmtRow(want))
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("w")
	first := b.deliver("2", withKey("k"))
	if got := b.row(first).IdempotencyDedupeKey; wire.Str(got) != "1\x1f2\x1fk" {
		t.Fatalf("dedupe key = %q", wire.Str(got))
	}
	// Pending: duplicates (even with other content, a padded key) answer the
	// same id and store nothing.
	dup := b.deliver("2", withKey(" k "), func(r *wire.DeliverRequest) { r.Payload = "other" })
	if dup != first {
		t.Fatalf("duplicate while pending = %d, want %d", dup, first)
	}
	if n := len(b.list("2")); n != 1 {
		t.Fatalf("duplicate stored a row: %d rows", n)
	}
	// The key is per (sender, receiver): other pairs get their own rows.
	if id := b.deliver("2", withKey("k"), func(r *wire.DeliverRequest) { r.SenderAgentID = "9" }); id == first {
		t.Fatal("another sender shared the key")
	}
	if id := b.deliver("3", withKey("k")); id == first {
		t.Fatal("another receiver shared the key")
	}
	// Blank keys never dedupe.
	a, c := b.deliver("4", withKey("  ")), b.deliver("4", withKey("  "))
	if a == c || b.row(a).IdempotencyDedupeKey != nil {
		t.Fatalf("blank key deduplicated or stored: %d %d", a, c)
	}

	// Leased: still deduplicated.
	m := b.mustClaim("2", "w", first)
	if dup := b.deliver("2", withKey("k")); dup != first {
		t.Fatalf("duplicate while leased = %d, want %d", dup, first)
	}
	// Acked: the key is released and a new row is made.
	wantErr(t, b.s.Ack("2", first, m.LeaseToken), nil)
	if r := b.row(first); r.IdempotencyDedupeKey != nil || !r.Acknowledged {
		t.Fatalf("acked row: %+v", r)
	}
	second := b.deliver("2", withKey("k"))
	if second == first {
		t.Fatal("key still mapped after ack")
	}
	if dup := b.deliver("2", withKey("k")); dup != second {
		t.Fatalf("duplicate of the new row = %d, want %d", dup, second)
	}
	// Re-acking the old row must not release the new row's key.
	wantErr(t, b.s.Ack("2", first, nil), nil)
	if dup := b.deliver("2", withKey("k")); dup != second {
		t.Fatalf("after re-ack of the old row = %d, want %d", dup, second)
	}
}

func TestIdempotencyReleasedOnCapEviction(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxMessages = 2 })
	first := b.deliver("2", withKey("k"))
	b.deliver("2")
	b.deliver("2") // evicts the oldest pending row: first
	if b.row(first) != nil {
		t.Fatal("row 1 not evicted")
	}
	again := b.deliver("2", withKey("k"))
	if again == first {
		t.Fatalf("key of an evicted row still answers its id %d (SPEC 16.3)", first)
	}
	if b.row(again) == nil {
		t.Fatal("the re-delivery was not stored")
	}
}

func TestIdempotencyLongKey(t *testing.T) {
	t.Parallel()
	b := setup(t)
	k := strings.Repeat("x", 40_000) // above bbolt's key limit: hashed
	a := b.deliver("2", withKey(k))
	if dup := b.deliver("2", withKey(k)); dup != a {
		t.Fatalf("long key not deduplicated: %d vs %d", dup, a)
	}
	if other := b.deliver("2", withKey(k+"y")); other == a {
		t.Fatal("different long keys collided")
	}
}

func TestCapFiveDeliveriesKeepsThree(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxMessages = 3 })
	for range 5 {
		b.deliver("2")
	}
	if got := ids(b.list("2")); !slices.Equal(got, []uint64{5, 4, 3}) {
		t.Fatalf("listing = %v, want [5 4 3]", got)
	}
}

func TestCapEvictionOrder(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxMessages = 5; c.MaxDeliveries = 1 })
	b.join("w")
	r1 := b.deliver("2")                // stays pending: the last of these to go
	r2 := b.deliver("2", withPrio(200)) // dead-lettered
	r3 := b.deliver("2")                // acked
	r4 := b.deliver("2")                // acked
	r5 := b.deliver("3")                // dead-lettered
	wantErr(t, b.s.Ack("2", r3, nil), nil)
	wantErr(t, b.s.Ack("2", r4, nil), nil)
	for _, d := range []struct {
		recv string
		id   uint64
	}{{"2", r2}, {"3", r5}} {
		m := b.mustClaim(d.recv, "w", d.id)
		wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: d.recv, MessageID: d.id, ClaimerNodeID: "w", LeaseToken: m.LeaseToken}), nil)
		if b.row(d.id).State != wire.StateDead {
			t.Fatalf("row %d not dead after nack at the limit", d.id)
		}
	}
	evicted := func(want uint64) {
		t.Helper()
		if b.row(want) != nil {
			t.Fatalf("row %d still stored", want)
		}
	}
	// The store is full (5). Each delivery evicts one: acked rows oldest
	// first, then dead letters oldest first, then the oldest live row.
	r6 := b.deliver("2")
	evicted(r3)
	b.deliver("2")
	evicted(r4)
	b.deliver("2")
	evicted(r2)
	b.deliver("2")
	evicted(r5)
	b.deliver("2")
	evicted(r1)
	b.deliver("2")
	evicted(r6)
	if st := b.stats(); st.ByState.Ready != 5 || st.ByState.Dead+st.ByState.Acked != 0 {
		t.Fatalf("after evictions: %+v", st.ByState)
	}
}

// A row whose lease ran out at the delivery limit is dead at read time; the
// cap must give it up before live rows even if no sweep has written that.
func TestCapEvictsUnsweptDeadBeforeLive(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxMessages = 3; c.MaxDeliveries = 1 })
	b.join("w")
	r1 := b.deliver("2")
	r2 := b.deliver("3")
	b.mustClaim("3", "w", r2)
	r3 := b.deliver("2")
	b.clk.Advance(testTTL) // r2's lease ends at the limit: dead, unswept
	if got, _ := b.s.ListDead("3", nil, nil); len(got) != 1 || got[0].ID != r2 {
		t.Fatalf("ListDead = %v, want [r2]", ids(got))
	}
	b.deliver("2") // full: must evict dead r2, not pending r1
	if b.row(r2) != nil {
		t.Fatal("the dead row survived eviction")
	}
	if b.row(r1) == nil || b.row(r3) == nil {
		t.Fatal("a pending row was evicted while a dead row was stored")
	}
}

func TestClaimSelectionPriorityThenOldest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		b.join(n)
	}
	b.mustClaimNone("2", "a")
	low := b.deliver("2", withPrio(10))
	hi1 := b.deliver("2", withPrio(200))
	hi2 := b.deliver("2", withPrio(200))
	def := b.deliver("2")
	b.deliver("3", withPrio(255)) // another receiver: never chosen
	ma := b.mustClaim("2", "a", hi1)
	b.mustClaim("2", "b", hi2)
	b.mustClaim("2", "c", def)
	b.mustClaim("2", "d", low)
	b.mustClaimNone("2", "e")

	// Same claimer re-claims: the same row, a fresh lease and token.
	b.clk.Advance(time.Second)
	again := b.mustClaim("2", "a", hi1)
	if *again.LeaseToken <= *ma.LeaseToken {
		t.Fatalf("re-claim token %d not above %d", *again.LeaseToken, *ma.LeaseToken)
	}
	if got := *again.LeaseExpiresUnixMs; got != b.nowMs()+uint64(testTTL.Milliseconds()) {
		t.Fatalf("re-claim expiry = %d, want now+TTL", got)
	}
	if again.DeliveryCount != 2 || ma.DeliveryCount != 1 {
		t.Fatalf("delivery counts %d then %d, want 1 then 2", ma.DeliveryCount, again.DeliveryCount)
	}
	// The old token is now stale.
	wantErr(t, b.s.Ack("2", hi1, ma.LeaseToken), wire.ErrStaleLeaseToken)

	// A higher ready row beats the row the claimer holds.
	top := b.deliver("2", withPrio(250))
	b.mustClaim("2", "a", top)
	// Unknown claimer; non-digit receiver; trimmed claimer.
	_, err := b.s.ClaimNext("2", "ghost")
	wantErr(t, err, wire.ErrUnknownClaimerJoin)
	b.mustClaimNone("x", "a")
	if m := b.claim("3", "  e "); m == nil || wire.Str(m.LeaseHolderNodeID) != "e" {
		t.Fatalf("trimmed claimer: %+v", m)
	}
}

func TestClaimOlderReadyRowBeatsYoungerHeldRow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b")
	r1 := b.deliver("2")
	r2 := b.deliver("2")
	b.mustClaim("2", "b", r1) // expires at 10 s
	b.clk.Advance(5 * time.Second)
	b.mustClaim("2", "a", r2) // expires at 15 s
	b.clk.Advance(5 * time.Second)
	// b's lease on r1 is over, a's on r2 is live. SPEC 6.5's scan keeps the
	// first eligible row unless a later one has a strictly higher priority,
	// so a gets the older r1 and then holds two rows.
	b.mustClaim("2", "a", r1)
	rows := b.list("2")
	if len(rows) != 2 || wire.Str(rows[0].LeaseHolderNodeID) != "a" || wire.Str(rows[1].LeaseHolderNodeID) != "a" {
		t.Fatalf("a should hold both rows: %s", fmtRows(rows))
	}
	// Re-claiming now returns r1 again (best of a's held rows).
	b.mustClaim("2", "a", r1)
	b.mustClaimNone("2", "b")
}

func TestLeaseExpiryAtReadTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b")
	id := b.deliver("2")
	ma := b.mustClaim("2", "a", id)
	exp := *ma.LeaseExpiresUnixMs
	if exp != b.nowMs()+uint64(testTTL.Milliseconds()) {
		t.Fatalf("lease expiry %d, want now+TTL", exp)
	}

	b.clk.Advance(testTTL - time.Millisecond)
	// Just before expiry (now = exp-1): the lease is live.
	rows := b.list("2")
	if len(rows) != 1 || wire.Str(rows[0].LeaseHolderNodeID) != "a" || derefU64(rows[0].LeaseExpiresUnixMs) != exp {
		t.Fatalf("listing just before expiry: %s", fmtRows(rows))
	}
	b.mustClaimNone("2", "b")
	if st := b.stats(); st.ByState.Leased != 1 || st.ByState.Ready != 0 || st.PendingCount != 0 {
		t.Fatalf("stats just before expiry: %+v", st)
	}

	b.clk.Advance(time.Millisecond)
	// At expiry (now = exp): expired, with no sweep run.
	rows = b.list("2")
	if len(rows) != 1 || rows[0].LeaseHolderNodeID != nil || rows[0].LeaseExpiresUnixMs != nil || rows[0].State != wire.StateReady {
		t.Fatalf("listing at expiry must show no lease: %s", fmtRows(rows))
	}
	st := b.stats()
	if st.ByState.Leased != 0 || st.ByState.Ready != 1 || st.PendingCount != 1 || st.PendingByPriority["128"] != 1 {
		t.Fatalf("stats at expiry: %+v", st)
	}
	if len(st.Receivers) != 1 || st.Receivers[0].ReceiverAgentID != "2" || st.Receivers[0].Ready != 1 {
		t.Fatalf("receiver stats at expiry: %+v", st.Receivers)
	}
	_, err := b.s.RenewInboxLease("2", id, "a", nil)
	wantErr(t, err, wire.ErrRenewNotHolder)
	mb := b.mustClaim("2", "b", id)
	if *mb.LeaseToken <= *ma.LeaseToken || mb.DeliveryCount != 2 {
		t.Fatalf("reclaim: token %d (was %d), count %d", *mb.LeaseToken, *ma.LeaseToken, mb.DeliveryCount)
	}
	wantErr(t, b.s.Ack("2", id, ma.LeaseToken), wire.ErrStaleLeaseToken)
	wantErr(t, b.s.Ack("2", id, mb.LeaseToken), nil)
}

func TestRenewInboxLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b")
	id := b.deliver("2")
	m := b.mustClaim("2", "a", id)

	_, err := b.s.RenewInboxLease("2", id, " ", nil)
	wantErr(t, err, wire.ErrClaimerRequired)
	_, err = b.s.RenewInboxLease("2", id, "ghost", nil)
	wantErr(t, err, wire.ErrUnknownClaimer)
	_, err = b.s.RenewInboxLease("2", 999, "a", nil)
	wantErr(t, err, wire.ErrNotFound)
	_, err = b.s.RenewInboxLease("3", id, "a", nil) // wrong receiver
	wantErr(t, err, wire.ErrNotFound)
	_, err = b.s.RenewInboxLease("2", id, "b", nil)
	wantErr(t, err, wire.ErrRenewNotHolder)
	stale := *m.LeaseToken + 100
	_, err = b.s.RenewInboxLease("2", id, "a", &stale)
	wantErr(t, err, wire.ErrStaleLeaseToken)

	b.clk.Advance(testTTL - time.Millisecond) // just before expiry
	exp, err := b.s.RenewInboxLease("2", id, " a ", m.LeaseToken)
	wantErr(t, err, nil)
	if exp != b.nowMs()+uint64(testTTL.Milliseconds()) {
		t.Fatalf("renewed expiry %d, want now+TTL", exp)
	}
	if rows := b.list("2"); derefU64(rows[0].LeaseExpiresUnixMs) != exp || *rows[0].LeaseToken != *m.LeaseToken {
		t.Fatalf("after renew: %s", fmtRows(rows))
	}
	b.clk.Advance(testTTL - time.Millisecond) // still live thanks to the renewal
	b.mustClaimNone("2", "b")
	b.clk.Advance(time.Millisecond) // at the renewed expiry
	_, err = b.s.RenewInboxLease("2", id, "a", nil)
	wantErr(t, err, wire.ErrRenewNotHolder)

	wantErr(t, b.s.Ack("2", id, nil), nil)
	_, err = b.s.RenewInboxLease("2", id, "a", nil)
	wantErr(t, err, wire.ErrNotFound)
}

func TestAckSemantics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	pending := b.deliver("2")
	leased := b.deliver("2")
	wantErr(t, b.s.Ack("2", 999, nil), wire.ErrNotFound)
	wantErr(t, b.s.Ack("3", pending, nil), wire.ErrNotFound)
	wantErr(t, b.s.Ack(" 2", pending, nil), wire.ErrNotFound) // exact receiver match

	// A token on a row that was never claimed is stale.
	tok := uint64(1)
	wantErr(t, b.s.Ack("2", pending, &tok), wire.ErrStaleLeaseToken)
	// Without a token anyone may ack a pending row.
	wantErr(t, b.s.Ack("2", pending, nil), nil)
	wantErr(t, b.s.Ack("2", pending, nil), nil) // re-ack: no-op

	b.mustClaim("2", "a", leased)
	m := b.claim("2", "a") // re-claim: a new token
	wrong := *m.LeaseToken - 1
	wantErr(t, b.s.Ack("2", leased, &wrong), wire.ErrStaleLeaseToken)
	wantErr(t, b.s.Ack("2", leased, m.LeaseToken), nil)
	// Re-ack with the token that acked it still answers 204.
	wantErr(t, b.s.Ack("2", leased, m.LeaseToken), nil)
	wantErr(t, b.s.Ack("2", leased, &wrong), wire.ErrStaleLeaseToken)
	r := b.row(leased)
	if !r.Acknowledged || r.LeaseHolderNodeID != nil || r.LeaseExpiresUnixMs != nil || r.State != wire.StateAcked {
		t.Fatalf("acked row: %s", fmtRow(*r))
	}
	if rows := b.list("2"); len(rows) != 0 {
		t.Fatalf("acked rows listed: %s", fmtRows(rows))
	}
	if st := b.stats(); st.ByState.Acked != 2 || st.PendingCount != 0 {
		t.Fatalf("stats: %+v", st.ByState)
	}
}

func TestAckAfterExpiryWithToken(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	id := b.deliver("2")
	m := b.mustClaim("2", "a", id)
	b.clk.Advance(testTTL) // at expiry, nobody re-claimed
	wantErr(t, b.s.Ack("2", id, m.LeaseToken), wire.ErrStaleLeaseToken)
	// Without a token the ack is unfenced and succeeds.
	wantErr(t, b.s.Ack("2", id, nil), nil)
}

func TestNack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	b.join("b")
	id := b.deliver("2")
	m := b.mustClaim("2", "a", id)
	nack := func(claimer string, token *uint64, retry *uint64) error {
		return b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: id, ClaimerNodeID: claimer, LeaseToken: token, RetryAfterMs: retry})
	}
	wantErr(t, nack("", nil, nil), wire.ErrClaimerRequired)
	wantErr(t, nack("ghost", nil, nil), wire.ErrUnknownClaimer)
	wantErr(t, nack("b", nil, nil), wire.ErrNackNotHolder)
	stale := *m.LeaseToken + 1
	wantErr(t, nack("a", &stale, nil), wire.ErrStaleLeaseToken)
	wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: 999, ClaimerNodeID: "a"}), wire.ErrNotFound)

	wantErr(t, nack("a", m.LeaseToken, ptr(uint64(5000))), nil)
	due := b.nowMs() + 5000
	rows := b.list("2")
	if len(rows) != 1 || rows[0].State != wire.StateDelayed || derefU64(rows[0].NotBeforeUnixMs) != due || rows[0].LeaseHolderNodeID != nil {
		t.Fatalf("after nack: %s", fmtRows(rows))
	}
	wantErr(t, nack("a", m.LeaseToken, nil), wire.ErrNackNotHolder) // no longer held
	wantErr(t, b.s.Ack("2", id, m.LeaseToken), wire.ErrStaleLeaseToken)

	b.clk.Advance(4999 * time.Millisecond)
	// Just before due (now = due-1): not claimable by anyone.
	b.mustClaimNone("2", "a")
	b.mustClaimNone("2", "b")
	b.clk.Advance(time.Millisecond)
	// At due: claimable again, counted as the second delivery.
	m2 := b.mustClaim("2", "b", id)
	if m2.DeliveryCount != 2 || m2.NotBeforeUnixMs != nil {
		t.Fatalf("after redelivery: %s", fmtRow(*m2))
	}

	// retry_after_ms 0: ready at once.
	wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: id, ClaimerNodeID: "b", RetryAfterMs: ptr(uint64(0))}), nil)
	m3 := b.mustClaim("2", "a", id)

	// No retry_after_ms: jittered backoff on delivery_count 3, [2 s, 4 s].
	wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: id, ClaimerNodeID: "a", LeaseToken: m3.LeaseToken}), nil)
	nb := derefU64(b.list("2")[0].NotBeforeUnixMs)
	if lo, hi := b.nowMs()+2000, b.nowMs()+4000; nb < lo || nb > hi {
		t.Fatalf("default backoff due %d outside [%d, %d]", nb-b.nowMs(), lo-b.nowMs(), hi-b.nowMs())
	}
	wantErr(t, b.s.Ack("2", id, nil), nil)
	wantErr(t, nack("a", nil, nil), wire.ErrNotFound)
}

func TestNackBackoff(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint32]time.Duration{0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second, 10: NackBackoffCap, 100: NackBackoffCap, ^uint32(0): NackBackoffCap} {
		for range 50 {
			if d := NackBackoff(n); d < want/2 || d > want {
				t.Fatalf("NackBackoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}

func TestDeadLetterAfterLeaseExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxDeliveries = 3 })
	b.join("a")
	id := b.deliver("2")
	other := b.deliver("2", withPrio(1))
	for i := 1; i <= 3; i++ {
		m := b.mustClaim("2", "a", id)
		if m.DeliveryCount != uint32(i) {
			t.Fatalf("claim %d: delivery_count %d", i, m.DeliveryCount)
		}
		b.clk.Advance(testTTL)
	}
	// The third lease ran out at the limit: dead at read time, unswept.
	if rows := b.list("2"); len(rows) != 1 || rows[0].ID != other {
		t.Fatalf("listing must leave the dead row out: %s", fmtRows(rows))
	}
	dead, err := b.s.ListDead("2", nil, nil)
	wantErr(t, err, nil)
	if len(dead) != 1 || dead[0].ID != id || dead[0].State != wire.StateDead || dead[0].DeliveryCount != 3 || dead[0].LeaseHolderNodeID != nil {
		t.Fatalf("ListDead: %s", fmtRows(dead))
	}
	if st := b.stats(); st.ByState.Dead != 1 || st.ByState.Leased != 0 || st.ByState.Ready != 1 || st.PendingCount != 1 {
		t.Fatalf("stats before sweep: %+v", st.ByState)
	}
	b.mustClaim("2", "a", other) // the dead row is never claimed
	b.mustClaim("2", "a", other)

	// The sweeper makes the data match; answers do not change.
	if n, err := b.s.ExpireInboxLeases(100); err != nil || n != 0 {
		// Claims above already promoted it for this receiver.
		t.Fatalf("ExpireInboxLeases = %d, %v", n, err)
	}
	if r := b.row(id); r.State != wire.StateDead {
		t.Fatalf("stored state %s, want dead", r.State)
	}
	dead, _ = b.s.ListDead("2", nil, nil)
	if len(dead) != 1 || dead[0].ID != id {
		t.Fatalf("ListDead after promotion: %s", fmtRows(dead))
	}
	_, err = b.s.RenewInboxLease("2", id, "a", nil)
	wantErr(t, err, wire.ErrRenewNotHolder)

	wantErr(t, b.s.Requeue("2", other), wire.ErrNotDead)
	wantErr(t, b.s.Requeue("2", 999), wire.ErrNotFound)
	wantErr(t, b.s.Requeue("3", id), wire.ErrNotFound)
	wantErr(t, b.s.Requeue("2", id), nil)
	if dead, _ := b.s.ListDead("2", nil, nil); len(dead) != 0 {
		t.Fatalf("requeued row still dead: %s", fmtRows(dead))
	}
	b.clk.Advance(testTTL)         // other's lease ends (count 2 of 3: back to ready)
	m := b.mustClaim("2", "a", id) // requeued row ranks first again
	if m.DeliveryCount != 1 {
		t.Fatalf("requeue must reset the count: %d", m.DeliveryCount)
	}
}

func TestDeadLetterAfterNack(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxDeliveries = 2 })
	b.join("a")
	id := b.deliver("2")
	m := b.mustClaim("2", "a", id)
	wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: id, ClaimerNodeID: "a", LeaseToken: m.LeaseToken, RetryAfterMs: ptr(uint64(0))}), nil)
	m = b.mustClaim("2", "a", id)
	// The second nack is at the limit: dead at once, whatever retry_after_ms says.
	wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: id, ClaimerNodeID: "a", LeaseToken: m.LeaseToken, RetryAfterMs: ptr(uint64(0))}), nil)
	b.mustClaimNone("2", "a")
	if r := b.row(id); r.State != wire.StateDead || r.LeaseHolderNodeID != nil {
		t.Fatalf("after nack at the limit: %s", fmtRow(*r))
	}
	wantErr(t, b.s.Ack("2", id, m.LeaseToken), wire.ErrStaleLeaseToken)
	wantErr(t, b.s.Requeue("2", id), nil)
	b.mustClaim("2", "a", id)
}

func TestUnlimitedDeliveries(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxDeliveries = 0 })
	b.join("a")
	id := b.deliver("2")
	for i := 1; i <= 25; i++ {
		if m := b.mustClaim("2", "a", id); m.DeliveryCount != uint32(i) {
			t.Fatalf("count %d, want %d", m.DeliveryCount, i)
		}
		b.clk.Advance(testTTL)
	}
	if st := b.stats(); st.ByState.Dead != 0 {
		t.Fatalf("dead with MaxDeliveries 0: %+v", st.ByState)
	}
}

func TestListDeadPaging(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxDeliveries = 1 })
	b.join("a")
	var dead []uint64
	for i := range 6 {
		id := b.deliver("2")
		m := b.mustClaim("2", "a", id)
		if i%2 == 0 { // half dead by nack (stored dead) ...
			wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "2", MessageID: id, ClaimerNodeID: "a", LeaseToken: m.LeaseToken}), nil)
		} else { // ... half by lease expiry (dead at read time only)
			b.clk.Advance(testTTL)
		}
		dead = append([]uint64{id}, dead...)
	}
	b.deliver("2")
	all, err := b.s.ListDead("2", ptr(uint64(100)), nil)
	wantErr(t, err, nil)
	if got := ids(all); !slices.Equal(got, dead) {
		t.Fatalf("ListDead = %v, want %v", got, dead)
	}
	page, _ := b.s.ListDead("2", ptr(uint64(2)), nil)
	if got := ids(page); !slices.Equal(got, dead[:2]) {
		t.Fatalf("page 1 = %v, want %v", got, dead[:2])
	}
	page, _ = b.s.ListDead("2", ptr(uint64(3)), &dead[1])
	if got := ids(page); !slices.Equal(got, dead[2:5]) {
		t.Fatalf("page 2 = %v, want %v", got, dead[2:5])
	}
	if page, _ := b.s.ListDead("x", nil, nil); len(page) != 0 {
		t.Fatal("non-digit receiver listed rows")
	}
}

func TestListInboxPaging(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var all []uint64
	for i := range 300 {
		all = append([]uint64{b.deliver("2")}, all...)
		if i%50 == 0 {
			b.deliver("3")
		}
	}
	page, err := b.s.ListInbox("2", nil, nil)
	wantErr(t, err, nil)
	if got := ids(page); !slices.Equal(got, all[:ListDefault]) {
		t.Fatalf("default page: %d rows starting %v", len(got), got[:1])
	}
	page, _ = b.s.ListInbox("2", ptr(uint64(1000)), nil)
	if len(page) != ListMax {
		t.Fatalf("max 1000 clamps to %d, got %d", ListMax, len(page))
	}
	page, _ = b.s.ListInbox("2", ptr(uint64(0)), nil)
	if len(page) != 1 || page[0].ID != all[0] {
		t.Fatalf("max 0 → 1 row, got %v", ids(page))
	}
	before := all[10]
	page, _ = b.s.ListInbox("2", ptr(uint64(5)), &before)
	if got := ids(page); !slices.Equal(got, all[11:16]) {
		t.Fatalf("before %d: %v, want %v", before, got, all[11:16])
	}
	page, _ = b.s.ListInbox("2", nil, ptr(uint64(0)))
	if len(page) != 0 {
		t.Fatalf("before 0: %v", ids(page))
	}
	page, _ = b.s.ListInbox("2", ptr(uint64(256)), ptr(all[len(all)-1]+1))
	if len(page) != 1 || page[0].ID != all[len(all)-1] {
		t.Fatalf("last page: %v", ids(page))
	}
	if page, _ := b.s.ListInbox("99", nil, nil); page == nil || len(page) != 0 {
		t.Fatal("empty receiver must list an empty, non-nil slice")
	}
	// Receiver "2" must not see "20"'s rows (prefix safety).
	b.deliver("20")
	if got, _ := b.s.ListInbox("2", ptr(uint64(1)), nil); got[0].ReceiverAgentID != "2" {
		t.Fatalf("listing of 2 returned %s's row", got[0].ReceiverAgentID)
	}
}

func TestDelayedDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("a")
	due := b.nowMs() + 5000
	id := b.deliver("2", withNotBefore(due), withKey("k"))
	past := b.deliver("2", withNotBefore(b.nowMs()), withPrio(1)) // not in the future: ready now
	if r := b.row(past); r.State != wire.StateReady || r.NotBeforeUnixMs != nil {
		t.Fatalf("not_before = now: %s", fmtRow(*r))
	}
	rows := b.list("2")
	if len(rows) != 2 || rows[1].State != wire.StateDelayed || derefU64(rows[1].NotBeforeUnixMs) != due {
		t.Fatalf("listing shows delayed rows with their due time: %s", fmtRows(rows))
	}
	if st := b.stats(); st.ByState.Delayed != 1 || st.ByState.Ready != 1 || st.PendingCount != 2 {
		t.Fatalf("stats: %+v", st.ByState)
	}
	if dup := b.deliver("2", withKey("k")); dup != id {
		t.Fatal("a delayed row's key must deduplicate")
	}
	b.mustClaim("2", "a", past) // the delayed row (higher priority) is skipped
	b.clk.Advance(4999 * time.Millisecond)
	// Just before due (now = due-1).
	b.mustClaim("2", "a", past)
	b.clk.Advance(time.Millisecond)
	// At due: claimable, and it outranks the held row.
	if st := b.stats(); st.ByState.Delayed != 0 || st.ByState.Ready != 1 {
		t.Fatalf("stats at due: %+v", st.ByState)
	}
	m := b.mustClaim("2", "a", id)
	if m.NotBeforeUnixMs != nil || m.DeliveryCount != 1 {
		t.Fatalf("claimed delayed row: %s", fmtRow(*m))
	}
}

func TestStaleTokenAcksRejected(t *testing.T) {
	t.Parallel()
	const rounds = 1000
	b := setup(t, func(c *Config) { c.MaxDeliveries = 0 })
	b.join("a")
	b.join("b")
	accepted := 0
	var last uint64
	for i := range rounds {
		id := b.deliver("2")
		ma := b.mustClaim("2", "a", id)
		if *ma.LeaseToken <= last {
			t.Fatalf("round %d: token %d not above %d", i, *ma.LeaseToken, last)
		}
		b.clk.Advance(testTTL) // a's lease expires
		if i%3 == 0 {
			// Expired and not yet reclaimed: still stale.
			if b.s.Ack("2", id, ma.LeaseToken) == nil {
				accepted++
			}
		}
		mb := b.mustClaim("2", "b", id) // reclaimed
		last = *mb.LeaseToken
		if b.s.Ack("2", id, ma.LeaseToken) == nil {
			accepted++
		}
		if _, err := b.s.RenewInboxLease("2", id, "a", ma.LeaseToken); err == nil {
			accepted++
		}
		if i%2 == 0 {
			// b's lease expires too and a reclaims: b's token is stale now.
			b.clk.Advance(testTTL)
			ma2 := b.mustClaim("2", "a", id)
			if b.s.Ack("2", id, mb.LeaseToken) == nil {
				accepted++
			}
			wantErr(t, b.s.Ack("2", id, ma2.LeaseToken), nil)
			last = *ma2.LeaseToken
			continue
		}
		wantErr(t, b.s.Ack("2", id, mb.LeaseToken), nil)
	}
	if accepted != 0 {
		t.Fatalf("%d stale-token operations accepted in %d rounds", accepted, rounds)
	}
}
