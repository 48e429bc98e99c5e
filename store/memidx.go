package store

import (
	"bytes"
	"fmt"
	"runtime"
	"sync"

	"github.com/google/btree"

	"populi-db/wire"
)

// The mailbox's secondary indexes (ready queue per receiver, listing order,
// lease and due times, holders, dead letters, acknowledged rows, counters)
// are derived from the rows bucket, so they live in memory and are rebuilt
// from it at open. Only the rows, the idempotency keys and the id
// reservations in meta are written per operation, so a commit writes fewer
// B+tree pages, which is what an fsync'd commit pays for (measured: 2.3
// instead of 4.8 pages per operation in a 16-way delivery test).
//
// Consistency: the commit loop changes the indexes while an operation runs
// (so later operations in the same batch see the change) and, whenever a
// batch rolls back or a commit fails, rebuilds them from the committed rows
// before anything else runs. Readers hold memIndex.mu shared and take row
// contents from their view of acknowledged writes, which is the truth; an
// index entry from a batch whose log fsync is still in flight only ever
// points at a row that a reader then reads in its acknowledged state.

// memBucket is an ordered byte-key map with the subset of bbolt.Bucket's
// API the index code uses.
type memBucket struct{ t *btree.BTreeG[memItem] }

type memItem struct{ k, v []byte }

func newMemBucket() *memBucket {
	return &memBucket{t: btree.NewG(32, func(a, b memItem) bool { return bytes.Compare(a.k, b.k) < 0 })}
}

func (b *memBucket) Get(k []byte) []byte {
	it, ok := b.t.Get(memItem{k: k})
	if !ok {
		return nil
	}
	if it.v == nil {
		return []byte{}
	}
	return it.v
}

// Put keeps k and v without copying: every caller passes slices it never
// changes again (keys built by cat/u64/boundedKey, package-level counter
// names, fresh counter values).
func (b *memBucket) Put(k, v []byte) error {
	b.t.ReplaceOrInsert(memItem{k: k, v: v})
	return nil
}

func (b *memBucket) Delete(k []byte) error {
	b.t.Delete(memItem{k: k})
	return nil
}

func (b *memBucket) Len() int { return b.t.Len() }

// Cursor returns a cursor; like bbolt's, it is valid until the next write.
func (b *memBucket) Cursor() *memCursor { return &memCursor{b: b} }

// memCursor re-seeks from its current key on every step: O(log n) each,
// with no state that a write could invalidate.
type memCursor struct {
	b   *memBucket
	cur []byte
	ok  bool
}

func (c *memCursor) set(it memItem, ok bool) ([]byte, []byte) {
	c.ok = ok
	if !ok {
		c.cur = nil
		return nil, nil
	}
	c.cur = it.k
	return it.k, it.v
}

func (c *memCursor) First() ([]byte, []byte) { return c.set(c.b.t.Min()) }
func (c *memCursor) Last() ([]byte, []byte)  { return c.set(c.b.t.Max()) }

func (c *memCursor) Seek(k []byte) ([]byte, []byte) {
	var it memItem
	found := false
	c.b.t.AscendGreaterOrEqual(memItem{k: k}, func(i memItem) bool { it, found = i, true; return false })
	return c.set(it, found)
}

func (c *memCursor) Next() ([]byte, []byte) {
	if !c.ok {
		return nil, nil
	}
	var it memItem
	found := false
	c.b.t.AscendGreaterOrEqual(memItem{k: c.cur}, func(i memItem) bool {
		if bytes.Equal(i.k, c.cur) {
			return true
		}
		it, found = i, true
		return false
	})
	return c.set(it, found)
}

func (c *memCursor) Prev() ([]byte, []byte) {
	if !c.ok {
		return nil, nil
	}
	var it memItem
	found := false
	c.b.t.DescendLessOrEqual(memItem{k: c.cur}, func(i memItem) bool {
		if bytes.Equal(i.k, c.cur) {
			return true
		}
		it, found = i, true
		return false
	})
	return c.set(it, found)
}

// memIndex is the set of derived index buckets.
type memIndex struct {
	mu      sync.RWMutex
	buckets map[string]*memBucket
}

// indexBuckets are the derived buckets (schema.go documents their keys).
var indexBuckets = [][]byte{bByReceiver, bReady, bWait, bWaitByTime, bHeld, bDead, bDeadIDs, bAcked, bCounts, bRecvReady}

func newMemIndex() *memIndex {
	m := &memIndex{buckets: map[string]*memBucket{}}
	for _, b := range indexBuckets {
		m.buckets[string(b)] = newMemBucket()
	}
	return m
}

// idx returns a derived index bucket. The caller holds s.index.mu (the
// commit loop holds it exclusively while an operation runs; readers share).
func (t *txn) idx(name []byte) *memBucket {
	b, ok := t.s.index.buckets[string(name)]
	if !ok {
		panic(fmt.Sprintf("store: %s is not an index bucket", name))
	}
	return b
}

// rebuildIndex derives every index from the rows bucket as committed. Rows
// are decoded on every core (decoding is most of the work) and indexed by
// one goroutine, all inside one read transaction.
func (s *Store) rebuildIndex() error { return s.rebuildIndexFrom(false) }

// rebuildIndexFrom is rebuildIndex; clean says the caller is the writer
// re-deriving the index after a failure (so view must not wait for that).
func (s *Store) rebuildIndexFrom(clean bool) error {
	fresh := newMemIndex()
	read := s.view
	if clean {
		read = s.viewNoWait
	}
	err := read(func(vt *txn) error {
		t := &txn{s: &Store{cfg: s.cfg, log: s.log, index: fresh}, wakes: map[string]struct{}{}}
		type row struct{ k, v []byte }
		rows := make(chan row, 1024)
		decoded := make(chan *wire.StoredMessage, 1024)
		var (
			errMu  sync.Mutex
			first  error
			record = func(err error) {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
			}
			wg sync.WaitGroup
		)
		for range runtime.GOMAXPROCS(0) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range rows {
					m := new(wire.StoredMessage)
					if err := decodeRowForIndex(r.v, m); err != nil {
						record(fmt.Errorf("decode a2a row %d: %w", getU64(r.k), err))
						continue
					}
					decoded <- m
				}
			}()
		}
		go func() { wg.Wait(); close(decoded) }()
		indexed := make(chan struct{})
		go func() {
			defer close(indexed)
			for m := range decoded {
				if err := t.indexRow(m, true); err != nil {
					record(err)
				}
			}
		}()
		c := vt.Bucket(bRows).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			rows <- row{k, v} // valid until the read transaction ends, after indexing
		}
		close(rows)
		<-indexed
		return first
	})
	if err != nil {
		return fmt.Errorf("rebuild mailbox indexes: %w", err)
	}
	s.index.mu.Lock()
	s.index.buckets = fresh.buckets
	s.index.mu.Unlock()
	return nil
}

// ForEach calls fn for every entry in key order.
func (b *memBucket) ForEach(fn func(k, v []byte) error) error {
	var err error
	b.t.Ascend(func(it memItem) bool {
		err = fn(it.k, it.v)
		return err == nil
	})
	return err
}
