// Package faultfs wraps a wal.FS to inject I/O errors (EIO, ENOSPC …) into
// chosen calls, for tests of the write-ahead log and of the store above it.
package faultfs

import (
	"os"
	"strings"
	"sync"

	"populi-db/store/wal"
)

// Op is a kind of file system call.
type Op int

// The calls a Fault can target.
const (
	OpWrite    Op = iota // File.WriteAt
	OpSync               // File.Sync
	OpCreate             // FS.Create
	OpRename             // FS.Rename (matched on the old name)
	OpRemove             // FS.Remove
	OpSyncDir            // FS.SyncDir
	OpTruncate           // File.Truncate
	opCount
)

var opNames = [opCount]string{"write", "sync", "create", "rename", "remove", "syncdir", "truncate"}

func (o Op) String() string {
	if o >= 0 && o < opCount {
		return opNames[o]
	}
	return "op?"
}

// Fault makes matching calls fail.
type Fault struct {
	Op    Op
	Match func(path string) bool // nil: every file
	Skip  int                    // let this many matching calls through first
	Count int                    // fail this many calls, then pass again; 0: every call until Clear
	Err   error                  // e.g. syscall.EIO or syscall.ENOSPC (wrapped in an *os.PathError)
	// Partial makes a failing WriteAt write the first half of its bytes
	// before it fails, like a write cut short by a full disk.
	Partial bool
}

// Suffix matches paths ending in s (".wal" for log segments, ".tmp" for
// segments being preallocated).
func Suffix(s string) func(string) bool {
	return func(p string) bool { return strings.HasSuffix(p, s) }
}

// FS is a wal.FS that injects faults. Safe for concurrent use.
type FS struct {
	inner wal.FS

	mu     sync.Mutex
	open   map[*File]struct{} // to follow renames
	faults []*fault
	calls  [opCount]int
	failed [opCount]int
}

type fault struct {
	Fault
	seen, hits int
}

// New wraps inner (nil: the OS).
func New(inner wal.FS) *FS {
	if inner == nil {
		inner = wal.OS()
	}
	return &FS{inner: inner, open: map[*File]struct{}{}}
}

func (f *FS) track(inner wal.File, path string) *File {
	file := &File{fs: f, inner: inner, path: path}
	f.mu.Lock()
	f.open[file] = struct{}{}
	f.mu.Unlock()
	return file
}

// Inject adds a fault.
func (f *FS) Inject(ft Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = append(f.faults, &fault{Fault: ft})
}

// Clear removes every fault.
func (f *FS) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = nil
}

// Calls is how many calls of op were made (failed ones included).
func (f *FS) Calls(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// Failed is how many calls of op were made to fail.
func (f *FS) Failed(op Op) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed[op]
}

// check counts a call and returns the fault that fails it, if any.
func (f *FS) check(op Op, path string) *fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls[op]++
	for _, ft := range f.faults {
		if ft.Op != op || ft.Match != nil && !ft.Match(path) {
			continue
		}
		ft.seen++
		if ft.seen <= ft.Skip || ft.Count > 0 && ft.hits >= ft.Count {
			continue
		}
		ft.hits++
		f.failed[op]++
		return ft
	}
	return nil
}

func (f *FS) err(op Op, path string) error {
	if ft := f.check(op, path); ft != nil {
		return &os.PathError{Op: op.String(), Path: path, Err: ft.Err}
	}
	return nil
}

func (f *FS) OpenFile(name string, flag int, perm os.FileMode) (wal.File, error) {
	file, err := f.inner.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return f.track(file, name), nil
}

func (f *FS) Create(name string) (wal.File, error) {
	if err := f.err(OpCreate, name); err != nil {
		return nil, err
	}
	file, err := f.inner.Create(name)
	if err != nil {
		return nil, err
	}
	return f.track(file, name), nil
}

func (f *FS) Rename(oldname, newname string) error {
	if err := f.err(OpRename, oldname); err != nil {
		return err
	}
	if err := f.inner.Rename(oldname, newname); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for file := range f.open {
		if file.path == oldname {
			file.path = newname
		}
	}
	return nil
}

func (f *FS) Remove(name string) error {
	if err := f.err(OpRemove, name); err != nil {
		return err
	}
	return f.inner.Remove(name)
}

func (f *FS) ReadDir(dir string) ([]os.DirEntry, error)   { return f.inner.ReadDir(dir) }
func (f *FS) MkdirAll(dir string, perm os.FileMode) error { return f.inner.MkdirAll(dir, perm) }

func (f *FS) SyncDir(dir string) error {
	if err := f.err(OpSyncDir, dir); err != nil {
		return err
	}
	return f.inner.SyncDir(dir)
}

// File is a wal.File of an FS. Faults match its current name (renames
// through the FS are followed).
type File struct {
	fs    *FS
	inner wal.File
	path  string // guarded by fs.mu
}

func (f *File) name() string {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	return f.path
}

func (f *File) WriteAt(p []byte, off int64) (int, error) {
	if ft := f.fs.check(OpWrite, f.name()); ft != nil {
		n := 0
		if ft.Partial {
			n, _ = f.inner.WriteAt(p[:len(p)/2], off)
		}
		return n, &os.PathError{Op: "write", Path: f.name(), Err: ft.Err}
	}
	return f.inner.WriteAt(p, off)
}

func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.inner.ReadAt(p, off) }

func (f *File) Sync(dataOnly bool) error {
	if err := f.fs.err(OpSync, f.name()); err != nil {
		return err
	}
	return f.inner.Sync(dataOnly)
}

func (f *File) Truncate(size int64) error {
	if err := f.fs.err(OpTruncate, f.name()); err != nil {
		return err
	}
	return f.inner.Truncate(size)
}

func (f *File) Close() error {
	f.fs.mu.Lock()
	delete(f.fs.open, f)
	f.fs.mu.Unlock()
	return f.inner.Close()
}

func (f *File) Stat() (os.FileInfo, error) { return f.inner.Stat() }
