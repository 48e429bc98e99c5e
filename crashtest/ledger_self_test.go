package crashtest

import (
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

// The ledger's checks must catch what they claim to: each case feeds it a
// history no correct server could produce and expects a violation naming it.

type fakeView struct {
	rows   map[string][]wire.StoredMessage
	leaseL []wire.ExecLease
}

func (v fakeView) inbox(recv string, _ *uint64) ([]wire.StoredMessage, error) {
	return v.rows[recv], nil
}
func (v fakeView) dead(string, *uint64) ([]wire.StoredMessage, error) { return nil, nil }
func (v fakeView) leases() ([]wire.ExecLease, error)                  { return v.leaseL, nil }

func TestLedgerCatchesViolations(t *testing.T) {
	t.Parallel()
	base := time.Now()
	at := func(ms int) time.Time { return base.Add(time.Duration(ms) * time.Millisecond) }
	ms := func(ms int) uint64 { return uint64(at(ms).UnixMilli()) }
	row := func(id uint64, recv string) wire.StoredMessage {
		return wire.StoredMessage{ID: id, ReceiverAgentID: recv}
	}
	claim := func(id uint64, recv, holder string, tok uint64, exp uint64) *wire.StoredMessage {
		return &wire.StoredMessage{ID: id, ReceiverAgentID: recv, LeaseHolderNodeID: &holder, LeaseToken: &tok, LeaseExpiresUnixMs: &exp}
	}
	grant := func(id, scope, holder string, tok uint64, exp uint64) wire.ExecLease {
		return wire.ExecLease{LeaseID: id, ScopeKey: scope, HolderNodeID: holder, ExpiresUnixMs: exp, LeaseToken: &tok}
	}
	cases := []struct {
		name string
		want string
		run  func(l *ledger)
	}{
		{"unkeyed id twice", "reused", func(l *ledger) {
			l.onDeliver("1", "", 5, at(0), at(1))
			l.onDeliver("2", "", 5, at(2), at(3))
		}},
		{"dedup lost", "idempotency lost", func(l *ledger) {
			l.onDeliver("1", "k", 5, at(0), at(1))
			l.onDeliver("1", "k", 6, at(2), at(3))
		}},
		{"dedup to an acked row", "acknowledged before", func(l *ledger) {
			l.onDeliver("1", "k", 5, at(0), at(1))
			l.ackAttempt(5, at(2))
			l.onAck(5, at(3))
			l.onDeliver("1", "k", 5, at(4), at(5))
		}},
		{"id reused after restart", "not above", func(l *ledger) {
			l.newCycle(1)
			l.onDeliver("1", "", 9, at(0), at(1))
			l.newCycle(2)
			l.onDeliver("1", "", 8, at(2), at(3))
		}},
		{"row leased twice", "also claimed", func(l *ledger) {
			l.onDeliver("1", "", 5, at(0), at(1))
			l.onClaim(claim(5, "1", "a", 1, ms(1000)), "1", "a", at(2), at(3))
			l.onClaim(claim(5, "1", "b", 2, ms(1010)), "1", "b", at(10), at(11))
		}},
		{"renew by a non-holder", "while a held it", func(l *ledger) {
			l.onDeliver("1", "", 5, at(0), at(1))
			l.onClaim(claim(5, "1", "a", 1, ms(1000)), "1", "a", at(2), at(3))
			l.onRenew(claimRef{5, "1", "b", 7}, false, at(10), at(11))
		}},
		{"stale token renew", "stale token", func(l *ledger) {
			l.onDeliver("1", "", 5, at(0), at(1))
			l.onClaim(claim(5, "1", "a", 1, ms(1000)), "1", "a", at(2), at(3))
			l.onClaim(claim(5, "1", "a", 2, ms(1010)), "1", "a", at(10), at(11))
			l.onRenew(claimRef{5, "1", "a", 1}, true, at(20), at(21))
		}},
		{"token reused", "lease_token 1 reused", func(l *ledger) {
			l.onDeliver("1", "", 5, at(0), at(1))
			l.onDeliver("1", "", 6, at(0), at(1))
			l.onClaim(claim(5, "1", "a", 1, ms(1000)), "1", "a", at(2), at(3))
			l.onClaim(claim(6, "1", "b", 1, ms(1000)), "1", "b", at(2), at(3))
		}},
		{"scope granted twice", "two holders", func(l *ledger) {
			l.onGrant(grant("1", "s", "a", 1, ms(1000)), "a", "s", at(0), at(1))
			l.onGrant(grant("2", "s", "b", 2, ms(1010)), "b", "s", at(10), at(11))
		}},
		{"released lease id answered again", "after its release", func(l *ledger) {
			l.onGrant(grant("1", "s", "a", 1, ms(1000)), "a", "s", at(0), at(1))
			lr := l.leases["1"]
			l.releaseAttempt(lr, at(2))
			l.onRelease(lr, at(2), at(3))
			l.onGrant(grant("1", "s", "a", 1, ms(1010)), "a", "s", at(10), at(11))
		}},
		{"lost delivery", "is missing", func(l *ledger) {
			l.onDeliver("1", "", 5, at(0), at(1))
			if err := l.fullCheck(fakeView{}, []string{"1"}, "test"); err != nil {
				panic(err)
			}
		}},
		{"acked row back", "came back", func(l *ledger) {
			l.onDeliver("1", "", 5, at(0), at(1))
			l.ackAttempt(5, at(2))
			l.onAck(5, at(3))
			v := fakeView{rows: map[string][]wire.StoredMessage{"1": {row(5, "1")}}}
			if err := l.fullCheck(v, []string{"1"}, "test"); err != nil {
				panic(err)
			}
		}},
		{"two leases listed on a scope", "two holders", func(l *ledger) {
			v := fakeView{leaseL: []wire.ExecLease{grant("1", "s", "a", 1, 0), grant("2", "s", "b", 2, 0)}}
			if err := l.fullCheck(v, nil, "test"); err != nil {
				panic(err)
			}
		}},
	}
	for _, c := range cases {
		l := newLedger(time.Second)
		c.run(l)
		found := false
		for _, p := range l.problems {
			found = found || strings.Contains(p, c.want)
		}
		if !found {
			t.Errorf("%s: no violation containing %q (got %q)", c.name, c.want, l.problems)
		}
	}

	// And a correct history raises nothing: keyed dedup, ack, new id,
	// expiry then reclaim by another holder, release then a new lease.
	l := newLedger(time.Second)
	l.onDeliver("1", "k", 5, at(0), at(1))
	l.onDeliver("1", "k", 5, at(2), at(3))
	l.onClaim(claim(5, "1", "a", 1, ms(1000)), "1", "a", at(4), at(5))
	l.onRenew(claimRef{5, "1", "a", 1}, true, at(6), at(7))
	l.onClaim(claim(5, "1", "b", 2, ms(3000)), "1", "b", at(2000), at(2001))
	l.ackAttempt(5, at(2002))
	l.onAck(5, at(2003))
	l.onDeliver("1", "k", 6, at(2004), at(2005))
	l.onGrant(grant("1", "s", "a", 3, ms(1000)), "a", "s", at(0), at(1))
	l.releaseAttempt(l.leases["1"], at(2))
	l.onRelease(l.leases["1"], at(2), at(3))
	l.onGrant(grant("2", "s", "b", 4, ms(1010)), "b", "s", at(10), at(11))
	v := fakeView{rows: map[string][]wire.StoredMessage{"1": {row(6, "1")}}, leaseL: []wire.ExecLease{grant("2", "s", "b", 4, 0)}}
	if err := l.fullCheck(v, []string{"1"}, "test"); err != nil {
		t.Fatal(err)
	}
	if len(l.problems) != 0 {
		t.Fatalf("a correct history raised %q", l.problems)
	}
}
