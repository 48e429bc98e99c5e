package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"populi-db/wire"
)

// etcdBundle opens a store on ec without setup's cleanup checks (a fenced
// store cannot fold at Close).
func etcdBundle(t *testing.T, ec *EtcdConfig, edit ...func(*Config)) *bundle {
	t.Helper()
	clk := newSpyClock(t0)
	cfg := Config{Path: filepath.Join(t.TempDir(), "cache.db"), Clock: clk, Logger: quietLogger(), LeaseTTL: testTTL, Etcd: ec}
	for _, e := range edit {
		e(&cfg)
	}
	b := &bundle{t: t, clk: clk, cfg: cfg}
	b.open()
	t.Cleanup(func() { _ = b.s.Close() })
	return b
}

// depose replaces the guard key of ec by a new one (as an election does
// when the old leader's lease expires) and returns the new leader's config.
func depose(t *testing.T, ec *EtcdConfig, name string) *EtcdConfig {
	t.Helper()
	cli := ec.Client
	if _, err := cli.Delete(context.Background(), ec.GuardKey); err != nil {
		t.Fatal(err)
	}
	key := ec.Prefix + "/" + name
	resp, err := cli.Put(context.Background(), key, name)
	if err != nil {
		t.Fatal(err)
	}
	return &EtcdConfig{Client: cli, Prefix: ec.Prefix, GuardKey: key, GuardRev: resp.Header.Revision}
}

func TestEtcdDeposedLeaderCannotWrite(t *testing.T) {
	t.Parallel()
	ecA := etcdConfig(t)
	var fenced atomic.Pointer[error]
	ecA.OnFenced = func(err error) { fenced.Store(&err) }
	// A long fold interval keeps A's writes in the etcd log (not yet
	// folded into the kv keys) when B takes over: B must replay them.
	a := etcdBundle(t, ecA, func(c *Config) { c.CommitInterval = time.Hour })
	a.join("n1")
	id := a.deliver("7", withKey("k1"))

	ecB := depose(t, ecA, "leaderB")
	b := etcdBundle(t, ecB)
	if b.node("n1") == nil || b.row(id) == nil {
		t.Fatalf("the new leader misses the old one's acknowledged writes: node %v row %v", b.node("n1"), b.row(id))
	}

	// The old leader's next batch is refused, and so is everything after.
	if _, err := a.s.Join(wire.NodeRecord{ID: "ghost", Version: "x"}); !errors.Is(err, ErrStorageFailed) {
		t.Fatalf("deposed leader's write = %v, want ErrStorageFailed", err)
	}
	if p := fenced.Load(); p == nil || !errors.Is(*p, ErrFenced) {
		t.Fatalf("OnFenced not called with ErrFenced: %v", p)
	}
	if _, err := a.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7", MessageType: "t", Payload: "ghost"}, ""); err == nil {
		t.Fatal("deposed leader accepted a second write")
	}

	// The new leader goes on; nothing the old one tried is in etcd.
	id2 := b.deliver("7")
	if id2 <= id {
		t.Fatalf("new leader reused message id %d (old leader issued %d)", id2, id)
	}
	resp, err := ecA.Client.Get(context.Background(), ecA.Prefix+"/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Value, []byte("ghost")) || bytes.Contains(kv.Key, []byte("ghost")) {
			t.Fatalf("a deposed leader's write reached etcd: %s", kv.Key)
		}
	}
	b.reopen()
	if b.node("ghost") != nil || b.node("n1") == nil || b.row(id2) == nil {
		t.Fatalf("state after the new leader's restart is wrong: ghost %v n1 %v row %v", b.node("ghost"), b.node("n1"), b.row(id2))
	}
}

// A batch over one etcd request is written in parts, then its head; a
// takeover before the fold reassembles it.
func TestEtcdLargeRecordInParts(t *testing.T) {
	t.Parallel()
	ec := etcdConfig(t)
	a := etcdBundle(t, ec, func(c *Config) { c.CommitInterval = time.Hour })
	big := bytes.Repeat([]byte("x"), 100<<10)
	err := a.s.update(func(t *txn) error {
		for i := range 30 { // ~3 MiB: three parts
			if err := t.Bucket(bMeta).Put(fmt.Appendf(nil, "test-big-%02d", i), big); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	check := func(s *Store, when string) {
		t.Helper()
		err := s.view(func(t *txn) error {
			for i := range 30 {
				if v := t.Bucket(bMeta).Get(fmt.Appendf(nil, "test-big-%02d", i)); !bytes.Equal(v, big) {
					return fmt.Errorf("key %d: %d bytes", i, len(v))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	b := etcdBundle(t, depose(t, ec, "leaderB"))
	check(b.s, "replayed from parts")
	b.reopen() // Close folds into kv keys in chunks under etcd's request limit
	check(b.s, "after a fold")
}

// migrate --to-etcd and back: a bbolt db seeds an empty prefix; a backup
// of the etcd-backed store is a bbolt db again.
func TestEtcdSeedAndBackupRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := &bundle{t: t, clk: newSpyClock(t0), cfg: Config{Path: filepath.Join(dir, "populi.db"), Logger: quietLogger(), LeaseTTL: testTTL}}
	file.cfg.Clock = file.clk
	file.open()
	file.join("n1")
	id1 := file.deliver("7", withKey("k1"))
	if err := file.s.Close(); err != nil {
		t.Fatal(err)
	}

	ec := etcdConfig(t)
	if err := SeedEtcd(file.cfg.Path, ec, quietLogger()); err != nil {
		t.Fatalf("seed: %v", err)
	}
	if err := SeedEtcd(file.cfg.Path, ec, quietLogger()); err == nil {
		t.Fatal("seeding a prefix twice was accepted")
	}
	e := etcdBundle(t, ec)
	if e.node("n1") == nil || e.row(id1) == nil {
		t.Fatal("the seeded prefix misses the file's state")
	}
	if again := e.deliver("7", withKey("k1")); again != id1 {
		t.Fatalf("idempotency key not carried over: %d, want %d", again, id1)
	}
	id2 := e.deliver("7")
	if id2 <= id1 {
		t.Fatalf("message id %d after migration, file had issued %d", id2, id1)
	}

	back := filepath.Join(dir, "back.db")
	if _, err := e.s.BackupFile(back); err != nil {
		t.Fatalf("backup of the etcd store: %v", err)
	}
	f2 := &bundle{t: t, clk: file.clk, cfg: Config{Path: back, Clock: file.clk, Logger: quietLogger(), LeaseTTL: testTTL}}
	f2.open()
	defer f2.s.Close()
	if f2.node("n1") == nil || f2.row(id1) == nil || f2.row(id2) == nil {
		t.Fatal("the backup of the etcd store misses state")
	}
	if id3 := f2.deliver("7"); id3 <= id2 {
		t.Fatalf("message id %d in the file restored from etcd, etcd had issued %d", id3, id2)
	}
}

// A prefix written by an older schema is upgraded at takeover, and the
// upgrade reaches etcd as one journaled record.
func TestEtcdOlderSchemaUpgradedAtTakeover(t *testing.T) {
	t.Parallel()
	ec := etcdConfig(t)
	a := etcdBundle(t, ec)
	a.join("n1")
	if err := a.s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	schemaKey := ec.Prefix + "/kv/meta/" + string(mSchemaVersion)
	if _, err := ec.Client.Put(ctx, schemaKey, string(u64(1))); err != nil {
		t.Fatal(err)
	}
	b := etcdBundle(t, depose(t, ec, "leaderB"))
	if b.s.FileSchemaVersion() != 1 || b.node("n1") == nil {
		t.Fatalf("takeover of a schema-1 prefix: version %d, node %v", b.s.FileSchemaVersion(), b.node("n1"))
	}
	resp, err := ec.Client.Get(ctx, schemaKey)
	if err != nil || len(resp.Kvs) != 1 || getU64(resp.Kvs[0].Value) != SchemaVersion {
		t.Fatalf("%s after the upgrade: %v %v", schemaKey, resp, err)
	}
	b.reopen()
	if b.s.FileSchemaVersion() != SchemaVersion {
		t.Fatalf("after the upgrade the prefix reads as schema %d", b.s.FileSchemaVersion())
	}
}
