package store

import (
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"populi-db/wire"
)

// TestRestartSurvival closes the store (as a stopping server does) and
// opens the same file again: everything durable must come back as it was.
func TestRestartSurvival(t *testing.T) {
	t.Parallel()
	b := setupSync(t, func(c *Config) { c.MaxDeliveries = 2 })
	// Nodes with server-owned flags, and a quarantine tombstone.
	b.join("plain", func(r *wire.NodeRecord) { r.PoolID = ptr("p") })
	b.join("quarantined")
	b.join("draining")
	b.join("drained-forever")
	b.join("gone")
	wantErr(t, b.s.SetQuarantine("quarantined", true), nil)
	wantErr(t, b.s.SetMaintenance("draining", true, nil, ptr(uint64(60_000))), nil)
	wantErr(t, b.s.SetMaintenance("drained-forever", true, nil, nil), nil)
	wantErr(t, b.s.SetQuarantine("gone", true), nil)
	wantErr(t, b.s.Leave("gone"), nil)

	// Rows in every state, some with idempotency keys.
	pending := b.deliver("2", withKey("pending"))
	leased := b.deliver("2", withKey("leased"), withPrio(200))
	ml := b.mustClaim("2", "plain", leased)
	delayed := b.deliver("2", withKey("delayed"), withNotBefore(b.nowMs()+30_000))
	acked := b.deliver("2", withKey("acked"))
	wantErr(t, b.s.Ack("2", acked, nil), nil)
	dead := b.deliver("3", withKey("dead"))
	for range 2 {
		m := b.mustClaim("3", "plain", dead)
		wantErr(t, b.s.Nack(wire.NackRequest{ReceiverAgentID: "3", MessageID: dead, ClaimerNodeID: "plain", LeaseToken: m.LeaseToken, RetryAfterMs: ptr(uint64(0))}), nil)
	}
	top := b.deliver("2")
	// Exec leases: one live, one released (its id must not be reused).
	live := b.grant("plain", "scope-live")
	released := b.grant("plain", "scope-released")
	wantErr(t, b.s.ReleaseExecLease(released.LeaseID, "plain", nil), nil)
	// A consumed JWT id.
	wantErr(t, b.s.ConsumeJTI("jti-1", b.clk.Now().Unix()+300), nil)

	before := b.snapshot("2", "3")
	b.reopen()
	after := b.snapshot("2", "3")
	if !reflect.DeepEqual(before, after) {
		t.Fatalf("state changed across restart:\nbefore %+v\nafter  %+v", before, after)
	}
	q := b.node("quarantined")
	if q.Quarantined == nil || !*q.Quarantined {
		t.Fatalf("quarantine lost: %+v", q)
	}
	if d := b.node("draining"); d.Maintenance == nil || !*d.Maintenance || d.MaintenanceUntilUnixMs == nil {
		t.Fatalf("timed drain lost: %+v", d)
	}
	if d := b.node("drained-forever"); d.Maintenance == nil || !*d.Maintenance || d.MaintenanceUntilUnixMs != nil {
		t.Fatalf("indefinite drain lost: %+v", d)
	}
	if g := b.join("gone"); g.Quarantined == nil || !*g.Quarantined {
		t.Fatalf("quarantine tombstone lost: %+v", g)
	}

	// Idempotency of unacked rows survives; an acked key makes a new row.
	for key, id := range map[string]uint64{"pending": pending, "leased": leased, "delayed": delayed} {
		if got := b.deliver("2", withKey(key)); got != id {
			t.Fatalf("key %q after restart = %d, want %d", key, got, id)
		}
	}
	if got := b.deliver("3", withKey("dead")); got != dead {
		t.Fatalf("dead row's key after restart = %d, want %d", got, dead)
	}
	next := b.deliver("2", withKey("acked"))
	if next <= top {
		t.Fatalf("new id %d after restart, not above the last id %d", next, top)
	}

	// Leases and tokens: the held row and exec lease stay the holder's.
	if _, err := b.s.RenewInboxLease("2", leased, "plain", ml.LeaseToken); err != nil {
		t.Fatalf("renew inbox lease after restart: %v", err)
	}
	if _, err := b.s.RenewExecLease(live.LeaseID, "plain", live.LeaseToken); err != nil {
		t.Fatalf("renew exec lease after restart: %v", err)
	}
	if l := b.grant("plain", "scope-new"); l.LeaseID != "3" || *l.LeaseToken <= *live.LeaseToken {
		t.Fatalf("exec lease after restart: %+v (ids 1, 2 used before)", l)
	}
	if m := b.claim("2", "quarantined"); m != nil {
		t.Fatal("quarantined node claimed after restart")
	}
	b.join("other")
	m := b.claim("2", "other")
	if m == nil || *m.LeaseToken <= *ml.LeaseToken {
		t.Fatalf("token after restart: %+v", m)
	}
	wantErr(t, b.s.ConsumeJTI("jti-1", b.clk.Now().Unix()+300), wire.ErrReplayed)
	// The drain deadline still expires on time after the restart.
	b.clk.Advance(time.Minute)
	if d := b.node("draining"); d.Maintenance != nil {
		t.Fatalf("drain did not end after restart: %+v", d)
	}
}

// Ids stay unique even when the newest rows are gone before a restart.
func TestIDsNeverReusedAfterRestart(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *Config) { c.MaxMessages = 1 })
	b.deliver("2")
	last := b.deliver("2") // evicts the first
	l := b.grant(b.join("n").ID, "s")
	wantErr(t, b.s.RevokeExecLease(l.LeaseID), nil)
	b.reopen(func(c *Config) { c.MaxMessages = 10 })
	wantErr(t, b.s.Ack("2", last, nil), nil)
	b.reopen()
	if id := b.deliver("2"); id != last+1 {
		t.Fatalf("id after restart %d, want %d", id, last+1)
	}
	if l2 := b.grant("n", "s"); l2.LeaseID != "2" {
		t.Fatalf("lease id after restart %s, want 2", l2.LeaseID)
	}
}

func TestOpenLockedFile(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := b.cfg
	cfg.OpenTimeout = 50 * time.Millisecond
	_, err := Open(cfg)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if !strings.Contains(err.Error(), cfg.Path) {
		t.Fatalf("error %q does not name the file", err)
	}
}

func TestOpenRefusesOtherSchemaVersion(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nested", "dir", "populi.db") // directories are created
	s, err := Open(Config{Path: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.Close(), nil)
	wantErr(t, s.Close(), nil) // idempotent
	if _, err := s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "2"}, ""); !errors.Is(err, ErrClosed) {
		t.Fatalf("deliver on a closed store: %v", err)
	}
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error { return tx.Bucket(bMeta).Put(mSchemaVersion, u64(SchemaVersion+1)) })
	wantErr(t, err, nil)
	wantErr(t, db.Close(), nil)
	if _, err := Open(Config{Path: path, Logger: quietLogger()}); err == nil || !strings.Contains(err.Error(), "schema version") {
		t.Fatalf("open of a newer schema: %v", err)
	}
}

func TestOpenClampsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want time.Duration
	}{{0, LeaseTTLDefault}, {time.Millisecond, LeaseTTLMin}, {2 * time.Hour, LeaseTTLMax}, {90 * time.Second, 90 * time.Second}} {
		b := setup(t, func(c *Config) { c.LeaseTTL = tc.in })
		if got := b.s.LeaseTTL(); got != tc.want {
			t.Errorf("LeaseTTL %v → %v, want %v", tc.in, got, tc.want)
		}
	}
	b := setup(t, func(c *Config) { c.MaxMessages = 10 * MaxMessagesMax; c.MaxDeliveries = -3 })
	if b.s.cfg.MaxMessages != MaxMessagesMax || b.s.cfg.MaxDeliveries != 0 || b.s.Path() != b.cfg.Path {
		t.Fatalf("clamped config: %+v", b.s.cfg)
	}
}
