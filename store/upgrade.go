package store

import (
	"errors"
	"fmt"

	"go.etcd.io/bbolt"
)

// A schema migration takes a file from version to-1 to version to. They run
// at open, all in one write transaction with the version bump, so a crash
// leaves the file at its old version. Append only; never edit a shipped one.
type migration struct {
	to    uint64
	what  string
	apply func(tx *bbolt.Tx) error
}

var migrations = []migration{
	{to: 2, what: "add meta/applied_log_seq = 0 (where the write-ahead log's replay starts)", apply: func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta.Get(mAppliedLogSeq) != nil {
			return nil
		}
		return meta.Put(mAppliedLogSeq, u64(0))
	}},
	{to: 3, what: "a2a rows are written in the binary row encoding (rowcodec.go); JSON rows keep decoding, so nothing is rewritten", apply: func(*bbolt.Tx) error {
		return nil
	}},
}

// ErrSchemaNewer means the file was written by a newer populi-db.
var ErrSchemaNewer = errors.New("store: database schema is newer than this binary")

func newerSchemaError(v uint64) error {
	return fmt.Errorf("%w: the file has schema version %d, this binary speaks %d: run the newer populi-db that wrote it, or restore a backup taken before it", ErrSchemaNewer, v, SchemaVersion)
}

// initWrite prepares a writable open: it creates the buckets of a fresh file
// (which starts at version 1 and takes every migration, so a fresh file and
// an upgraded one are the same), and upgrades an older file after keeping a
// copy of it (unless NoUpgradeBackup).
func (s *Store) initWrite() error {
	var fresh, complete bool
	var from uint64
	err := s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil || meta.Get(mSchemaVersion) == nil {
			fresh = true
			return nil
		}
		from = getU64(meta.Get(mSchemaVersion))
		complete = true
		for _, b := range allBuckets {
			complete = complete && tx.Bucket(b) != nil
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if from > SchemaVersion {
		return newerSchemaError(from)
	}
	if fresh {
		from = 1
	}
	s.fileSchema = from
	if from == SchemaVersion && complete {
		return nil // nothing to write: opening a current file never changes it
	}
	if !fresh && from < SchemaVersion && !s.cfg.NoUpgradeBackup {
		copyPath := fmt.Sprintf("%s.schema-v%d.bak", s.cfg.Path, from)
		n, err := writeFileAtomic(copyPath, s.Backup)
		if err != nil {
			return fmt.Errorf("keep a copy before upgrading schema %d → %d: %w (pass --no-backup to upgrade without one)", from, SchemaVersion, err)
		}
		s.log.Info("kept a copy of the database before upgrading its schema", "copy", copyPath, "bytes", n, "schema_version", from)
	}
	return s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		for _, m := range migrations {
			if m.to <= from {
				continue
			}
			if err := m.apply(tx); err != nil {
				return fmt.Errorf("schema migration to version %d (%s): %w", m.to, m.what, err)
			}
			if !fresh {
				s.log.Info("upgraded database schema", "path", s.cfg.Path, "from", m.to-1, "to", m.to, "change", m.what)
			}
		}
		return tx.Bucket(bMeta).Put(mSchemaVersion, u64(SchemaVersion))
	})
}
