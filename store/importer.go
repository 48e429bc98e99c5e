package store

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"populi-db/wire"
)

// ImportSet is what migrate read from the legacy JSON files (SPEC 1.4,
// 1.8), already checked and de-duplicated by migrate.
type ImportSet struct {
	Nodes  []wire.NodeRecord
	Rows   []wire.StoredMessage // legacy rows: acknowledged or not, maybe leased; no state field
	Leases []wire.ExecLease
	JTIs   []ImportJTI
	Idem   []ImportIdem // the replay file's dedupe key → message id entries
}

// ImportJTI is one used JWT id and its exp claim (Unix seconds).
type ImportJTI struct {
	JTI        string
	ExpUnixSec int64
}

// ImportIdem is one dedupe key → message id entry.
type ImportIdem struct {
	Key       string
	MessageID uint64
}

// ImportCounts is what happened to one kind of record.
type ImportCounts struct {
	Imported int `json:"imported"`
	Skipped  int `json:"skipped"`
	Present  int `json:"already_present"`
}

// ImportResult reports an import.
type ImportResult struct {
	Nodes  ImportCounts `json:"nodes"`
	Rows   ImportCounts `json:"a2a_rows"`
	Leases ImportCounts `json:"exec_leases"`
	JTIs   ImportCounts `json:"jwt_ids"`
	Idem   ImportCounts `json:"idempotency_keys"`
	// Notes say why each record was skipped or changed.
	Notes []string `json:"notes"`
	// Counters after the import: new ids continue above these.
	LastMessageID uint64 `json:"last_message_id"`
	LastLeaseID   uint64 `json:"last_exec_lease_id"`
	Committed     bool   `json:"committed"`
}

// Changed is the number of records the import wrote (or would write).
func (r ImportResult) Changed() int {
	return r.Nodes.Imported + r.Rows.Imported + r.Leases.Imported + r.JTIs.Imported + r.Idem.Imported
}

var errRollback = errors.New("import rolled back")

// Import writes set into the db in one transaction: all of it or nothing.
// A record whose id is already stored is counted as present and left alone,
// so a second import of the same files changes nothing (and commits
// nothing). dryRun does all the work and rolls it back. progress, if not
// nil, is called with the number of records handled so far.
//
// Legacy rows get this store's state: acknowledged → acked (dedupe key
// released), a row with a lease holder and expiry → leased with a fresh
// lease token, any other → ready. Message and exec lease counters continue
// above the highest imported id.
func (s *Store) Import(set ImportSet, dryRun bool, progress func(done int)) (ImportResult, error) {
	var res ImportResult
	err := s.update(func(t *txn) error {
		res = ImportResult{Notes: []string{}}
		done := 0
		tick := func() {
			done++
			if progress != nil {
				progress(done)
			}
		}
		note := func(format string, args ...any) { res.Notes = append(res.Notes, fmt.Sprintf(format, args...)) }
		if err := t.importNodes(set.Nodes, &res, note, tick); err != nil {
			return err
		}
		if err := t.importRows(set.Rows, &res, note, tick); err != nil {
			return err
		}
		if err := t.importIdem(set.Idem, &res, note, tick); err != nil {
			return err
		}
		if err := t.importLeases(set.Leases, &res, note, tick); err != nil {
			return err
		}
		if err := t.importJTIs(set.JTIs, &res, note, tick); err != nil {
			return err
		}
		meta := t.Bucket(bMeta)
		res.LastMessageID = getU64(meta.Get(mNextMessageID))
		res.LastLeaseID = getU64(meta.Get(mNextLeaseID))
		if dryRun || res.Changed() == 0 {
			return errRollback
		}
		return nil
	})
	if errors.Is(err, errRollback) {
		s.msgSeq, s.tokenSeq = seqBlock{}, seqBlock{}
		return res, nil
	}
	if err != nil {
		return res, err
	}
	res.Committed = true
	return res, nil
}

func (t *txn) importNodes(nodes []wire.NodeRecord, res *ImportResult, note func(string, ...any), tick func()) error {
	for i := range nodes {
		tick()
		rec := nodes[i]
		if err := ValidateNodeID(rec.ID); err != nil {
			res.Nodes.Skipped++
			note("node #%d: blank id, skipped", i+1)
			continue
		}
		cur, err := t.getNode(rec.ID)
		if err != nil {
			return err
		}
		if cur != nil {
			res.Nodes.Present++
			continue
		}
		seq, err := t.nextSeq(mNodeSeq)
		if err != nil {
			return err
		}
		if err := t.Bucket(bNodesOrder).Put(u64(seq), []byte(rec.ID)); err != nil {
			return err
		}
		// quarantine and maintenance flags come from the legacy registry as they were
		if err := t.putNode(&storedNode{seq: seq, rec: rec}, nil); err != nil {
			return err
		}
		res.Nodes.Imported++
	}
	return nil
}

func (t *txn) importRows(rows []wire.StoredMessage, res *ImportResult, note func(string, ...any), tick func()) error {
	meta := t.Bucket(bMeta)
	maxID := getU64(meta.Get(mNextMessageID))
	for i := range rows {
		tick()
		m := rows[i]
		if m.ID == 0 {
			res.Rows.Skipped++
			note("a2a row #%d: id 0 is never issued, skipped", i+1)
			continue
		}
		cur, err := t.getRow(m.ID)
		if err != nil {
			return err
		}
		if cur != nil {
			res.Rows.Present++
			if cur.SenderAgentID != m.SenderAgentID || cur.ReceiverAgentID != m.ReceiverAgentID || cur.Payload != m.Payload {
				note("a2a row %d: the db already holds a different row with this id; kept the db's", m.ID)
			}
			continue
		}
		m.State, m.DeliveryCount, m.LeaseToken, m.NotBeforeUnixMs = "", 0, nil, nil
		switch {
		case m.Acknowledged:
			m.State = wire.StateAcked
			m.LeaseHolderNodeID, m.LeaseExpiresUnixMs, m.IdempotencyDedupeKey = nil, nil, nil
		case m.LeaseHolderNodeID != nil && m.LeaseExpiresUnixMs != nil:
			m.State = wire.StateLeased
			m.DeliveryCount = 1
			tok, err := t.nextReserved(mNextToken, &t.s.tokenSeq)
			if err != nil {
				return err
			}
			m.LeaseToken = &tok
		default:
			if m.LeaseHolderNodeID != nil || m.LeaseExpiresUnixMs != nil {
				note("a2a row %d: half a lease (holder or expiry missing); imported as ready", m.ID)
			}
			m.State = wire.StateReady
			m.LeaseHolderNodeID, m.LeaseExpiresUnixMs = nil, nil
		}
		if m.IdempotencyDedupeKey != nil {
			idem := t.Bucket(bIdem)
			k := boundedKey(*m.IdempotencyDedupeKey)
			if other := idem.Get(k); other != nil {
				note("dedupe_violation: a2a row %d has dedupe key %q, which pending row %d already holds; imported without the key", m.ID, *m.IdempotencyDedupeKey, getU64(other))
				m.IdempotencyDedupeKey = nil
			} else if err := idem.Put(k, u64(m.ID)); err != nil {
				return err
			}
		}
		if err := t.saveRow(nil, &m); err != nil {
			return err
		}
		maxID = max(maxID, m.ID)
		res.Rows.Imported++
	}
	return meta.Put(mNextMessageID, u64(maxID))
}

// importIdem merges the replay file's dedupe entries whose rows still exist
// and are pending (SPEC Appendix C).
func (t *txn) importIdem(entries []ImportIdem, res *ImportResult, note func(string, ...any), tick func()) error {
	idem := t.Bucket(bIdem)
	for _, e := range entries {
		tick()
		k := boundedKey(e.Key)
		if v := idem.Get(k); v != nil {
			if getU64(v) == e.MessageID {
				res.Idem.Present++
			} else {
				res.Idem.Skipped++
				note("replay idempotency key %q → %d: the key already belongs to row %d, skipped", e.Key, e.MessageID, getU64(v))
			}
			continue
		}
		m, err := t.getRow(e.MessageID)
		if err != nil {
			return err
		}
		switch {
		case m == nil:
			res.Idem.Skipped++
			note("replay idempotency key %q → %d: no such row, skipped", e.Key, e.MessageID)
			continue
		case m.State == wire.StateAcked || m.State == wire.StateDead:
			res.Idem.Skipped++
			note("replay idempotency key %q → %d: the row is %s, so its key is released; skipped", e.Key, e.MessageID, m.State)
			continue
		case m.IdempotencyDedupeKey != nil:
			res.Idem.Skipped++
			note("replay idempotency key %q → %d: the row already has key %q, skipped", e.Key, e.MessageID, *m.IdempotencyDedupeKey)
			continue
		}
		n := *m
		n.IdempotencyDedupeKey = &e.Key
		if err := t.saveRow(m, &n); err != nil {
			return err
		}
		if err := idem.Put(k, u64(m.ID)); err != nil {
			return err
		}
		res.Idem.Imported++
	}
	return nil
}

func (t *txn) importLeases(leases []wire.ExecLease, res *ImportResult, note func(string, ...any), tick func()) error {
	meta := t.Bucket(bMeta)
	maxID := getU64(meta.Get(mNextLeaseID))
	for _, l := range leases {
		tick()
		if n, err := strconv.ParseUint(l.LeaseID, 10, 64); err == nil {
			maxID = max(maxID, n) // never reissue an id the old server gave out
		}
		cur, err := t.getLease(l.LeaseID)
		if err != nil {
			return err
		}
		if cur != nil {
			res.Leases.Present++
			continue
		}
		if l.ExpiresUnixMs <= t.nowMs {
			res.Leases.Skipped++
			note("exec lease %s (scope %q): expired at %d, skipped", l.LeaseID, l.ScopeKey, l.ExpiresUnixMs)
			continue
		}
		if id := t.Bucket(bExecScope).Get(boundedKey(l.ScopeKey)); id != nil {
			if held, err := t.liveLease(string(id)); err != nil {
				return err
			} else if held != nil {
				res.Leases.Skipped++
				note("exec lease %s: scope %q is already held by lease %s, skipped (one lease per scope_key)", l.LeaseID, l.ScopeKey, held.lease.LeaseID)
				continue
			}
		}
		seq, err := t.nextSeq(mExecSeq)
		if err != nil {
			return err
		}
		tok, err := t.nextReserved(mNextToken, &t.s.tokenSeq)
		if err != nil {
			return err
		}
		l.LeaseToken = &tok
		sl := &storedLease{seq: seq, lease: l}
		if err := t.Bucket(bExecOrder).Put(u64(seq), []byte(l.LeaseID)); err != nil {
			return err
		}
		if err := t.Bucket(bExecScope).Put(boundedKey(l.ScopeKey), []byte(l.LeaseID)); err != nil {
			return err
		}
		if err := t.putLease(sl, nil); err != nil {
			return err
		}
		res.Leases.Imported++
	}
	return meta.Put(mNextLeaseID, u64(maxID))
}

func (t *txn) importJTIs(jtis []ImportJTI, res *ImportResult, note func(string, ...any), tick func()) error {
	b, byPurge, meta := t.Bucket(bJTI), t.Bucket(bJTIByPurge), t.Bucket(bMeta)
	nowSec := t.now.Unix()
	leeway := int64(JWTLeeway / time.Second)
	for _, j := range jtis {
		tick()
		exp := min(j.ExpUnixSec, 1<<62)
		purge := max(exp, 0) + leeway
		key := boundedKey(j.JTI)
		if b.Get(key) != nil {
			res.JTIs.Present++
			continue
		}
		if purge < nowSec {
			res.JTIs.Skipped++
			continue // expired: a token with this id no longer verifies
		}
		if err := b.Put(key, u64(uint64(purge))); err != nil {
			return err
		}
		if err := byPurge.Put(cat(u64(uint64(purge)), key), nil); err != nil {
			return err
		}
		if err := addCount(meta, mJTICount, 1); err != nil {
			return err
		}
		res.JTIs.Imported++
	}
	if res.JTIs.Skipped > 0 {
		note("%d JWT id(s) expired long ago (exp + %ds leeway in the past), skipped", res.JTIs.Skipped, leeway)
	}
	return nil
}
