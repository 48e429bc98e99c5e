package wire

// Deliveries (a DeliverRequest body each) fill the bench's deliver phase,
// and reflection-based encoding/json over UnmarshalJSON's aux struct was
// ~10% of server CPU under 16 delivering clients. decodeFast is a
// hand-written single-pass decoder for a delivery, on NodeRecord's fastDec
// cursor (node_fast.go).
//
// Fall-back rule: it succeeds only on well-formed input it handles with
// certainty and otherwise returns false without touching *r, so that the
// encoding/json path produces the exact value or error. It returns false on
// any syntax error; any member name that is not an exact known name (unknown
// members, case variants, names with escapes); any duplicate member; any
// string with a backslash escape, a control character or invalid UTF-8; an
// integer that is negative, fractional, has an exponent or is out of range
// (priority 0..255, not_before_unix_ms 0..2^64-1); a value of the wrong JSON
// type; null for a required member (sender_agent_id, receiver_agent_id,
// message_type, payload); a missing required member; and trailing data. On
// success the result equals what the encoding/json path gives: that path
// replaces *r wholesale (it decodes into a fresh aux value), so members
// absent from the body and optional members given as null are nil whatever
// *r held before.
//
// Memory: as for NodeRecord, a body of up to srcShareMax bytes is copied
// once and the decoded strings are slices of that copy. A delivery's body is
// mostly its payload, so the copy keeps little more alive than the members
// themselves would, and only for the request's life: the store encodes the
// row to bytes and keeps none of these strings.
func (r *DeliverRequest) decodeFast(b []byte) bool {
	d := deliverDec{fastDec: fastDec{b: b}}
	var v DeliverRequest
	var seen uint16
	d.ws()
	if !d.byte('{') {
		return false
	}
	d.ws()
	if d.byte('}') {
		return false // {} misses required members: the fallback says which.
	}
	if len(b) <= srcShareMax {
		d.src = string(b)
	}
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		var f uint
		switch string(key) {
		case "sender_agent_id":
			f = 0
			v.SenderAgentID, ok = d.str()
		case "receiver_agent_id":
			f = 1
			v.ReceiverAgentID, ok = d.str()
		case "message_type":
			f = 2
			v.MessageType, ok = d.str()
		case "payload":
			f = 3
			v.Payload, ok = d.str()
		case "idempotency_key":
			f = 4
			ok = d.ptrStr(&v.IdempotencyKey)
		case "privacy_class":
			f = 5
			ok = d.ptrStr(&v.PrivacyClass)
		case "payload_blake3_hex":
			f = 6
			ok = d.ptrStr(&v.PayloadBlake3Hex)
		case "worker_ed25519_sig_b64":
			f = 7
			ok = d.ptrStr(&v.WorkerEd25519SigB64)
		case "jwe_payload":
			f = 8
			ok = d.ptrStr(&v.JWEPayload)
		case "priority":
			f = 9
			ok = d.ptrUint8(&v.Priority)
		case "task_kind":
			f = 10
			ok = d.ptrStr(&v.TaskKind)
		case "model_id":
			f = 11
			ok = d.ptrStr(&v.ModelID)
		case "traceparent":
			f = 12
			ok = d.ptrStr(&v.Traceparent)
		case "not_before_unix_ms":
			f = 13
			ok = d.ptrUint64(&v.NotBeforeUnixMs)
		default:
			// Unknown or case-variant names: encoding/json ignores or
			// folds them.
			return false
		}
		if !ok || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		if !d.next('}') {
			return false
		}
		if d.done {
			break
		}
	}
	d.ws()
	const required = 1<<0 | 1<<1 | 1<<2 | 1<<3
	if d.i != len(b) || seen&required != required {
		return false
	}
	*r = v
	return true
}

// deliverDec is fastDec with the targets of a DeliverRequest's pointer
// members in one allocation (fastSlots is sized for a NodeRecord).
type deliverDec struct {
	fastDec
	ptrs *deliverPtrs
	used struct{ strs uint8 }
}

// deliverPtrs holds one slot per pointer member: 9 *string, 1 *uint8 and 1
// *uint64. A duplicate member, rejected after its value is read, may find
// the strings full; it then gets a fresh allocation.
type deliverPtrs struct {
	strs [9]string
	u8   uint8
	u64  uint64
}

func (d *deliverDec) targets() *deliverPtrs {
	if d.ptrs == nil {
		d.ptrs = new(deliverPtrs)
	}
	return d.ptrs
}

// ptrStr decodes a string into a pointer member; null leaves it nil.
func (d *deliverDec) ptrStr(dst **string) bool {
	if d.null() {
		return true
	}
	s, ok := d.str()
	if ok {
		p := slotFor(d.targets().strs[:], &d.used.strs)
		*p, *dst = s, p
	}
	return ok
}

// ptrUint8 and ptrUint64 have one member each: a duplicate is rejected by
// the caller, so reusing the slot cannot change an accepted result.
func (d *deliverDec) ptrUint8(dst **uint8) bool {
	if d.null() {
		return true
	}
	v, ok := d.uint(8)
	if ok {
		p := &d.targets().u8
		*p, *dst = uint8(v), p
	}
	return ok
}

func (d *deliverDec) ptrUint64(dst **uint64) bool {
	if d.null() {
		return true
	}
	v, ok := d.uint(64)
	if ok {
		p := &d.targets().u64
		*p, *dst = v, p
	}
	return ok
}
