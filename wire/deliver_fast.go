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
// row to bytes and keeps none of these strings. The pointer members'
// targets share one fastSlots, as a NodeRecord's do.
func (r *DeliverRequest) decodeFast(b []byte) bool {
	d := fastDec{b: b}
	var v DeliverRequest
	const required = 1<<0 | 1<<1 | 1<<2 | 1<<3 // sender_agent_id, receiver_agent_id, message_type, payload
	ok := d.topObject(required, func(key []byte) (f uint, ok bool) {
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
			ok = d.optStr(&v.IdempotencyKey)
		case "privacy_class":
			f = 5
			ok = d.optStr(&v.PrivacyClass)
		case "payload_blake3_hex":
			f = 6
			ok = d.optStr(&v.PayloadBlake3Hex)
		case "worker_ed25519_sig_b64":
			f = 7
			ok = d.optStr(&v.WorkerEd25519SigB64)
		case "jwe_payload":
			f = 8
			ok = d.optStr(&v.JWEPayload)
		case "priority":
			f = 9
			ok = d.optUint8(&v.Priority)
		case "task_kind":
			f = 10
			ok = d.optStr(&v.TaskKind)
		case "model_id":
			f = 11
			ok = d.optStr(&v.ModelID)
		case "traceparent":
			f = 12
			ok = d.optStr(&v.Traceparent)
		case "not_before_unix_ms":
			f = 13
			ok = d.optUint64(&v.NotBeforeUnixMs)
		default:
			// Unknown or case-variant names: encoding/json ignores or
			// folds them.
			return 0, false
		}
		return f, ok
	})
	if ok {
		*r = v
	}
	return ok
}
