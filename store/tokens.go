package store

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"populi-db/wire"
)

// ConsumeJTI records a JWT id as used (SPEC 3.4 step 7, 16.4). The entry is
// kept until max(exp, now) + JWTLeeway, past any instant the token could
// still verify, and survives restart. A second use is refused. When the
// table is full of unexpired ids the guard refuses new ones rather than
// forgetting old ones. Errors: wire.ErrReplayed (replay or full table).
func (s *Store) ConsumeJTI(jti string, expUnixSec int64) error {
	return s.update(func(t *txn) error {
		b := t.Bucket(bJTI)
		key := boundedKey(jti)
		nowSec := t.now.Unix()
		// A token still verifies at exactly exp+leeway, so an entry
		// whose purge time is now is still live.
		if v := b.Get(key); v != nil && int64(getU64(v)) >= nowSec {
			return wire.ErrReplayed
		}
		if int(getU64(t.Bucket(bMeta).Get(mJTICount))) >= s.cfg.ReplayCapacity {
			if n, err := t.purgeJTIs(nowSec, 1000); err != nil || n == 0 {
				if err == nil {
					s.log.Warn("jwt replay table full of unexpired ids; refusing new JWTs", "capacity", s.cfg.ReplayCapacity)
					return wire.ErrReplayed
				}
				return err
			}
		}
		expUnixSec = min(expUnixSec, math.MaxInt64-2*int64(JWTLeeway/time.Second)) // no overflow below
		purge := max(expUnixSec, nowSec) + int64(JWTLeeway/time.Second)
		if old := b.Get(key); old != nil { // expired leftover
			if err := t.Bucket(bJTIByPurge).Delete(cat(old, key)); err != nil {
				return err
			}
		} else if err := addCount(t.Bucket(bMeta), mJTICount, 1); err != nil {
			return err
		}
		if err := b.Put(key, u64(uint64(purge))); err != nil {
			return err
		}
		return t.Bucket(bJTIByPurge).Put(cat(u64(uint64(purge)), key), nil)
	})
}

func (t *txn) purgeJTIs(nowSec int64, limit int) (int, error) {
	c := t.Bucket(bJTIByPurge).Cursor()
	var keys [][]byte
	for k, _ := c.First(); k != nil && len(keys) < limit && int64(getU64(k[:8])) < nowSec; k, _ = c.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := t.Bucket(bJTIByPurge).Delete(k); err != nil {
			return 0, err
		}
		if err := t.Bucket(bJTI).Delete(k[8:]); err != nil {
			return 0, err
		}
		if err := addCount(t.Bucket(bMeta), mJTICount, -1); err != nil {
			return 0, err
		}
	}
	return len(keys), nil
}

// PurgeJTIs deletes up to limit replay entries past their purge time.
func (s *Store) PurgeJTIs(limit int) (int, error) {
	var n int
	err := s.update(func(t *txn) error {
		var err error
		n, err = t.purgeJTIs(t.now.Unix(), limit)
		return err
	})
	return n, err
}

// bootstrapState is the durable state of one configured bootstrap token,
// keyed by a hash of the token (never the token).
type bootstrapState struct {
	Consumed        bool   `json:"consumed"`
	Failures        int    `json:"failures"`
	ConsumedUnixMs  uint64 `json:"consumed_unix_ms,omitempty"`
	ExpiresUnixMs   uint64 `json:"expires_unix_ms,omitempty"`
	FirstSeenUnixMs uint64 `json:"first_seen_unix_ms"`
}

// BootstrapAttempt is one exchange attempt, already judged by the caller
// (which holds the secrets and compares in constant time).
type BootstrapAttempt struct {
	TokenHash     [32]byte // hash of the configured token: the state's key
	ExpiresUnixMs uint64   // 0 = no expiry
	TokenOK       bool     // presented token equals the configured one
	MeshTokenSet  bool     // VOX_MESH_TOKEN configured
}

// ExchangeBootstrap applies SPEC 4 with 16.5's fixes, atomically: only a
// successful exchange consumes the token; after BootstrapMaxFailures wrong
// tokens it is consumed too; state survives restart.
// Errors: wire.ErrBootstrapConsumed, wire.ErrBootstrapExpired,
// wire.ErrBootstrapInvalid, wire.ErrBootstrapNoMesh.
func (s *Store) ExchangeBootstrap(a BootstrapAttempt) error {
	key := []byte(hex.EncodeToString(a.TokenHash[:]))
	var verdict error
	err := s.update(func(t *txn) error {
		verdict = nil
		b := t.Bucket(bBootstrap)
		st := bootstrapState{FirstSeenUnixMs: t.nowMs, ExpiresUnixMs: a.ExpiresUnixMs}
		if v := b.Get(key); v != nil {
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("decode bootstrap state: %w", err)
			}
		}
		switch {
		case st.Consumed || st.Failures >= BootstrapMaxFailures:
			return wire.ErrBootstrapConsumed
		case a.ExpiresUnixMs != 0 && t.nowMs > a.ExpiresUnixMs:
			return wire.ErrBootstrapExpired
		case !a.TokenOK:
			st.Failures++
			verdict = wire.ErrBootstrapInvalid
		case !a.MeshTokenSet:
			return wire.ErrBootstrapNoMesh
		default:
			st.Consumed, st.ConsumedUnixMs = true, t.nowMs
		}
		v, err := json.Marshal(&st)
		if err != nil {
			return err
		}
		return b.Put(key, v)
	})
	if err != nil {
		return err
	}
	return verdict
}

// PurgeBootstrap deletes up to limit records of bootstrap tokens whose
// expiry passed (an expired token is refused by its expiry alone).
func (s *Store) PurgeBootstrap(limit int) (int, error) {
	var n int
	err := s.update(func(t *txn) error {
		n = 0
		b := t.Bucket(bBootstrap)
		var keys [][]byte
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(keys) < limit; k, v = c.Next() {
			var st bootstrapState
			if json.Unmarshal(v, &st) == nil && st.ExpiresUnixMs != 0 && st.ExpiresUnixMs < t.nowMs {
				keys = append(keys, append([]byte(nil), k...))
			}
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}
