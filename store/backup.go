package store

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/bbolt"
)

// Backup writes a consistent snapshot of the db to w (a complete bbolt file)
// while writers continue. It first folds every acknowledged write of the
// write-ahead log into bbolt, then writes one read transaction: the
// snapshot holds every write acknowledged before Backup began. It returns
// the bytes written.
func (s *Store) Backup(w io.Writer) (n int64, err error) {
	if err := s.foldForSnapshot(); err != nil {
		return 0, err
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// BackupSize is the size the next Backup will have, unless writes land
// between the two calls; BackupTo reports the size of what it wrote.
func (s *Store) BackupSize() (n int64) {
	_ = s.db.View(func(tx *bbolt.Tx) error {
		n = tx.Size()
		return nil
	})
	return n
}

// BackupTo writes the snapshot and its exact size (known at the start of
// the read transaction) to the callback, then the bytes to w.
func (s *Store) BackupTo(w io.Writer, size func(int64)) (n int64, err error) {
	if err := s.foldForSnapshot(); err != nil {
		return 0, err
	}
	err = s.db.View(func(tx *bbolt.Tx) error {
		size(tx.Size())
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// writeFileAtomic writes path through a sibling temp file: write, fsync,
// rename, fsync the directory. Nothing is left at path on failure.
func writeFileAtomic(path string, write func(io.Writer) (int64, error)) (int64, error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return 0, fmt.Errorf("create temp file: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return 0, err
	}
	n, err := write(tmp)
	if err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return 0, fmt.Errorf("rename into %s: %w", path, err)
	}
	done = true
	return n, syncDir(dir)
}

// WriteFileAtomic is writeFileAtomic for tools that fetch a snapshot from
// elsewhere (backup --url).
func WriteFileAtomic(path string, write func(io.Writer) (int64, error)) (int64, error) {
	return writeFileAtomic(path, write)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// BackupFile writes a snapshot of the db to path (temp file, fsync, rename).
func (s *Store) BackupFile(path string) (int64, error) {
	return writeFileAtomic(path, s.Backup)
}

// Compact copies every bucket of the db into a new file at path (offline:
// bbolt files never shrink on their own). The new file is written next to
// path and renamed into place after an fsync.
func (s *Store) Compact(path string) error {
	if err := s.foldForSnapshot(); err != nil {
		return err
	}
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s already exists: compact writes a new file", path)
	}
	tmp := path + ".compacting"
	_ = os.Remove(tmp)
	dst, err := bbolt.Open(tmp, 0o600, &bbolt.Options{NoSync: true})
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	if err := bbolt.Compact(dst, s.db, 64<<20); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact into %s: %w", tmp, err)
	}
	dst.NoSync = false
	if err := dst.Sync(); err != nil {
		dst.Close()
		os.Remove(tmp)
		return fmt.Errorf("fsync %s: %w", tmp, err)
	}
	if err := dst.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// ErrTargetHeld is returned by Restore when a server holds the target db.
var ErrTargetHeld = errors.New("store: the target database is held by a running populi-db")

// Restore replaces the db file at dbPath with the backup at from: the old
// file (if any) is kept as dbPath.bak, the backup is copied through a temp
// file and fsync'd. The caller checks the backup first. The target's lock
// is held throughout, so a db a server holds is refused.
func Restore(from, dbPath string) (bakPath string, n int64, err error) {
	src, err := os.Open(from)
	if err != nil {
		return "", 0, fmt.Errorf("open backup: %w", err)
	}
	defer src.Close()
	if cur, err := os.OpenFile(dbPath, os.O_RDWR, 0); err == nil {
		defer cur.Close()
		if err := lockFile(cur, true, OpenTimeoutDefault); err != nil {
			return "", 0, fmt.Errorf("%w (%s): stop the server first", ErrTargetHeld, dbPath)
		}
		bakPath = dbPath + ".bak"
		for i := 1; fileExists(bakPath); i++ { // never overwrite an older .bak
			bakPath = fmt.Sprintf("%s.bak.%d", dbPath, i)
		}
		if err := os.Rename(dbPath, bakPath); err != nil {
			return "", 0, fmt.Errorf("keep the current database as %s: %w", bakPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", 0, fmt.Errorf("open %s: %w", dbPath, err)
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return bakPath, 0, err
	}
	n, err = writeFileAtomic(dbPath, func(w io.Writer) (int64, error) { return io.Copy(w, src) })
	if err != nil && bakPath != "" {
		// put the old file back so a failed restore changes nothing
		_ = os.Rename(bakPath, dbPath)
		bakPath = ""
	}
	return bakPath, n, err
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// foldForSnapshot makes the db file hold every acknowledged write before a
// tool copies it. A read-only open cannot fold: if the log holds writes the
// file lacks, the copy would miss them, so it refuses and says what to do.
func (s *Store) foldForSnapshot() error {
	if s.cfg.ReadOnly {
		if n := s.PendingLogWrites(); n > 0 {
			return fmt.Errorf("%s has %d acknowledged writes in its write-ahead log (%s) not yet in the db file: "+
				"start and stop `populi-db serve` on it once (it folds the log at a clean stop), then try again", s.cfg.Path, n, s.cfg.LogDir)
		}
		return nil
	}
	// fold waits for a background commit in flight (both hold foldMu), then
	// commits everything acknowledged so far: one call covers every write
	// acknowledged before the snapshot began, even while writes go on.
	if err := s.fold(); err != nil {
		return fmt.Errorf("fold the write-ahead log into %s: %w", s.cfg.Path, err)
	}
	s.index.mu.RLock()
	stuck := s.frozen != nil // left by a failed background commit (storage failed)
	s.index.mu.RUnlock()
	if stuck {
		return fmt.Errorf("fold the write-ahead log into %s: %w", s.cfg.Path, s.fatal())
	}
	return nil
}
