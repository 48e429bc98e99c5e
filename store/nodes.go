package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"populi-db/wire"
)

// storedNode is a node record as read from bbolt, with its list position.
type storedNode struct {
	seq uint64
	rec wire.NodeRecord
	enc []byte // rec's stored JSON, set by putNode
}

func (t *txn) getNode(id string) (*storedNode, error) {
	v := t.Bucket(bNodes).Get(boundedKey(id))
	if v == nil {
		return nil, nil
	}
	rec, err := t.s.nodes.decode(id, v[8:])
	if err != nil {
		return nil, fmt.Errorf("decode node %q: %w", id, err)
	}
	return &storedNode{seq: getU64(v[:8]), rec: rec}, nil
}

// nodeCache remembers, per node id, the last decoded record and the exact
// stored bytes it came from: every claim, lease call and heartbeat looks its
// node up, and a NodeRecord costs tens of microseconds to decode. A hit
// needs the stored bytes to be equal, so a cached record is never stale;
// putNode caches what it writes, so the next heartbeat of a node hits even
// with 10,000 nodes. Callers get a shallow copy and only replace top-level
// fields, never mutate what a pointer field points at.
type nodeCache struct {
	mu sync.Mutex
	m  map[string]cachedNode
}

type cachedNode struct {
	raw string
	rec wire.NodeRecord
}

// nodeCacheMax bounds the ids remembered (left nodes stay until a reset).
const nodeCacheMax = 1 << 17

func (c *nodeCache) decode(id string, raw []byte) (wire.NodeRecord, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && e.raw == string(raw) {
		return e.rec, nil
	}
	var rec wire.NodeRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return wire.NodeRecord{}, err
	}
	c.put(id, raw, rec)
	return rec, nil
}

func (c *nodeCache) put(id string, raw []byte, rec wire.NodeRecord) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= nodeCacheMax {
		c.m = make(map[string]cachedNode)
	}
	c.m[id] = cachedNode{raw: string(raw), rec: rec}
	c.mu.Unlock()
}

func (t *txn) putNode(n *storedNode, old *wire.NodeRecord) error {
	b, err := json.Marshal(&n.rec)
	if err != nil {
		return fmt.Errorf("encode node %q: %w", n.rec.ID, err)
	}
	n.enc = b
	key := boundedKey(n.rec.ID)
	if err := t.Bucket(bNodes).Put(key, cat(u64(n.seq), b)); err != nil {
		return fmt.Errorf("put node %q: %w", n.rec.ID, err)
	}
	// Readers of this version get n.rec instead of decoding b: it encodes
	// to the same bytes, which is all a reader's answer depends on.
	t.s.nodes.put(n.rec.ID, b, n.rec)
	// Keep the timed-maintenance index in step with the record.
	mb := t.Bucket(bMaintByTime)
	if old != nil && old.MaintenanceUntilUnixMs != nil {
		if err := mb.Delete(cat(u64(*old.MaintenanceUntilUnixMs), key)); err != nil {
			return err
		}
	}
	if n.rec.Maintenance != nil && *n.rec.Maintenance && n.rec.MaintenanceUntilUnixMs != nil {
		if err := mb.Put(cat(u64(*n.rec.MaintenanceUntilUnixMs), key), nil); err != nil {
			return err
		}
	}
	return nil
}

// expireMaintenance applies SPEC 8.3 to one record at instant nowMs: a timed
// drain whose deadline passed loses both fields. Reports whether it changed.
func expireMaintenance(rec *wire.NodeRecord, nowMs uint64) bool {
	if rec.Maintenance != nil && *rec.Maintenance && rec.MaintenanceUntilUnixMs != nil && *rec.MaintenanceUntilUnixMs <= nowMs {
		rec.Maintenance, rec.MaintenanceUntilUnixMs = nil, nil
		return true
	}
	return false
}

// blocksNewWork is SPEC 8.2's predicate.
func blocksNewWork(rec *wire.NodeRecord, nowMs uint64) bool {
	if rec.Maintenance == nil || !*rec.Maintenance {
		return false
	}
	return rec.MaintenanceUntilUnixMs == nil || nowMs < *rec.MaintenanceUntilUnixMs
}

func quarantined(rec *wire.NodeRecord) bool { return rec.Quarantined != nil && *rec.Quarantined }

func ptr[T any](v T) *T { return &v }

// ValidateNodeID rejects ids blank after trimming (SPEC 16.17).
func ValidateNodeID(id string) error {
	if strings.TrimSpace(id) == "" {
		return wire.ErrNodeIDRequired
	}
	return nil
}

// Join fully upserts rec (SPEC 9.1): an existing record is replaced, keeping
// its list position and server-owned flags; a new record starts without
// them (16.18), except a quarantine tombstone re-applies (16.9).
// Errors: wire.ErrNodeIDRequired.
func (s *Store) Join(rec wire.NodeRecord) (wire.NodeRecord, error) {
	out, _, err := s.upsertNode(rec, false)
	return out, err
}

// Heartbeat upserts like Join for an unknown id; for a known id it overwrites
// only the client-owned fields present in rec (SPEC 9.2, 16.7).
// Errors: wire.ErrNodeIDRequired.
func (s *Store) Heartbeat(rec wire.NodeRecord) (wire.NodeRecord, error) {
	out, _, err := s.upsertNode(rec, true)
	return out, err
}

// JoinJSON is Join answering the stored record's JSON, the bytes
// json.Marshal of Join's record gives (the API sends them as they are:
// the record is encoded once, by the writer that stores it).
func (s *Store) JoinJSON(rec wire.NodeRecord) ([]byte, error) {
	_, enc, err := s.upsertNode(rec, false)
	return enc, err
}

// HeartbeatJSON is Heartbeat answering the stored record's JSON (JoinJSON).
func (s *Store) HeartbeatJSON(rec wire.NodeRecord) ([]byte, error) {
	_, enc, err := s.upsertNode(rec, true)
	return enc, err
}

func (s *Store) upsertNode(in wire.NodeRecord, merge bool) (wire.NodeRecord, []byte, error) {
	if err := ValidateNodeID(in.ID); err != nil {
		return wire.NodeRecord{}, nil, err
	}
	var out wire.NodeRecord
	var enc []byte
	err := s.update(func(t *txn) error {
		in.Quarantined, in.Maintenance, in.MaintenanceUntilUnixMs = nil, nil, nil
		in.LastSeenUnixMs = t.nowMs
		cur, err := t.getNode(in.ID)
		if err != nil {
			return err
		}
		var n *storedNode
		var old *wire.NodeRecord
		if cur == nil {
			seq, err := t.nextSeq(mNodeSeq)
			if err != nil {
				return err
			}
			if err := t.Bucket(bNodesOrder).Put(u64(seq), []byte(in.ID)); err != nil {
				return err
			}
			n = &storedNode{seq: seq, rec: in}
			if t.Bucket(bTombstones).Get(boundedKey(in.ID)) != nil {
				n.rec.Quarantined = ptr(true)
			}
		} else {
			prev := cur.rec
			old = &prev
			expireMaintenance(&cur.rec, t.nowMs)
			n = cur
			if merge {
				n.rec.MergeFrom(&in)
				n.rec.LastSeenUnixMs = t.nowMs
			} else {
				q, m, mu := cur.rec.Quarantined, cur.rec.Maintenance, cur.rec.MaintenanceUntilUnixMs
				n.rec = in
				n.rec.Quarantined, n.rec.Maintenance, n.rec.MaintenanceUntilUnixMs = q, m, mu
			}
		}
		if err := t.putNode(n, old); err != nil {
			return err
		}
		out, enc = n.rec, n.enc
		return nil
	})
	return out, enc, err
}

// Leave removes a node (exact id). A quarantined node leaves a tombstone so a
// re-join comes back quarantined (SPEC 16.9). Errors: wire.ErrNotFound.
func (s *Store) Leave(id string) error {
	return s.update(func(t *txn) error {
		n, err := t.getNode(id)
		if err != nil {
			return err
		}
		if n == nil {
			return wire.ErrNotFound
		}
		key := boundedKey(id)
		if quarantined(&n.rec) {
			if err := t.Bucket(bTombstones).Put(key, []byte("1")); err != nil {
				return err
			}
		}
		if n.rec.MaintenanceUntilUnixMs != nil {
			if err := t.Bucket(bMaintByTime).Delete(cat(u64(*n.rec.MaintenanceUntilUnixMs), key)); err != nil {
				return err
			}
		}
		if err := t.Bucket(bNodesOrder).Delete(u64(n.seq)); err != nil {
			return err
		}
		return t.Bucket(bNodes).Delete(key)
	})
}

// SetQuarantine sets a node's quarantined flag (a false is stored as false).
// Clearing also removes a tombstone, even for an id that has left.
// Errors: wire.ErrNodeIDParamReq, wire.ErrNotFound.
func (s *Store) SetQuarantine(nodeID string, q bool) error {
	nodeID = strings.TrimSpace(nodeID)
	if nodeID == "" {
		return wire.ErrNodeIDParamReq
	}
	return s.update(func(t *txn) error {
		n, err := t.getNode(nodeID)
		if err != nil {
			return err
		}
		tomb := t.Bucket(bTombstones)
		key := boundedKey(nodeID)
		if n == nil {
			if !q && tomb.Get(key) != nil {
				return tomb.Delete(key)
			}
			return wire.ErrNotFound
		}
		if !q {
			if err := tomb.Delete(key); err != nil {
				return err
			}
		}
		old := n.rec
		n.rec.Quarantined = ptr(q)
		return t.putNode(n, &old)
	})
}

// SetMaintenance drains or undrains a node (SPEC 8.2). A future absolute
// deadline wins, else a positive relative one (capped at 7 days), else the
// drain is indefinite. Errors: wire.ErrNodeIDParamReq, wire.ErrNotFound.
func (s *Store) SetMaintenance(nodeID string, on bool, untilMs, forMs *uint64) error {
	nodeID = strings.TrimSpace(nodeID)
	if nodeID == "" {
		return wire.ErrNodeIDParamReq
	}
	return s.update(func(t *txn) error {
		n, err := t.getNode(nodeID)
		if err != nil {
			return err
		}
		if n == nil {
			return wire.ErrNotFound
		}
		old := n.rec
		expireMaintenance(&n.rec, t.nowMs)
		if !on {
			n.rec.Maintenance, n.rec.MaintenanceUntilUnixMs = ptr(false), nil
			return t.putNode(n, &old)
		}
		var deadline *uint64
		switch {
		case untilMs != nil && *untilMs > t.nowMs:
			deadline = ptr(*untilMs)
		case forMs != nil && *forMs > 0:
			deadline = ptr(t.nowMs + min(*forMs, MaxMaintenanceForMs))
		}
		n.rec.Maintenance, n.rec.MaintenanceUntilUnixMs = ptr(true), deadline
		return t.putNode(n, &old)
	})
}

// ListNodes returns the registry in first-insertion order with timed
// maintenance evaluated at now, nodes older than staleMs (0 = off) left out,
// and queue_depth = rows waiting to be claimed (SPEC 2.4, 16.25).
func (s *Store) ListNodes(staleMs uint64) (wire.Registry, error) {
	reg := wire.Registry{SchemaVersion: 1, Nodes: []wire.NodeRecord{}}
	err := s.view(func(t *txn) error {
		nodes := t.Bucket(bNodes)
		c := t.Bucket(bNodesOrder).Cursor()
		for k, id := c.First(); k != nil; k, id = c.Next() {
			v := nodes.Get(boundedKey(string(id)))
			if v == nil {
				continue
			}
			rec, err := s.nodes.decode(string(id), v[8:])
			if err != nil {
				return fmt.Errorf("decode node %q: %w", id, err)
			}
			expireMaintenance(&rec, t.nowMs)
			if staleMs > 0 && t.nowMs > rec.LastSeenUnixMs && t.nowMs-rec.LastSeenUnixMs > staleMs {
				continue
			}
			reg.Nodes = append(reg.Nodes, rec)
		}
		st, err := t.queueStats(false)
		if err != nil {
			return err
		}
		reg.QueueDepth = ptr(st.PendingCount)
		return nil
	})
	return reg, err
}

// ListNodesJSON is ListNodes as the response body (a wire.Registry),
// spliced from the stored record bytes: a record is stored as the JSON the
// API answers with, so only records whose timed maintenance ran out are
// decoded and re-encoded (listing 10,000 nodes decoded and re-encoded
// every record: 340 ms in the peer bench's scenario D).
func (s *Store) ListNodesJSON(staleMs uint64) ([]byte, error) {
	out := make([]byte, 0, s.listHint.Load()+64) // last listing's size: no regrowth
	err := s.view(func(t *txn) error {
		out = append(out[:0], `{"schema_version":1,"nodes":[`...)
		nodes := t.Bucket(bNodes)
		c := t.Bucket(bNodesOrder).Cursor()
		first := true
		for k, id := c.First(); k != nil; k, id = c.Next() {
			v := nodes.Get(boundedKey(string(id)))
			if len(v) < 8 {
				continue
			}
			raw := v[8:]
			if staleMs > 0 {
				seen, ok := lastSeenOf(raw)
				if !ok {
					rec, err := s.nodes.decode(string(id), raw)
					if err != nil {
						return fmt.Errorf("decode node %q: %w", id, err)
					}
					seen = rec.LastSeenUnixMs
				}
				if t.nowMs > seen && t.nowMs-seen > staleMs {
					continue
				}
			}
			// json.Marshal writes `"maintenance":true` only for the key
			// itself (a string holding it would escape the quotes).
			if bytes.Contains(raw, maintTrue) {
				rec, err := s.nodes.decode(string(id), raw)
				if err != nil {
					return fmt.Errorf("decode node %q: %w", id, err)
				}
				if expireMaintenance(&rec, t.nowMs) {
					if raw, err = json.Marshal(&rec); err != nil {
						return fmt.Errorf("encode node %q: %w", id, err)
					}
				}
			}
			if !first {
				out = append(out, ',')
			}
			first = false
			out = append(out, raw...)
		}
		st, err := t.queueStats(false)
		if err != nil {
			return err
		}
		out = append(out, `],"queue_depth":`...)
		out = strconv.AppendUint(out, st.PendingCount, 10)
		out = append(out, '}')
		s.listHint.Store(int64(len(out)))
		return nil
	})
	return out, err
}

var (
	maintTrue   = []byte(`"maintenance":true`)
	lastSeenKey = []byte(`"last_seen_unix_ms":`)
)

// lastSeenOf reads last_seen_unix_ms from a stored record without decoding
// it (json.Marshal output: the key appears once, unescaped, digits follow).
func lastSeenOf(raw []byte) (uint64, bool) {
	i := bytes.Index(raw, lastSeenKey)
	if i < 0 {
		return 0, false
	}
	j := i + len(lastSeenKey)
	k := j
	for k < len(raw) && raw[k] >= '0' && raw[k] <= '9' {
		k++
	}
	v, err := strconv.ParseUint(string(raw[j:k]), 10, 64)
	return v, err == nil
}

// ClearExpiredMaintenance removes up to limit timed drains whose deadline
// passed (SPEC 8.3), for the sweeper. Returns how many it cleared.
func (s *Store) ClearExpiredMaintenance(limit int) (int, error) {
	n := 0
	err := s.update(func(t *txn) error {
		n = 0
		c := t.Bucket(bMaintByTime).Cursor()
		var due [][]byte
		for k, _ := c.First(); k != nil && len(due) < limit && getU64(k[:8]) <= t.nowMs; k, _ = c.Next() {
			due = append(due, append([]byte(nil), k...))
		}
		for _, k := range due {
			if err := t.Bucket(bMaintByTime).Delete(k); err != nil {
				return err
			}
			v := t.Bucket(bNodes).Get(k[8:])
			if v == nil {
				continue
			}
			var rec wire.NodeRecord
			if err := json.Unmarshal(v[8:], &rec); err != nil {
				return fmt.Errorf("decode node: %w", err)
			}
			if !expireMaintenance(&rec, t.nowMs) {
				continue
			}
			sn := &storedNode{seq: getU64(v[:8]), rec: rec}
			if err := t.putNode(sn, nil); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return n, err
}

// claimerGate looks up a claimer and applies the quarantine/maintenance gate
// shared by lease-renew and exec grant/renew (SPEC 2.12, 2.13).
func (t *txn) claimerGate(id string, unknown *wire.Error) (*storedNode, error) {
	n, err := t.getNode(id)
	if err != nil {
		return nil, err
	}
	if n == nil {
		return nil, unknown
	}
	expireMaintenance(&n.rec, t.nowMs)
	if quarantined(&n.rec) {
		return nil, wire.ErrClaimerQuarantined
	}
	if blocksNewWork(&n.rec, t.nowMs) {
		return nil, wire.ErrClaimerMaintenance
	}
	return n, nil
}
