package store

import (
	"bytes"
	"math"
	"strings"
	"time"

	"populi-db/wire"
)

// The A2A mailbox, split by job: delivery and listing here; claiming in
// claim.go, its policy in policy.go, long-poll claims in longpoll.go,
// ack, renew and nack in ack.go, dead letters in dead.go.

// Inbox listing limits (SPEC 2.10).
const (
	ListDefault = 64
	ListMax     = 256
	// MaxWait caps a long-poll claim's wait_ms (issue 9).
	MaxWait = 30 * time.Second
)

const dedupeSep = "\x1f"

// IsAgentID says whether s is an A2A agent id: one or more decimal digits
// (SPEC 2.9; migrate checks legacy rows with it too).
func IsAgentID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// ValidateDeliver normalizes and checks the agent ids of a delivery in SPEC
// 2.9's order (steps 1-3). The API calls it before attestation (step 4);
// Deliver calls it again. Errors: wire.ErrSender*, wire.ErrReceiver*.
func ValidateDeliver(req *wire.DeliverRequest) error {
	req.SenderAgentID = strings.TrimSpace(req.SenderAgentID)
	req.ReceiverAgentID = strings.TrimSpace(req.ReceiverAgentID)
	switch {
	case req.SenderAgentID == "":
		return wire.ErrSenderRequired
	case !IsAgentID(req.SenderAgentID):
		return wire.ErrSenderDigits
	case req.ReceiverAgentID == "":
		return wire.ErrReceiverRequired
	case !IsAgentID(req.ReceiverAgentID):
		return wire.ErrReceiverDigits
	}
	return nil
}

// Deliver stores a mailbox row (SPEC 6.2-6.4) and returns its id. A pending
// or leased row with the same (sender, receiver, idempotency key) answers
// with its id and stores nothing. senderNodeID is set only for node-signed
// deliveries. Errors: those of ValidateDeliver.
func (s *Store) Deliver(req wire.DeliverRequest, senderNodeID string) (uint64, error) {
	if err := ValidateDeliver(&req); err != nil {
		return 0, err
	}
	var dedupe string
	if req.IdempotencyKey != nil {
		if k := strings.TrimSpace(*req.IdempotencyKey); k != "" {
			dedupe = req.SenderAgentID + dedupeSep + req.ReceiverAgentID + dedupeSep + k
		}
	}
	var id uint64
	err := s.update(func(t *txn) error {
		idem := t.Bucket(bIdem)
		if dedupe != "" {
			if v := idem.Get(boundedKey(dedupe)); v != nil {
				id = getU64(v)
				return nil
			}
		}
		for t.rowCount() >= uint64(s.cfg.MaxMessages) {
			if ok, err := t.evictOne(); err != nil || !ok {
				return err
			}
		}
		var err error
		if id, err = t.nextReserved(mNextMessageID, &s.msgSeq); err != nil {
			return err
		}
		m := &wire.StoredMessage{
			ID: id, SenderAgentID: req.SenderAgentID, ReceiverAgentID: req.ReceiverAgentID,
			MessageType: req.MessageType, Payload: req.Payload, CreatedUnixMs: t.nowMs,
			PrivacyClass: req.PrivacyClass, PayloadBlake3Hex: req.PayloadBlake3Hex,
			WorkerEd25519SigB64: req.WorkerEd25519SigB64, JWEPayload: req.JWEPayload,
			Priority: wire.DefaultPriority, TaskKind: req.TaskKind, ModelID: req.ModelID,
			Traceparent: req.Traceparent, State: wire.StateReady,
		}
		if req.Priority != nil {
			m.Priority = *req.Priority
		}
		if senderNodeID != "" {
			m.SenderNodeID = ptr(senderNodeID)
		}
		if req.NotBeforeUnixMs != nil && *req.NotBeforeUnixMs > t.nowMs {
			m.State, m.NotBeforeUnixMs = wire.StateDelayed, ptr(min(*req.NotBeforeUnixMs, MaxUnixMs))
		}
		if dedupe != "" {
			m.IdempotencyDedupeKey = ptr(dedupe)
			if err := idem.Put(boundedKey(dedupe), u64(id)); err != nil {
				return err
			}
		}
		return t.saveRow(nil, m)
	})
	return id, err
}

// MaxUnixMs is the latest instant the store keeps: times are converted to
// time.Time (int64 milliseconds), so client values are clamped to it.
const MaxUnixMs = uint64(math.MaxInt64 / int64(time.Millisecond))

// addMs adds milliseconds to an instant, saturating at MaxUnixMs.
func addMs(at, ms uint64) uint64 {
	if ms >= MaxUnixMs-min(at, MaxUnixMs) {
		return MaxUnixMs
	}
	return at + ms
}

func clampList(max *uint64) int {
	l := uint64(ListDefault)
	if max != nil {
		l = *max
	}
	return int(min(max1(l), ListMax))
}

func max1(v uint64) uint64 {
	if v < 1 {
		return 1
	}
	return v
}

// ListInbox returns up to max (default 64, clamped to [1,256]) unacknowledged
// rows of receiver (exact match), newest first, with ids below before when
// given. Leases and delays are shown as they stand at now; dead letters are
// left out (they are listed by ListDead).
func (s *Store) ListInbox(receiver string, max, before *uint64) ([]wire.StoredMessage, error) {
	out := []wire.StoredMessage{}
	if !IsAgentID(receiver) { // no stored row can match a non-digit receiver
		return out, nil
	}
	limit := clampList(max)
	err := s.view(func(t *txn) error {
		return t.pageDesc(bByReceiver, receiver, before, func(id uint64) (bool, error) {
			m, err := t.getRow(id)
			if err != nil {
				return false, err
			}
			// The index may be ahead of this read transaction (a batch is
			// committing): a row not committed yet is skipped, and a row is
			// shown as committed.
			if m == nil || m.Acknowledged {
				return true, nil
			}
			if e := s.effective(m, t.nowMs); e.State != wire.StateDead {
				out = append(out, *e)
			}
			return len(out) < limit, nil
		})
	})
	return out, err
}

// pageDesc walks recv's entries of an (recv 0x00 id) index newest first,
// starting below before (when given), until fn says stop.
func (t *txn) pageDesc(bucket []byte, recv string, before *uint64, fn func(id uint64) (bool, error)) error {
	rp := recvPrefix(recv)
	c := t.idx(bucket).Cursor()
	var start []byte
	if before != nil {
		start = cat(rp, u64(*before))
	} else {
		start = cat(rp[:len(rp)-1], []byte{1}) // just past every key with prefix rp
	}
	k, _ := c.Seek(start)
	if k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for ; k != nil && bytes.HasPrefix(k, rp); k, _ = c.Prev() {
		more, err := fn(getU64(k[len(rp):]))
		if err != nil || !more {
			return err
		}
	}
	return nil
}
