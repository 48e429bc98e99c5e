package wal

import (
	"os"
)

// FS is the part of the file system the log uses. It exists so tests can inject
// write and sync faults (see package faultfs); OS() is the real one.
type FS interface {
	// OpenFile opens an existing file (flag as for os.OpenFile).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Create creates or truncates name for reading and writing, mode 0600.
	Create(name string) (File, error)
	Rename(oldname, newname string) error
	Remove(name string) error
	ReadDir(dir string) ([]os.DirEntry, error)
	MkdirAll(dir string, perm os.FileMode) error
	// SyncDir makes renames, creations and removals in dir durable.
	SyncDir(dir string) error
}

// File is an open file of an FS.
type File interface {
	WriteAt(p []byte, off int64) (int, error)
	ReadAt(p []byte, off int64) (int, error)
	// Sync flushes the file to stable storage; dataOnly asks for fdatasync
	// (data and the metadata needed to read it back, not timestamps).
	Sync(dataOnly bool) error
	Truncate(size int64) error
	Close() error
	Stat() (os.FileInfo, error)
}

// OS returns the FS of the operating system.
func OS() FS { return osFS{} }

type osFS struct{}

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &osFile{File: f}, nil
}

func (osFS) Create(name string) (File, error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &osFile{File: f}, nil
}

func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) ReadDir(dir string) ([]os.DirEntry, error)   { return os.ReadDir(dir) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct{ *os.File }

func (f *osFile) Sync(dataOnly bool) error {
	if dataOnly {
		return fdatasync(f.File)
	}
	return f.File.Sync()
}
