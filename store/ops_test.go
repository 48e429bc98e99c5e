package store

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"

	"populi-db/wire"
)

// writeV1File writes a schema-version-1 database the way the binary before
// schema 2 did: every bucket, schema_version 1, one node and one row, and
// no applied_log_seq.
func writeV1File(t *testing.T, path string) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bMeta)
		if err := meta.Put(mSchemaVersion, u64(1)); err != nil {
			return err
		}
		if err := meta.Put(mNextMessageID, u64(1)); err != nil {
			return err
		}
		row := `{"id":1,"sender_agent_id":"1","receiver_agent_id":"2","message_type":"t","payload":"p","created_unix_ms":5,"acknowledged":false,"priority":128,"state":"ready"}`
		return tx.Bucket(bRows).Put(u64(1), []byte(row))
	})
	if err != nil {
		t.Fatal(err)
	}
}

func schemaOf(t *testing.T, path string) (version uint64, logSeq []byte) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bbolt.Tx) error {
		version = getU64(tx.Bucket(bMeta).Get(mSchemaVersion))
		logSeq = append([]byte(nil), tx.Bucket(bMeta).Get(mAppliedLogSeq)...)
		return nil
	})
	return version, logSeq
}

func TestMigrationTableIsContiguous(t *testing.T) {
	t.Parallel()
	for i, m := range migrations {
		if m.to != uint64(i+2) {
			t.Errorf("migration %d goes to version %d, want %d", i, m.to, i+2)
		}
	}
	if last := migrations[len(migrations)-1].to; last != SchemaVersion {
		t.Errorf("last migration reaches %d, SchemaVersion is %d", last, SchemaVersion)
	}
}

func TestUpgradeFromVersion1(t *testing.T) {
	t.Parallel()
	for _, noBackup := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-backup=%v", noBackup), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "old.db")
			writeV1File(t, path)
			before, _ := os.ReadFile(path)
			s, err := Open(Config{Path: path, Logger: quietLogger(), OpenMode: OpenMode{NoUpgradeBackup: noBackup}})
			if err != nil {
				t.Fatalf("open a version-1 file: %v", err)
			}
			if s.FileSchemaVersion() != 1 {
				t.Errorf("FileSchemaVersion = %d, want 1", s.FileSchemaVersion())
			}
			msgs, err := s.ListInbox("2", nil, nil)
			if err != nil || len(msgs) != 1 || msgs[0].Payload != "p" {
				t.Errorf("the upgraded file's row: %v, %v", msgs, err)
			}
			if inv := s.CheckInvariants(); len(inv) != 0 {
				t.Errorf("invariants after upgrade: %v", inv)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			v, seq := schemaOf(t, path)
			if v != SchemaVersion || !bytes.Equal(seq, u64(0)) {
				t.Errorf("after upgrade: schema %d, applied_log_seq %x; want %d and 0", v, seq, SchemaVersion)
			}
			copyPath := path + ".schema-v1.bak"
			copied, err := os.ReadFile(copyPath)
			switch {
			case noBackup && err == nil:
				t.Error("--no-backup still kept a pre-upgrade copy")
			case !noBackup && err != nil:
				t.Errorf("no pre-upgrade copy: %v", err)
			case !noBackup:
				if cv, _ := schemaOf(t, copyPath); cv != 1 {
					t.Errorf("the pre-upgrade copy has schema %d, want 1", cv)
				}
				if len(copied) == 0 || len(before) == 0 {
					t.Error("empty file")
				}
			}
		})
	}
}

func TestFreshFileIsCurrentVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.reopen()
	path := b.cfg.Path
	if _, err := os.Stat(path + ".schema-v1.bak"); err == nil {
		t.Error("a fresh file made a pre-upgrade copy")
	}
	if b.s.FileSchemaVersion() != SchemaVersion {
		t.Errorf("reopened fresh file: version %d", b.s.FileSchemaVersion())
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "new.db")
	writeV1File(t, path)
	db, _ := bbolt.Open(path, 0o600, nil)
	_ = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bMeta).Put(mSchemaVersion, u64(99)) })
	db.Close()
	before := fileHash(t, path)
	for _, mode := range []OpenMode{{}, {ReadOnly: true}} {
		_, err := Open(Config{Path: path, Logger: quietLogger(), OpenMode: mode})
		if !errors.Is(err, ErrSchemaNewer) || !strings.Contains(err.Error(), "99") || !strings.Contains(err.Error(), fmt.Sprint(SchemaVersion)) {
			t.Errorf("open (mode %+v) of a version-99 file: %v; want ErrSchemaNewer naming 99 and %d", mode, err, SchemaVersion)
		}
	}
	if fileHash(t, path) != before {
		t.Error("refusing a newer file changed it")
	}
}

func fileHash(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// populated writes a closed db file with enough rows to span many pages.
func populated(t *testing.T, rows int) string {
	t.Helper()
	bboltOnly(t) // tools read the closed file
	b := setup(t)
	if _, err := b.s.Join(wire.NodeRecord{ID: "n1", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		key := fmt.Sprintf("k%d", i)
		if _, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "2", MessageType: "t", Payload: strings.Repeat("x", 200), IdempotencyKey: &key}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.s.GrantExecLease("n1", "scope-1"); err != nil {
		t.Fatal(err)
	}
	path := b.cfg.Path
	if err := b.s.Close(); err != nil {
		t.Fatal(err)
	}
	b.s = nil
	return path
}

func TestCheckFileCleanAndReadOnly(t *testing.T) {
	t.Parallel()
	path := populated(t, 300)
	before := fileHash(t, path)
	rep, err := CheckFile(path, OpenTimeoutDefault)
	if err != nil || !rep.OK() || rep.SchemaVersion != SchemaVersion {
		t.Fatalf("CheckFile of a clean db = %+v, %v", rep, err)
	}
	if fileHash(t, path) != before {
		t.Error("check changed the file it checked")
	}
	missing := filepath.Join(t.TempDir(), "nope.db")
	if _, err := CheckFile(missing, OpenTimeoutDefault); err == nil {
		t.Error("CheckFile of a missing file: no error")
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("CheckFile created the missing file")
	}
}

func TestCheckFileFindsBrokenInvariants(t *testing.T) {
	t.Parallel()
	path := populated(t, 5)
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		// A second pending row with row 1's dedupe key: a dedupe violation.
		row := `{"id":6,"sender_agent_id":"1","receiver_agent_id":"2","message_type":"t","payload":"p","created_unix_ms":5,"acknowledged":false,"idempotency_dedupe_key":"1\u001f2\u001fk0","priority":128,"state":"ready"}`
		if err := tx.Bucket(bRows).Put(u64(6), []byte(row)); err != nil {
			return err
		}
		// The message counter below a stored id.
		if err := tx.Bucket(bMeta).Put(mNextMessageID, u64(2)); err != nil {
			return err
		}
		// A node without its order entry.
		return tx.Bucket(bNodesOrder).Delete(u64(1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := CheckFile(path, OpenTimeoutDefault)
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	kinds := map[string]bool{}
	for _, f := range rep.Findings {
		all = append(all, f.Kind+": "+f.Message)
		kinds[f.Kind] = true
	}
	text := strings.Join(all, "\n")
	for _, want := range []string{"dedupe_violation: rows [1 6]", "next_message_id 2 is below stored message id 6", "nodes_order lacks entry"} {
		if !strings.Contains(text, want) {
			t.Errorf("findings lack %q:\n%s", want, text)
		}
	}
}

// TestDamagedFilesAreFindings damages files the ways a disk or an operator
// does. check reports findings (never a panic or a fault, never a write)
// and a writable open refuses with ErrDamaged.
func TestDamagedFilesAreFindings(t *testing.T) {
	t.Parallel()
	clean := populated(t, 2000)
	data, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	cases := []struct {
		name   string
		damage func([]byte) []byte
		want   string
	}{
		{"page headers 4-6", func(b []byte) []byte {
			for p := 4; p <= 6; p++ {
				copy(b[p*page:], bytes.Repeat([]byte{0xab}, 16))
			}
			return b
		}, "header names page"},
		{"both meta pages", func(b []byte) []byte {
			copy(b[16:], make([]byte, 8))
			copy(b[page+16:], make([]byte, 8))
			return b
		}, "not a bbolt database file"},
		{"truncated", func(b []byte) []byte { return b[:5*page+100] }, "truncated"},
		{"zero-length", func([]byte) []byte { return nil }, "empty (0 bytes)"},
		{"not bbolt", func([]byte) []byte { return []byte(strings.Repeat("{\"not\":\"a db\"}\n", 1000)) }, "not a bbolt database file"},
		{"one meta page", func(b []byte) []byte { b[page+16+48] ^= 0xff; return b }, "meta page 1: checksum mismatch"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "damaged.db")
			if err := os.WriteFile(path, c.damage(bytes.Clone(data)), 0o600); err != nil {
				t.Fatal(err)
			}
			before := fileHash(t, path)
			rep, err := CheckFile(path, OpenTimeoutDefault)
			if err != nil {
				t.Fatalf("CheckFile: %v", err)
			}
			var msgs []string
			for _, f := range rep.Findings {
				msgs = append(msgs, f.Message)
			}
			if !strings.Contains(strings.Join(msgs, "\n"), c.want) {
				t.Errorf("findings %q lack %q", msgs, c.want)
			}
			if fileHash(t, path) != before {
				t.Error("check changed the damaged file")
			}
			s, err := Open(Config{Path: path, Logger: quietLogger()})
			if c.name == "one meta page" { // bbolt survives it: serve starts, with a warning
				if err != nil {
					t.Errorf("open with one bad meta page: %v", err)
				} else {
					s.Close()
				}
				return
			}
			if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "populi-db check") {
				t.Errorf("serve-mode open of a damaged file: %v", err)
			}
			if err == nil {
				s.Close()
			}
		})
	}
}

func TestBackupCompactRestore(t *testing.T) {
	t.Parallel()
	path := populated(t, 500)
	dir := t.TempDir()
	s, err := Open(Config{Path: path, Logger: quietLogger(), OpenMode: OpenMode{ReadOnly: true, NoIndexRebuild: true, NoCommitLoop: true}})
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.DBStats()
	if err != nil {
		t.Fatal(err)
	}
	bk := filepath.Join(dir, "backup.db")
	if _, err := s.BackupFile(bk); err != nil {
		t.Fatal(err)
	}
	compacted := filepath.Join(dir, "compact.db")
	if err := s.Compact(compacted); err != nil {
		t.Fatal(err)
	}
	if err := s.Compact(compacted); err == nil {
		t.Error("compact over an existing file succeeded")
	}
	s.Close()
	for _, p := range []string{bk, compacted} {
		rep, err := CheckFile(p, OpenTimeoutDefault)
		if err != nil || !rep.OK() {
			t.Errorf("check %s: %+v %v", p, rep, err)
		}
		c, err := Open(Config{Path: p, Logger: quietLogger(), OpenMode: OpenMode{ReadOnly: true}})
		if err != nil {
			t.Fatal(err)
		}
		got, _ := c.DBStats()
		c.Close()
		if fmt.Sprint(got.Buckets, got.States) != fmt.Sprint(want.Buckets, want.States) {
			t.Errorf("%s holds %v %v, the source %v %v", p, got.Buckets, got.States, want.Buckets, want.States)
		}
	}

	// Restore refuses a held db, then replaces a stopped one, keeping .bak.
	target := populated(t, 3)
	held, err := Open(Config{Path: target, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Restore(bk, target); !errors.Is(err, ErrTargetHeld) {
		t.Errorf("restore over a held db: %v", err)
	}
	held.Close()
	oldHash := fileHash(t, target)
	bak, _, err := Restore(bk, target)
	if err != nil || bak != target+".bak" {
		t.Fatalf("restore = %q, %v", bak, err)
	}
	if fileHash(t, bak) != oldHash || fileHash(t, target) != fileHash(t, bk) {
		t.Error("restore did not keep the old file as .bak or did not copy the backup")
	}
	if bak2, _, err := Restore(bk, target); err != nil || bak2 != target+".bak.1" {
		t.Errorf("a second restore: %q, %v (must not overwrite the first .bak)", bak2, err)
	}
}

func TestCheckFileOfOlderSchemaIsReadOnly(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "v1.db")
	writeV1File(t, path)
	before := fileHash(t, path)
	rep, err := CheckFile(path, OpenTimeoutDefault)
	if err != nil || rep.SchemaVersion != 1 || len(rep.Findings) != 1 || rep.Findings[0].Kind != "schema" {
		t.Errorf("check of a version-1 file: %+v, %v", rep, err)
	}
	if fileHash(t, path) != before {
		t.Error("check upgraded or otherwise changed the file")
	}
	if _, err := os.Stat(path + ".schema-v1.bak"); err == nil {
		t.Error("check made a pre-upgrade copy")
	}
}

// TestKeyOrderDamageIsAFinding swaps two keys in a leaf of the rows bucket:
// every page header is intact, so only bbolt's own check sees it, and that
// check panics inside bbolt.Open when it loads the freelist.
func TestKeyOrderDamageIsAFinding(t *testing.T) {
	t.Parallel()
	path := populated(t, 2000)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w := &pageWalk{f: f, size: int64(len(b)), seen: map[uint64]bool{}}
	w.run() // only reachable pages matter: a free page may hold any stale bytes
	f.Close()
	swapped := false
	for id := range w.seen {
		off := int(id) * 4096
		if swapped || off+4096 > len(b) {
			continue
		}
		p := b[off : off+4096]
		if p[8] != flagLeaf || int(p[10])|int(p[11])<<8 < 3 {
			continue
		}
		elem := func(i int) []byte {
			e := p[16+16*i:]
			pos, ksize := int(e[4])|int(e[5])<<8, int(e[8])
			return p[16+16*i+pos : 16+16*i+pos+ksize]
		}
		k0, k1 := elem(0), elem(1)
		if len(k0) != 8 || len(k1) != 8 {
			continue
		}
		tmp := bytes.Clone(k0)
		copy(k0, k1)
		copy(k1, tmp)
		swapped = true
	}
	if !swapped {
		t.Fatal("found no leaf with 8-byte keys to damage")
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// A serve-mode open (on a copy: a panicking bbolt.Open leaves its
	// descriptor, and so its lock, behind) refuses the file.
	cp := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(cp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Path: cp, Logger: quietLogger()}); !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "keys out of order") {
		t.Errorf("serve-mode open of a file with keys out of order: %v", err)
	}
	rep, err := CheckFile(path, OpenTimeoutDefault)
	if err != nil || rep.OK() || !strings.Contains(rep.Findings[0].Message, "keys out of order") {
		t.Errorf("check of a file with keys out of order: %+v, %v", rep, err)
	}
}
