package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"populi-db/wire"
)

// MaxScopeKeyBytes bounds a trimmed scope_key (SPEC 2.13).
const MaxScopeKeyBytes = 2048

type storedLease struct {
	seq   uint64
	lease wire.ExecLease
}

func (t *txn) getLease(id string) (*storedLease, error) {
	v := t.Bucket(bExec).Get(boundedKey(id))
	if v == nil {
		return nil, nil
	}
	l := &storedLease{seq: getU64(v[:8])}
	if err := json.Unmarshal(v[8:], &l.lease); err != nil {
		return nil, fmt.Errorf("decode exec lease %q: %w", id, err)
	}
	if l.lease.LeaseID != id { // a hashed key matched a different long id
		return nil, nil
	}
	return l, nil
}

func (t *txn) putLease(l *storedLease, oldExp *uint64) error {
	b, err := json.Marshal(&l.lease)
	if err != nil {
		return fmt.Errorf("encode exec lease: %w", err)
	}
	id := boundedKey(l.lease.LeaseID)
	if oldExp != nil {
		if err := t.Bucket(bExecByExp).Delete(cat(u64(*oldExp), id)); err != nil {
			return err
		}
	}
	if err := t.Bucket(bExecByExp).Put(cat(u64(l.lease.ExpiresUnixMs), id), nil); err != nil {
		return err
	}
	return t.Bucket(bExec).Put(id, cat(u64(l.seq), b))
}

func (t *txn) deleteLease(l *storedLease) error {
	id := boundedKey(l.lease.LeaseID)
	for _, del := range []struct{ b, k []byte }{
		{bExecByExp, cat(u64(l.lease.ExpiresUnixMs), id)},
		{bExecOrder, u64(l.seq)},
		{bExec, id},
	} {
		if err := t.Bucket(del.b).Delete(del.k); err != nil {
			return fmt.Errorf("delete exec lease %s: %w", l.lease.LeaseID, err)
		}
	}
	sc := t.Bucket(bExecScope)
	sk := boundedKey(l.lease.ScopeKey)
	if string(sc.Get(sk)) == l.lease.LeaseID {
		return sc.Delete(sk)
	}
	return nil
}

// liveLease returns the lease if it is live at now; a dead one is deleted
// (the lazy sweep of SPEC 7.1).
func (t *txn) liveLease(id string) (*storedLease, error) {
	l, err := t.getLease(id)
	if err != nil || l == nil {
		return nil, err
	}
	if l.lease.ExpiresUnixMs <= t.nowMs {
		return nil, t.deleteLease(l)
	}
	return l, nil
}

// GrantExecLease gives claimer the single live lease on scopeKey, or extends
// the one it already holds (same id and token) (SPEC 2.13). Every new lease
// gets a fresh fencing token. Errors: wire.ErrScopeKeyRequired,
// wire.ErrScopeKeyTooLong, wire.ErrClaimerRequired, wire.ErrUnknownClaimerJoin,
// wire.ErrClaimerQuarantined, wire.ErrClaimerMaintenance, wire.ErrScopeKeyHeld.
func (s *Store) GrantExecLease(claimer, scopeKey string) (wire.ExecLease, error) {
	scopeKey, claimer = strings.TrimSpace(scopeKey), strings.TrimSpace(claimer)
	switch {
	case scopeKey == "":
		return wire.ExecLease{}, wire.ErrScopeKeyRequired
	case len(scopeKey) > MaxScopeKeyBytes:
		return wire.ExecLease{}, wire.ErrScopeKeyTooLong
	case claimer == "":
		return wire.ExecLease{}, wire.ErrClaimerRequired
	}
	var out wire.ExecLease
	err := s.update(func(t *txn) error {
		if _, err := t.claimerGate(claimer, wire.ErrUnknownClaimerJoin); err != nil {
			return err
		}
		exp := t.nowMs + uint64(s.cfg.LeaseTTL.Milliseconds())
		if id := t.Bucket(bExecScope).Get(boundedKey(scopeKey)); id != nil {
			l, err := t.getLease(string(id))
			if err != nil {
				return err
			}
			if l != nil && l.lease.ExpiresUnixMs > t.nowMs {
				if l.lease.HolderNodeID != claimer {
					return wire.ErrScopeKeyHeld
				}
				old := l.lease.ExpiresUnixMs
				l.lease.ExpiresUnixMs = exp
				out = l.lease
				return t.putLease(l, &old)
			}
			if l != nil {
				if err := t.deleteLease(l); err != nil {
					return err
				}
			}
		}
		n, err := t.nextSeq(mNextLeaseID)
		if err != nil {
			return err
		}
		seq, err := t.nextSeq(mExecSeq)
		if err != nil {
			return err
		}
		token, err := t.nextReserved(mNextToken, &s.tokenSeq)
		if err != nil {
			return err
		}
		l := &storedLease{seq: seq, lease: wire.ExecLease{
			LeaseID: strconv.FormatUint(n, 10), ScopeKey: scopeKey, HolderNodeID: claimer,
			ExpiresUnixMs: exp, LeaseToken: ptr(token),
		}}
		if err := t.Bucket(bExecOrder).Put(u64(seq), []byte(l.lease.LeaseID)); err != nil {
			return err
		}
		if err := t.Bucket(bExecScope).Put(boundedKey(scopeKey), []byte(l.lease.LeaseID)); err != nil {
			return err
		}
		out = l.lease
		return t.putLease(l, nil)
	})
	return out, err
}

func execTokenOK(token *uint64, l *wire.ExecLease) bool {
	return token == nil || (l.LeaseToken != nil && *l.LeaseToken == *token)
}

// RenewExecLease extends claimer's live lease to now + TTL (SPEC 2.15).
// Errors: wire.ErrLeaseIDRequired, the claimer gate's, wire.ErrNotFound,
// wire.ErrExecRenewNotHolder, wire.ErrStaleLeaseToken.
func (s *Store) RenewExecLease(leaseID, claimer string, token *uint64) (wire.ExecLease, error) {
	leaseID, claimer = strings.TrimSpace(leaseID), strings.TrimSpace(claimer)
	switch {
	case leaseID == "":
		return wire.ExecLease{}, wire.ErrLeaseIDRequired
	case claimer == "":
		return wire.ExecLease{}, wire.ErrClaimerRequired
	}
	var out wire.ExecLease
	err := s.update(func(t *txn) error {
		if _, err := t.claimerGate(claimer, wire.ErrUnknownClaimerJoin); err != nil {
			return err
		}
		l, err := t.getLease(leaseID)
		if err != nil {
			return err
		}
		switch {
		case l == nil || l.lease.ExpiresUnixMs <= t.nowMs:
			return wire.ErrNotFound // the sweeper deletes the dead row
		case l.lease.HolderNodeID != claimer:
			return wire.ErrExecRenewNotHolder
		case !execTokenOK(token, &l.lease):
			return wire.ErrStaleLeaseToken
		}
		old := l.lease.ExpiresUnixMs
		l.lease.ExpiresUnixMs = t.nowMs + uint64(s.cfg.LeaseTTL.Milliseconds())
		out = l.lease
		return t.putLease(l, &old)
	})
	return out, err
}

// ReleaseExecLease deletes claimer's live lease (SPEC 2.16); quarantine and
// maintenance do not block it. Errors: wire.ErrLeaseIDRequired,
// wire.ErrClaimerRequired, wire.ErrUnknownClaimerJoin, wire.ErrNotFound,
// wire.ErrExecRelNotHolder, wire.ErrStaleLeaseToken.
func (s *Store) ReleaseExecLease(leaseID, claimer string, token *uint64) error {
	leaseID, claimer = strings.TrimSpace(leaseID), strings.TrimSpace(claimer)
	switch {
	case leaseID == "":
		return wire.ErrLeaseIDRequired
	case claimer == "":
		return wire.ErrClaimerRequired
	}
	return s.update(func(t *txn) error {
		n, err := t.getNode(claimer)
		if err != nil {
			return err
		}
		if n == nil {
			return wire.ErrUnknownClaimerJoin
		}
		l, err := t.getLease(leaseID)
		if err != nil {
			return err
		}
		switch {
		case l == nil || l.lease.ExpiresUnixMs <= t.nowMs:
			return wire.ErrNotFound
		case l.lease.HolderNodeID != claimer:
			return wire.ErrExecRelNotHolder
		case !execTokenOK(token, &l.lease):
			return wire.ErrStaleLeaseToken
		}
		return t.deleteLease(l)
	})
}

// RevokeExecLease deletes a live lease whoever holds it (SPEC 2.19).
// Errors: wire.ErrLeaseIDRequired, wire.ErrNotFound.
func (s *Store) RevokeExecLease(leaseID string) error {
	leaseID = strings.TrimSpace(leaseID)
	if leaseID == "" {
		return wire.ErrLeaseIDRequired
	}
	return s.update(func(t *txn) error {
		l, err := t.getLease(leaseID)
		if err != nil {
			return err
		}
		if l == nil || l.lease.ExpiresUnixMs <= t.nowMs {
			return wire.ErrNotFound
		}
		return t.deleteLease(l)
	})
}

// ListExecLeases returns the live leases in grant order (SPEC 2.14).
func (s *Store) ListExecLeases() ([]wire.ExecLease, error) {
	out := []wire.ExecLease{}
	err := s.view(func(t *txn) error {
		c := t.Bucket(bExecOrder).Cursor()
		for k, id := c.First(); k != nil; k, id = c.Next() {
			l, err := t.getLease(string(id))
			if err != nil {
				return err
			}
			if l != nil && l.lease.ExpiresUnixMs > t.nowMs {
				out = append(out, l.lease)
			}
		}
		return nil
	})
	return out, err
}
