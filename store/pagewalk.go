package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"time"
)

// bbolt's on-disk format (go.etcd.io/bbolt/internal/common), read here so a
// damaged file is described instead of crashing the process: bbolt asserts
// on a bad page header (with NoFreelistSync the freelist scan at open runs
// in a goroutine of its own, where no recover can reach), and a file shorter
// than its meta page says faults (SIGBUS) when the mapped tail is touched.
const (
	boltMagic          = 0xED0CDAED
	boltVersion        = 2
	pageHeaderSize     = 16
	elementSize        = 16 // branch and leaf page elements are both 16 bytes
	metaChecksumOffset = 56 // bytes of the meta summed by FNV-64a
	flagBranch         = 0x01
	flagLeaf           = 0x02
	flagMeta           = 0x04
	flagFreelist       = 0x10
	bucketLeafFlag     = 0x01
	noFreelist         = ^uint64(0)
	maxFindings        = 50
)

type boltMeta struct {
	pageSize           uint32
	root, freelist     uint64
	highWater, txid    uint64
	magicOK, versionOK bool
	sumOK              bool
}

func (m boltMeta) valid() bool { return m.magicOK && m.versionOK && m.sumOK }

func parseMeta(b []byte) boltMeta {
	le := binary.LittleEndian
	m := b[pageHeaderSize:]
	h := fnv.New64a()
	h.Write(m[:metaChecksumOffset])
	return boltMeta{
		magicOK:   le.Uint32(m[0:]) == boltMagic,
		versionOK: le.Uint32(m[4:]) == boltVersion,
		pageSize:  le.Uint32(m[8:]),
		root:      le.Uint64(m[16:]),
		freelist:  le.Uint64(m[32:]),
		highWater: le.Uint64(m[40:]),
		txid:      le.Uint64(m[48:]),
		sumOK:     le.Uint64(m[metaChecksumOffset:]) == h.Sum64(),
	}
}

func (m boltMeta) problem(n int) string {
	switch {
	case !m.magicOK:
		return fmt.Sprintf("meta page %d: no bbolt magic number", n)
	case !m.versionOK:
		return fmt.Sprintf("meta page %d: unknown bbolt format version", n)
	default:
		return fmt.Sprintf("meta page %d: checksum mismatch", n)
	}
}

// InspectFile walks the bbolt page tree of an existing file without bbolt:
// meta pages, file size against the high-water mark, and every reachable
// page's header, element bounds, single reference and key order: what
// bbolt's freelist scan checks, where a failure panics. It returns one finding per problem (nil
// when bbolt can safely open the file), or an error when the file cannot be
// read at all (missing, or locked by a server). exclusive takes the same
// lock a writer would; otherwise a shared one, like a read-only open.
// warnings are problems bbolt survives: one damaged meta page (a torn meta
// write is a crash bbolt is built to survive: it uses the other one).
func InspectFile(path string, exclusive bool, lockWait time.Duration) (findings, warnings []string, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("open %s: no such database file", path)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	if err := lockFile(f, exclusive, lockWait); err != nil {
		return nil, nil, fmt.Errorf("open %s: %w (is another populi-db serving it?)", path, ErrLocked)
	}
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("stat %s: %w", path, err)
	}
	w := &pageWalk{f: f, size: st.Size(), seen: map[uint64]bool{}}
	w.run()
	return w.findings, w.warnings, w.ioErr
}

type pageWalk struct {
	f        *os.File
	size     int64
	pageSize int64
	hwm      uint64
	seen     map[uint64]bool
	findings []string
	warnings []string
	ioErr    error
}

func (w *pageWalk) find(format string, args ...any) {
	if len(w.findings) < maxFindings {
		w.findings = append(w.findings, fmt.Sprintf(format, args...))
	}
}

func (w *pageWalk) read(off, n int64) []byte {
	b := make([]byte, n)
	if _, err := w.f.ReadAt(b, off); err != nil && !errors.Is(err, io.EOF) {
		w.ioErr = fmt.Errorf("read %s at %d: %w", w.f.Name(), off, err)
		return nil
	}
	return b
}

func (w *pageWalk) run() {
	if w.size == 0 {
		w.find("file is empty (0 bytes): not a populi-db database")
		return
	}
	if w.size < 2*pageHeaderSize+2*(metaChecksumOffset+8) {
		w.find("file is %d bytes: too short to be a bbolt database", w.size)
		return
	}
	first := w.read(0, pageHeaderSize+metaChecksumOffset+8)
	if first == nil {
		return
	}
	m0 := parseMeta(first)
	w.pageSize = 4096
	if m0.valid() && m0.pageSize >= 512 && m0.pageSize&(m0.pageSize-1) == 0 {
		w.pageSize = int64(m0.pageSize)
	}
	var m1 boltMeta
	if w.size >= w.pageSize+pageHeaderSize+metaChecksumOffset+8 {
		if b := w.read(w.pageSize, pageHeaderSize+metaChecksumOffset+8); b != nil {
			m1 = parseMeta(b)
		}
	}
	var m boltMeta
	switch {
	case !m0.valid() && !m1.valid():
		if !m0.magicOK && !m1.magicOK {
			w.find("not a bbolt database file (no bbolt meta page at the start)")
		} else {
			w.find("%s; %s: both meta pages are damaged", m0.problem(0), m1.problem(1))
		}
		return
	case !m0.valid():
		w.warnings = append(w.warnings, fmt.Sprintf("%s: bbolt uses meta page 1 (the previous commit) and rewrites page 0 at the next commit", m0.problem(0)))
		m = m1
	case !m1.valid():
		w.warnings = append(w.warnings, fmt.Sprintf("%s: bbolt uses meta page 0 (the previous commit) and rewrites page 1 at the next commit", m1.problem(1)))
		m = m0
	case m1.txid > m0.txid:
		m = m1
	default:
		m = m0
	}
	if int64(m.pageSize) != w.pageSize {
		w.find("meta pages disagree on the page size (%d and %d)", w.pageSize, m.pageSize)
		return
	}
	w.hwm = m.highWater
	if need := int64(w.hwm) * w.pageSize; w.hwm < 2 || need/w.pageSize != int64(w.hwm) || w.size < need {
		w.find("file is truncated: %d bytes, but its meta page counts %d pages of %d bytes (%d bytes)", w.size, w.hwm, w.pageSize, int64(w.hwm)*w.pageSize)
		return
	}
	if m.freelist != noFreelist {
		w.page(m.freelist, flagFreelist, 0, nil, nil)
	}
	w.page(m.root, flagBranch|flagLeaf, 0, nil, nil)
}

const maxDepth = 64

// page checks page id and what it points at. want is the set of flags it
// may carry; its keys must lie in [minKey, maxKey) (nil: unbounded), as
// bbolt's own check requires. It returns the largest key below it.
func (w *pageWalk) page(id uint64, want uint16, depth int, minKey, maxKey []byte) []byte {
	if w.ioErr != nil || len(w.findings) >= maxFindings {
		return nil
	}
	if id < 2 || id >= w.hwm {
		w.find("page %d: referenced but outside the file's pages [2, %d)", id, w.hwm)
		return nil
	}
	if w.seen[id] {
		w.find("page %d: referenced twice", id)
		return nil
	}
	w.seen[id] = true
	if depth > maxDepth {
		w.find("page %d: tree deeper than %d levels", id, maxDepth)
		return nil
	}
	hdr := w.read(int64(id)*w.pageSize, pageHeaderSize)
	if hdr == nil {
		return nil
	}
	le := binary.LittleEndian
	gotID, flags, overflow := le.Uint64(hdr), le.Uint16(hdr[8:]), le.Uint32(hdr[12:])
	if gotID != id {
		w.find("page %d: header names page %d (flags %#x): the page header is damaged", id, gotID, flags)
		return nil
	}
	if flags&want == 0 || flags&^(flagBranch|flagLeaf|flagMeta|flagFreelist) != 0 || (flags != flagBranch && flags != flagLeaf && flags != flagFreelist) {
		w.find("page %d: unexpected page type (flags %#x)", id, flags)
		return nil
	}
	if id+uint64(overflow)+1 > w.hwm {
		w.find("page %d: overflow of %d pages runs past the file's %d pages", id, overflow, w.hwm)
		return nil
	}
	for i := uint64(1); i <= uint64(overflow); i++ {
		w.seen[id+i] = true
	}
	if flags == flagFreelist {
		return nil
	}
	body := w.read(int64(id)*w.pageSize, int64(overflow+1)*w.pageSize)
	if body == nil {
		return nil
	}
	return w.elements(fmt.Sprintf("page %d", id), body, depth, minKey, maxKey)
}

// elements checks a branch or leaf page (or an inline bucket's page) and
// descends into child pages and buckets; it returns the largest key seen.
func (w *pageWalk) elements(where string, p []byte, depth int, minKey, maxKey []byte) (maxSeen []byte) {
	le := binary.LittleEndian
	if len(p) < pageHeaderSize {
		w.find("%s: shorter than a page header", where)
		return maxSeen
	}
	flags, count := le.Uint16(p[8:]), int(le.Uint16(p[10:]))
	if pageHeaderSize+count*elementSize > len(p) {
		w.find("%s: %d elements do not fit in the page", where, count)
		return maxSeen
	}
	runningMin := minKey
	for i := range count {
		off := pageHeaderSize + i*elementSize
		e := p[off : off+elementSize]
		switch flags {
		case flagBranch:
			pos, ksize, child := int(le.Uint32(e)), int(le.Uint32(e[4:])), le.Uint64(e[8:])
			if off+pos+ksize > len(p) || pos < 0 {
				w.find("%s: element %d's key lies outside the page", where, i)
				return maxSeen
			}
			key := p[off+pos : off+pos+ksize]
			w.keyOrder(where, i, key, runningMin, maxKey)
			next := maxKey
			if i < count-1 {
				ne := p[off+elementSize:]
				npos, nks := int(le.Uint32(ne)), int(le.Uint32(ne[4:]))
				if o := off + elementSize + npos; o >= 0 && o+nks <= len(p) {
					next = p[o : o+nks]
				}
			}
			maxSeen = w.page(child, flagBranch|flagLeaf, depth+1, key, next)
			runningMin = maxSeen
		case flagLeaf:
			eflags, pos, ksize, vsize := le.Uint32(e), int(le.Uint32(e[4:])), int(le.Uint32(e[8:])), int(le.Uint32(e[12:]))
			start := off + pos
			if start+ksize+vsize > len(p) || start < off || ksize+vsize < 0 {
				w.find("%s: element %d's key or value lies outside the page", where, i)
				return maxSeen
			}
			key := p[start : start+ksize]
			w.keyOrder(where, i, key, runningMin, maxKey)
			runningMin, maxSeen = key, key
			if eflags&bucketLeafFlag == 0 {
				continue
			}
			v := p[start+ksize : start+ksize+vsize]
			if len(v) < 16 {
				w.find("%s: bucket %q has a short header", where, p[start:start+ksize])
				continue
			}
			if root := le.Uint64(v); root != 0 {
				w.page(root, flagBranch|flagLeaf, depth+1, nil, nil) // a bucket has its own key space
			} else if depth < maxDepth {
				w.elements(fmt.Sprintf("%s: inline bucket %q", where, p[start:start+ksize]), v[16:], depth+1, nil, nil)
			}
		default:
			w.find("%s: unexpected page type (flags %#x)", where, flags)
			return maxSeen
		}
	}
	return maxSeen
}

// keyOrder is bbolt's b-tree order rule: keys grow strictly within a page,
// the first is not below its parent's key, and all are below the parent's
// next key.
func (w *pageWalk) keyOrder(where string, i int, key, prev, maxKey []byte) {
	switch c := bytes.Compare(prev, key); {
	case prev == nil:
	case i == 0 && c > 0:
		w.find("%s: first key %x is below its parent's key %x (keys out of order)", where, key, prev)
	case i > 0 && c >= 0:
		w.find("%s: key %d (%x) does not sort after key %d (%x) (keys out of order)", where, i, key, i-1, prev)
	}
	if maxKey != nil && bytes.Compare(key, maxKey) >= 0 {
		w.find("%s: key %d (%x) is not below the parent's next key %x (keys out of order)", where, i, key, maxKey)
	}
}
