package store

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

var (
	modelOps  = flag.Int("model.ops", 3000, "operations per seed in TestModel")
	modelSeed = flag.Uint64("model.seed", 0, "run TestModel with this one seed (0: the default seeds)")
)

// TestModel runs random operations against the store and against a plain
// in-memory model of the mailbox (issue 9), comparing every answer and,
// every few operations, every listing, the dead letters, the stats and the
// node flags. Expiry happens only through the fake clock, and the store is
// closed and reopened now and then. A divergence fails with the seed and
// the whole operation sequence; rerun one seed with -model.seed=N, longer
// runs with -model.ops=N.
func TestModel(t *testing.T) {
	t.Parallel()
	seeds := []uint64{1, 2, 3, 4}
	if *modelSeed != 0 {
		seeds = []uint64{*modelSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			maxDel := 3
			if seed%4 == 0 {
				maxDel = 0 // unlimited deliveries: no dead letters
			}
			capacity := 30 // full most of the time: eviction on most deliveries
			if seed%3 == 0 {
				capacity = 400 // seldom full: rows live long, states pile up
			}
			runModel(t, seed, *modelOps, maxDel, capacity)
		})
	}
}

// ---- the model ----

type mRow struct {
	id                   uint64
	sender, recv         string
	payload              string
	created              uint64
	privacy, kind        *string
	prio                 uint8
	state                string
	holder               string
	exp, notBefore       uint64
	token                *uint64
	count                uint32
	dedupe               string
	senderNode, typ, key string
}

type mNode struct {
	vis, tier   *string
	quarantined *bool
	maint       *bool
	until       *uint64
}

type model struct {
	now          uint64
	ttl          uint64
	cap          int
	maxDel       int
	rows         map[uint64]*mRow
	idem         map[string]uint64
	nextID       uint64
	nextToken    uint64
	nodes        map[string]*mNode
	evictions    int
	deadByExpiry int
}

// settle applies every expiry due at now, as if a sweep had run at once.
// The store must answer exactly as if this had happened.
func (m *model) settle() {
	for _, r := range m.rows {
		switch {
		case r.state == wire.StateLeased && r.exp <= m.now:
			r.holder, r.exp = "", 0
			r.state = wire.StateReady
			if m.maxDel > 0 && int(r.count) >= m.maxDel {
				r.state = wire.StateDead
				m.deadByExpiry++
			}
		case r.state == wire.StateDelayed && r.notBefore <= m.now:
			r.notBefore = 0
			r.state = wire.StateReady
		}
	}
	for _, n := range m.nodes {
		if n.maint != nil && *n.maint && n.until != nil && *n.until <= m.now {
			n.maint, n.until = nil, nil
		}
	}
}

func (m *model) sortedIDs() []uint64 {
	ids := make([]uint64, 0, len(m.rows))
	for id := range m.rows {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (r *mRow) wire() wire.StoredMessage {
	w := wire.StoredMessage{
		ID: r.id, SenderAgentID: r.sender, ReceiverAgentID: r.recv, MessageType: r.typ,
		Payload: r.payload, CreatedUnixMs: r.created, Acknowledged: r.state == wire.StateAcked,
		PrivacyClass: r.privacy, Priority: r.prio, TaskKind: r.kind, State: r.state,
		DeliveryCount: r.count, LeaseToken: r.token,
	}
	if r.state == wire.StateLeased {
		w.LeaseHolderNodeID, w.LeaseExpiresUnixMs = ptr(r.holder), ptr(r.exp)
	}
	if r.state == wire.StateDelayed {
		w.NotBeforeUnixMs = ptr(r.notBefore)
	}
	if r.dedupe != "" {
		w.IdempotencyDedupeKey = ptr(r.dedupe)
	}
	return w
}

func (m *model) deliver(req wire.DeliverRequest) (uint64, error) {
	if err := ValidateDeliver(&req); err != nil {
		return 0, err
	}
	dedupe := ""
	if req.IdempotencyKey != nil && strings.TrimSpace(*req.IdempotencyKey) != "" {
		dedupe = req.SenderAgentID + "\x1f" + req.ReceiverAgentID + "\x1f" + strings.TrimSpace(*req.IdempotencyKey)
		if id, ok := m.idem[dedupe]; ok {
			return id, nil
		}
	}
	for len(m.rows) >= m.cap {
		m.evict()
	}
	m.nextID++
	r := &mRow{
		id: m.nextID, sender: req.SenderAgentID, recv: req.ReceiverAgentID, typ: req.MessageType,
		payload: req.Payload, created: m.now, privacy: req.PrivacyClass, kind: req.TaskKind,
		prio: wire.DefaultPriority, state: wire.StateReady, dedupe: dedupe,
	}
	if req.Priority != nil {
		r.prio = *req.Priority
	}
	if req.NotBeforeUnixMs != nil && *req.NotBeforeUnixMs > m.now {
		r.state, r.notBefore = wire.StateDelayed, *req.NotBeforeUnixMs
	}
	if dedupe != "" {
		m.idem[dedupe] = r.id
	}
	m.rows[r.id] = r
	return r.id, nil
}

// evict drops the oldest acked row, else the oldest dead letter, else the
// oldest row (SPEC 16.8, issue 9).
func (m *model) evict() {
	m.evictions++
	ids := m.sortedIDs()
	victim := ids[0]
	for _, want := range []string{wire.StateAcked, wire.StateDead} {
		if i := slices.IndexFunc(ids, func(id uint64) bool { return m.rows[id].state == want }); i >= 0 {
			victim = ids[i]
			break
		}
	}
	r := m.rows[victim]
	if r.dedupe != "" && m.idem[r.dedupe] == r.id {
		delete(m.idem, r.dedupe)
	}
	delete(m.rows, victim)
}

func norm(p *string) string { return strings.ToLower(strings.TrimSpace(wire.Str(p))) }

func (m *model) allowed(r *mRow, n *mNode) bool {
	p, v, tier := norm(r.privacy), norm(n.vis), norm(n.tier)
	if v == "" {
		v = "private"
	}
	if tier == "" {
		tier = "trusted"
	}
	if (p == "" || p == "public") && v == "private" {
		return false
	}
	switch p {
	case "private", "trusted":
		return v != "public"
	case "trusted_only":
		return v != "public" && tier != "new"
	}
	return true
}

func (n *mNode) blocked(now uint64) bool {
	if n.quarantined != nil && *n.quarantined {
		return true
	}
	return n.maint != nil && *n.maint && (n.until == nil || now < *n.until)
}

func (m *model) claim(recv, claimer string) (*wire.StoredMessage, error) {
	claimer = strings.TrimSpace(claimer)
	n := m.nodes[claimer]
	if n == nil {
		return nil, wire.ErrUnknownClaimerJoin
	}
	if n.blocked(m.now) || !IsAgentID(recv) {
		return nil, nil
	}
	var best *mRow
	for _, id := range m.sortedIDs() {
		r := m.rows[id]
		if r.recv != recv || !(r.state == wire.StateReady || (r.state == wire.StateLeased && r.holder == claimer)) {
			continue
		}
		if !m.allowed(r, n) {
			continue
		}
		if best == nil || r.prio > best.prio {
			best = r
		}
	}
	if best == nil {
		return nil, nil
	}
	m.nextToken++
	best.state, best.holder, best.exp = wire.StateLeased, claimer, m.now+m.ttl
	best.token, best.notBefore = ptr(m.nextToken), 0
	best.count++
	w := best.wire()
	return &w, nil
}

func (m *model) row(recv string, id uint64) *mRow {
	if r := m.rows[id]; r != nil && r.recv == recv {
		return r
	}
	return nil
}

func tokenMatches(tok *uint64, r *mRow) bool {
	return tok == nil || (r.token != nil && *r.token == *tok)
}

func (m *model) ack(recv string, id uint64, tok *uint64) error {
	r := m.row(recv, id)
	if r == nil {
		return wire.ErrNotFound
	}
	if tok != nil && !(tokenMatches(tok, r) && (r.state == wire.StateLeased || r.state == wire.StateAcked)) {
		return wire.ErrStaleLeaseToken
	}
	if r.state == wire.StateAcked {
		return nil
	}
	if r.dedupe != "" && m.idem[r.dedupe] == r.id {
		delete(m.idem, r.dedupe)
	}
	r.state, r.holder, r.exp, r.notBefore, r.dedupe = wire.StateAcked, "", 0, 0, ""
	return nil
}

func (m *model) renew(recv string, id uint64, claimer string, tok *uint64) (uint64, error) {
	claimer = strings.TrimSpace(claimer)
	if claimer == "" {
		return 0, wire.ErrClaimerRequired
	}
	n := m.nodes[claimer]
	switch {
	case n == nil:
		return 0, wire.ErrUnknownClaimer
	case n.quarantined != nil && *n.quarantined:
		return 0, wire.ErrClaimerQuarantined
	case n.blocked(m.now):
		return 0, wire.ErrClaimerMaintenance
	}
	r := m.row(recv, id)
	switch {
	case r == nil || r.state == wire.StateAcked:
		return 0, wire.ErrNotFound
	case r.state != wire.StateLeased || r.holder != claimer:
		return 0, wire.ErrRenewNotHolder
	case !tokenMatches(tok, r):
		return 0, wire.ErrStaleLeaseToken
	}
	r.exp = m.now + m.ttl
	return r.exp, nil
}

// nack returns the error; retry nil means the default backoff, whose due
// time the caller reads back from the store (it is jittered).
func (m *model) nack(req wire.NackRequest) (*mRow, error) {
	claimer := strings.TrimSpace(req.ClaimerNodeID)
	if claimer == "" {
		return nil, wire.ErrClaimerRequired
	}
	if m.nodes[claimer] == nil {
		return nil, wire.ErrUnknownClaimer
	}
	r := m.row(req.ReceiverAgentID, req.MessageID)
	switch {
	case r == nil || r.state == wire.StateAcked:
		return nil, wire.ErrNotFound
	case r.state != wire.StateLeased || r.holder != claimer:
		return nil, wire.ErrNackNotHolder
	case !tokenMatches(req.LeaseToken, r):
		return nil, wire.ErrStaleLeaseToken
	}
	r.holder, r.exp = "", 0
	if m.maxDel > 0 && int(r.count) >= m.maxDel {
		r.state = wire.StateDead
		return r, nil
	}
	r.state = wire.StateReady
	if req.RetryAfterMs == nil {
		r.state = wire.StateDelayed // due time filled in by the caller
	} else if *req.RetryAfterMs > 0 {
		r.state, r.notBefore = wire.StateDelayed, m.now+*req.RetryAfterMs
	}
	return r, nil
}

func (m *model) requeue(recv string, id uint64) error {
	r := m.row(recv, id)
	switch {
	case r == nil:
		return wire.ErrNotFound
	case r.state != wire.StateDead:
		return wire.ErrNotDead
	}
	r.state, r.count = wire.StateReady, 0
	return nil
}

func (m *model) list(recv string, dead bool, max, before *uint64) []wire.StoredMessage {
	out := []wire.StoredMessage{}
	ids := m.sortedIDs()
	slices.Reverse(ids)
	limit := clampList(max)
	for _, id := range ids {
		r := m.rows[id]
		if r.recv != recv || (before != nil && id >= *before) {
			continue
		}
		if dead != (r.state == wire.StateDead) || r.state == wire.StateAcked {
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, r.wire())
	}
	return out
}

func (m *model) stats() wire.QueueStats {
	st := wire.QueueStats{PendingByKind: map[string]uint64{}, PendingByPriority: map[string]uint64{}, Receivers: []wire.ReceiverStats{}}
	ready := map[string]*wire.ReceiverStats{}
	oldest := map[string]uint64{}
	for _, id := range m.sortedIDs() {
		r := m.rows[id]
		switch r.state {
		case wire.StateReady:
			st.ByState.Ready++
			rs := ready[r.recv]
			if rs == nil {
				rs = &wire.ReceiverStats{ReceiverAgentID: r.recv}
				ready[r.recv] = rs
				oldest[r.recv] = r.created
			}
			rs.Ready++
			oldest[r.recv] = min(oldest[r.recv], r.created)
		case wire.StateLeased:
			st.ByState.Leased++
		case wire.StateDelayed:
			st.ByState.Delayed++
		case wire.StateDead:
			st.ByState.Dead++
		case wire.StateAcked:
			st.ByState.Acked++
		}
		if r.state == wire.StateReady || r.state == wire.StateDelayed {
			if r.kind != nil {
				st.PendingByKind[*r.kind]++
			}
			st.PendingByPriority[fmt.Sprint(r.prio)]++
		}
	}
	st.PendingCount = st.ByState.Ready + st.ByState.Delayed
	for recv, rs := range ready {
		rs.OldestReadyAgeMs = m.now - oldest[recv]
		st.Receivers = append(st.Receivers, *rs)
	}
	sortReceivers(st.Receivers)
	return st
}

// ---- the run ----

type modelRun struct {
	t      *testing.T
	seed   uint64
	rng    *rand.Rand
	b      *bundle
	m      *model
	log    []string
	tokens []uint64 // every token handed out, to try stale ones
	seen   map[string]int
}

var (
	modelRecvs   = []string{"1", "2", "3"}
	modelNodes   = []string{"n1", "n2", "n3"}
	modelPrivacy = []*string{nil, ptr("private"), ptr("private"), ptr("trusted_only"), ptr("public_ok"), ptr("Public")}
)

func runModel(t *testing.T, seed uint64, ops, maxDel, capacity int) {
	b := setup(t, func(c *Config) { c.MaxMessages = capacity; c.MaxDeliveries = maxDel })
	r := &modelRun{
		t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)), b: b, seen: map[string]int{},
		m: &model{
			now: b.nowMs(), ttl: uint64(testTTL.Milliseconds()), cap: capacity, maxDel: maxDel,
			rows: map[uint64]*mRow{}, idem: map[string]uint64{}, nodes: map[string]*mNode{},
		},
	}
	// n1: private (default) and trusted; n2: public; n3: hybrid, tier new.
	for i, n := range modelNodes {
		node := &mNode{vis: []*string{nil, ptr("public"), ptr("hybrid")}[i], tier: []*string{nil, nil, ptr("new")}[i]}
		r.m.nodes[n] = node
		b.join(n, func(rec *wire.NodeRecord) { rec.Visibility, rec.TrustTier = node.vis, node.tier })
	}
	for i := range ops {
		r.step(i)
		if i%25 == 24 {
			r.compareAll()
		}
		if i%200 == 199 {
			if errs := checkIndexes(b.s); len(errs) > 0 {
				r.fail("index invariants broken: %v", errs)
			}
		}
	}
	r.compareAll()
	t.Logf("seed %d: %d ops, %d claims granted, %d evictions, %d dead by lease expiry, %d rows left; outcomes: %v",
		seed, ops, len(r.tokens), r.m.evictions, r.m.deadByExpiry, len(r.m.rows), r.seen)
}

func (r *modelRun) fail(format string, args ...any) {
	r.t.Helper()
	var sb strings.Builder
	for i, l := range r.log {
		fmt.Fprintf(&sb, "%5d %s\n", i, l)
	}
	r.t.Fatalf("model divergence, seed %d (rerun: go test ./store -run 'TestModel' -model.seed=%d -model.ops=%d): %s\noperations:\n%s",
		r.seed, r.seed, len(r.log), fmt.Sprintf(format, args...), sb.String())
}

func (r *modelRun) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
}

// result appends the store's answer to the last logged operation.
func (r *modelRun) result(v any, err error) {
	if err != nil {
		v = err
	}
	r.log[len(r.log)-1] += fmt.Sprintf(" → %v", v)
}

func (r *modelRun) pick(xs []string) string { return xs[r.rng.IntN(len(xs))] }

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var we *wire.Error
	return errors.As(a, &we) && errors.Is(b, we)
}

func (r *modelRun) checkErr(op string, got, want error) {
	r.t.Helper()
	if !sameErr(got, want) {
		r.fail("%s: store error %v, model error %v", op, got, want)
	}
	if got == nil {
		r.seen[op+" ok"]++
	} else {
		r.seen[op+" "+got.Error()]++
	}
}

// target picks a (receiver, id, holder) to act on: mostly a leased row and
// its holder, sometimes any row, an unknown id or the wrong receiver.
func (r *modelRun) target() (string, uint64, string) {
	ids := r.m.sortedIDs()
	var leased []uint64
	for _, id := range ids {
		if r.m.rows[id].state == wire.StateLeased {
			leased = append(leased, id)
		}
	}
	switch x := r.rng.IntN(20); {
	case x < 12 && len(leased) > 0:
		row := r.m.rows[leased[r.rng.IntN(len(leased))]]
		return row.recv, row.id, row.holder
	case x < 18 && len(ids) > 0:
		row := r.m.rows[ids[r.rng.IntN(len(ids))]]
		return row.recv, row.id, r.pick(modelNodes)
	case x < 19 && len(ids) > 0:
		row := r.m.rows[ids[r.rng.IntN(len(ids))]]
		return r.pick(modelRecvs), row.id, r.pick(modelNodes)
	}
	return r.pick(modelRecvs), r.m.nextID + 1 + uint64(r.rng.IntN(3)), r.pick(modelNodes)
}

// token picks a lease token: none, the row's own, or a stale or random one.
func (r *modelRun) token(recv string, id uint64) *uint64 {
	switch x := r.rng.IntN(10); {
	case x < 3:
		return nil
	case x < 7:
		if row := r.m.row(recv, id); row != nil && row.token != nil {
			return ptr(*row.token)
		}
	case x < 9:
		if len(r.tokens) > 0 {
			return ptr(r.tokens[r.rng.IntN(len(r.tokens))])
		}
	}
	return ptr(r.m.nextToken + 1 + uint64(r.rng.IntN(5)))
}

func fmtTok(p *uint64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func (r *modelRun) step(i int) {
	s, m, rng := r.b.s, r.m, r.rng
	switch x := rng.IntN(100); {
	case x < 22: // deliver
		req := wire.DeliverRequest{
			SenderAgentID: r.pick([]string{"7", "8", " 7 "}), ReceiverAgentID: r.pick(modelRecvs),
			MessageType: "job", Payload: fmt.Sprintf("p%d", i), PrivacyClass: modelPrivacy[rng.IntN(len(modelPrivacy))],
		}
		if rng.IntN(40) == 0 {
			req.SenderAgentID = r.pick([]string{"", "x7", "-1"})
		}
		if k := rng.IntN(8); k < 5 {
			req.IdempotencyKey = ptr([]string{"a", "b", "c", " a ", "  "}[k])
		}
		if p := rng.IntN(7); p < 5 {
			req.Priority = ptr([]uint8{0, 50, 128, 200, 255}[p])
		}
		if k := rng.IntN(4); k < 2 {
			req.TaskKind = ptr([]string{"embed", "text_infer"}[k])
		}
		switch rng.IntN(6) {
		case 0:
			req.NotBeforeUnixMs = ptr(m.now + uint64(rng.IntN(20_000)))
		case 1:
			req.NotBeforeUnixMs = ptr(m.now - uint64(rng.IntN(5)))
		}
		r.logf("deliver %q→%q key=%v prio=%v nb=%v privacy=%v kind=%v", req.SenderAgentID, req.ReceiverAgentID,
			fmtS(req.IdempotencyKey), fmtP8(req.Priority), fmtPtr(req.NotBeforeUnixMs), fmtS(req.PrivacyClass), fmtS(req.TaskKind))
		got, err := s.Deliver(req, "")
		r.result(got, err)
		want, werr := m.deliver(req)
		r.checkErr("deliver", err, werr)
		if got != want {
			r.fail("deliver: store id %d, model id %d", got, want)
		}
	case x < 48: // claim
		recv, node := r.pick(modelRecvs), r.pick(modelNodes)
		if rng.IntN(30) == 0 {
			node = r.pick([]string{"ghost", " n1 ", "x"})
		}
		r.logf("claim %q by %q", recv, node)
		got, err := s.ClaimNext(recv, node)
		if got != nil {
			r.result(fmt.Sprintf("row %d token %d count %d", got.ID, *got.LeaseToken, got.DeliveryCount), err)
		} else {
			r.result("none", err)
		}
		want, werr := m.claim(recv, node)
		r.checkErr("claim", err, werr)
		r.compareRow("claim", got, want)
		if got != nil && got.LeaseToken != nil {
			r.tokens = append(r.tokens, *got.LeaseToken)
			r.seen[fmt.Sprintf("claim delivery_count=%d", min(got.DeliveryCount, 4))]++
		}
	case x < 55: // renew
		recv, id, node := r.target()
		if rng.IntN(20) == 0 {
			node = r.pick([]string{"", "ghost"})
		}
		tok := r.token(recv, id)
		r.logf("renew %q/%d by %q token=%s", recv, id, node, fmtTok(tok))
		got, err := s.RenewInboxLease(recv, id, node, tok)
		r.result(got, err)
		want, werr := m.renew(recv, id, node, tok)
		r.checkErr("renew", err, werr)
		if got != want {
			r.fail("renew: store expiry %d, model %d", got, want)
		}
	case x < 63: // nack
		recv, id, node := r.target()
		req := wire.NackRequest{ReceiverAgentID: recv, MessageID: id, ClaimerNodeID: node, LeaseToken: r.token(recv, id)}
		if k := rng.IntN(6); k < 5 {
			req.RetryAfterMs = ptr([]uint64{0, 1, 1000, 5000, 10_000}[k])
		}
		r.logf("nack %q/%d by %q token=%s retry=%v", recv, id, node, fmtTok(req.LeaseToken), fmtPtr(req.RetryAfterMs))
		err := s.Nack(req)
		r.result("ok", err)
		row, werr := m.nack(req)
		r.checkErr("nack", err, werr)
		if err == nil && req.RetryAfterMs == nil && row.state == wire.StateDelayed {
			// The default backoff is jittered: check its range, adopt it.
			stored := r.b.row(id)
			ceil := nackCeil(row.count)
			lo, hi := m.now+uint64((ceil/2).Milliseconds()), m.now+uint64(ceil.Milliseconds())
			if stored.NotBeforeUnixMs == nil || *stored.NotBeforeUnixMs < lo || *stored.NotBeforeUnixMs > hi {
				r.fail("nack default backoff due %v outside [%d, %d]", fmtPtr(stored.NotBeforeUnixMs), lo, hi)
			}
			row.notBefore = *stored.NotBeforeUnixMs
			r.log[len(r.log)-1] += fmt.Sprintf(" (backoff due %d)", row.notBefore)
		}
	case x < 76: // ack
		recv, id, _ := r.target()
		tok := r.token(recv, id)
		r.logf("ack %q/%d token=%s", recv, id, fmtTok(tok))
		err := s.Ack(recv, id, tok)
		r.result("ok", err)
		r.checkErr("ack", err, m.ack(recv, id, tok))
	case x < 78: // requeue
		recv, id, _ := r.target()
		if dead := r.m.list(r.pick(modelRecvs), true, nil, nil); len(dead) > 0 && rng.IntN(2) == 0 {
			recv, id = dead[0].ReceiverAgentID, dead[rng.IntN(len(dead))].ID
		}
		r.logf("requeue %q/%d", recv, id)
		err := s.Requeue(recv, id)
		r.result("ok", err)
		r.checkErr("requeue", err, m.requeue(recv, id))
	case x < 80: // node flags
		node := r.pick(modelNodes)
		n := m.nodes[node]
		switch rng.IntN(4) {
		case 0:
			q := rng.IntN(2) == 0
			r.logf("quarantine %q %v", node, q)
			r.checkErr("quarantine", s.SetQuarantine(node, q), nil)
			n.quarantined = ptr(q)
		case 1:
			r.logf("maintenance %q off", node)
			r.checkErr("maintenance", s.SetMaintenance(node, false, nil, nil), nil)
			n.maint, n.until = ptr(false), nil
		default:
			forMs := uint64(rng.IntN(3)) * 7000 // 0 = indefinite
			r.logf("maintenance %q on for=%d", node, forMs)
			r.checkErr("maintenance", s.SetMaintenance(node, true, nil, &forMs), nil)
			n.maint, n.until = ptr(true), nil
			if forMs > 0 {
				n.until = ptr(m.now + forMs)
			}
		}
	case x < 92: // time passes
		d := []uint64{0, 1, 999, 1000, 2000, 5000, 9999, 10_000, 15_000}[rng.IntN(9)]
		r.logf("advance %d ms", d)
		r.b.clk.Advance(time.Duration(d) * time.Millisecond)
		m.now += d
	case x < 96: // a paged listing
		recv, dead := r.pick(modelRecvs), rng.IntN(3) == 0
		max := ptr(uint64(rng.IntN(6)))
		var before *uint64
		if rng.IntN(2) == 0 {
			before = ptr(uint64(rng.IntN(int(m.nextID) + 2)))
		}
		r.logf("list %q dead=%v max=%d before=%v", recv, dead, *max, fmtPtr(before))
		m.settle()
		var got []wire.StoredMessage
		var err error
		if dead {
			got, err = s.ListDead(recv, max, before)
		} else {
			got, err = s.ListInbox(recv, max, before)
		}
		r.checkErr("list", err, nil)
		r.compareRows("list", got, m.list(recv, dead, max, before))
	case x < 99: // the sweeper's passes: they change data, never answers
		limit := 1 + rng.IntN(4)
		r.logf("sweep limit=%d", limit)
		_, err := s.ExpireInboxLeases(limit)
		r.checkErr("ExpireInboxLeases", err, nil)
		_, err = s.ClearExpiredMaintenance(limit)
		r.checkErr("ClearExpiredMaintenance", err, nil)
		n, err := s.EnforceCap(limit)
		r.checkErr("EnforceCap", err, nil)
		if n != 0 {
			r.fail("EnforceCap evicted %d rows; deliveries keep the store at the cap", n)
		}
	default: // restart
		r.logf("restart")
		r.b.reopen()
		r.compareAll()
	}
	m.settle()
}

// nackCeil is the upper end of NackBackoff(n)'s range.
func nackCeil(n uint32) time.Duration {
	d := NackBackoffBase
	for i := uint32(1); i < n && d < NackBackoffCap; i++ {
		d *= 2
	}
	return min(d, NackBackoffCap)
}

func fmtS(p *string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%q", *p)
}

func fmtP8(p *uint8) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func (r *modelRun) compareRow(op string, got, want *wire.StoredMessage) {
	r.t.Helper()
	if (got == nil) != (want == nil) || (got != nil && !reflect.DeepEqual(*got, *want)) {
		g, w := "nil", "nil"
		if got != nil {
			g = fmtRow(*got)
		}
		if want != nil {
			w = fmtRow(*want)
		}
		r.fail("%s:\nstore %s\nmodel %s", op, g, w)
	}
}

func (r *modelRun) compareRows(op string, got, want []wire.StoredMessage) {
	r.t.Helper()
	if !reflect.DeepEqual(got, want) {
		r.fail("%s:\nstore %s\nmodel %s", op, fmtRows(got), fmtRows(want))
	}
}

// compareAll compares every receiver's listing and dead letters, the
// stats, queue_depth and the node flags.
func (r *modelRun) compareAll() {
	r.t.Helper()
	r.m.settle()
	for _, recv := range modelRecvs {
		got, err := r.b.s.ListInbox(recv, ptr(uint64(ListMax)), nil)
		r.checkErr("list", err, nil)
		r.compareRows("full listing of "+recv, got, r.m.list(recv, false, ptr(uint64(ListMax)), nil))
		got, err = r.b.s.ListDead(recv, ptr(uint64(ListMax)), nil)
		r.checkErr("list dead", err, nil)
		r.compareRows("dead letters of "+recv, got, r.m.list(recv, true, ptr(uint64(ListMax)), nil))
	}
	st, err := r.b.s.QueueStats()
	r.checkErr("stats", err, nil)
	sortReceivers(st.Receivers)
	if want := r.m.stats(); !reflect.DeepEqual(st, want) {
		r.fail("stats:\nstore %+v\nmodel %+v", st, want)
	}
	reg, err := r.b.s.ListNodes(0)
	r.checkErr("nodes", err, nil)
	if *reg.QueueDepth != st.PendingCount {
		r.fail("queue_depth %d, pending %d", *reg.QueueDepth, st.PendingCount)
	}
	for _, rec := range reg.Nodes {
		n := r.m.nodes[rec.ID]
		if !reflect.DeepEqual(rec.Quarantined, n.quarantined) || !reflect.DeepEqual(rec.Maintenance, n.maint) ||
			!reflect.DeepEqual(rec.MaintenanceUntilUnixMs, n.until) {
			r.fail("node %s flags: store q=%v m=%v until=%v, model q=%v m=%v until=%v", rec.ID,
				rec.Quarantined, rec.Maintenance, fmtPtr(rec.MaintenanceUntilUnixMs), n.quarantined, n.maint, fmtPtr(n.until))
		}
	}
}
