package store

import (
	"bytes"
	"strconv"
	"strings"

	"populi-db/wire"
)

// QueueStats returns pending counts (SPEC 2.20) and issue 9's per-state
// counts and per-receiver oldest-ready age. Counters are kept in the same
// transactions as the rows; rows whose lease or delay ran out but that no
// sweep has promoted yet are moved to their effective state here.
func (s *Store) QueueStats() (wire.QueueStats, error) {
	var st wire.QueueStats
	err := s.view(func(t *txn) error {
		var err error
		st, err = t.queueStats(true)
		return err
	})
	return st, err
}

// statsWalkLimit bounds how many unswept expired waits a stats read corrects.
const statsWalkLimit = 10000

func (t *txn) queueStats(perReceiver bool) (wire.QueueStats, error) {
	st := wire.QueueStats{
		PendingByKind:     map[string]uint64{},
		PendingByPriority: map[string]uint64{},
		Receivers:         []wire.ReceiverStats{},
	}
	c := t.idx(bCounts).Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n := getU64(v)
		switch ks := string(k); {
		case strings.HasPrefix(ks, "k:"):
			st.PendingByKind[ks[2:]] = n
		case strings.HasPrefix(ks, "p:"):
			st.PendingByPriority[ks[2:]] = n
		case ks == string(cReady):
			st.ByState.Ready = n
		case ks == string(cLeased):
			st.ByState.Leased = n
		case ks == string(cDelayed):
			st.ByState.Delayed = n
		case ks == string(cDead):
			st.ByState.Dead = n
		case ks == string(cAcked):
			st.ByState.Acked = n
		}
	}
	// Adjust for waits that ended but are not swept yet (bounded by the
	// sweeper's lag).
	extraReady := map[string][]*wire.StoredMessage{}
	// The walk is bounded: after a long outage (or with the sweeper off)
	// counts are approximate until the sweeper catches up.
	wc := t.idx(bWaitByTime).Cursor()
	walked := 0
	for k, _ := wc.First(); k != nil && walked < statsWalkLimit && getU64(k[:8]) <= t.nowMs; k, _ = wc.Next() {
		walked++
		m, err := t.getRow(getU64(k[8:]))
		if err != nil {
			return st, err
		}
		if m == nil {
			continue
		}
		e := t.s.effective(m, t.nowMs)
		switch m.State {
		case wire.StateLeased:
			st.ByState.Leased--
			if e.State == wire.StateDead {
				st.ByState.Dead++
				continue
			}
			st.ByState.Ready++
			if m.TaskKind != nil {
				st.PendingByKind[*m.TaskKind]++
			}
			st.PendingByPriority[strconv.Itoa(int(m.Priority))]++
		case wire.StateDelayed:
			st.ByState.Delayed--
			st.ByState.Ready++
		}
		extraReady[m.ReceiverAgentID] = append(extraReady[m.ReceiverAgentID], e)
	}
	st.PendingCount = st.ByState.Ready + st.ByState.Delayed
	if !perReceiver {
		return st, nil
	}
	rc := t.idx(bRecvReady).Cursor()
	seen := map[string]bool{}
	for k, v := rc.First(); k != nil; k, v = rc.Next() {
		recv := string(k)
		if k[0] == 0xff { // a long id, hashed by boundedKey: read it off a ready row
			if rk, _ := t.idx(bReady).Cursor().Seek(cat(k, sep)); rk != nil && bytes.HasPrefix(rk, cat(k, sep)) {
				if m, err := t.getRow(getU64(rk[len(rk)-8:])); err == nil && m != nil {
					recv = m.ReceiverAgentID
				}
			}
		}
		seen[recv] = true
		rs := wire.ReceiverStats{ReceiverAgentID: recv, Ready: getU64(v)}
		oldest := t.oldestReadyCreated(recv)
		for _, m := range extraReady[recv] {
			rs.Ready++
			oldest = min(oldest, readySince(m))
		}
		if oldest < t.nowMs {
			rs.OldestReadyAgeMs = t.nowMs - oldest
		}
		st.Receivers = append(st.Receivers, rs)
	}
	for recv, ms := range extraReady {
		if seen[recv] {
			continue
		}
		rs := wire.ReceiverStats{ReceiverAgentID: recv, Ready: uint64(len(ms))}
		oldest := t.nowMs
		for _, m := range ms {
			oldest = min(oldest, readySince(m))
		}
		rs.OldestReadyAgeMs = t.nowMs - oldest
		st.Receivers = append(st.Receivers, rs)
	}
	return st, nil
}

func readySince(m *wire.StoredMessage) uint64 { return m.CreatedUnixMs }

// oldestReadyCreated finds the smallest id among recv's ready rows by
// seeking once per distinct priority (at most 256 seeks, no row scan).
func (t *txn) oldestReadyCreated(recv string) uint64 {
	rp := recvPrefix(recv)
	c := t.idx(bReady).Cursor()
	var minID uint64
	found := false
	k, _ := c.Seek(rp)
	for k != nil && bytes.HasPrefix(k, rp) {
		inv := k[len(rp)]
		if id := getU64(k[len(rp)+1:]); !found || id < minID {
			minID, found = id, true
		}
		if inv == 0xff {
			break
		}
		k, _ = c.Seek(cat(rp, []byte{inv + 1}))
	}
	if !found {
		return t.nowMs
	}
	m, err := t.getRow(minID)
	if err != nil || m == nil {
		return t.nowMs
	}
	return readySince(m)
}
