package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/bbolt"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The etcd backend (issue 19). The commit path is the bbolt one (commit.go):
// the single writer builds each group-commit batch into a layer, and the
// layer's encoded record is made durable before the batch is answered; only
// the journal differs. Here the journal is etcd, and so is the store of
// record, under one prefix:
//
//	PREFIX/kv/<bucket>/<key>   the folded state, one etcd key per bbolt key
//	PREFIX/applied             the last log sequence the kv keys hold (8 bytes, big endian)
//	PREFIX/log/<%016x seq>     one batch's record: 0x00 ‖ payload, or, for a record
//	                           over etcdTxnBytes, 0x01 ‖ part count (uvarint) with the
//	PREFIX/log/<%016x>/<%04x>  parts written first, each in its own Txn
//
// Append is one etcd Txn (one raft round and one fsync on a quorum of
// members) per batch, so concurrent writers share it as they share one
// fdatasync on bbolt. Every Txn this package sends is guarded: it compares
// the leader's election key's create revision (EtcdConfig.GuardKey/GuardRev)
// in the same Txn, so a deposed leader (paused, partitioned, lease expired)
// can never write; its Txn fails and the store refuses writes for good
// (ErrFenced, OnFenced).
//
// The background fold (commit.go) first hands each layer to Fold, which
// copies its writes into the kv keys (chunks of at most etcdMaxTxnOps
// operations and etcdTxnBytes bytes, etcd's defaults --max-txn-ops 128 and
// --max-request-bytes 1.5 MiB), then Release records the fold's sequence in
// PREFIX/applied and deletes the log records it covers, in one Txn. A crash
// in between is harmless: the next leader replays every record after
// applied over the kv keys, in order, and each record rewrites every key it
// touched.
//
// The local bbolt file is only a cache, rebuilt from etcd at every open
// (takeover) into a fresh file and written without fsync: it is never the
// store of record, and Close deletes it.

// EtcdConfig puts the store of record in etcd; Config.Path then names the
// local cache file.
type EtcdConfig struct {
	Client *clientv3.Client
	Prefix string // e.g. "/populi/prod"; no trailing slash
	// GuardKey and GuardRev fence every write: a Txn commits only while
	// GuardKey's create revision is GuardRev (the leader's election key).
	GuardKey string
	GuardRev int64
	// OnFenced, when set, is called once when a write finds the guard gone:
	// this process is no longer the leader.
	OnFenced func(error)
	// Timeout bounds each etcd request (default 10 s); a write that times
	// out fails the store like a failed fsync.
	Timeout time.Duration
}

// ErrFenced means a guarded etcd write found the election key gone or
// replaced: another process is (or may be) the leader now.
var ErrFenced = errors.New("store: deposed: this process is no longer the etcd leader (its election key is gone); its writes are refused")

const (
	etcdMaxTxnOps   = 128     // etcd's default --max-txn-ops
	etcdTxnBytes    = 1 << 20 // per Txn, below etcd's default --max-request-bytes (1.5 MiB)
	etcdPageSize    = 2000    // keys per range read
	etcdTimeoutDflt = 10 * time.Second
	// One attempt of a Txn, and the pause before the next.
	etcdAttemptTimeout = 3 * time.Second
	etcdRetryPause     = 100 * time.Millisecond
)

type etcdJournal struct {
	cfg   EtcdConfig
	log   *slog.Logger
	last  atomic.Uint64
	fence sync.Once
}

func newEtcdJournal(cfg EtcdConfig, log *slog.Logger) *etcdJournal {
	if cfg.Timeout <= 0 {
		cfg.Timeout = etcdTimeoutDflt
	}
	return &etcdJournal{cfg: cfg, log: log}
}

func (j *etcdJournal) key(parts ...string) string {
	k := j.cfg.Prefix
	for _, p := range parts {
		k += "/" + p
	}
	return k
}

func (j *etcdJournal) logKey(seq uint64) string { return j.key("log", fmt.Sprintf("%016x", seq)) }

func (j *etcdJournal) kvKey(bucket, k []byte) string {
	return j.key("kv", string(bucket)) + "/" + string(k)
}

func (j *etcdJournal) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), j.cfg.Timeout)
}

// txn commits ops guarded by the leader's election key. A failed attempt
// (a member lost, a raft leader change, a timeout) is retried until
// Timeout: every Txn here writes fixed keys and values, so applying one
// twice changes nothing. A Txn that may have applied but is reported failed
// fails the store; the next leader replays what it finds.
func (j *etcdJournal) txn(ops ...clientv3.Op) error {
	deadline := time.Now().Add(j.cfg.Timeout)
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), min(etcdAttemptTimeout, time.Until(deadline)))
		resp, err := j.cfg.Client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(j.cfg.GuardKey), "=", j.cfg.GuardRev)).
			Then(ops...).Commit()
		cancel()
		if err == nil && !resp.Succeeded {
			err := fmt.Errorf("%w (guard %s@%d)", ErrFenced, j.cfg.GuardKey, j.cfg.GuardRev)
			j.fence.Do(func() {
				j.log.Error("etcd write refused: deposed; refusing writes from now on", "err", err)
				if j.cfg.OnFenced != nil {
					j.cfg.OnFenced(err)
				}
			})
			return err
		}
		if err == nil {
			return nil
		}
		if time.Now().Add(etcdRetryPause).After(deadline) {
			return fmt.Errorf("etcd txn (%d ops, %d attempts): %w", len(ops), attempt+1, err)
		}
		j.log.Warn("etcd txn failed; retrying", "attempt", attempt+1, "err", err)
		time.Sleep(etcdRetryPause)
	}
}

// Append writes one batch's record.
func (j *etcdJournal) Append(seq uint64, payload []byte) error {
	if len(payload) < etcdTxnBytes {
		if err := j.txn(clientv3.OpPut(j.logKey(seq), string(append([]byte{0}, payload...)))); err != nil {
			return err
		}
		j.last.Store(seq)
		return nil
	}
	// Too big for one request: parts first (a record without its head is
	// ignored by recovery and overwritten by the next Append of seq), then
	// the head that makes it count.
	n := 0
	for off := 0; off < len(payload); off += etcdTxnBytes {
		end := min(off+etcdTxnBytes, len(payload))
		if err := j.txn(clientv3.OpPut(fmt.Sprintf("%s/%04x", j.logKey(seq), n), string(payload[off:end]))); err != nil {
			return err
		}
		n++
	}
	if err := j.txn(clientv3.OpPut(j.logKey(seq), string(binary.AppendUvarint([]byte{1}, uint64(n))))); err != nil {
		return err
	}
	j.last.Store(seq)
	return nil
}

func (j *etcdJournal) LastSeq() uint64 { return j.last.Load() }

// opBatcher sends guarded Txns of at most etcdMaxTxnOps ops and about
// etcdTxnBytes bytes.
type opBatcher struct {
	j     *etcdJournal
	ops   []clientv3.Op
	bytes int
}

func (b *opBatcher) add(op clientv3.Op, size int) error {
	if len(b.ops) == etcdMaxTxnOps || (len(b.ops) > 0 && b.bytes+size > etcdTxnBytes) {
		if err := b.flush(); err != nil {
			return err
		}
	}
	b.ops = append(b.ops, op)
	b.bytes += size + 16
	return nil
}

func (b *opBatcher) flush() error {
	if len(b.ops) == 0 {
		return nil
	}
	err := b.j.txn(b.ops...)
	b.ops, b.bytes = b.ops[:0], 0
	return err
}

// Fold copies a layer of acknowledged writes into the kv keys (fold, before
// the cache commit; Release then records its sequence).
func (j *etcdJournal) Fold(l *layer) error {
	b := &opBatcher{j: j}
	var err error
	for name, tr := range l.buckets {
		tr.Ascend(func(it kvItem) bool {
			k := j.kvKey([]byte(name), it.k)
			if it.del {
				err = b.add(clientv3.OpDelete(k), len(k))
			} else {
				err = b.add(clientv3.OpPut(k, string(it.v)), len(k)+len(it.v))
			}
			return err == nil
		})
		if err != nil {
			return fmt.Errorf("copy folded writes to etcd: %w", err)
		}
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("copy folded writes to etcd: %w", err)
	}
	return nil
}

// Release records that the kv keys hold every record up to seq and deletes
// those records (with any stray parts of theirs), in one Txn.
func (j *etcdJournal) Release(seq uint64) error {
	return j.txn(
		clientv3.OpPut(j.key("applied"), string(u64(seq))),
		clientv3.OpDelete(j.key("log")+"/", clientv3.WithRange(j.logKey(seq+1))),
	)
}

// Close and RemoveAll: the client belongs to the caller, and the records
// were released by Close's final fold.
func (j *etcdJournal) Close() error     { return nil }
func (j *etcdJournal) RemoveAll() error { return nil }

// readRange calls fn for every key in [from, end) at revision rev, in key
// order, a page at a time.
func (j *etcdJournal) readRange(from, end string, rev int64, fn func(k, v []byte) error) error {
	key := from
	for {
		ctx, cancel := j.ctx()
		resp, err := j.cfg.Client.Get(ctx, key, clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(etcdPageSize))
		cancel()
		if err != nil {
			return fmt.Errorf("etcd read %s: %w", from, err)
		}
		for _, kv := range resp.Kvs {
			if err := fn(kv.Key, kv.Value); err != nil {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		key = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// prepareEtcdCache runs instead of preflight: the cache file is rebuilt
// from etcd at every open, so an old one is removed first.
func prepareEtcdCache(cfg Config) error {
	if cfg.ReadOnly || cfg.NoCommitLoop {
		return errors.New("open: the etcd backend needs a read-write open with the commit loop (tools work on a bbolt file: migrate --from-etcd first)")
	}
	if cfg.Etcd.Client == nil || cfg.Etcd.Prefix == "" || cfg.Etcd.GuardKey == "" {
		return errors.New("open: etcd backend needs a client, a prefix and a guard key")
	}
	if f, err := os.Open(cfg.Path); err == nil {
		// Another process serving from this cache holds bbolt's lock.
		err := lockFile(f, true, cfg.OpenTimeout)
		f.Close()
		if err != nil {
			return fmt.Errorf("open %s: %w (is another populi-db serving it?)", cfg.Path, ErrLocked)
		}
	}
	for _, p := range []string{cfg.Path, LogDirFor(cfg.Path)} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove the old etcd cache %s: %w", p, err)
		}
	}
	return nil
}

// recoverEtcd fills the fresh cache from etcd (the kv keys, then every
// record after applied, read at one revision) and makes etcd the journal.
// A prefix without an applied key is new: it is seeded from the cache,
// which initWrite has just laid out.
func (s *Store) recoverEtcd() error {
	j := newEtcdJournal(*s.cfg.Etcd, s.log)
	ctx, cancel := j.ctx()
	resp, err := j.cfg.Client.Get(ctx, j.key("applied"))
	cancel()
	if err != nil {
		return fmt.Errorf("read %s from etcd: %w", j.key("applied"), err)
	}
	if len(resp.Kvs) == 0 {
		if err := j.seedFrom(s.db); err != nil {
			return fmt.Errorf("seed etcd prefix %s: %w", j.cfg.Prefix, err)
		}
		applied, err := s.appliedLogSeq()
		if err != nil {
			return err
		}
		j.last.Store(applied)
		s.wal, s.lastSeq = j, applied
		return nil
	}
	rev := resp.Header.Revision
	applied := getU64(resp.Kvs[0].Value)

	kvPrefix := j.key("kv") + "/"
	err = s.db.Update(func(tx *bbolt.Tx) error {
		return j.readRange(kvPrefix, clientv3.GetPrefixRangeEnd(kvPrefix), rev, func(k, v []byte) error {
			rest := k[len(kvPrefix):]
			i := bytes.IndexByte(rest, '/')
			if i < 0 || tx.Bucket(rest[:i]) == nil {
				return fmt.Errorf("etcd key %q names no populi-db bucket", k)
			}
			return tx.Bucket(rest[:i]).Put(bytes.Clone(rest[i+1:]), bytes.Clone(v))
		})
	})
	if err != nil {
		return fmt.Errorf("load etcd prefix %s into the cache %s: %w", j.cfg.Prefix, s.cfg.Path, err)
	}

	heads := map[uint64][]byte{}
	parts := map[string][]byte{}
	logPrefix := j.key("log") + "/"
	err = j.readRange(logPrefix, clientv3.GetPrefixRangeEnd(logPrefix), rev, func(k, v []byte) error {
		name := string(k[len(logPrefix):])
		if len(name) == 16 {
			var seq uint64
			if _, err := fmt.Sscanf(name, "%016x", &seq); err != nil {
				return fmt.Errorf("etcd log key %q: %w", k, err)
			}
			heads[seq] = bytes.Clone(v)
		} else {
			parts[string(k)] = bytes.Clone(v)
		}
		return nil
	})
	if err != nil {
		return err
	}
	seqs := make([]uint64, 0, len(heads))
	for seq := range heads {
		if seq > applied {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(a, b int) bool { return seqs[a] < seqs[b] })
	rec := newLayer()
	last := applied
	for _, seq := range seqs {
		if seq != last+1 {
			return fmt.Errorf("etcd log under %s: record %d does not continue %d", j.cfg.Prefix, seq, last)
		}
		payload, err := j.assemble(seq, heads[seq], parts)
		if err != nil {
			return err
		}
		if err := rec.decodeInto(payload); err != nil {
			return fmt.Errorf("etcd log record %d: %w", seq, err)
		}
		last = seq
	}
	rec.seq = last
	err = s.db.Update(func(tx *bbolt.Tx) error {
		if err := rec.applyTo(tx); err != nil {
			return err
		}
		meta := tx.Bucket(bMeta)
		v := getU64(meta.Get(mSchemaVersion))
		if v > SchemaVersion {
			return newerSchemaError(v)
		}
		s.fileSchema = v
		return meta.Put(mAppliedLogSeq, u64(last))
	})
	if err != nil {
		return fmt.Errorf("replay the etcd log into the cache %s: %w", s.cfg.Path, err)
	}
	if len(seqs) > 0 {
		// The replayed records live only in the etcd log: fold them into
		// the kv keys now, as the wal's recovery folds them into bbolt,
		// since this store's own folds only copy what it acknowledges.
		if err := j.Fold(rec); err != nil {
			return fmt.Errorf("fold the replayed etcd log: %w", err)
		}
		if err := j.Release(last); err != nil {
			return fmt.Errorf("fold the replayed etcd log: %w", err)
		}
	}
	if s.fileSchema < SchemaVersion {
		if last, err = s.upgradeEtcd(j, last); err != nil {
			return fmt.Errorf("upgrade etcd prefix %s from schema %d: %w", j.cfg.Prefix, s.fileSchema, err)
		}
	}
	s.log.Info("loaded state from etcd", "prefix", j.cfg.Prefix, "revision", rev, "applied_seq", applied, "replayed_records", len(seqs))
	j.last.Store(last)
	s.wal, s.lastSeq = j, last
	return nil
}

func (j *etcdJournal) assemble(seq uint64, head []byte, parts map[string][]byte) ([]byte, error) {
	if len(head) == 0 {
		return nil, fmt.Errorf("etcd log record %d: empty", seq)
	}
	if head[0] == 0 {
		return head[1:], nil
	}
	n, w := binary.Uvarint(head[1:])
	if head[0] != 1 || w <= 0 {
		return nil, fmt.Errorf("etcd log record %d: bad head", seq)
	}
	var out []byte
	for i := range n {
		p, ok := parts[fmt.Sprintf("%s/%04x", j.logKey(seq), i)]
		if !ok {
			return nil, fmt.Errorf("etcd log record %d: part %d missing", seq, i)
		}
		out = append(out, p...)
	}
	return out, nil
}

// seedFrom copies every bucket of a bbolt db into the kv keys, then sets
// applied to the db's meta/applied_log_seq (the last Txn: until it lands,
// the prefix still reads as new and the next open seeds it again).
func (j *etcdJournal) seedFrom(db *bbolt.DB) error {
	b := &opBatcher{j: j}
	var applied uint64
	err := db.View(func(tx *bbolt.Tx) error {
		applied = getU64(tx.Bucket(bMeta).Get(mAppliedLogSeq))
		for _, name := range allBuckets {
			bk := tx.Bucket(name)
			if bk == nil {
				continue
			}
			if err := bk.ForEach(func(k, v []byte) error {
				key := j.kvKey(name, k)
				return b.add(clientv3.OpPut(key, string(v)), len(key)+len(v))
			}); err != nil {
				return err
			}
		}
		return b.flush()
	})
	if err != nil {
		return err
	}
	return j.txn(clientv3.OpPut(j.key("applied"), string(u64(applied))))
}

// SeedEtcd copies a stopped bbolt db (every acknowledged write, its log
// included) into an empty etcd prefix, which then serves as if it had
// always been there (`populi-db migrate --to-etcd`). ec's guard must be
// held (the migrate command wins the prefix's election first).
func SeedEtcd(dbPath string, ec *EtcdConfig, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	j := newEtcdJournal(*ec, log)
	for _, k := range []string{j.key("applied"), j.key("kv") + "/", j.key("log") + "/"} {
		ctx, cancel := j.ctx()
		opts := []clientv3.OpOption{clientv3.WithCountOnly()}
		if strings.HasSuffix(k, "/") {
			opts = append(opts, clientv3.WithPrefix())
		}
		resp, err := j.cfg.Client.Get(ctx, k, opts...)
		cancel()
		if err != nil {
			return fmt.Errorf("read etcd prefix %s: %w", ec.Prefix, err)
		}
		if resp.Count > 0 {
			return fmt.Errorf("etcd prefix %s already holds a populi-db state (%s): pick an empty prefix", ec.Prefix, k)
		}
	}
	s, err := Open(Config{Path: dbPath, Logger: log, OpenMode: OpenMode{ReadOnly: true, NoIndexRebuild: true, NoCommitLoop: true}})
	if err != nil {
		return err
	}
	defer s.Close()
	if s.fileSchema != SchemaVersion {
		return fmt.Errorf("%s has schema version %d: start and stop `populi-db serve` on it once to upgrade it to %d first", dbPath, s.fileSchema, SchemaVersion)
	}
	if err := s.foldForSnapshot(); err != nil {
		return err
	}
	return j.seedFrom(s.db)
}

// EtcdHasState reports whether an etcd prefix holds a populi-db state.
func EtcdHasState(ec *EtcdConfig) (bool, error) {
	j := newEtcdJournal(*ec, slog.Default())
	ctx, cancel := j.ctx()
	defer cancel()
	resp, err := ec.Client.Get(ctx, j.key("applied"), clientv3.WithCountOnly())
	if err != nil {
		return false, fmt.Errorf("read etcd prefix %s: %w", ec.Prefix, err)
	}
	return resp.Count > 0, nil
}

// upgradeEtcd runs the schema migrations (upgrade.go) on the cache of an
// older prefix and journals what they changed as one more record, so the
// upgrade reaches etcd like any batch. It holds a copy of the state in
// memory while it runs (migrations are rare).
func (s *Store) upgradeEtcd(j *etcdJournal, last uint64) (uint64, error) {
	from := s.fileSchema
	before := map[string]map[string][]byte{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets {
			m := map[string][]byte{}
			if err := tx.Bucket(name).ForEach(func(k, v []byte) error { m[string(k)] = bytes.Clone(v); return nil }); err != nil {
				return err
			}
			before[string(name)] = m
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	diff := newLayer()
	err = s.db.Update(func(tx *bbolt.Tx) error {
		for _, m := range migrations {
			if m.to <= from {
				continue
			}
			if err := m.apply(tx); err != nil {
				return fmt.Errorf("schema migration to version %d (%s): %w", m.to, m.what, err)
			}
			s.log.Info("upgraded etcd state schema", "prefix", j.cfg.Prefix, "from", m.to-1, "to", m.to, "change", m.what)
		}
		if err := tx.Bucket(bMeta).Put(mSchemaVersion, u64(SchemaVersion)); err != nil {
			return err
		}
		for _, name := range allBuckets {
			old := before[string(name)]
			seen := map[string]bool{}
			if err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				seen[string(k)] = true
				if ov, ok := old[string(k)]; !ok || !bytes.Equal(ov, v) {
					diff.set(name, kvItem{k: bytes.Clone(k), v: bytes.Clone(v)})
				}
				return nil
			}); err != nil {
				return err
			}
			for k := range old {
				if !seen[k] {
					diff.set(name, kvItem{k: []byte(k), del: true})
				}
			}
		}
		diff.seq = last + 1
		return tx.Bucket(bMeta).Put(mAppliedLogSeq, u64(diff.seq))
	})
	if err != nil {
		return 0, err
	}
	if err := j.Append(diff.seq, diff.encode(nil)); err != nil {
		return 0, err
	}
	if err := j.Fold(diff); err != nil {
		return 0, err
	}
	if err := j.Release(diff.seq); err != nil {
		return 0, err
	}
	return diff.seq, nil
}
