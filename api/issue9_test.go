package api_test

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"populi-db/wire"
)

const (
	pathDead    = "/v1/populi/admin/a2a/dead"
	pathRequeue = "/v1/populi/admin/a2a/requeue"
)

func (b *bundle) dead(receiver string, extra ...any) []wire.StoredMessage {
	b.t.Helper()
	m := map[string]any{"receiver_agent_id": receiver}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	var out wire.InboxResponse
	b.post(pathDead, m).decode(b.t, &out)
	if out.Messages == nil {
		b.t.Fatal("dead messages is null")
	}
	return out.Messages
}

func nackBody(receiver string, id uint64, claimer string, extra ...any) map[string]any {
	m := map[string]any{"receiver_agent_id": receiver, "message_id": id, "claimer_node_id": claimer}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func TestFencingTokensInbox(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{leaseTTL: 10 * time.Second})
	b.join("w")
	id := b.deliver("1", "2")
	c1 := b.claim("2", "w")[0]
	c2 := b.claim("2", "w")[0] // same claimer again: fresh token
	t1, t2 := *c1.LeaseToken, *c2.LeaseToken
	if t2 <= t1 {
		t.Fatalf("tokens %d then %d", t1, t2)
	}
	ack := func(tok any) response {
		return b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": id, "lease_token": tok})
	}
	renew := func(tok any) response {
		return b.post(pathRenew, map[string]any{"receiver_agent_id": "2", "message_id": id, "claimer_node_id": "w", "lease_token": tok})
	}
	ack(t1).expectErr(t, 409, wire.ErrStaleLeaseToken)
	renew(t1).expectErr(t, 409, wire.ErrStaleLeaseToken)
	renew(t2).expect(t, 204, "")
	// Once the lease expires the token is stale for ack too.
	b.clock.Advance(10 * time.Second)
	ack(t2).expectErr(t, 409, wire.ErrStaleLeaseToken)
	c3 := b.claim("2", "w")[0]
	ack(*c3.LeaseToken).expect(t, 204, "")
	// Tokens increase across rows and exec leases.
	if l := b.grant("w", "scope"); *l.LeaseToken <= *c3.LeaseToken {
		t.Fatalf("exec token %d after inbox token %d", *l.LeaseToken, *c3.LeaseToken)
	}
	// Old clients (no token) keep working.
	id2 := b.deliver("1", "2")
	b.claim("2", "w")
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": id2}).expect(t, 204, "")
}

func TestFencingTokensExec(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("w")
	g1 := b.grant("w", "s")
	b.post(pathRevoke, map[string]any{"lease_id": g1.LeaseID}).expect(t, 204, "")
	g2 := b.grant("w", "s")
	if *g2.LeaseToken <= *g1.LeaseToken {
		t.Fatalf("tokens %d then %d", *g1.LeaseToken, *g2.LeaseToken)
	}
	b.post(pathERenew, leaseBody(g2.LeaseID, "w", "lease_token", *g1.LeaseToken)).expectErr(t, 409, wire.ErrStaleLeaseToken)
	b.post(pathRelease, leaseBody(g2.LeaseID, "w", "lease_token", *g1.LeaseToken)).expectErr(t, 409, wire.ErrStaleLeaseToken)
	b.post(pathERenew, leaseBody(g2.LeaseID, "w", "lease_token", *g2.LeaseToken)).expect(t, 204, "")
	if got := b.leases(); *got[0].LeaseToken != *g2.LeaseToken {
		t.Fatalf("list shows token %v", got[0].LeaseToken)
	}
	b.post(pathRelease, leaseBody(g2.LeaseID, "w", "lease_token", *g2.LeaseToken)).expect(t, 204, "")
}

func TestNack(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("w")
	b.join("other")
	id := b.deliver("1", "2")
	b.post(pathNack, nackBody("2", id, " ")).expectErr(t, 400, wire.ErrClaimerRequired)
	b.post(pathNack, nackBody("2", id, "ghost")).expectErr(t, 403, wire.ErrUnknownClaimer)
	b.post(pathNack, nackBody("2", 999, "w")).expect(t, 404, "")
	b.post(pathNack, nackBody("2", id, "w")).expectErr(t, 409, wire.ErrNackNotHolder) // not leased
	c := b.claim("2", "w")[0]
	b.post(pathNack, nackBody("2", id, "other")).expectErr(t, 409, wire.ErrNackNotHolder)
	b.post(pathNack, nackBody("2", id, "w", "lease_token", *c.LeaseToken+100)).expectErr(t, 409, wire.ErrStaleLeaseToken)

	// retry_after_ms: claimable again exactly when the delay is over.
	b.post(pathNack, nackBody("2", id, "w", "lease_token", *c.LeaseToken, "retry_after_ms", 5000)).expect(t, 204, "")
	if got := b.list("2"); got[0].State != wire.StateDelayed || got[0].LeaseHolderNodeID != nil {
		t.Fatalf("after nack %+v", got[0])
	}
	if len(b.claim("2", "w")) != 0 {
		t.Fatal("claimed during the retry delay")
	}
	b.clock.Advance(4999 * time.Millisecond) // just before
	if len(b.claim("2", "w")) != 0 {
		t.Fatal("claimed before the retry delay ended")
	}
	b.clock.Advance(time.Millisecond) // due
	c = b.claim("2", "w")[0]
	if c.ID != id || c.DeliveryCount != 2 {
		t.Fatalf("re-claim %+v", c)
	}
	// Default delay: jittered backoff on the delivery count (2nd: 1-2 s).
	b.post(pathNack, nackBody("2", id, "w")).expect(t, 204, "")
	nb := *b.list("2")[0].NotBeforeUnixMs - nowMs(b.clock)
	if nb < 1000 || nb > 2000 {
		t.Fatalf("default backoff %d ms", nb)
	}
	b.clock.Advance(2 * time.Second)
	b.claim("2", "w")
	// retry_after_ms 0: ready at once. A huge value does not overflow into "now".
	b.post(pathNack, nackBody("2", id, "w", "retry_after_ms", 0)).expect(t, 204, "")
	b.claim("2", "w")
	b.post(pathNack, nackBody("2", id, "w", "retry_after_ms", uint64(math.MaxUint64))).expect(t, 204, "")
	if len(b.claim("2", "w")) != 0 {
		t.Fatal("huge retry_after_ms made the row ready")
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{maxDeliveries: 2, leaseTTL: 10 * time.Second})
	b.join("w")
	id := b.deliver("1", "2")
	b.claim("2", "w")
	b.post(pathNack, nackBody("2", id, "w", "retry_after_ms", 0)).expect(t, 204, "")
	if c := b.claim("2", "w")[0]; c.DeliveryCount != 2 {
		t.Fatalf("second claim %+v", c)
	}
	b.post(pathRequeue, map[string]any{"receiver_agent_id": "2", "message_id": id}).expectErr(t, 409, wire.ErrNotDead)
	b.post(pathNack, nackBody("2", id, "w", "retry_after_ms", 0)).expect(t, 204, "") // limit reached: dead
	if len(b.claim("2", "w")) != 0 || len(b.list("2")) != 0 {
		t.Fatal("dead letter still claimable or listed")
	}
	d := b.dead("2")
	if !slices.Equal(ids(d), []uint64{id}) || d[0].State != wire.StateDead || d[0].DeliveryCount != 2 {
		t.Fatalf("dead list %+v", d)
	}
	var st wire.QueueStats
	b.get("/v1/populi/queue/stats").decode(t, &st)
	if st.ByState.Dead != 1 || st.PendingCount != 0 {
		t.Fatalf("stats %+v", st.ByState)
	}
	b.post(pathRequeue, map[string]any{"receiver_agent_id": "2", "message_id": 999}).expect(t, 404, "")
	b.post(pathRequeue, map[string]any{"receiver_agent_id": "3", "message_id": id}).expect(t, 404, "")
	b.post(pathRequeue, map[string]any{"receiver_agent_id": "2", "message_id": id}).expect(t, 204, "")
	if c := b.claim("2", "w"); len(c) != 1 || c[0].DeliveryCount != 1 {
		t.Fatalf("claim after requeue %+v", c)
	}
	if len(b.dead("2")) != 0 {
		t.Fatal("requeued row still dead")
	}

	// A lease that runs out at the limit dead-letters the row too.
	id2 := b.deliver("1", "2")
	b.post(pathAck, map[string]any{"receiver_agent_id": "2", "message_id": id}).expect(t, 204, "")
	b.claim("2", "w")
	b.clock.Advance(10 * time.Second)
	b.claim("2", "w")
	b.clock.Advance(10 * time.Second)
	if len(b.claim("2", "w")) != 0 {
		t.Fatal("expired row at the limit was claimed")
	}
	if d := b.dead("2"); !slices.Equal(ids(d), []uint64{id2}) {
		t.Fatalf("dead list %v", ids(d))
	}
	// Paging like the inbox.
	id3 := b.deliver("1", "2")
	b.claim("2", "w")
	b.clock.Advance(10 * time.Second)
	b.claim("2", "w")
	b.clock.Advance(10 * time.Second)
	if d := b.dead("2", "max_messages", 1); !slices.Equal(ids(d), []uint64{id3}) {
		t.Fatalf("dead page 1 %v", ids(d))
	}
	if d := b.dead("2", "max_messages", 1, "before_message_id", id3); !slices.Equal(ids(d), []uint64{id2}) {
		t.Fatalf("dead page 2 %v", ids(d))
	}
	if d := b.dead("x"); len(d) != 0 {
		t.Fatal("non-digit receiver")
	}
}

func TestDelayedDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("w")
	now := nowMs(b.clock)
	later := b.deliver("1", "2", "not_before_unix_ms", now+10_000)
	if got := b.list("2"); got[0].State != wire.StateDelayed || *got[0].NotBeforeUnixMs != now+10_000 {
		t.Fatalf("delayed row %+v", got[0])
	}
	if len(b.claim("2", "w")) != 0 {
		t.Fatal("claimed before not_before")
	}
	past := b.deliver("1", "2", "not_before_unix_ms", now-1)
	if c := b.claim("2", "w"); len(c) != 1 || c[0].ID != past {
		t.Fatalf("past not_before: %v", ids(c))
	}
	b.clock.Advance(10 * time.Second)
	if c := b.claim("2", "w"); len(c) != 1 || c[0].ID != later {
		t.Fatalf("due row: %v", ids(c))
	}
	// Far beyond any representable time: accepted, never due.
	b.deliver("1", "3", "not_before_unix_ms", uint64(math.MaxUint64))
	if len(b.claim("3", "w")) != 0 {
		t.Fatal("far-future row claimed")
	}
}

type claimResult struct {
	r   response
	err error
	at  time.Time
}

// claimAsync starts a claim on another goroutine and returns once the
// request reached the server.
func (b *bundle) claimAsync(body map[string]any) <-chan claimResult {
	b.t.Helper()
	arrived := make(chan struct{}, 1)
	b.setHook(func(r *http.Request) {
		if r.URL.Path == "/v1/populi/a2a/inbox" {
			select {
			case arrived <- struct{}{}:
			default:
			}
		}
	})
	out := make(chan claimResult, 1)
	go func() {
		r, err := b.send(http.MethodPost, "/v1/populi/a2a/inbox", body)
		out <- claimResult{r, err, time.Now()}
	}()
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		b.t.Fatal("claim never reached the server")
	}
	b.setHook(nil)
	return out
}

func waitResult(t *testing.T, ch <-chan claimResult, within time.Duration) claimResult {
	t.Helper()
	select {
	case res := <-ch:
		if res.err != nil {
			t.Fatalf("claim: %v", res.err)
		}
		return res
	case <-time.After(within):
		t.Fatalf("claim did not return within %v", within)
	}
	return claimResult{}
}

func messagesOf(t *testing.T, r response) []wire.StoredMessage {
	t.Helper()
	var out wire.InboxResponse
	r.decode(t, &out)
	return out.Messages
}

// Long poll: a waiting claim is woken by the delivery's commit. The fake
// clock never moves here, so only the store's wake-up can end the wait.
func TestLongPollWokenByDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("w")
	ch := b.claimAsync(map[string]any{"receiver_agent_id": "2", "claimer_node_id": "w", "wait_ms": 30000})
	select {
	case res := <-ch:
		t.Fatalf("claim returned before any delivery: %+v", res)
	case <-time.After(20 * time.Millisecond): // still waiting, as it should
	}
	b.deliver("1", "3") // another receiver: no effect
	sent := time.Now()
	id := b.deliver("1", "2")
	res := waitResult(t, ch, 2*time.Second)
	got := messagesOf(t, res.r)
	if len(got) != 1 || got[0].ID != id || wire.Str(got[0].LeaseHolderNodeID) != "w" {
		t.Fatalf("long poll got %+v", got)
	}
	t.Logf("long poll returned %v after the delivery", res.at.Sub(sent))
}

func TestLongPollWokenByLeaseExpiry(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{leaseTTL: 5 * time.Second})
	b.join("a")
	b.join("b")
	id := b.deliver("1", "2")
	b.claim("2", "a")
	ch := b.claimAsync(map[string]any{"receiver_agent_id": "2", "claimer_node_id": "b", "wait_ms": 30000})
	var res claimResult
	eventually(t, "long poll to return", func() bool {
		select {
		case res = <-ch:
			return true
		default:
			b.clock.Advance(time.Second)
			return false
		}
	})
	if got := messagesOf(t, res.r); len(got) != 1 || got[0].ID != id || wire.Str(got[0].LeaseHolderNodeID) != "b" {
		t.Fatalf("after expiry got %+v", got)
	}
}

func TestLongPollTimesOutAndCaps(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{maxWait: 2 * time.Second})
	b.join("w")
	for _, wait := range []uint64{1000, math.MaxUint64} { // the second is capped at maxWait
		ch := b.claimAsync(map[string]any{"receiver_agent_id": "2", "claimer_node_id": "w", "wait_ms": wait})
		start := b.clock.Now()
		var res claimResult
		eventually(t, "long poll timeout", func() bool {
			select {
			case res = <-ch:
				return true
			default:
				b.clock.Advance(250 * time.Millisecond)
				return false
			}
		})
		res.r.expect(t, 200, `{"messages":[]}`)
		if waited := b.clock.Now().Sub(start); waited < time.Duration(min(wait, 2000))*time.Millisecond {
			t.Fatalf("wait_ms %d returned after %v of fake time", wait, waited)
		}
	}
	// Errors are not delayed.
	b.post("/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": "2", "claimer_node_id": "ghost", "wait_ms": 1000}).
		expectErr(t, 403, wire.ErrUnknownClaimerJoin)
}

func TestDrainEndsLongPoll(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	b.join("w")
	ch := b.claimAsync(map[string]any{"receiver_agent_id": "2", "claimer_node_id": "w", "wait_ms": 30000})
	b.srv.Drain()
	res := waitResult(t, ch, 2*time.Second)
	res.r.expect(t, 200, `{"messages":[]}`)
	// After Drain a long poll does not wait, but still claims what is there.
	b.post("/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": "2", "claimer_node_id": "w", "wait_ms": 30000}).
		expect(t, 200, `{"messages":[]}`)
	id := b.deliver("1", "2")
	r := b.post("/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": "2", "claimer_node_id": "w", "wait_ms": 30000})
	var out wire.InboxResponse
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || len(out.Messages) != 1 || out.Messages[0].ID != id {
		t.Fatalf("claim after drain: %d %q", r.status, r.body)
	}
}
