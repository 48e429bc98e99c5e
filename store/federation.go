package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"populi-db/wire"
)

// The federation directory (SPEC 2.20, kept durable per 16.29): entries in
// first-announcement order, each stored as its canonical JSON so a listing
// is a concatenation, not a decode and re-encode.

// AnnounceFederation stores e, replacing the entry with the same scope_id
// in place or appending it. The caller has already checked e (package
// federation). maxEntries caps the directory: a new scope past it is
// refused and nothing changes.
// Errors: wire.ErrFedDirectoryFull.
func (s *Store) AnnounceFederation(e wire.MeshDirectoryEntry, maxEntries int) error {
	return s.update(func(t *txn) error {
		_, err := t.putFedEntry(&e, maxEntries)
		return err
	})
}

// fedChange is what putFedEntry did.
type fedChange int

const (
	fedUnchanged fedChange = iota
	fedAdded
	fedReplaced
)

// putFedEntry replaces or appends e. It refuses (before writing anything)
// a new scope when the directory holds maxEntries.
func (t *txn) putFedEntry(e *wire.MeshDirectoryEntry, maxEntries int) (fedChange, error) {
	val := e.AppendCanonical(nil)
	scope := boundedKey(e.ScopeID)
	if seq := t.Bucket(bFedScope).Get(scope); seq != nil {
		if bytes.Equal(t.Bucket(bFedDir).Get(seq), val) {
			return fedUnchanged, nil
		}
		if err := t.Bucket(bFedDir).Put(append([]byte(nil), seq...), val); err != nil {
			return 0, fmt.Errorf("replace federation entry: %w", err)
		}
		return fedReplaced, nil
	}
	if int(getU64(t.Bucket(bMeta).Get(mFedCount))) >= maxEntries {
		return 0, wire.ErrFedDirectoryFull
	}
	seq, err := t.nextSeq(mFedSeq)
	if err != nil {
		return 0, err
	}
	if err := t.Bucket(bFedDir).Put(u64(seq), val); err != nil {
		return 0, fmt.Errorf("append federation entry: %w", err)
	}
	if err := t.Bucket(bFedScope).Put(scope, u64(seq)); err != nil {
		return 0, fmt.Errorf("index federation entry: %w", err)
	}
	if err := addCount(t.Bucket(bMeta), mFedCount, 1); err != nil {
		return 0, err
	}
	return fedAdded, nil
}

// FederationMerge counts what MergeFederation did with a peer's entries.
type FederationMerge struct {
	Added, Replaced, Unchanged int
	Own                        int // entries for our own scope, skipped
	Refused                    int // new scopes refused: directory full
}

// Changed reports whether the merge wrote anything.
func (m FederationMerge) Changed() bool { return m.Added+m.Replaced > 0 }

// MergeFederation applies a peer's directory: each entry replaces or
// appends by scope_id, except entries for ownScope, which are never added
// (SPEC 2.20). The entries that change something are written in one
// transaction; when none does, nothing is written. The caller has checked
// every entry and bounds how many it passes. Past maxEntries new scopes are
// counted as refused.
func (s *Store) MergeFederation(entries []wire.MeshDirectoryEntry, ownScope string, maxEntries int) (FederationMerge, error) {
	var m FederationMerge
	// Steady-state gossip repeats what we hold: find the entries that would
	// change something in a read transaction, so an unchanged answer costs
	// no write and no fsync.
	var changed []*wire.MeshDirectoryEntry
	err := s.view(func(t *txn) error {
		changed, m = changed[:0], FederationMerge{}
		for i := range entries {
			e := &entries[i]
			switch seq := t.Bucket(bFedScope).Get(boundedKey(e.ScopeID)); {
			case e.ScopeID == ownScope:
				m.Own++
			case seq != nil && bytes.Equal(t.Bucket(bFedDir).Get(seq), e.AppendCanonical(nil)):
				m.Unchanged++
			default:
				changed = append(changed, e)
			}
		}
		return nil
	})
	if err != nil || len(changed) == 0 {
		return m, err
	}
	base := m
	err = s.update(func(t *txn) error {
		m = base
		for _, e := range changed {
			c, err := t.putFedEntry(e, maxEntries)
			switch {
			case errors.Is(err, wire.ErrFedDirectoryFull):
				m.Refused++
			case err != nil:
				return err
			case c == fedAdded:
				m.Added++
			case c == fedReplaced:
				m.Replaced++
			default:
				m.Unchanged++
			}
		}
		return nil
	})
	return m, err
}

// FederationDirectoryJSON returns the directory as the routes answer it:
// {"entries":[...]} with every entry in order, built from the stored
// canonical bytes.
func (s *Store) FederationDirectoryJSON() ([]byte, error) {
	var out []byte
	err := s.view(func(t *txn) error {
		b := t.Bucket(bFedDir)
		n := int(getU64(t.Bucket(bMeta).Get(mFedCount)))
		out = make([]byte, 0, 16+n*384)
		out = append(out, `{"entries":[`...)
		c := b.Cursor()
		first := true
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if !first {
				out = append(out, ',')
			}
			first = false
			out = append(out, v...)
		}
		out = append(out, "]}"...)
		return nil
	})
	return out, err
}

// FederationEntries returns the directory decoded, in order.
func (s *Store) FederationEntries() ([]wire.MeshDirectoryEntry, error) {
	var out []wire.MeshDirectoryEntry
	err := s.view(func(t *txn) error {
		out = out[:0]
		c := t.Bucket(bFedDir).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			var e wire.MeshDirectoryEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decode federation entry %d: %w", getU64(k), err)
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
