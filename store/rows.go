package store

import (
	"bytes"
	"fmt"
	"strconv"

	"populi-db/wire"
)

// A mailbox row is in exactly one state; each state has its own index
// entries, and every change goes through saveRow, which removes the old
// state's entries and adds the new one's in the same transaction. Counters
// per state (and pending counts per task kind, priority and receiver) move
// with them, so stats never scan rows.

func (t *txn) getRow(id uint64) (*wire.StoredMessage, error) {
	v := t.Bucket(bRows).Get(u64(id))
	if v == nil {
		return nil, nil
	}
	var m wire.StoredMessage
	if err := decodeRow(v, &m); err != nil {
		return nil, fmt.Errorf("decode a2a row %d: %w", id, err)
	}
	return &m, nil
}

// saveRow moves a row from old to new (either may be nil: insert, delete).
func (t *txn) saveRow(old, new *wire.StoredMessage) error {
	if old != nil {
		if err := t.indexRow(old, false); err != nil {
			return fmt.Errorf("unindex a2a row %d: %w", old.ID, err)
		}
	}
	if new == nil {
		if err := t.Bucket(bRows).Delete(u64(old.ID)); err != nil {
			return fmt.Errorf("delete a2a row %d: %w", old.ID, err)
		}
		return nil
	}
	if err := t.Bucket(bRows).Put(u64(new.ID), appendRow(make([]byte, 0, 96+len(new.Payload)), new)); err != nil {
		return fmt.Errorf("put a2a row %d: %w", new.ID, err)
	}
	if err := t.indexRow(new, true); err != nil {
		return fmt.Errorf("index a2a row %d: %w", new.ID, err)
	}
	if new.State == wire.StateReady {
		t.wakes[new.ReceiverAgentID] = struct{}{}
	}
	return nil
}

// indexRow adds (add) or removes the index entries and counts of m's state.
func (t *txn) indexRow(m *wire.StoredMessage, add bool) error {
	id := u64(m.ID)
	rp := recvPrefix(m.ReceiverAgentID)
	d := int64(-1)
	if add {
		d = 1
	}
	var ops []func() error
	put := func(bucket, key []byte) {
		ops = append(ops, func() error {
			if add {
				return t.idx(bucket).Put(key, nil)
			}
			return t.idx(bucket).Delete(key)
		})
	}
	counts := t.idx(bCounts)
	count := func(key []byte) { ops = append(ops, func() error { return addCount(counts, key, d) }) }
	pending := func() {
		if m.TaskKind != nil {
			count([]byte("k:" + *m.TaskKind))
		}
		count([]byte("p:" + strconv.Itoa(int(m.Priority))))
	}
	switch m.State {
	case wire.StateReady:
		put(bReady, cat(rp, prioInv(m.Priority), id))
		put(bByReceiver, cat(rp, id))
		count(cReady)
		pending()
		ops = append(ops, func() error { return addCount(t.idx(bRecvReady), boundedKey(m.ReceiverAgentID), d) })
	case wire.StateLeased:
		exp := u64(derefU64(m.LeaseExpiresUnixMs))
		put(bWait, cat(rp, exp, id))
		put(bWaitByTime, cat(exp, id))
		put(bHeld, cat(holderPrefix(wire.Str(m.LeaseHolderNodeID), m.ReceiverAgentID), prioInv(m.Priority), id))
		put(bByReceiver, cat(rp, id))
		count(cLeased)
	case wire.StateDelayed:
		due := u64(derefU64(m.NotBeforeUnixMs))
		put(bWait, cat(rp, due, id))
		put(bWaitByTime, cat(due, id))
		put(bByReceiver, cat(rp, id))
		count(cDelayed)
		pending()
	case wire.StateDead:
		put(bDead, cat(rp, id))
		put(bDeadIDs, id)
		count(cDead)
	case wire.StateAcked:
		put(bAcked, id)
		count(cAcked)
	default:
		return fmt.Errorf("a2a row %d has unknown state %q", m.ID, m.State)
	}
	for _, op := range ops {
		if err := op(); err != nil {
			return err
		}
	}
	return nil
}

func derefU64(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

// effective returns the row as it is at nowMs: a lease or delay whose time
// has come is over even if no sweep has written that yet (issue 2: expiry is
// correct at every instant). The result is a copy when it differs.
func (s *Store) effective(m *wire.StoredMessage, nowMs uint64) *wire.StoredMessage {
	switch m.State {
	case wire.StateLeased:
		if derefU64(m.LeaseExpiresUnixMs) > nowMs {
			return m
		}
		c := *m
		c.LeaseHolderNodeID, c.LeaseExpiresUnixMs = nil, nil
		c.State = wire.StateReady
		if s.cfg.MaxDeliveries > 0 && int(c.DeliveryCount) >= s.cfg.MaxDeliveries {
			c.State = wire.StateDead
		}
		return &c
	case wire.StateDelayed:
		if derefU64(m.NotBeforeUnixMs) > nowMs {
			return m
		}
		c := *m
		c.NotBeforeUnixMs = nil
		c.State = wire.StateReady
		return &c
	}
	return m
}

// promote writes the effective state of a row whose wait time came.
func (t *txn) promote(id uint64) (bool, error) {
	m, err := t.getRow(id)
	if err != nil || m == nil {
		return false, err
	}
	e := t.s.effective(m, t.nowMs)
	if e == m {
		return false, nil
	}
	if e.State == wire.StateDead {
		t.s.log.Warn("a2a row dead-lettered", "message_id", e.ID, "receiver_agent_id", e.ReceiverAgentID, "delivery_count", e.DeliveryCount)
	}
	return true, t.saveRow(m, e)
}

// promoteDue promotes up to limit rows of one receiver whose lease expired
// or whose delay passed, so claim selection sees them in the ready index.
func (t *txn) promoteDue(recv string, limit int) error {
	rp := recvPrefix(recv)
	c := t.idx(bWait).Cursor()
	var ids []uint64
	for k, _ := c.Seek(rp); k != nil && bytes.HasPrefix(k, rp) && len(ids) < limit; k, _ = c.Next() {
		if getU64(k[len(rp):len(rp)+8]) > t.nowMs {
			break
		}
		ids = append(ids, getU64(k[len(rp)+8:]))
	}
	for _, id := range ids {
		if _, err := t.promote(id); err != nil {
			return err
		}
	}
	return nil
}

// promoteAllDue promotes up to limit rows of any receiver whose lease
// expired or whose delay passed, oldest wait time first.
func (t *txn) promoteAllDue(limit int) error {
	c := t.idx(bWaitByTime).Cursor()
	var ids []uint64
	for k, _ := c.First(); k != nil && len(ids) < limit && getU64(k[:8]) <= t.nowMs; k, _ = c.Next() {
		ids = append(ids, getU64(k[8:]))
	}
	for _, id := range ids {
		if _, err := t.promote(id); err != nil {
			return err
		}
	}
	return nil
}

// deleteRow removes a row entirely (cap eviction), releasing its dedupe key.
func (t *txn) deleteRow(m *wire.StoredMessage) error {
	if err := t.releaseDedupe(m); err != nil {
		return err
	}
	return t.saveRow(m, nil)
}

func (t *txn) releaseDedupe(m *wire.StoredMessage) error {
	if m.IdempotencyDedupeKey == nil {
		return nil
	}
	idem := t.Bucket(bIdem)
	k := boundedKey(*m.IdempotencyDedupeKey)
	if getU64(idem.Get(k)) == m.ID {
		return idem.Delete(k)
	}
	return nil
}

func (t *txn) stateCount(key []byte) uint64 { return getU64(t.idx(bCounts).Get(key)) }

func (t *txn) rowCount() uint64 {
	return t.stateCount(cReady) + t.stateCount(cLeased) + t.stateCount(cDelayed) + t.stateCount(cDead) + t.stateCount(cAcked)
}

// evictOne removes the row the cap gives up first: the oldest acknowledged,
// else the oldest dead letter, else the oldest live row (SPEC 16.8).
func (t *txn) evictOne() (bool, error) {
	// A lease that ran out at the delivery limit is dead at read time: write
	// that down first so the row goes before live ones (SPEC 6.4 step 1).
	if k, _ := t.idx(bAcked).Cursor().First(); k == nil && t.s.cfg.MaxDeliveries > 0 {
		if err := t.promoteAllDue(promoteLimit); err != nil {
			return false, err
		}
	}
	var id uint64
	if k, _ := t.idx(bAcked).Cursor().First(); k != nil {
		id = getU64(k)
	} else if k, _ := t.idx(bDeadIDs).Cursor().First(); k != nil {
		id = getU64(k)
	} else if k, _ := t.Bucket(bRows).Cursor().First(); k != nil {
		id = getU64(k)
	} else {
		return false, nil
	}
	m, err := t.getRow(id)
	if err != nil || m == nil {
		return false, fmt.Errorf("evict a2a row %d: index points at no row (err %v)", id, err)
	}
	if m.State != wire.StateAcked && m.State != wire.StateDead {
		t.s.log.Warn("relay cap evicted an unacknowledged row", "message_id", m.ID, "receiver_agent_id", m.ReceiverAgentID, "state", m.State, "cap", t.s.cfg.MaxMessages)
	}
	return true, t.deleteRow(m)
}
