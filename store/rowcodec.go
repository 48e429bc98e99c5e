package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"populi-db/wire"
)

// The stored form of an A2A row (bucket a2a_rows). Rows written since schema
// version 3 use the compact binary encoding below; older rows are JSON and
// keep decoding (decodeRow tells them apart by the first byte: JSON rows
// start with '{'), so no upgrade rewrites the bucket.
//
// Why binary: claims and acks decode and re-encode a row inside the single
// writer, and encoding/json was most of that work (about 8% of server CPU
// in the claim+ack bench). The encoding is append-only in field order:
//
//	rowMagic
//	uvarint id, string sender, string receiver, string type, string payload,
//	uvarint created_unix_ms, byte flags (bit 0: acknowledged), byte priority,
//	string state, uvarint delivery_count,
//	uvarint presence (bit i: optional field i below is present), then each
//	present optional field in this order:
//	  0 lease_holder_node_id  1 lease_expires_unix_ms  2 privacy_class
//	  3 idempotency_dedupe_key 4 payload_blake3_hex  5 worker_ed25519_sig_b64
//	  6 jwe_payload  7 task_kind  8 model_id  9 sender_node_id  10 traceparent
//	  11 lease_token  12 not_before_unix_ms
//
// A string is a uvarint length and its bytes. A new field is a new optional
// bit (older rows lack it); TestRowCodecCoversEveryField fails when
// wire.StoredMessage gains a field this codec does not carry.
const rowMagic = 0xB1

// optional fields: strings first (by bit), then numbers.
const (
	optLeaseHolder = iota
	optLeaseExpires
	optPrivacy
	optDedupe
	optBlake3
	optSig
	optJWE
	optTaskKind
	optModel
	optSenderNode
	optTraceparent
	optLeaseToken
	optNotBefore
	optCount
)

// rowJSON is StoredMessage without its methods.
type rowJSON wire.StoredMessage

var errRowTruncated = errors.New("truncated binary row")

// optStrings lists the optional string fields with their bit.
func optStrings(m *wire.StoredMessage) [optCount]**string {
	var p [optCount]**string
	p[optLeaseHolder] = &m.LeaseHolderNodeID
	p[optPrivacy] = &m.PrivacyClass
	p[optDedupe] = &m.IdempotencyDedupeKey
	p[optBlake3] = &m.PayloadBlake3Hex
	p[optSig] = &m.WorkerEd25519SigB64
	p[optJWE] = &m.JWEPayload
	p[optTaskKind] = &m.TaskKind
	p[optModel] = &m.ModelID
	p[optSenderNode] = &m.SenderNodeID
	p[optTraceparent] = &m.Traceparent
	return p
}

func optNumbers(m *wire.StoredMessage) [optCount]**uint64 {
	var p [optCount]**uint64
	p[optLeaseExpires] = &m.LeaseExpiresUnixMs
	p[optLeaseToken] = &m.LeaseToken
	p[optNotBefore] = &m.NotBeforeUnixMs
	return p
}

// appendRow appends m's binary encoding to b.
func appendRow(b []byte, m *wire.StoredMessage) []byte {
	b = append(b, rowMagic)
	b = binary.AppendUvarint(b, m.ID)
	b = appendStr(b, m.SenderAgentID)
	b = appendStr(b, m.ReceiverAgentID)
	b = appendStr(b, m.MessageType)
	b = appendStr(b, m.Payload)
	b = binary.AppendUvarint(b, m.CreatedUnixMs)
	var flags byte
	if m.Acknowledged {
		flags |= 1
	}
	b = append(b, flags, m.Priority)
	b = appendStr(b, m.State)
	b = binary.AppendUvarint(b, uint64(m.DeliveryCount))
	strs, nums := optStrings(m), optNumbers(m)
	var present uint64
	for i := range optCount {
		if (strs[i] != nil && *strs[i] != nil) || (nums[i] != nil && *nums[i] != nil) {
			present |= 1 << i
		}
	}
	b = binary.AppendUvarint(b, present)
	for i := range optCount {
		switch {
		case present&(1<<i) == 0:
		case strs[i] != nil:
			b = appendStr(b, **strs[i])
		default:
			b = binary.AppendUvarint(b, **nums[i])
		}
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRow decodes a stored row, binary or (rows written before schema 3)
// JSON. v may be bbolt memory: nothing of it is retained.
func decodeRow(v []byte, m *wire.StoredMessage) error {
	if len(v) > 0 && v[0] == '{' {
		// Stored rows always carry priority, so StoredMessage's
		// legacy-default UnmarshalJSON (it decodes twice) is skipped.
		return json.Unmarshal(v, (*rowJSON)(m))
	}
	if len(v) == 0 || v[0] != rowMagic {
		return errors.New("neither a binary nor a JSON row")
	}
	// One string holds every string field (one allocation), and one
	// block every optional value (one more).
	d := rowDecoder{s: string(v[1:])}
	*m = wire.StoredMessage{}
	m.ID = d.uvarint()
	m.SenderAgentID = d.str()
	m.ReceiverAgentID = d.str()
	m.MessageType = d.str()
	m.Payload = d.str()
	m.CreatedUnixMs = d.uvarint()
	flags := d.byte()
	m.Acknowledged = flags&1 != 0
	m.Priority = d.byte()
	m.State = d.str()
	dc := d.uvarint()
	if dc > 1<<32-1 {
		d.err = fmt.Errorf("delivery_count %d out of range", dc)
	}
	m.DeliveryCount = uint32(dc)
	present := d.uvarint()
	if present>>optCount != 0 && d.err == nil {
		d.err = fmt.Errorf("unknown optional fields %#x (written by a newer populi-db?)", present>>optCount)
	}
	if present != 0 && d.err == nil {
		var opt struct {
			s [optCount]string
			n [optCount]uint64
		}
		p := &opt
		strs, nums := optStrings(m), optNumbers(m)
		for i := range optCount {
			if present&(1<<i) == 0 {
				continue
			}
			if strs[i] != nil {
				p.s[i] = d.str()
				*strs[i] = &p.s[i]
			} else {
				p.n[i] = d.uvarint()
				*nums[i] = &p.n[i]
			}
		}
	}
	if d.err == nil && d.i != len(d.s) {
		d.err = fmt.Errorf("%d trailing bytes", len(d.s)-d.i)
	}
	return d.err
}

type rowDecoder struct {
	s   string
	i   int
	err error
}

func (d *rowDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	var shift uint
	for j := 0; j < binary.MaxVarintLen64; j++ {
		if d.i >= len(d.s) {
			d.err = errRowTruncated
			return 0
		}
		c := d.s[d.i]
		d.i++
		if c < 0x80 {
			if j == binary.MaxVarintLen64-1 && c > 1 {
				break
			}
			return x | uint64(c)<<shift
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	d.err = errors.New("varint overflows 64 bits")
	return 0
}

func (d *rowDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if d.i >= len(d.s) {
		d.err = errRowTruncated
		return 0
	}
	d.i++
	return d.s[d.i-1]
}

func (d *rowDecoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.s)-d.i) {
		d.err = errRowTruncated
		return ""
	}
	s := d.s[d.i : d.i+int(n)]
	d.i += int(n)
	return s
}

// rowIndexFields are the only row fields indexRow reads; decoding just these
// skips allocating payloads when rebuilding from JSON rows.
type rowIndexFields struct {
	ID                 uint64  `json:"id"`
	ReceiverAgentID    string  `json:"receiver_agent_id"`
	LeaseHolderNodeID  *string `json:"lease_holder_node_id"`
	LeaseExpiresUnixMs *uint64 `json:"lease_expires_unix_ms"`
	Priority           uint8   `json:"priority"`
	TaskKind           *string `json:"task_kind"`
	State              string  `json:"state"`
	NotBeforeUnixMs    *uint64 `json:"not_before_unix_ms"`
}

// decodeRowForIndex decodes at least the fields indexRow reads.
func decodeRowForIndex(v []byte, m *wire.StoredMessage) error {
	if len(v) == 0 || v[0] != '{' {
		return decodeRow(v, m)
	}
	var f rowIndexFields
	if err := json.Unmarshal(v, &f); err != nil {
		return err
	}
	*m = wire.StoredMessage{
		ID: f.ID, ReceiverAgentID: f.ReceiverAgentID, LeaseHolderNodeID: f.LeaseHolderNodeID,
		LeaseExpiresUnixMs: f.LeaseExpiresUnixMs, Priority: f.Priority, TaskKind: f.TaskKind,
		State: f.State, NotBeforeUnixMs: f.NotBeforeUnixMs,
	}
	return nil
}
