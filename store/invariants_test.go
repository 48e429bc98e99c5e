package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"

	"populi-db/wire"
)

// checkIndexes recomputes every index bucket and counter from the primary
// rows (mailbox rows, nodes, exec leases, jti entries) and reports each
// difference. It is the test-side statement of schema.go's comments.
func checkIndexes(s *Store) []error {
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	err := s.view(func(tx *txn) error {
		checkRows(tx, s, fail)
		checkNodes(tx, fail)
		checkExec(tx, fail)
		checkJTI(tx, fail)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	return errs
}

type keySet map[string]bool

func (k keySet) add(parts ...[]byte) { k[string(cat(parts...))] = true }

// forEach walks a bucket: an in-memory index or a bbolt bucket.
func forEach(tx *txn, s *Store, name []byte, fn func(k, v []byte) error) error {
	if s != nil {
		if b, ok := s.index.buckets[string(name)]; ok {
			return b.ForEach(fn)
		}
	}
	return tx.Bucket(name).ForEach(fn)
}

func bucketKeys(tx *txn, s *Store, name []byte) keySet {
	out := keySet{}
	_ = forEach(tx, s, name, func(k, _ []byte) error {
		out[string(k)] = true
		return nil
	})
	return out
}

func compareSets(fail func(string, ...any), name []byte, want, got keySet) {
	for k := range want {
		if !got[k] {
			fail("bucket %s lacks key %q", name, k)
		}
	}
	for k := range got {
		if !want[k] {
			fail("bucket %s has stray key %q", name, k)
		}
	}
}

func checkRows(tx *txn, s *Store, fail func(string, ...any)) {
	want := map[string]keySet{}
	for _, b := range [][]byte{bReady, bByReceiver, bWait, bWaitByTime, bHeld, bDead, bDeadIDs, bAcked} {
		want[string(b)] = keySet{}
	}
	counts := map[string]uint64{}
	recvReady := map[string]uint64{}
	idem := map[string]uint64{}
	var maxID uint64
	_ = tx.Bucket(bRows).ForEach(func(k, v []byte) error {
		var m wire.StoredMessage
		if err := decodeRow(v, &m); err != nil {
			fail("row %x: %v", k, err)
			return nil
		}
		id := u64(m.ID)
		if !bytes.Equal(k, id) {
			fail("row key %x holds id %d", k, m.ID)
		}
		maxID = max(maxID, m.ID)
		rp := recvPrefix(m.ReceiverAgentID)
		pending := func() {
			if m.TaskKind != nil {
				counts["k:"+*m.TaskKind]++
			}
			counts["p:"+strconv.Itoa(int(m.Priority))]++
		}
		if m.Acknowledged != (m.State == wire.StateAcked) {
			fail("row %d: acknowledged=%v in state %s", m.ID, m.Acknowledged, m.State)
		}
		if (m.LeaseHolderNodeID != nil || m.LeaseExpiresUnixMs != nil) != (m.State == wire.StateLeased) {
			fail("row %d: lease fields in state %s", m.ID, m.State)
		}
		if (m.NotBeforeUnixMs != nil) != (m.State == wire.StateDelayed) {
			fail("row %d: not_before in state %s", m.ID, m.State)
		}
		switch m.State {
		case wire.StateReady:
			want[string(bReady)].add(rp, prioInv(m.Priority), id)
			want[string(bByReceiver)].add(rp, id)
			counts[string(cReady)]++
			recvReady[string(boundedKey(m.ReceiverAgentID))]++
			pending()
		case wire.StateLeased:
			if m.LeaseToken == nil {
				fail("row %d: leased without a token", m.ID)
			}
			exp := u64(derefU64(m.LeaseExpiresUnixMs))
			want[string(bWait)].add(rp, exp, id)
			want[string(bWaitByTime)].add(exp, id)
			want[string(bHeld)].add(holderPrefix(wire.Str(m.LeaseHolderNodeID), m.ReceiverAgentID), prioInv(m.Priority), id)
			want[string(bByReceiver)].add(rp, id)
			counts[string(cLeased)]++
		case wire.StateDelayed:
			due := u64(derefU64(m.NotBeforeUnixMs))
			want[string(bWait)].add(rp, due, id)
			want[string(bWaitByTime)].add(due, id)
			want[string(bByReceiver)].add(rp, id)
			counts[string(cDelayed)]++
			pending()
		case wire.StateDead:
			want[string(bDead)].add(rp, id)
			want[string(bDeadIDs)].add(id)
			counts[string(cDead)]++
		case wire.StateAcked:
			want[string(bAcked)].add(id)
			counts[string(cAcked)]++
			if m.IdempotencyDedupeKey != nil {
				fail("row %d: acked but keeps dedupe key", m.ID)
			}
		default:
			fail("row %d: unknown state %q", m.ID, m.State)
		}
		if m.IdempotencyDedupeKey != nil && m.State != wire.StateAcked {
			idem[string(boundedKey(*m.IdempotencyDedupeKey))] = m.ID
		}
		return nil
	})
	for name, w := range want {
		compareSets(fail, []byte(name), w, bucketKeys(tx, s, []byte(name)))
	}
	gotCounts := map[string]uint64{}
	_ = forEach(tx, s, bCounts, func(k, v []byte) error {
		gotCounts[string(k)] = getU64(v)
		return nil
	})
	compareCounts(fail, "a2a_counts", counts, gotCounts)
	gotRecv := map[string]uint64{}
	_ = forEach(tx, s, bRecvReady, func(k, v []byte) error {
		gotRecv[string(k)] = getU64(v)
		return nil
	})
	compareCounts(fail, "a2a_recv_ready", recvReady, gotRecv)
	gotIdem := map[string]uint64{}
	_ = tx.Bucket(bIdem).ForEach(func(k, v []byte) error {
		gotIdem[string(k)] = getU64(v)
		return nil
	})
	compareCounts(fail, "a2a_idem", idem, gotIdem)
	if next := getU64(tx.Bucket(bMeta).Get(mNextMessageID)); next < maxID {
		fail("next_message_id %d below stored id %d", next, maxID)
	}
}

func compareCounts(fail func(string, ...any), name string, want, got map[string]uint64) {
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		if want[k] != got[k] {
			fail("%s[%q] = %d, rows say %d", name, k, got[k], want[k])
		}
	}
}

func checkNodes(tx *txn, fail func(string, ...any)) {
	order := tx.Bucket(bNodesOrder)
	wantOrder, wantMaint := keySet{}, keySet{}
	_ = tx.Bucket(bNodes).ForEach(func(k, v []byte) error {
		var rec wire.NodeRecord
		if err := json.Unmarshal(v[8:], &rec); err != nil {
			fail("node %q: %v", k, err)
			return nil
		}
		seq := v[:8]
		if got := order.Get(seq); string(got) != rec.ID {
			fail("nodes_order[%d] = %q, want %q", getU64(seq), got, rec.ID)
		}
		wantOrder.add(seq)
		if rec.Maintenance != nil && *rec.Maintenance && rec.MaintenanceUntilUnixMs != nil {
			wantMaint.add(u64(*rec.MaintenanceUntilUnixMs), k)
		}
		return nil
	})
	compareSets(fail, bNodesOrder, wantOrder, bucketKeys(tx, nil, bNodesOrder))
	compareSets(fail, bMaintByTime, wantMaint, bucketKeys(tx, nil, bMaintByTime))
}

func checkExec(tx *txn, fail func(string, ...any)) {
	order := tx.Bucket(bExecOrder)
	wantOrder, wantExp, wantScope := keySet{}, keySet{}, map[string]string{}
	var maxID uint64
	_ = tx.Bucket(bExec).ForEach(func(k, v []byte) error {
		var l wire.ExecLease
		if err := json.Unmarshal(v[8:], &l); err != nil {
			fail("exec lease %q: %v", k, err)
			return nil
		}
		if got := order.Get(v[:8]); string(got) != l.LeaseID {
			fail("exec_order[%d] = %q, want %q", getU64(v[:8]), got, l.LeaseID)
		}
		wantOrder.add(v[:8])
		wantExp.add(u64(l.ExpiresUnixMs), k)
		if prev, dup := wantScope[string(boundedKey(l.ScopeKey))]; dup {
			fail("scope %q held by leases %s and %s", l.ScopeKey, prev, l.LeaseID)
		}
		wantScope[string(boundedKey(l.ScopeKey))] = l.LeaseID
		if n, err := strconv.ParseUint(l.LeaseID, 10, 64); err == nil {
			maxID = max(maxID, n)
		}
		return nil
	})
	compareSets(fail, bExecOrder, wantOrder, bucketKeys(tx, nil, bExecOrder))
	compareSets(fail, bExecByExp, wantExp, bucketKeys(tx, nil, bExecByExp))
	gotScope := map[string]string{}
	_ = tx.Bucket(bExecScope).ForEach(func(k, v []byte) error {
		gotScope[string(k)] = string(v)
		return nil
	})
	for k, v := range wantScope {
		if gotScope[k] != v {
			fail("exec_scope[%q] = %q, want %q", k, gotScope[k], v)
		}
	}
	for k, v := range gotScope {
		if wantScope[k] != v {
			fail("exec_scope[%q] = %q points at no lease of that scope", k, v)
		}
	}
	if next := getU64(tx.Bucket(bMeta).Get(mNextLeaseID)); next < maxID {
		fail("next_lease_id %d below stored id %d", next, maxID)
	}
}

func checkJTI(tx *txn, fail func(string, ...any)) {
	want := keySet{}
	n := 0
	_ = tx.Bucket(bJTI).ForEach(func(k, v []byte) error {
		want.add(v, k)
		n++
		return nil
	})
	compareSets(fail, bJTIByPurge, want, bucketKeys(tx, nil, bJTIByPurge))
	if got := int(getU64(tx.Bucket(bMeta).Get(mJTICount))); got != n {
		fail("jti_count = %d, table holds %d", got, n)
	}
}
