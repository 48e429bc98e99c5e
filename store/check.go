package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"go.etcd.io/bbolt"

	"populi-db/store/wal"

	"populi-db/wire"
)

// Finding is one problem `populi-db check` reports.
type Finding struct {
	Kind    string `json:"kind"` // file, open, page, invariant, dedupe_violation, schema, log
	Message string `json:"message"`
}

// CheckReport is the result of CheckFile.
type CheckReport struct {
	Path          string    `json:"db"`
	SchemaVersion uint64    `json:"schema_version,omitempty"`
	Findings      []Finding `json:"findings"`
}

// OK reports whether nothing was found.
func (r CheckReport) OK() bool { return len(r.Findings) == 0 }

// CheckFile checks the db file at path without ever writing to it: the page
// walk (a damaged, truncated, empty or foreign file becomes findings, never
// a crash), then a read-only open, bbolt's page check and the invariants
// below. The error is for a file that cannot be checked at all: missing,
// or locked by a running server.
func CheckFile(path string, lockWait time.Duration) (CheckReport, error) {
	rep := CheckReport{Path: path, Findings: []Finding{}}
	// A damaged meta page that bbolt survives is still damage to report.
	if _, warnings, err := InspectFile(path, false, lockWait); err == nil {
		for _, w := range warnings {
			rep.Findings = append(rep.Findings, Finding{"file", w})
		}
	}
	s, err := Open(Config{Path: path, OpenTimeout: lockWait, Logger: slog.New(slog.DiscardHandler), OpenMode: OpenMode{ReadOnly: true, NoIndexRebuild: true, NoCommitLoop: true}})
	var dmg *DamageError
	switch {
	case errors.As(err, &dmg):
		for _, f := range dmg.Findings {
			rep.Findings = append(rep.Findings, Finding{"file", f})
		}
		return rep, nil
	case errors.Is(err, ErrLocked):
		return rep, err
	case err != nil && !fileExists(path):
		return rep, err
	case err != nil:
		rep.Findings = append(rep.Findings, Finding{"open", err.Error()})
		return rep, nil
	}
	defer s.Close()
	rep.SchemaVersion = s.FileSchemaVersion()
	if rep.SchemaVersion < SchemaVersion {
		rep.Findings = append(rep.Findings, Finding{"schema", fmt.Sprintf("schema version %d is older than this binary's %d: the next `populi-db serve` upgrades it (keeping a copy)", rep.SchemaVersion, SchemaVersion)})
	}
	rep.Findings = append(rep.Findings, s.checkPages()...)
	rep.Findings = append(rep.Findings, s.CheckInvariants()...)
	rep.Findings = append(rep.Findings, s.checkLog()...)
	return rep, nil
}

// checkPages runs bbolt's own consistency check (reachable, freed and
// ordered pages). It runs in bbolt's goroutine, which recovers its panics.
func (s *Store) checkPages() []Finding {
	var out []Finding
	_ = s.db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			out = append(out, Finding{"page", err.Error()})
		}
		return nil
	})
	return out
}

// checkLog verifies the write-ahead log read-only: a damaged record that
// later ones follow is a finding (acknowledged data is damaged; serve would
// refuse to start). A torn tail is normal after a crash and is not; the
// records waiting to be folded were replayed into memory by the open and
// decoded there (a record that does not decode fails the open).
func (s *Store) checkLog() []Finding {
	applied, err := s.appliedLogSeq()
	if err != nil {
		return []Finding{{"log", fmt.Sprintf("reading meta/applied_log_seq: %v", err)}}
	}
	rep, err := wal.Verify(s.cfg.LogDir, applied)
	if err != nil {
		return []Finding{{"log", fmt.Sprintf("reading the write-ahead log %s: %v", s.cfg.LogDir, err)}}
	}
	if err := rep.Err(); err != nil {
		return []Finding{{"log", err.Error() + " (serve refuses to start; --allow-corrupt-log cuts the log there and loses the writes after it)"}}
	}
	return nil
}

// CheckInvariants reads every durable bucket and reports each broken rule:
// rows decode and their fields fit their state; every persistent index
// entry has its row and every row its entries (the mailbox's other indexes
// are rebuilt from the rows at open, so they cannot differ on disk);
// idempotency keys ↔ pending rows; one exec lease per scope_key; counters
// above every stored id; no dedupe violation (two pending rows sharing a
// dedupe key). A panic while reading is a finding too.
func (s *Store) CheckInvariants() (out []Finding) {
	fail := func(kind, format string, args ...any) {
		if len(out) < 1000 {
			out = append(out, Finding{kind, fmt.Sprintf(format, args...)})
		}
	}
	defer func() {
		if p := recover(); p != nil {
			fail("invariant", "reading the database failed: %v", p)
		}
	}()
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if tx.Bucket(b) == nil {
				fail("invariant", "bucket %s is missing", b)
				return nil
			}
		}
		invRows(tx, fail)
		invNodes(tx, fail)
		invExec(tx, fail)
		invJTI(tx, fail)
		return nil
	})
	if err != nil {
		fail("invariant", "%v", err)
	}
	return out
}

type failFunc func(kind, format string, args ...any)

func invKeys(tx *bbolt.Tx, name []byte) map[string]bool {
	out := map[string]bool{}
	_ = tx.Bucket(name).ForEach(func(k, _ []byte) error {
		out[string(k)] = true
		return nil
	})
	return out
}

func invCompare(fail failFunc, name []byte, want, got map[string]bool) {
	for _, k := range sortedKeys(want) {
		if !got[k] {
			fail("invariant", "index %s lacks entry %q for a stored record", name, k)
		}
	}
	for _, k := range sortedKeys(got) {
		if !want[k] {
			fail("invariant", "index %s has entry %q with no stored record", name, k)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func invRows(tx *bbolt.Tx, fail failFunc) {
	meta := tx.Bucket(bMeta)
	idem := map[string]uint64{}
	byKey := map[string][]uint64{}
	var maxID, maxToken uint64
	_ = tx.Bucket(bRows).ForEach(func(k, v []byte) error {
		var m wire.StoredMessage
		if err := decodeRow(v, &m); err != nil {
			fail("invariant", "a2a row %x does not decode: %v", k, err)
			return nil
		}
		if !bytes.Equal(k, u64(m.ID)) {
			fail("invariant", "a2a row key %x holds id %d", k, m.ID)
		}
		maxID = max(maxID, m.ID)
		if m.LeaseToken != nil {
			maxToken = max(maxToken, *m.LeaseToken)
		}
		switch m.State {
		case wire.StateReady, wire.StateLeased, wire.StateDelayed, wire.StateDead, wire.StateAcked:
		default:
			fail("invariant", "a2a row %d has unknown state %q (it cannot be indexed)", m.ID, m.State)
			return nil
		}
		if m.Acknowledged != (m.State == wire.StateAcked) {
			fail("invariant", "a2a row %d: acknowledged=%v in state %s", m.ID, m.Acknowledged, m.State)
		}
		if (m.LeaseHolderNodeID != nil && m.LeaseExpiresUnixMs != nil) != (m.State == wire.StateLeased) {
			fail("invariant", "a2a row %d: lease fields do not fit state %s", m.ID, m.State)
		}
		if m.State == wire.StateLeased && m.LeaseToken == nil {
			fail("invariant", "a2a row %d: leased without a lease token", m.ID)
		}
		if (m.NotBeforeUnixMs != nil) != (m.State == wire.StateDelayed) {
			fail("invariant", "a2a row %d: not_before_unix_ms does not fit state %s", m.ID, m.State)
		}
		if m.IdempotencyDedupeKey != nil {
			switch m.State {
			case wire.StateAcked:
				fail("invariant", "a2a row %d: acknowledged but keeps its dedupe key", m.ID)
			default:
				key := string(boundedKey(*m.IdempotencyDedupeKey))
				idem[key] = m.ID
				byKey[key] = append(byKey[key], m.ID)
			}
		}
		return nil
	})
	for _, key := range sortedKeys(byKey) {
		if ids := byKey[key]; len(ids) > 1 {
			fail("dedupe_violation", "rows %v are all pending with idempotency_dedupe_key %q", ids, key)
		}
	}
	got := map[string]uint64{}
	_ = tx.Bucket(bIdem).ForEach(func(k, v []byte) error {
		got[string(k)] = getU64(v)
		return nil
	})
	for _, k := range sortedKeys(idem) {
		if g, ok := got[k]; !ok {
			fail("invariant", "a2a_idem lacks key %q of pending row %d", k, idem[k])
		} else if g != idem[k] && len(byKey[k]) < 2 {
			fail("invariant", "a2a_idem[%q] = %d, but the pending row with that key is %d", k, g, idem[k])
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := idem[k]; !ok {
			fail("invariant", "a2a_idem[%q] = %d points at no pending row with that key", k, got[k])
		}
	}
	if next := getU64(meta.Get(mNextMessageID)); next < maxID {
		fail("invariant", "counter next_message_id %d is below stored message id %d (ids would repeat)", next, maxID)
	}
	// Exec leases carry tokens from the same counter.
	_ = tx.Bucket(bExec).ForEach(func(_, v []byte) error {
		var l wire.ExecLease
		if len(v) > 8 && json.Unmarshal(v[8:], &l) == nil && l.LeaseToken != nil {
			maxToken = max(maxToken, *l.LeaseToken)
		}
		return nil
	})
	if next := getU64(meta.Get(mNextToken)); next < maxToken {
		fail("invariant", "counter next_lease_token %d is below stored lease token %d (tokens would repeat)", next, maxToken)
	}
}

func invNodes(tx *bbolt.Tx, fail failFunc) {
	order := tx.Bucket(bNodesOrder)
	wantOrder, wantMaint := map[string]bool{}, map[string]bool{}
	var maxSeq uint64
	_ = tx.Bucket(bNodes).ForEach(func(k, v []byte) error {
		var rec wire.NodeRecord
		if len(v) < 8 {
			fail("invariant", "node %q: value too short", k)
			return nil
		}
		if err := json.Unmarshal(v[8:], &rec); err != nil {
			fail("invariant", "node %q does not decode: %v", k, err)
			return nil
		}
		seq := v[:8]
		maxSeq = max(maxSeq, getU64(seq))
		if got := order.Get(seq); string(got) != rec.ID {
			fail("invariant", "nodes_order[%d] = %q, want %q", getU64(seq), got, rec.ID)
		}
		wantOrder[string(seq)] = true
		if rec.Maintenance != nil && *rec.Maintenance && rec.MaintenanceUntilUnixMs != nil {
			wantMaint[string(cat(u64(*rec.MaintenanceUntilUnixMs), k))] = true
		}
		return nil
	})
	invCompare(fail, bNodesOrder, wantOrder, invKeys(tx, bNodesOrder))
	invCompare(fail, bMaintByTime, wantMaint, invKeys(tx, bMaintByTime))
	if next := getU64(tx.Bucket(bMeta).Get(mNodeSeq)); next < maxSeq {
		fail("invariant", "counter node_seq %d is below stored node position %d", next, maxSeq)
	}
}

func invExec(tx *bbolt.Tx, fail failFunc) {
	order := tx.Bucket(bExecOrder)
	wantOrder, wantExp, wantScope := map[string]bool{}, map[string]bool{}, map[string]string{}
	var maxID, maxSeq uint64
	_ = tx.Bucket(bExec).ForEach(func(k, v []byte) error {
		var l wire.ExecLease
		if len(v) < 8 {
			fail("invariant", "exec lease %q: value too short", k)
			return nil
		}
		if err := json.Unmarshal(v[8:], &l); err != nil {
			fail("invariant", "exec lease %q does not decode: %v", k, err)
			return nil
		}
		maxSeq = max(maxSeq, getU64(v[:8]))
		if got := order.Get(v[:8]); string(got) != l.LeaseID {
			fail("invariant", "exec_order[%d] = %q, want %q", getU64(v[:8]), got, l.LeaseID)
		}
		wantOrder[string(v[:8])] = true
		wantExp[string(cat(u64(l.ExpiresUnixMs), k))] = true
		sk := string(boundedKey(l.ScopeKey))
		if prev, dup := wantScope[sk]; dup {
			fail("invariant", "scope_key %q is held by exec leases %s and %s (one lease per scope_key)", l.ScopeKey, prev, l.LeaseID)
		}
		wantScope[sk] = l.LeaseID
		if n, err := strconv.ParseUint(l.LeaseID, 10, 64); err == nil {
			maxID = max(maxID, n)
		}
		return nil
	})
	invCompare(fail, bExecOrder, wantOrder, invKeys(tx, bExecOrder))
	invCompare(fail, bExecByExp, wantExp, invKeys(tx, bExecByExp))
	gotScope := map[string]string{}
	_ = tx.Bucket(bExecScope).ForEach(func(k, v []byte) error {
		gotScope[string(k)] = string(v)
		return nil
	})
	for _, k := range sortedKeys(wantScope) {
		if gotScope[k] != wantScope[k] {
			fail("invariant", "exec_scope[%q] = %q, want lease %q", k, gotScope[k], wantScope[k])
		}
	}
	for _, k := range sortedKeys(gotScope) {
		if _, ok := wantScope[k]; !ok {
			fail("invariant", "exec_scope[%q] = %q points at no lease of that scope", k, gotScope[k])
		}
	}
	meta := tx.Bucket(bMeta)
	if next := getU64(meta.Get(mNextLeaseID)); next < maxID {
		fail("invariant", "counter next_lease_id %d is below stored exec lease id %d (ids would repeat)", next, maxID)
	}
	if next := getU64(meta.Get(mExecSeq)); next < maxSeq {
		fail("invariant", "counter exec_seq %d is below stored exec lease position %d", next, maxSeq)
	}
}

func invJTI(tx *bbolt.Tx, fail failFunc) {
	want := map[string]bool{}
	n := 0
	_ = tx.Bucket(bJTI).ForEach(func(k, v []byte) error {
		want[string(cat(v, k))] = true
		n++
		return nil
	})
	invCompare(fail, bJTIByPurge, want, invKeys(tx, bJTIByPurge))
	if got := int(getU64(tx.Bucket(bMeta).Get(mJTICount))); got != n {
		fail("invariant", "counter jti_count = %d, but the replay table holds %d", got, n)
	}
}
