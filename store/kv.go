package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/btree"
	"go.etcd.io/bbolt"
)

// The bucket seam. Domain code reads and writes durable state only through
// t.Bucket(name).Get/Put/Delete/Cursor (bucket names are in schema.go).
// What an operation writes lands in a layer: an ordered map of puts and
// deletes per bucket. A batch's layer is what the write-ahead log records
// (encodeLayer), and layers are what the background bbolt commit applies.
// Reads merge, newest first: the batch being built (writers only), batches
// whose log fsync is in flight (writers only), the durable layer not yet in
// bbolt, the layer bbolt is committing, then bbolt's last commit (etcd's
// txReadBuffer over its backend, with the same reason: the acknowledgement
// is the log's fsync, and bbolt catches up in the background).

// kvItem is one write: a value, or a deletion (del).
type kvItem struct {
	k, v []byte
	del  bool
}

func kvLess(a, b kvItem) bool { return bytes.Compare(a.k, b.k) < 0 }

type kvTree = btree.BTreeG[kvItem]

// layer is a set of writes, per bucket, last write per key wins.
type layer struct {
	buckets map[string]*kvTree
	n       int    // entries (puts and deletes)
	size    int    // approximate bytes of keys and values
	seq     uint64 // highest log sequence this layer holds (0: none)
}

func newLayer() *layer { return &layer{buckets: map[string]*kvTree{}} }

func (l *layer) tree(name []byte, create bool) *kvTree {
	tr := l.buckets[string(name)]
	if tr == nil && create {
		tr = btree.NewG(16, kvLess)
		l.buckets[string(name)] = tr
	}
	return tr
}

func (l *layer) set(name []byte, it kvItem) {
	if old, ok := l.tree(name, true).ReplaceOrInsert(it); ok {
		l.size -= len(old.k) + len(old.v)
	} else {
		l.n++
	}
	l.size += len(it.k) + len(it.v)
}

func (l *layer) get(name, k []byte) (kvItem, bool) {
	tr := l.buckets[string(name)]
	if tr == nil {
		return kvItem{}, false
	}
	return tr.Get(kvItem{k: k})
}

// absorb copies every write of o into l (o is newer).
func (l *layer) absorb(o *layer) {
	for name, tr := range o.buckets {
		nb := []byte(name)
		tr.Ascend(func(it kvItem) bool { l.set(nb, it); return true })
	}
	l.seq = max(l.seq, o.seq)
}

// applyTo writes the layer into a bbolt write transaction.
func (l *layer) applyTo(tx *bbolt.Tx) error {
	for name, tr := range l.buckets {
		b := tx.Bucket([]byte(name))
		if b == nil {
			return fmt.Errorf("bucket %s missing", name)
		}
		var err error
		tr.Ascend(func(it kvItem) bool {
			if it.del {
				err = b.Delete(it.k)
			} else {
				err = b.Put(it.k, it.v)
			}
			return err == nil
		})
		if err != nil {
			return fmt.Errorf("apply to bucket %s: %w", name, err)
		}
	}
	return nil
}

// Log record payload of one batch (the store/wal package frames it with a
// length, sequence and CRC-32C):
//
//	repeated: bucket name length (uvarint) ‖ name ‖ entry count (uvarint) ‖
//	          entries: op (1 byte: 1 put, 2 delete) ‖ key length (uvarint) ‖ key
//	                   ‖ for a put: value length (uvarint) ‖ value
const (
	opPut byte = 1
	opDel byte = 2
)

func (l *layer) encode(buf []byte) []byte {
	for name, tr := range l.buckets {
		if tr.Len() == 0 {
			continue
		}
		buf = binary.AppendUvarint(buf, uint64(len(name)))
		buf = append(buf, name...)
		buf = binary.AppendUvarint(buf, uint64(tr.Len()))
		tr.Ascend(func(it kvItem) bool {
			if it.del {
				buf = append(buf, opDel)
			} else {
				buf = append(buf, opPut)
			}
			buf = binary.AppendUvarint(buf, uint64(len(it.k)))
			buf = append(buf, it.k...)
			if !it.del {
				buf = binary.AppendUvarint(buf, uint64(len(it.v)))
				buf = append(buf, it.v...)
			}
			return true
		})
	}
	return buf
}

var errBadRecord = errors.New("malformed log record payload")

// durableBuckets is the set of bucket names a log record may name.
var durableBuckets = func() map[string]bool {
	m := map[string]bool{}
	for _, b := range allBuckets {
		m[string(b)] = true
	}
	return m
}()

// decodeInto applies an encoded payload to l, copying out of p.
func (l *layer) decodeInto(p []byte) error {
	next := func() ([]byte, error) {
		n, w := binary.Uvarint(p)
		if w <= 0 || n > uint64(len(p)-w) {
			return nil, errBadRecord
		}
		out := p[w : w+int(n)]
		p = p[w+int(n):]
		return out, nil
	}
	for len(p) > 0 {
		name, err := next()
		if err != nil {
			return err
		}
		if !durableBuckets[string(name)] {
			return fmt.Errorf("%w: unknown bucket %q", errBadRecord, name)
		}
		cnt, w := binary.Uvarint(p)
		if w <= 0 {
			return errBadRecord
		}
		p = p[w:]
		for range cnt {
			if len(p) == 0 {
				return errBadRecord
			}
			op := p[0]
			p = p[1:]
			k, err := next()
			if err != nil {
				return err
			}
			switch op {
			case opPut:
				v, err := next()
				if err != nil {
					return err
				}
				l.set(name, kvItem{k: bytes.Clone(k), v: append([]byte{}, v...)})
			case opDel:
				l.set(name, kvItem{k: bytes.Clone(k), del: true})
			default:
				return fmt.Errorf("%w: op %d", errBadRecord, op)
			}
		}
	}
	return nil
}

// kvBucket is what t.Bucket returns: one bucket of the merged view.
type kvBucket struct {
	t    *txn
	name []byte
}

// Bucket returns the named durable bucket as this transaction sees it.
func (t *txn) Bucket(name []byte) kvBucket { return kvBucket{t: t, name: name} }

func (b kvBucket) Get(k []byte) []byte {
	if w := b.t.w; w != nil {
		if it, ok := w.get(b.name, k); ok {
			return it.value()
		}
	}
	for _, l := range b.t.layers {
		if it, ok := l.get(b.name, k); ok {
			return it.value()
		}
	}
	if bb := b.t.rtx.Bucket(b.name); bb != nil {
		return bb.Get(k)
	}
	return nil
}

func (it kvItem) value() []byte {
	if it.del {
		return nil
	}
	return it.v
}

// errReadOnly: a write through a read transaction is a bug.
var errReadOnly = errors.New("store: write in a read-only transaction")

// Put stores a copy of k and v (callers may reuse their buffers).
func (b kvBucket) Put(k, v []byte) error {
	if b.t.w == nil {
		return errReadOnly
	}
	if len(k) == 0 || len(k) > bbolt.MaxKeySize {
		return fmt.Errorf("put %s: key length %d out of range", b.name, len(k))
	}
	b.t.w.set(b.name, kvItem{k: bytes.Clone(k), v: append([]byte{}, v...)})
	return nil
}

func (b kvBucket) Delete(k []byte) error {
	if b.t.w == nil {
		return errReadOnly
	}
	b.t.w.set(b.name, kvItem{k: bytes.Clone(k), del: true})
	return nil
}

// Cursor iterates the merged view in key order. Like bbolt's, it is meant
// for reading; writes made while iterating may or may not be seen.
func (b kvBucket) Cursor() *kvCursor {
	c := &kvCursor{}
	if w := b.t.w; w != nil {
		if tr := w.tree(b.name, false); tr != nil && tr.Len() > 0 {
			c.trees = append(c.trees, tr)
		}
	}
	for _, l := range b.t.layers {
		if tr := l.tree(b.name, false); tr != nil && tr.Len() > 0 {
			c.trees = append(c.trees, tr)
		}
	}
	if bb := b.t.rtx.Bucket(b.name); bb != nil {
		c.bc = bb.Cursor()
	}
	return c
}

// kvCursor merges the layers' trees (newest first) over a bbolt cursor.
// A layer's entry wins over older ones with the same key; deletions hide
// the key. Trees are re-seeked from the last key on every step, so a write
// in between cannot invalidate the cursor.
type kvCursor struct {
	trees  []*kvTree
	bc     *bbolt.Cursor
	bk, bv []byte // bbolt cursor's current entry (bk nil: exhausted)
	cur    []byte // last key returned; nil: not positioned
}

func (c *kvCursor) First() ([]byte, []byte) {
	if c.bc != nil {
		c.bk, c.bv = c.bc.First()
	}
	return c.settle(nil, true)
}

func (c *kvCursor) Seek(seek []byte) ([]byte, []byte) {
	if c.bc != nil {
		c.bk, c.bv = c.bc.Seek(seek)
	}
	return c.settle(seek, true)
}

func (c *kvCursor) Next() ([]byte, []byte) {
	if c.cur == nil {
		return nil, nil
	}
	return c.settle(c.cur, false)
}

// settle returns the first visible entry with key >= from (incl) or > from.
func (c *kvCursor) settle(from []byte, incl bool) ([]byte, []byte) {
	for {
		if !incl && c.bc != nil {
			for c.bk != nil && bytes.Compare(c.bk, from) <= 0 {
				c.bk, c.bv = c.bc.Next()
			}
		}
		bestK, bestV, bestDel, fromTree := c.bk, c.bv, false, false
		for _, tr := range c.trees {
			it, ok := treeFrom(tr, from, incl)
			if !ok {
				continue
			}
			if bestK == nil {
				bestK, bestV, bestDel, fromTree = it.k, it.v, it.del, true
				continue
			}
			// Newer trees come first: an equal key replaces only bbolt's.
			if cmp := bytes.Compare(it.k, bestK); cmp < 0 || (cmp == 0 && !fromTree) {
				bestK, bestV, bestDel, fromTree = it.k, it.v, it.del, true
			}
		}
		if bestK == nil {
			c.cur = nil
			return nil, nil
		}
		if bestDel {
			from, incl = bestK, false
			continue
		}
		c.cur = bestK
		return bestK, bestV
	}
}

func treeFrom(tr *kvTree, from []byte, incl bool) (kvItem, bool) {
	var out kvItem
	found := false
	tr.AscendGreaterOrEqual(kvItem{k: from}, func(it kvItem) bool {
		if !incl && bytes.Equal(it.k, from) {
			return true
		}
		out, found = it, true
		return false
	})
	return out, found
}

// ForEach calls fn for every entry in key order.
func (b kvBucket) ForEach(fn func(k, v []byte) error) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}
