package crashtest

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"populi-db/wire"
)

// The ledger is the harness's memory of every 2xx answer it received, and of
// every attempt whose outcome it does not know (the server died under it).
// Each check compares an answer with what the ledger proves must hold.
// Times are the harness's: sent = just before the request left, done = just
// after the answer arrived, so the server handled it in [sent, done]. The
// server's clock is the same wall clock, so its lease expiries (Unix ms)
// compare with done.UnixMilli().

// skewMs absorbs millisecond truncation when comparing harness times with the
// server's expiries.
const skewMs = 5

type rowRec struct {
	id        uint64
	recv, key string
	ackSent   time.Time // earliest ack attempt sent (zero: none)
	ackDone   time.Time // earliest confirmed ack answer (zero: none)
	claims    []holdRec // confirmed claims and renewals
}

// holdRec is a confirmed claim or renewal: holder held the lease at least
// until exp (server ms).
type holdRec struct {
	holder     string
	token      uint64
	sent, done time.Time
	exp        uint64
}

type keyRec struct {
	ids         []uint64 // confirmed ids answered for this key, in first-seen order
	unconfirmed bool     // an attempt with this key got no answer
}

type leaseRec struct {
	id, scope, holder string
	token             uint64
	releaseSent       time.Time
	releaseDone       time.Time
	holds             []holdRec // confirmed grants and renewals
}

// claimRef names a confirmed claim for later renew/ack ops.
type claimRef struct {
	id     uint64
	recv   string
	holder string
	token  uint64
}

type ledger struct {
	mu       sync.Mutex
	ttlMs    uint64
	cycle    int
	rows     map[uint64]*rowRec
	keys     map[string]*keyRec
	leases   map[string]*leaseRec
	scopes   map[string][]*leaseRec // scope → every lease seen on it
	grantsUn map[string]bool        // holder\x1fscope → an unanswered grant attempt
	tokens   map[uint64]string      // fencing token → what it was handed out for
	joined   map[string]bool

	// Highest ids seen in earlier cycles (prev) and so far (cur).
	prevMsg, curMsg     uint64
	prevLease, curLease uint64
	prevTok, curTok     uint64

	recentRows   []uint64
	recentClaims []claimRef
	recentLeases []*leaseRec

	ops        map[string]int // answered operations by name
	checks     int            // individual invariant checks made
	unanswered int
	problems   []string
	journal    []string // last answers, for failure reports
}

func newLedger(ttl time.Duration) *ledger {
	return &ledger{
		ttlMs:    uint64(ttl.Milliseconds()),
		rows:     map[uint64]*rowRec{},
		keys:     map[string]*keyRec{},
		leases:   map[string]*leaseRec{},
		scopes:   map[string][]*leaseRec{},
		grantsUn: map[string]bool{},
		tokens:   map[uint64]string{},
		joined:   map[string]bool{},
		ops:      map[string]int{},
	}
}

const journalLen = 400

func (l *ledger) note(format string, args ...any) {
	l.journal = append(l.journal, fmt.Sprintf("c%d ", l.cycle)+fmt.Sprintf(format, args...))
	if len(l.journal) > 2*journalLen {
		l.journal = append(l.journal[:0], l.journal[len(l.journal)-journalLen:]...)
	}
}

func (l *ledger) fail(format string, args ...any) {
	msg := fmt.Sprintf("cycle %d: ", l.cycle) + fmt.Sprintf(format, args...)
	l.problems = append(l.problems, msg)
	l.note("VIOLATION %s", msg)
}

func (l *ledger) check(ok bool, format string, args ...any) {
	l.checks++
	if !ok {
		l.fail(format, args...)
	}
}

// newCycle starts a server incarnation: ids answered from now on that are new
// must be above everything answered before it.
func (l *ledger) newCycle(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cycle = n
	l.prevMsg, l.prevLease, l.prevTok = l.curMsg, l.curLease, l.curTok
}

func (l *ledger) answered(op string) {
	l.mu.Lock()
	l.ops[op]++
	l.mu.Unlock()
}

func (l *ledger) lost() {
	l.mu.Lock()
	l.unanswered++
	l.mu.Unlock()
}

func keyOf(a, b string) string { return a + "\x1f" + b }

func push[T any](s []T, v T, max int) []T {
	s = append(s, v)
	if len(s) > 2*max {
		s = append(s[:0], s[len(s)-max:]...)
	}
	return s
}

// ---- deliveries ----

func (l *ledger) deliverUnanswered(recv, key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unanswered++
	if key != "" {
		kr := l.keys[keyOf(recv, key)]
		if kr == nil {
			kr = &keyRec{}
			l.keys[keyOf(recv, key)] = kr
		}
		kr.unconfirmed = true
	}
}

func (l *ledger) onDeliver(recv, key string, id uint64, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["deliver"]++
	l.note("deliver recv=%s key=%q → %d", recv, key, id)
	l.check(id > 0, "deliver answered message id 0")
	var kr *keyRec
	if key != "" {
		kr = l.keys[keyOf(recv, key)]
		if kr == nil {
			kr = &keyRec{}
			l.keys[keyOf(recv, key)] = kr
		}
		// Every other row answered for this key must have been acked (an
		// ack attempt sent before this answer), else dedup was lost.
		for _, x := range kr.ids {
			if x == id {
				continue
			}
			r := l.rows[x]
			l.check(!r.ackSent.IsZero() && r.ackSent.Before(done),
				"idempotency lost: key %q of receiver %s answered new id %d while row %d with that key was pending", key, recv, id, x)
		}
	}
	r, seen := l.rows[id]
	if seen && r.key == "?" && r.recv == recv {
		// First met through a claim whose answer was booked before this
		// one: the row is this delivery's.
		delete(l.rows, id)
		seen = false
	}
	if seen {
		l.check(key != "" && r.key == key && r.recv == recv,
			"message id %d reused: first (recv %s key %q), now (recv %s key %q)", id, r.recv, r.key, recv, key)
		l.check(r.ackDone.IsZero() || !r.ackDone.Before(sent),
			"deliver with key %q answered row %d, acknowledged before the request was sent", key, id)
		return
	}
	l.check(id > l.prevMsg || (kr != nil && kr.unconfirmed),
		"new message id %d not above %d, the highest answered before this restart", id, l.prevMsg)
	if r != nil { // keep what the claims recorded
		r.key = key
	} else {
		r = &rowRec{id: id, recv: recv, key: key}
	}
	l.rows[id] = r
	if kr != nil {
		kr.ids = append(kr.ids, id)
	}
	l.curMsg = max(l.curMsg, id)
	l.recentRows = push(l.recentRows, id, 1024)
}

// ---- inbox claims, renewals, acks ----

func (l *ledger) onClaim(m *wire.StoredMessage, recv, holder string, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["claim"]++
	tok := uint64(0)
	if m.LeaseToken != nil {
		tok = *m.LeaseToken
	}
	exp := uint64(0)
	if m.LeaseExpiresUnixMs != nil {
		exp = *m.LeaseExpiresUnixMs
	}
	l.note("claim recv=%s by %s → row %d token %d exp %d", recv, holder, m.ID, tok, exp)
	l.check(m.ReceiverAgentID == recv, "claim on receiver %s returned row %d of receiver %s", recv, m.ID, m.ReceiverAgentID)
	l.check(!m.Acknowledged, "claim returned acknowledged row %d", m.ID)
	l.check(wire.Str(m.LeaseHolderNodeID) == holder, "claim by %s returned row %d held by %q", holder, m.ID, wire.Str(m.LeaseHolderNodeID))
	l.check(tok != 0, "claim of row %d has no lease_token", m.ID)
	l.check(exp >= uint64(sent.UnixMilli())+l.ttlMs-skewMs, "claim of row %d expires %d, before sent+TTL", m.ID, exp)
	l.freshToken(tok, fmt.Sprintf("claim of row %d by %s", m.ID, holder), false)
	r := l.rows[m.ID]
	if r == nil { // a delivery whose answer was lost: nothing known about it
		if m.ID > l.curMsg {
			l.curMsg = m.ID
		}
		r = &rowRec{id: m.ID, recv: m.ReceiverAgentID, key: "?"}
		l.rows[m.ID] = r
	}
	l.check(r.ackDone.IsZero() || !r.ackDone.Before(sent), "row %d claimed after its ack was confirmed", m.ID)
	for _, c := range r.claims {
		l.check(c.holder == holder || !c.done.Before(sent) || uint64(done.UnixMilli())+skewMs >= c.exp,
			"row %d leased to %s (until %d) and also claimed by %s, answered at %d", m.ID, c.holder, c.exp, holder, done.UnixMilli())
	}
	r.claims = append(r.claims, holdRec{holder: holder, token: tok, sent: sent, done: done, exp: exp})
	l.recentClaims = push(l.recentClaims, claimRef{m.ID, recv, holder, tok}, 256)
}

// freshToken checks that a fencing token was never handed out before and,
// unless it may come from an unanswered attempt, is above earlier cycles'.
func (l *ledger) freshToken(tok uint64, what string, mayBeOld bool) {
	if tok == 0 {
		return
	}
	if prev, ok := l.tokens[tok]; ok {
		l.fail("lease_token %d reused: %s, earlier %s", tok, what, prev)
		return
	}
	l.check(tok > l.prevTok || mayBeOld, "new lease_token %d (%s) not above %d, the highest before this restart", tok, what, l.prevTok)
	l.tokens[tok] = what
	l.curTok = max(l.curTok, tok)
}

func (l *ledger) onRenew(c claimRef, withToken bool, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["lease-renew"]++
	l.note("lease-renew row %d by %s token=%v", c.id, c.holder, withToken)
	r := l.rows[c.id]
	for _, o := range r.claims {
		// A live lease of another holder, or a newer claim of this one
		// (tokens grow in commit order), answered before this renew was
		// sent: the renew must be refused (with a token, for the latter).
		live := o.done.Before(sent) && uint64(done.UnixMilli())+skewMs < o.exp
		l.check(!live || o.holder == c.holder, "renew of row %d by %s accepted while %s held it until %d", c.id, c.holder, o.holder, o.exp)
		l.check(!live || !withToken || o.token <= c.token, "renew of row %d with stale token %d accepted (token %d live until %d)", c.id, c.token, o.token, o.exp)
	}
	l.check(r.ackDone.IsZero() || !r.ackDone.Before(sent), "renew of row %d accepted after its ack was confirmed", c.id)
	tok := uint64(0) // a renew without a token proves nothing about which token is current
	if withToken {
		tok = c.token
	}
	r.claims = append(r.claims, holdRec{holder: c.holder, token: tok, sent: sent, done: done, exp: uint64(sent.UnixMilli()) + l.ttlMs})
}

func (l *ledger) ackAttempt(id uint64, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r := l.rows[id]; r != nil && r.ackSent.IsZero() {
		r.ackSent = sent
	}
}

func (l *ledger) onAck(id uint64, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["ack"]++
	l.note("ack row %d", id)
	if r := l.rows[id]; r != nil && r.ackDone.IsZero() {
		r.ackDone = done
	}
}

func (l *ledger) ackNotFound(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fail("ack of confirmed delivery %d answered 404: the row is gone", id)
}

// ---- exec leases ----

func (l *ledger) grantUnanswered(holder, scope string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unanswered++
	l.grantsUn[keyOf(holder, scope)] = true
}

func (l *ledger) onGrant(g wire.ExecLease, holder, scope string, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["exec-grant"]++
	tok := uint64(0)
	if g.LeaseToken != nil {
		tok = *g.LeaseToken
	}
	l.note("grant %s to %s → lease %s token %d exp %d", scope, holder, g.LeaseID, tok, g.ExpiresUnixMs)
	l.check(g.HolderNodeID == holder && g.ScopeKey == scope, "grant of %s to %s answered %+v", scope, holder, g)
	l.check(g.ExpiresUnixMs >= uint64(sent.UnixMilli())+l.ttlMs-skewMs, "grant %s expires %d, before sent+TTL", g.LeaseID, g.ExpiresUnixMs)
	n, err := strconv.ParseUint(g.LeaseID, 10, 64)
	l.check(err == nil && n > 0, "lease id %q is not a positive decimal", g.LeaseID)
	lr, seen := l.leases[g.LeaseID]
	if seen {
		l.check(lr.scope == scope && lr.holder == holder,
			"lease id %s reused: first %s/%s, now %s/%s", g.LeaseID, lr.scope, lr.holder, scope, holder)
		l.check(lr.releaseDone.IsZero() || !lr.releaseDone.Before(sent), "lease id %s answered again after its release was confirmed", g.LeaseID)
		l.check(lr.token == tok, "re-grant of lease %s changed its token %d → %d", g.LeaseID, lr.token, tok)
	} else {
		old := l.grantsUn[keyOf(holder, scope)]
		l.check(n > l.prevLease || old, "new lease id %d not above %d, the highest before this restart", n, l.prevLease)
		l.freshToken(tok, "grant of lease "+g.LeaseID, old)
		lr = &leaseRec{id: g.LeaseID, scope: scope, holder: holder, token: tok}
		l.leases[g.LeaseID] = lr
		l.scopes[scope] = append(l.scopes[scope], lr)
		l.curLease = max(l.curLease, n)
		l.recentLeases = push(l.recentLeases, lr, 256)
	}
	l.checkScopeHolders(lr, sent, done)
	lr.holds = append(lr.holds, holdRec{holder: holder, token: tok, sent: sent, done: done, exp: g.ExpiresUnixMs})
}

// checkScopeHolders: no other lease on lr's scope may have been live (held,
// not released) when this answer was made.
func (l *ledger) checkScopeHolders(lr *leaseRec, sent, done time.Time) {
	for _, o := range l.scopes[lr.scope] {
		if o == lr {
			continue
		}
		for _, h := range o.holds {
			live := h.done.Before(sent) && uint64(done.UnixMilli())+skewMs < h.exp &&
				(o.releaseSent.IsZero() || o.releaseSent.After(done))
			l.check(!live, "scope %s has two holders: lease %s (%s, live until %d) and lease %s (%s, answered at %d)",
				lr.scope, o.id, o.holder, h.exp, lr.id, lr.holder, done.UnixMilli())
		}
	}
}

func (l *ledger) onExecRenew(lr *leaseRec, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["exec-renew"]++
	l.note("exec renew %s by %s", lr.id, lr.holder)
	l.check(lr.releaseDone.IsZero() || !lr.releaseDone.Before(sent), "renew of lease %s accepted after its release was confirmed", lr.id)
	l.checkScopeHolders(lr, sent, done)
	lr.holds = append(lr.holds, holdRec{holder: lr.holder, token: lr.token, sent: sent, done: done, exp: uint64(sent.UnixMilli()) + l.ttlMs})
}

func (l *ledger) releaseAttempt(lr *leaseRec, sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if lr.releaseSent.IsZero() {
		lr.releaseSent = sent
	}
}

func (l *ledger) onRelease(lr *leaseRec, sent, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ops["exec-release"]++
	l.note("exec release %s by %s", lr.id, lr.holder)
	l.check(lr.releaseDone.IsZero() || !lr.releaseDone.Before(sent), "second release of lease %s answered 204", lr.id)
	if lr.releaseDone.IsZero() {
		lr.releaseDone = done
	}
}

// ---- picks for the traffic ----

func (l *ledger) pickRow(rng *rand.Rand) (uint64, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recentRows) == 0 {
		return 0, "", false
	}
	id := l.recentRows[rng.IntN(len(l.recentRows))]
	return id, l.rows[id].recv, true
}

func (l *ledger) pickClaim(rng *rand.Rand) (claimRef, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recentClaims) == 0 {
		return claimRef{}, false
	}
	return l.recentClaims[rng.IntN(len(l.recentClaims))], true
}

func (l *ledger) pickLease(rng *rand.Rand) (*leaseRec, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.recentLeases) == 0 {
		return nil, false
	}
	return l.recentLeases[rng.IntN(len(l.recentLeases))], true
}

// pendingKeys returns up to n (receiver, key, id) whose latest row has never
// had an ack attempt: a re-delivery must answer that id.
func (l *ledger) pendingKeys(rng *rand.Rand, n int) [][3]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out [][3]string
	for k, kr := range l.keys {
		if len(kr.ids) == 0 {
			continue
		}
		id := kr.ids[len(kr.ids)-1]
		if !l.rows[id].ackSent.IsZero() {
			continue
		}
		recv, key, _ := strings.Cut(k, "\x1f")
		out = append(out, [3]string{recv, key, strconv.FormatUint(id, 10)})
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// ---- full checks after a kill / restart ----

// view is what a full check reads: through HTTP or the store directly.
type view interface {
	inbox(recv string, before *uint64) ([]wire.StoredMessage, error)
	dead(recv string, before *uint64) ([]wire.StoredMessage, error)
	leases() ([]wire.ExecLease, error)
}

const pageMax = 256

func pages(fetch func(before *uint64) ([]wire.StoredMessage, error)) ([]wire.StoredMessage, error) {
	var all []wire.StoredMessage
	var before *uint64
	for {
		page, err := fetch(before)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < pageMax {
			return all, nil
		}
		b := page[len(page)-1].ID
		before = &b
	}
}

// fullCheck reads every receiver's rows and every exec lease through v, with
// no traffic running, and checks them against the ledger: every answered
// delivery present unless an ack was attempted; no confirmed-acked row; no
// id twice; at most one holder per scope; no released lease listed.
func (l *ledger) fullCheck(v view, receivers []string, where string) error {
	seen := map[uint64]string{}
	for _, recv := range receivers {
		inbox, err := pages(func(b *uint64) ([]wire.StoredMessage, error) { return v.inbox(recv, b) })
		if err != nil {
			return fmt.Errorf("%s: list inbox %s: %w", where, recv, err)
		}
		dead, err := pages(func(b *uint64) ([]wire.StoredMessage, error) { return v.dead(recv, b) })
		if err != nil {
			return fmt.Errorf("%s: list dead %s: %w", where, recv, err)
		}
		l.mu.Lock()
		last := uint64(0)
		for i, m := range inbox {
			l.check(i == 0 || m.ID < last, "%s: inbox of %s not newest first at %d", where, recv, m.ID)
			last = m.ID
		}
		for _, m := range append(inbox, dead...) {
			l.check(m.ReceiverAgentID == recv, "%s: listing of %s has row %d of %s", where, recv, m.ID, m.ReceiverAgentID)
			l.check(!m.Acknowledged, "%s: listing of %s has acknowledged row %d", where, recv, m.ID)
			if prev, dup := seen[m.ID]; dup {
				l.fail("%s: row %d listed twice (%s and %s)", where, m.ID, prev, recv)
			}
			seen[m.ID] = recv
			// Rows from unanswered deliveries raise the bar for new ids too.
			l.curMsg = max(l.curMsg, m.ID)
			if m.LeaseToken != nil {
				l.curTok = max(l.curTok, *m.LeaseToken)
			}
			if r := l.rows[m.ID]; r != nil {
				l.check(r.ackDone.IsZero(), "%s: acknowledged row %d came back (receiver %s)", where, m.ID, recv)
			}
		}
		l.mu.Unlock()
	}
	l.mu.Lock()
	for id, r := range l.rows {
		if r.key == "?" || !r.ackSent.IsZero() {
			continue
		}
		_, ok := seen[id]
		l.check(ok, "%s: confirmed delivery %d (receiver %s, key %q) is missing", where, id, r.recv, r.key)
	}
	l.mu.Unlock()

	ls, err := v.leases()
	if err != nil {
		return fmt.Errorf("%s: list exec leases: %w", where, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	byScope := map[string]string{}
	ids := map[string]bool{}
	for _, e := range ls {
		if other, dup := byScope[e.ScopeKey]; dup {
			l.fail("%s: scope %s has two holders: lease %s and lease %s", where, e.ScopeKey, other, e.LeaseID)
		}
		byScope[e.ScopeKey] = e.LeaseID
		l.check(!ids[e.LeaseID], "%s: lease id %s listed twice", where, e.LeaseID)
		ids[e.LeaseID] = true
		if lr := l.leases[e.LeaseID]; lr != nil {
			l.check(lr.scope == e.ScopeKey && lr.holder == e.HolderNodeID, "%s: lease %s listed as %s/%s, granted as %s/%s",
				where, e.LeaseID, e.ScopeKey, e.HolderNodeID, lr.scope, lr.holder)
			l.check(lr.releaseDone.IsZero(), "%s: released lease %s is listed", where, e.LeaseID)
		}
		if n, err := strconv.ParseUint(e.LeaseID, 10, 64); err == nil {
			l.curLease = max(l.curLease, n)
		}
		if e.LeaseToken != nil {
			l.curTok = max(l.curTok, *e.LeaseToken)
		}
	}
	return nil
}
