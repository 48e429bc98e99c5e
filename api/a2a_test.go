package api_test

import (
	"slices"
	"testing"
	"time"

	"populi-db/wire"
)

const (
	pathDeliver = "/v1/populi/a2a/deliver"
	pathAck     = "/v1/populi/a2a/ack"
	pathRenew   = "/v1/populi/a2a/lease-renew"
	pathNack    = "/v1/populi/a2a/nack"
)

// D7: the relay cap bounds the stored rows.
func TestD7Cap(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{maxMessages: 3})
	for i := 0; i < 5; i++ {
		b.deliver("1", "2")
	}
	if got := b.list("2"); len(got) > 3 || !slices.Equal(ids(got), []uint64{5, 4, 3}) {
		t.Fatalf("listing after cap: %v", ids(got))
	}
}

// D8 and SPEC 2.9: agent ids must be decimal digit strings.
func TestD8DeliverValidation(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	cases := []struct {
		sender, receiver string
		want             *wire.Error
	}{
		{"bad", "1", wire.ErrSenderDigits},
		{"1", "r", wire.ErrReceiverDigits},
		{"", "1", wire.ErrSenderRequired},
		{"1", "  ", wire.ErrReceiverRequired},
		{"-1", "1", wire.ErrSenderDigits},
		{"+1", "1", wire.ErrSenderDigits},
		{"1 2", "1", wire.ErrSenderDigits},
		{"1", "1.0", wire.ErrReceiverDigits},
		{"", "", wire.ErrSenderRequired},
	}
	for _, c := range cases {
		b.post(pathDeliver, msg(c.sender, c.receiver)).expectErr(t, 400, c.want)
	}
	// Ids are trimmed and leading zeros kept.
	id := b.deliver(" 007 ", "\t42\n")
	got := b.list("42")
	if len(got) != 1 || got[0].ID != id || got[0].SenderAgentID != "007" || got[0].ReceiverAgentID != "42" {
		t.Fatalf("stored row %+v", got)
	}
	r := b.post(pathDeliver, msg("1", "2"))
	r.expect(t, 200, `{"accepted":true,"message_id":2}`)
}

func TestDeliverIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("w")
	a := b.deliver("1", "2", "idempotency_key", "k1")
	if again := b.deliver("1", "2", "idempotency_key", " k1 ", "payload", "other"); again != a {
		t.Fatalf("duplicate got id %d, want %d", again, a)
	}
	// A blank key does not deduplicate; another pair does not collide.
	x, y := b.deliver("1", "2", "idempotency_key", "  "), b.deliver("1", "2", "idempotency_key", "  ")
	z := b.deliver("1", "3", "idempotency_key", "k1")
	if x == y || z == a {
		t.Fatalf("ids %d %d %d", x, y, z)
	}
	// Still deduplicated while leased; released by ack.
	if c := b.claim("2", "w"); len(c) != 1 || c[0].ID != a {
		t.Fatalf("claim %v", ids(c))
	}
	if again := b.deliver("1", "2", "idempotency_key", "k1"); again != a {
		t.Fatal("leased row lost its key")
	}
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": a}).expect(t, 204, "")
	if again := b.deliver("1", "2", "idempotency_key", "k1"); again == a {
		t.Fatal("acked row kept its key")
	}
}

// D27 (first half) and SPEC 6.8's key-free rules.
func TestAttestationWithoutKey(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	zeroD := "0000000000000000000000000000000000000000000000000000000000000000"
	zeroS := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
	b.post(pathDeliver, msg("1", "2", "message_type", "job_result", "payload_blake3_hex", zeroD, "worker_ed25519_sig_b64", zeroS)).
		expect(t, 503, "populi: VOX_MESH_WORKER_RESULT_VERIFY_KEY is not configured (required when attestation is present)")
	b.post(pathDeliver, msg("1", "2", "message_type", "job_result", "payload_blake3_hex", zeroD)).
		expect(t, 400, "populi: payload_blake3_hex and worker_ed25519_sig_b64 must both be set or both omitted")
	b.post(pathDeliver, msg("1", "2", "message_type", "job_fail", "payload_blake3_hex", "  ", "worker_ed25519_sig_b64", zeroS)).
		expect(t, 400, "populi: payload_blake3_hex and worker_ed25519_sig_b64 must both be set or both omitted")
	b.post(pathDeliver, msg("1", "2", "payload_blake3_hex", zeroD, "worker_ed25519_sig_b64", zeroS)).
		expect(t, 400, "populi: attestation fields are only allowed for job_result and job_fail")
	// Id validation comes first.
	b.post(pathDeliver, msg("x", "2", "payload_blake3_hex", zeroD)).expectErr(t, 400, wire.ErrSenderDigits)
	// Blank attestation fields count as absent.
	b.deliver("1", "2", "payload_blake3_hex", " ", "worker_ed25519_sig_b64", "")
}

// stubAttestor stands in for package security's verifier.
type stubAttestor struct{ err error }

func (a stubAttestor) VerifyDelivery(*wire.DeliverRequest) error { return a.err }

func TestAttestationWithAttestor(t *testing.T) {
	t.Parallel()
	d, s := "ab", "cd"
	ok := setup(t, opts{attestor: stubAttestor{}})
	id := ok.deliver("1", "2", "message_type", " JOB_RESULT ", "payload_blake3_hex", d, "worker_ed25519_sig_b64", s)
	if got := ok.list("2"); got[0].ID != id || wire.Str(got[0].PayloadBlake3Hex) != d {
		t.Fatalf("stored %+v", got[0])
	}
	ok.post(pathDeliver, msg("1", "2", "payload_blake3_hex", d, "worker_ed25519_sig_b64", s)).
		expect(t, 400, "populi: attestation fields are only allowed for job_result and job_fail")
	bad := setup(t, opts{attestor: stubAttestor{&wire.Error{Code: wire.EINVALID, Message: "populi: worker_ed25519_sig_b64 verification failed"}}})
	bad.post(pathDeliver, msg("1", "2", "message_type", "job_fail", "payload_blake3_hex", d, "worker_ed25519_sig_b64", s)).
		expect(t, 400, "populi: worker_ed25519_sig_b64 verification failed")
	bad.deliver("1", "2", "message_type", "job_fail") // no attestation: the attestor is not asked
}

func TestInboxListing(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	for i := 0; i < 5; i++ {
		b.deliver("1", "7")
	}
	b.deliver("1", "8")
	// D21: max_messages.
	if got := b.list("7", "max_messages", 1); !slices.Equal(ids(got), []uint64{5}) {
		t.Fatalf("max 1: %v", ids(got))
	}
	// max_messages 0 clamps to 1; the default is 64.
	if got := b.list("7", "max_messages", 0); len(got) != 1 {
		t.Fatalf("max 0: %v", ids(got))
	}
	// D22: cursor paging.
	page := b.list("7", "max_messages", 2)
	next := b.list("7", "max_messages", 2, "before_message_id", page[1].ID)
	if !slices.Equal(ids(page), []uint64{5, 4}) || !slices.Equal(ids(next), []uint64{3, 2}) {
		t.Fatalf("pages %v %v", ids(page), ids(next))
	}
	// D23/D24: a pager of size 2 over 5 rows: 2, 2, 1, then empty (sticky).
	var all []uint64
	var cursor any
	for i := 0; i < 5; i++ {
		extra := []any{"max_messages", 2}
		if cursor != nil {
			extra = append(extra, "before_message_id", cursor)
		}
		got := b.list("7", extra...)
		if len(got) == 0 {
			break
		}
		all = append(all, ids(got)...)
		cursor = got[len(got)-1].ID
	}
	if !slices.Equal(all, []uint64{5, 4, 3, 2, 1}) {
		t.Fatalf("paged %v", all)
	}
	if got := b.list("7", "before_message_id", 1); len(got) != 0 {
		t.Fatalf("past the end: %v", ids(got))
	}
	// Receiver matched exactly: no trimming, no digit checks, no error.
	if got := b.list(" 7"); len(got) != 0 {
		t.Fatal("receiver was trimmed")
	}
	if got := b.list("abc"); len(got) != 0 {
		t.Fatal("non-digit receiver listed rows")
	}
	// A blank claimer is a listing, and listing rows carry no lease.
	if got := b.inbox(map[string]any{"receiver_agent_id": "7", "claimer_node_id": "  "}); len(got) != 5 {
		t.Fatalf("blank claimer listing: %v", ids(got))
	}
}

// D24: 4 rows, page 2: 2, 2, then empty twice.
func TestD24Pager(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	for i := 0; i < 4; i++ {
		b.deliver("1", "9")
	}
	p1 := b.list("9", "max_messages", 2)
	p2 := b.list("9", "max_messages", 2, "before_message_id", p1[1].ID)
	p3 := b.list("9", "max_messages", 2, "before_message_id", p2[1].ID)
	if len(p1) != 2 || len(p2) != 2 || len(p3) != 0 || p2[0].ID >= p1[1].ID {
		t.Fatalf("pages %v %v %v", ids(p1), ids(p2), ids(p3))
	}
}

func TestClaimAndAck(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.post("/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": "2", "claimer_node_id": "ghost"}).
		expectErr(t, 403, wire.ErrUnknownClaimerJoin)
	b.join("w")
	b.join("pub", "visibility", "public")
	if got := b.claim("2", "w"); len(got) != 0 {
		t.Fatal("claim from an empty inbox returned rows")
	}
	pub := b.deliver("1", "2", "privacy_class", "public") // R1: not for private nodes
	low := b.deliver("1", "2")                            // private, priority 128
	high := b.deliver("1", "2", "priority", 200)          // wins on priority
	if got := b.claim("2", "pub"); len(got) != 1 || got[0].ID != pub {
		t.Fatalf("public node claimed %v", ids(got))
	}
	got := b.claim("2", " w ")
	if len(got) != 1 || got[0].ID != high || wire.Str(got[0].LeaseHolderNodeID) != "w" ||
		*got[0].LeaseExpiresUnixMs != nowMs(b.clock)+120_000 || got[0].DeliveryCount != 1 || got[0].LeaseToken == nil {
		t.Fatalf("claim %+v", got)
	}
	// Claiming again returns the same best row with a fresh lease and token.
	again := b.claim("2", "w")
	if again[0].ID != high || *again[0].LeaseToken <= *got[0].LeaseToken {
		t.Fatalf("re-claim %+v", again[0])
	}
	// Listing shows leased rows with their lease fields.
	l := b.list("2")
	if !slices.Equal(ids(l), []uint64{high, low, pub}) || l[0].LeaseHolderNodeID == nil {
		t.Fatalf("listing %+v", l)
	}
	// Ack: any worker-plane caller, no holder check; re-ack is 204; unknown is 404.
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": high}).expect(t, 204, "")
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": high}).expect(t, 204, "")
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": 999}).expect(t, 404, "")
	b.post(pathAck, map[string]any{"receiver_agent_id": "3", "message_id": low}).expect(t, 404, "")
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": low}).expect(t, 204, "") // from pending
	if l := b.list("2"); !slices.Equal(ids(l), []uint64{pub}) {
		t.Fatalf("acked rows listed: %v", ids(l))
	}
	if got := b.claim("2", "w"); len(got) != 0 {
		t.Fatalf("acked row claimed: %v", ids(got))
	}
}

func TestClaimLeaseExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{leaseTTL: 10 * time.Second})
	b.join("a")
	b.join("b")
	id := b.deliver("1", "2")
	if got := b.claim("2", "a"); got[0].ID != id {
		t.Fatal("first claim")
	}
	b.clock.Advance(10*time.Second - time.Millisecond) // just before expiry: still held
	if got := b.claim("2", "b"); len(got) != 0 {
		t.Fatal("claimed a live lease")
	}
	b.clock.Advance(time.Millisecond) // expiry <= now: expired
	if got := b.claim("2", "b"); len(got) != 1 || wire.Str(got[0].LeaseHolderNodeID) != "b" {
		t.Fatalf("claim after expiry: %+v", got)
	}
}

// D11: quarantine blocks claims with an empty answer.
func TestD11QuarantineClaim(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("q-worker")
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "q-worker", "quarantined": true}).expect(t, 204, "")
	b.deliver("1", "99")
	b.post("/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": "99", "claimer_node_id": "q-worker"}).
		expect(t, 200, `{"messages":[]}`)
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "q-worker", "quarantined": false}).expect(t, 204, "")
	if got := b.claim("99", "q-worker"); len(got) != 1 {
		t.Fatalf("claim after unquarantine: %v", ids(got))
	}
}

// D12: maintenance blocks claims and lease renewal.
func TestD12MaintenanceClaim(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("m")
	id := b.deliver("1", "5")
	maint := func(on bool) {
		b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "m", "maintenance": on}).expect(t, 204, "")
	}
	maint(true)
	if got := b.claim("5", "m"); len(got) != 0 {
		t.Fatal("claim under maintenance")
	}
	maint(false)
	if got := b.claim("5", "m"); len(got) != 1 {
		t.Fatal("claim after maintenance off")
	}
	maint(true)
	b.post(pathRenew, map[string]any{"receiver_agent_id": "5", "message_id": id, "claimer_node_id": "m"}).
		expectErr(t, 403, wire.ErrClaimerMaintenance)
}

// D13: a timed drain clears itself.
func TestD13TimedMaintenance(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("m")
	b.deliver("1", "5")
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "m", "maintenance": true, "maintenance_for_ms": 80}).expect(t, 204, "")
	if got := b.claim("5", "m"); len(got) != 0 {
		t.Fatal("claim during the drain")
	}
	b.clock.Advance(79 * time.Millisecond) // before the deadline
	if got := b.claim("5", "m"); len(got) != 0 {
		t.Fatal("claim before the deadline")
	}
	b.clock.Advance(time.Millisecond) // at the deadline: cleared
	if got := b.claim("5", "m"); len(got) != 1 {
		t.Fatal("claim after the deadline")
	}
	if n := b.nodes()[0]; n.Maintenance != nil || n.MaintenanceUntilUnixMs != nil {
		t.Fatalf("expired drain fields not removed: %+v", n)
	}
}

// D14 and SPEC 2.12's order.
func TestD14LeaseRenew(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("a")
	b.join("b")
	id := b.deliver("1", "2")
	renew := func(claimer string, mid uint64) response {
		return b.post(pathRenew, map[string]any{"receiver_agent_id": "2", "message_id": mid, "claimer_node_id": claimer})
	}
	renew("a", id).expectErr(t, 409, wire.ErrRenewNotHolder) // pending: nobody holds it
	b.claim("2", "a")
	b.clock.Advance(time.Minute)
	renew("a", id).expect(t, 204, "")
	if l := b.list("2"); *l[0].LeaseExpiresUnixMs != nowMs(b.clock)+120_000 {
		t.Fatalf("renew did not extend: %+v", l[0])
	}
	renew("b", id).expectErr(t, 409, wire.ErrRenewNotHolder)
	renew("  ", id).expectErr(t, 400, wire.ErrClaimerRequired)
	renew("ghost", id).expectErr(t, 403, wire.ErrUnknownClaimer)
	renew("a", 999).expect(t, 404, "")
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "b", "quarantined": true}).expect(t, 204, "")
	renew("b", id).expectErr(t, 403, wire.ErrClaimerQuarantined)
	// An expired lease cannot be renewed.
	b.clock.Advance(120 * time.Second)
	renew("a", id).expectErr(t, 409, wire.ErrRenewNotHolder)
	// An acked row is gone for renewal.
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": id}).expect(t, 204, "")
	renew("a", id).expect(t, 404, "")
}

func TestQueueStats(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("w")
	b.deliver("1", "2", "task_kind", "text_infer")
	b.deliver("1", "2", "priority", 3)
	leased := b.deliver("1", "3", "priority", 255)
	b.claim("3", "w")
	b.clock.Advance(5 * time.Second)
	var st wire.QueueStats
	b.get("/v1/populi/queue/stats").decode(t, &st)
	if st.PendingCount != 2 || st.PendingByKind["text_infer"] != 1 || st.PendingByPriority["128"] != 1 ||
		st.PendingByPriority["3"] != 1 || st.ByState.Ready != 2 || st.ByState.Leased != 1 {
		t.Fatalf("stats %+v", st)
	}
	if len(st.Receivers) != 1 || st.Receivers[0].ReceiverAgentID != "2" || st.Receivers[0].Ready != 2 || st.Receivers[0].OldestReadyAgeMs != 5000 {
		t.Fatalf("receivers %+v", st.Receivers)
	}
	var reg wire.Registry
	b.get("/v1/populi/nodes").decode(t, &reg)
	if *reg.QueueDepth != 2 {
		t.Fatalf("queue_depth %d", *reg.QueueDepth)
	}
	_ = leased
}
