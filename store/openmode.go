package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"go.etcd.io/bbolt"
)

// OpenMode is how a tool opens the db, instead of reaching into bbolt. The
// zero value is what serve uses: read-write, indexes rebuilt, commit loop.
type OpenMode struct {
	// ReadOnly opens with a shared lock and never writes: no bucket is
	// created, no schema upgrade runs, no counter is saved at Close. The
	// file must exist and pass the page walk (pagewalk.go).
	ReadOnly bool
	// NoIndexRebuild skips deriving the in-memory mailbox indexes: for tools
	// that never claim or list (check, stats, backup, migrate).
	NoIndexRebuild bool
	// NoCommitLoop runs each write as its own transaction in the caller's
	// goroutine (one big import is one transaction, tried once).
	NoCommitLoop bool
	// NoUpgradeBackup skips the pre-upgrade copy of an older file.
	NoUpgradeBackup bool
}

// ErrDamaged means the db file failed the structural walk done before
// bbolt sees it (a damaged, truncated, empty or foreign file).
var ErrDamaged = errors.New("store: database file is damaged")

// DamageError lists what the walk found.
type DamageError struct {
	Path     string
	Findings []string
}

func (e *DamageError) Error() string {
	first := e.Findings[0]
	more := ""
	if n := len(e.Findings) - 1; n > 0 {
		more = fmt.Sprintf(" (and %d more problem(s))", n)
	}
	return fmt.Sprintf("database file %s is damaged: %s%s; run `populi-db check --db %s` for the full list, then restore it from a backup (`populi-db restore`)", e.Path, first, more, e.Path)
}

func (e *DamageError) Unwrap() error { return ErrDamaged }

// preflight runs before bbolt.Open: a read-only open needs an existing file;
// an existing file must pass the page walk while we hold its lock, so bbolt
// never meets a page that would make it panic or fault.
func preflight(cfg Config) error {
	if cfg.Etcd != nil {
		return prepareEtcdCache(cfg)
	}
	st, err := os.Stat(cfg.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if cfg.ReadOnly {
			return fmt.Errorf("open %s: no such database file", cfg.Path)
		}
		return nil // a fresh file is created by bbolt
	case err != nil:
		return fmt.Errorf("open %s: %w", cfg.Path, err)
	case st.IsDir():
		return fmt.Errorf("open %s: is a directory, not a database file", cfg.Path)
	}
	findings, warnings, err := InspectFile(cfg.Path, !cfg.ReadOnly, cfg.OpenTimeout)
	if err != nil {
		return err
	}
	if len(findings) > 0 {
		return &DamageError{Path: cfg.Path, Findings: findings}
	}
	for _, w := range warnings {
		cfg.Logger.Warn("database file: "+w, "path", cfg.Path)
	}
	return nil
}

// boltOptions are the bbolt options for a mode. Loading the freelist of a
// NoFreelistSync file scans every page, which is safe only because
// preflight walked them first.
func boltOptions(cfg Config) *bbolt.Options {
	if cfg.ReadOnly {
		return &bbolt.Options{ReadOnly: true, Timeout: cfg.OpenTimeout, NoFreelistSync: true, PreLoadFreelist: true, FreelistType: bbolt.FreelistMapType}
	}
	return &bbolt.Options{
		NoSync:          cfg.Etcd != nil, // a cache of etcd (etcd.go)
		Timeout:         cfg.OpenTimeout,
		NoFreelistSync:  true, // freelist is rebuilt at open; saves a page write per commit
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: 1 << 30, // remaps block readers; start big
	}
}

// openBolt is bbolt.Open with its panics turned into a DamageError. Loading
// the freelist of a NoFreelistSync file runs bbolt's page check and panics
// on the first problem; the page walk checks the same rules first (headers,
// bounds, references, key order), so this is a last resort: bbolt's check
// goroutine may still be running and fault after the recover.
func openBolt(cfg Config) (db *bbolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, &DamageError{Path: cfg.Path, Findings: []string{fmt.Sprintf("bbolt could not load the file: %v", p)}}
		}
	}()
	return bbolt.Open(cfg.Path, 0o600, boltOptions(cfg))
}

// initReadOnly checks what a read-only open can: a populi-db layout whose
// schema version this binary can read (an older one is read as is).
func (s *Store) initReadOnly() error {
	return s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bMeta)
		if meta == nil {
			return fmt.Errorf("%s is a bbolt file but not a populi-db database (no %q bucket)", s.cfg.Path, bMeta)
		}
		v := getU64(meta.Get(mSchemaVersion))
		if v > SchemaVersion {
			return newerSchemaError(v)
		}
		s.fileSchema = v
		return nil
	})
}

// FileSchemaVersion is the schema version the file had when it was opened
// (before any upgrade).
func (s *Store) FileSchemaVersion() uint64 { return s.fileSchema }
