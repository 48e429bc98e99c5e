package crashtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"populi-db/wire"
)

// The traffic's universe: few receivers, nodes and scopes, so claims,
// idempotency keys and exec scopes collide often.
var (
	receivers = []string{"100", "101", "102", "103", "104", "105", "106", "107"}
	nodes     = []string{"node-a", "node-b", "node-c", "node-d", "node-e", "node-f"}
)

const (
	sender   = "9"
	keyPool  = 64 // idempotency keys per receiver
	scopes   = 12
	leaseTTL = time.Second
)

func scopeName(i int) string { return "job/" + strconv.Itoa(i) }

// worker drives one stream of random operations against one server
// incarnation, reporting every answer to the ledger.
type worker struct {
	c    *client
	l    *ledger
	rng  *rand.Rand
	stop <-chan struct{} // closed just before the kill: no follow-up requests
}

func (w *worker) stopped() bool {
	select {
	case <-w.stop:
		return true
	default:
		return false
	}
}

// unexpected records an answer no correct server gives.
func (w *worker) unexpected(op string, status int, err error) {
	w.l.mu.Lock()
	defer w.l.mu.Unlock()
	w.l.fail("%s: unexpected answer %d: %v", op, status, err)
}

// outcome sorts an error from the client: transport (unknown outcome, fine
// at a kill), an allowed refusal, or a violation.
func (w *worker) outcome(op string, status int, err error, allowed ...int) (answered bool) {
	if err == nil {
		return true
	}
	if isTransport(err) {
		w.l.lost()
		return false
	}
	if slices.Contains(allowed, status) {
		w.l.answered(op + "-" + strconv.Itoa(status))
		return false
	}
	w.unexpected(op, status, err)
	return false
}

func (w *worker) pick(s []string) string { return s[w.rng.IntN(len(s))] }

// step runs one random operation.
func (w *worker) step() {
	switch p := w.rng.IntN(100); {
	case p < 30:
		w.deliver("", "")
	case p < 50:
		w.claim()
	case p < 58:
		w.renew()
	case p < 66:
		w.ack()
	case p < 78:
		w.grant()
	case p < 84:
		w.execRenew()
	case p < 90:
		w.release()
	case p < 95:
		w.heartbeat()
	case p < 98:
		w.listing()
	default:
		w.listLeases()
	}
}

// deliver sends a private row (a random receiver and maybe key when recv is
// ""); it returns the answered id.
func (w *worker) deliver(recv, key string) (uint64, bool) {
	if recv == "" {
		recv = w.pick(receivers)
		if w.rng.IntN(2) == 0 {
			key = "k" + strconv.Itoa(w.rng.IntN(keyPool))
		}
	}
	req := wire.DeliverRequest{
		SenderAgentID: sender, ReceiverAgentID: recv, MessageType: "task",
		Payload: fmt.Sprintf(`{"n":%d}`, w.rng.Uint32()), PrivacyClass: ptr("private"),
	}
	if key != "" {
		req.IdempotencyKey = &key
	}
	if w.rng.IntN(4) == 0 {
		req.Priority = ptr(uint8(w.rng.IntN(256)))
	}
	sent := time.Now()
	id, err := w.c.Deliver(context.Background(), req)
	done := time.Now()
	if isTransport(err) {
		w.l.deliverUnanswered(recv, key)
		return 0, false
	}
	if !w.outcome("deliver", status(err), err) {
		return 0, false
	}
	w.l.onDeliver(recv, key, id, sent, done)
	return id, true
}

func (w *worker) claim() {
	recv, node := w.pick(receivers), w.pick(nodes)
	sent := time.Now()
	msgs, err := w.c.Inbox(context.Background(), wire.InboxRequest{ReceiverAgentID: recv, ClaimerNodeID: &node})
	done := time.Now()
	if !w.outcome("claim", status(err), err) {
		return
	}
	if len(msgs) > 1 {
		w.unexpected("claim", 200, fmt.Errorf("%d messages in one claim", len(msgs)))
		return
	}
	if len(msgs) == 0 {
		w.l.answered("claim-empty")
		return
	}
	m := msgs[0]
	w.l.onClaim(&m, recv, node, sent, done)
	// Work on it: renew now and then, usually ack, sometimes let it expire.
	ref := claimRef{id: m.ID, recv: recv, holder: node}
	if m.LeaseToken != nil {
		ref.token = *m.LeaseToken
	}
	if w.rng.IntN(4) == 0 && !w.stopped() {
		w.renewRef(ref)
	}
	if w.rng.IntN(10) < 6 && !w.stopped() {
		w.ackRef(m.ID, recv, ref.token)
	}
}

func (w *worker) renew() {
	if ref, ok := w.l.pickClaim(w.rng); ok {
		w.renewRef(ref)
	}
}

func (w *worker) renewRef(ref claimRef) {
	req := wire.LeaseRenewRequest{ReceiverAgentID: ref.recv, MessageID: ref.id, ClaimerNodeID: ref.holder}
	withToken := w.rng.IntN(2) == 0
	if withToken {
		req.LeaseToken = ptr(ref.token)
	}
	sent := time.Now()
	err := w.c.RenewLease(context.Background(), req)
	done := time.Now()
	// 404: acked meanwhile; 409: not the holder (expired, reclaimed) or stale token.
	if w.outcome("lease-renew", status(err), err, 404, 409) {
		w.l.onRenew(ref, withToken, sent, done)
	}
}

func (w *worker) ack() {
	if id, recv, ok := w.l.pickRow(w.rng); ok {
		w.ackRef(id, recv, 0)
	}
}

func (w *worker) ackRef(id uint64, recv string, token uint64) {
	req := wire.AckRequest{ReceiverAgentID: recv, MessageID: id}
	if token != 0 && w.rng.IntN(2) == 0 {
		req.LeaseToken = &token
	}
	sent := time.Now()
	w.l.ackAttempt(id, sent)
	found, err := w.c.Ack(context.Background(), req)
	done := time.Now()
	if err == nil && !found {
		w.l.ackNotFound(id) // rows are never evicted in this test: 404 means lost
		return
	}
	// 409: the token is no longer the live lease's.
	if w.outcome("ack", status(err), err, 409) {
		w.l.onAck(id, done)
	}
}

func (w *worker) grant() {
	node, scope := w.pick(nodes), scopeName(w.rng.IntN(scopes))
	sent := time.Now()
	resp, err := w.c.GrantExecLease(context.Background(), node, scope)
	done := time.Now()
	if isTransport(err) {
		w.l.grantUnanswered(node, scope)
		return
	}
	if w.outcome("exec-grant", status(err), err, 409) {
		w.l.onGrant(resp, node, scope, sent, done)
	}
}

func (w *worker) execReq(lr *leaseRec) wire.ExecLeaseRequest {
	req := wire.ExecLeaseRequest{LeaseID: lr.id, ClaimerNodeID: lr.holder}
	if w.rng.IntN(2) == 0 {
		req.LeaseToken = ptr(lr.token)
	}
	return req
}

func (w *worker) execRenew() {
	lr, ok := w.l.pickLease(w.rng)
	if !ok {
		return
	}
	sent := time.Now()
	err := w.c.RenewExecLease(context.Background(), w.execReq(lr))
	done := time.Now()
	if w.outcome("exec-renew", status(err), err, 404) {
		w.l.onExecRenew(lr, sent, done)
	}
}

func (w *worker) release() {
	lr, ok := w.l.pickLease(w.rng)
	if !ok {
		return
	}
	sent := time.Now()
	w.l.releaseAttempt(lr, sent)
	err := w.c.ReleaseExecLease(context.Background(), w.execReq(lr))
	done := time.Now()
	if w.outcome("exec-release", status(err), err, 404) {
		w.l.onRelease(lr, sent, done)
	}
}

func (w *worker) heartbeat() {
	node := w.pick(nodes)
	rec := wire.NodeRecord{ID: node, Version: "crash", CPUUsagePct: ptr(float32(w.rng.IntN(100)))}
	out, err := w.c.Heartbeat(context.Background(), rec)
	if !w.outcome("heartbeat", status(err), err) {
		return
	}
	w.l.answered("heartbeat")
	if out.ID != node {
		w.unexpected("heartbeat", 200, fmt.Errorf("answered node %q", out.ID))
	}
}

// listing checks a newest-first inbox page: no row acked before it was asked.
func (w *worker) listing() {
	recv := w.pick(receivers)
	sent := time.Now()
	msgs, err := w.c.Inbox(context.Background(), wire.InboxRequest{ReceiverAgentID: recv, MaxMessages: ptr(uint64(pageMax))})
	if !w.outcome("list", status(err), err) {
		return
	}
	l := w.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["list"]++
	for _, m := range msgs {
		l.check(m.ReceiverAgentID == recv && !m.Acknowledged, "listing of %s has row %+v", recv, m)
		if r := l.rows[m.ID]; r != nil {
			l.check(r.ackDone.IsZero() || !r.ackDone.Before(sent), "listing of %s shows row %d, acked before it was asked", recv, m.ID)
		}
	}
}

func (w *worker) listLeases() {
	sent := time.Now()
	leases, err := w.c.ListExecLeases(context.Background())
	if !w.outcome("list-leases", status(err), err) {
		return
	}
	l := w.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["list-leases"]++
	by := map[string]string{}
	for _, e := range leases {
		if o, dup := by[e.ScopeKey]; dup {
			l.fail("exec lease list: scope %s held by leases %s and %s", e.ScopeKey, o, e.LeaseID)
		}
		by[e.ScopeKey] = e.LeaseID
		if lr := l.leases[e.LeaseID]; lr != nil {
			l.check(lr.releaseDone.IsZero() || !lr.releaseDone.Before(sent), "exec lease list shows lease %s, released before it was asked", e.LeaseID)
		}
	}
}

func ptr[T any](v T) *T { return &v }
