package wire

import (
	"reflect"
	"strings"
	"testing"
)

// typicalDeliver is what the load generator sends as a delivery.
var typicalDeliver = `{"sender_agent_id":"1","receiver_agent_id":"4001","message_type":"job_submit","payload":"seq=0000000001 ts=0001796078331829000000 ` +
	strings.Repeat("x", 256) + `","idempotency_key":"lg-abc-1","privacy_class":"private"}`

// everyDeliverField sets every member.
const everyDeliverField = `{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"m","payload":"p","idempotency_key":"k","privacy_class":"pc","payload_blake3_hex":"ab12","worker_ed25519_sig_b64":"AAAA","jwe_payload":"j.w.e","priority":255,"task_kind":"embed","model_id":"mod","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","not_before_unix_ms":18446744073709551615}`

// prefilledDeliver is a non-zero starting value: both paths must replace it
// wholesale on success and leave it alone on failure.
func prefilledDeliver() DeliverRequest {
	s, s2, u8, u64 := "old", "old2", uint8(9), uint64(9)
	return DeliverRequest{
		SenderAgentID: "old", ReceiverAgentID: "old", MessageType: "old", Payload: "old",
		IdempotencyKey: &s, PrivacyClass: &s2, TaskKind: &s, Priority: &u8, NotBeforeUnixMs: &u64,
	}
}

// deliverSubject is DeliverRequest for the shared fast-path checks.
var deliverSubject = fastSubject[DeliverRequest]{prefilled: prefilledDeliver}

func checkSameDeliver(t *testing.T, b []byte) bool {
	t.Helper()
	return checkSameAs(t, deliverSubject, b)
}

// deliverDecodeCases lists inputs and whether the fast path must take them
// (fast) or must leave them to encoding/json (!fast).
func deliverDecodeCases() []struct {
	in   string
	fast bool
} {
	typ := typicalDeliver
	rep := func(old, new string) string {
		if !strings.Contains(typ, old) {
			panic("case does not apply: " + old)
		}
		return strings.Replace(typ, old, new, 1)
	}
	const minimal = `{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"m","payload":""}`
	min := func(extra string) string { return strings.TrimSuffix(minimal, "}") + "," + extra + "}" }
	all := func(extra string) string { return strings.TrimSuffix(everyDeliverField, "}") + "," + extra + "}" }
	type c = struct {
		in   string
		fast bool
	}
	return []c{
		{typ, true},
		{everyDeliverField, true},
		{minimal, true},
		{rep(`,"privacy_class":"private"`, ``), true},
		{" \t\r\n" + typ + " \n\t\r", true},
		{strings.NewReplacer(",", " , ", ":", "\n:\t", "{", "{ ", "}", " }").Replace(everyDeliverField), true},
		{`{"payload":"","message_type":"m","receiver_agent_id":"2","sender_agent_id":"1"}`, true},
		// Bodies over srcShareMax: strings are copied one by one.
		{rep(`,"idempotency_key"`, strings.Repeat(" ", srcShareMax)+`,"idempotency_key"`), true},
		{rep(`"seq=`, `"`+strings.Repeat("y", 4*srcShareMax)+`seq=`), true},
		// Every string slot used, then a duplicate: rejected after a fresh allocation.
		{all(`"idempotency_key":"again"`), false},
		{all(`"traceparent":null`), false},
		{all(`"priority":1`), false},
		{all(`"not_before_unix_ms":1`), false},
		// Nulls: optional pointers nil (also over a prefilled value); required members fall back.
		{min(`"idempotency_key":null,"privacy_class":null,"payload_blake3_hex":null,"worker_ed25519_sig_b64":null,"jwe_payload":null,"priority":null,"task_kind":null,"model_id":null,"traceparent":null,"not_before_unix_ms":null`), true},
		{min(`"priority":null`), true},
		{min(`"not_before_unix_ms":null`), true},
		{rep(`"sender_agent_id":"1"`, `"sender_agent_id":null`), false},
		{rep(`"receiver_agent_id":"4001"`, `"receiver_agent_id":null`), false},
		{rep(`"message_type":"job_submit"`, `"message_type":null`), false},
		{`{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"m","payload":null}`, false},
		// Missing required members.
		{`{}`, false},
		{` { } `, false},
		{`{"receiver_agent_id":"2","message_type":"m","payload":""}`, false},
		{`{"sender_agent_id":"1","message_type":"m","payload":""}`, false},
		{`{"sender_agent_id":"1","receiver_agent_id":"2","payload":""}`, false},
		{`{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"m"}`, false},
		{`{"idempotency_key":"k"}`, false},
		// Unknown, case-variant, escaped and duplicate names.
		{min(`"extra":1`), false},
		{min(`"extra":{"a":[1,2,{}]}`), false},
		{min(`"sender_node_id":"n"`), false},
		{`{"Sender_Agent_ID":"1","receiver_agent_id":"2","message_type":"m","payload":""}`, false},
		{`{"sender_agent_id":"1","SENDER_AGENT_ID":"3","receiver_agent_id":"2","message_type":"m","payload":""}`, false},
		{min(`"Priority":3`), false},
		{min(`"tas\u006b_kind":"x"`), false},
		{min(`"tas` + "\u212a" + `_kind":"x"`), false}, // Kelvin sign folds to k in encoding/json
		{`{"\u0073ender_agent_id":"1","receiver_agent_id":"2","message_type":"m","payload":""}`, false},
		{min(`"sender_agent_id":"9"`), false},
		{min(`"payload":"again"`), false},
		{min(`"model_id":"a","model_id":null`), false},
		{min(`"priority":1,"priority":2`), false},
		// Strings: escapes, unicode, invalid UTF-8, control characters.
		{rep(`"job_submit"`, `"job\u00e9\n\"\\\/"`), false},
		{rep(`"lg-abc-1"`, `"lg\tabc"`), false},
		{rep(`"lg-abc-1"`, `"lg\u0000abc"`), false},
		{rep(`"job_submit"`, `"jöb-日本-😀"`), true},
		{rep(`"seq=`, `"ünïcödé seq=`), true},
		{rep(`"job_submit"`, "\"j\xffb\""), false},
		{rep(`"job_submit"`, "\"j\xed\xa0\x80b\""), false},
		{rep(`"job_submit"`, "\"j\xc3\""), false},
		{rep(`"job_submit"`, "\"j\x01b\""), false},
		{rep(`"job_submit"`, "\"j\x1fb\""), false},
		{rep(`"job_submit"`, "\"j\x7fb\""), true},
		{rep(`"job_submit"`, "\"j\u2028b\""), true},
		{rep(`"private"`, `"\ud800"`), false},
		{rep(`"sender_agent_id":"1"`, `"sender_agent_id":""`), true},
		{rep(`"sender_agent_id":"1"`, `"sender_agent_id":" 1 "`), true},
		// Numbers at and past the bounds.
		{min(`"priority":0`), true},
		{min(`"priority":128`), true},
		{min(`"priority":255`), true},
		{min(`"priority":256`), false},
		{min(`"priority":1000`), false},
		{min(`"priority":99999999999999999999999`), false},
		{min(`"priority":-1`), false},
		{min(`"priority":-0`), false},
		{min(`"priority":1.0`), false},
		{min(`"priority":1e2`), false},
		{min(`"priority":01`), false},
		{min(`"priority":"1"`), false},
		{min(`"priority":true`), false},
		{min(`"not_before_unix_ms":0`), true},
		{min(`"not_before_unix_ms":1796078331829`), true},
		{min(`"not_before_unix_ms":18446744073709551615`), true},
		{min(`"not_before_unix_ms":18446744073709551616`), false},
		{min(`"not_before_unix_ms":-1`), false},
		{min(`"not_before_unix_ms":1.5`), false},
		{min(`"not_before_unix_ms":1E3`), false},
		{min(`"not_before_unix_ms":00`), false},
		{min(`"not_before_unix_ms":"5"`), false},
		// Wrong types and broken syntax.
		{rep(`"sender_agent_id":"1"`, `"sender_agent_id":1`), false},
		{rep(`"receiver_agent_id":"4001"`, `"receiver_agent_id":4001`), false},
		{rep(`"message_type":"job_submit"`, `"message_type":true`), false},
		{rep(`"message_type":"job_submit"`, `"message_type":["job_submit"]`), false},
		{rep(`"idempotency_key":"lg-abc-1"`, `"idempotency_key":{}`), false},
		{rep(`"privacy_class":"private"`, `"privacy_class":1`), false},
		{rep(`"privacy_class":"private"`, `"privacy_class":nul`), false},
		{rep(`"privacy_class":"private"`, `"privacy_class":nullx`), false},
		{min(`"priority":tru`), false},
		{rep(`"private"}`, `"private",}`), false},
		{rep(`"sender_agent_id":`, `"sender_agent_id" `), false},
		{rep(`,"receiver_agent_id"`, ` "receiver_agent_id"`), false},
		{rep(`"job_submit"`, `"job_submit`), false},
		{typ + `x`, false},
		{typ + `{}`, false},
		{typ + `}`, false},
		{typ + `,`, false},
		{typ[:len(typ)-1], false},
		{typ[:len(typ)/2], false},
		{``, false},
		{` `, false},
		{`null`, false},
		{`[]`, false},
		{`"x"`, false},
		{`1`, false},
		{`[` + typ + `]`, false},
		{"\xef\xbb\xbf" + typ, false},
	}
}

func TestDeliverRequestFastDecodeMatchesEncodingJSON(t *testing.T) {
	cases := deliverDecodeCases()
	if len(cases) < 60 {
		t.Fatalf("%d cases", len(cases))
	}
	for _, tc := range cases {
		if took := checkSameDeliver(t, []byte(tc.in)); took != tc.fast {
			t.Errorf("%q: fast path took it: %v, want %v", tc.in, took, tc.fast)
		}
	}
}

// The fast path gives up without touching *r, so a failing body leaves a
// prefilled request as it was (the encoding/json path does too).
func TestDeliverRequestDecodeErrorLeavesValue(t *testing.T) {
	for _, in := range []string{`{}`, `{"sender_agent_id":1}`, `{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"m","payload":"","priority":256}`, `{`} {
		r := prefilledDeliver()
		if err := r.UnmarshalJSON([]byte(in)); err == nil {
			t.Fatalf("%s: no error", in)
		}
		if !reflect.DeepEqual(r, prefilledDeliver()) {
			t.Fatalf("%s: the request changed to %s", in, deliverSubject.dump(r))
		}
	}
}

// What a Go client sends (json.Marshal of a request, as cli/bench.go and the
// client package do) takes the fast path.
func TestDeliverRequestFastDecodeTakesGoEncoding(t *testing.T) {
	checkTakesGoEncoding(t, deliverSubject, typicalDeliver, everyDeliverField, `{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"m","payload":""}`)
}

func TestDeliverRequestFastDecodeCopiesStrings(t *testing.T) {
	long := strings.Replace(everyDeliverField, `,"payload"`, strings.Repeat(" ", srcShareMax)+`,"payload"`, 1)
	checkCopiesStrings(t, deliverSubject, typicalDeliver, everyDeliverField, long)
}

func FuzzDeliverRequestDecode(f *testing.F) {
	for _, tc := range deliverDecodeCases() {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkSameDeliver(t, b) })
}

// FuzzDeliverRequestDecodeFields keeps the request's skeleton valid and
// fuzzes the raw text of its values, so that far more inputs reach the fast
// path's string and integer decoding than byte-level mutation of whole
// bodies does.
func FuzzDeliverRequestDecodeFields(f *testing.F) {
	f.Add("4001", "seq=0000000001 xxxx", "lg-abc-1", "128", "1796078331829", " ")
	f.Add("4\\u0030", "", "\x01", "256", "18446744073709551616", "\n")
	f.Add("日本", "\xff", "k", "-0", "01", "x")
	f.Add("1", "p", "k", "null", "null", "")
	f.Fuzz(func(t *testing.T, id, payload, key, u8, u64, space string) {
		in := `{"sender_agent_id":"` + id + `","receiver_agent_id":"` + id + `","message_type":"m","payload":"` + payload +
			`","idempotency_key":"` + key + `","priority":` + u8 + `,"not_before_unix_ms":` + u64 + space + `}`
		checkSameDeliver(t, []byte(in))
	})
}

func BenchmarkDeliverRequestDecode(b *testing.B) {
	body := []byte(typicalDeliver)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r DeliverRequest
			if err := r.UnmarshalJSON(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fallback", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var r DeliverRequest
			if err := r.unmarshalSlow(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// skipPlain's eight-at-a-time loop stops where the byte loop alone would:
// every byte value at every position of a plain run, from several offsets.
func TestSkipPlainMatchesByteLoop(t *testing.T) {
	for c := range 256 {
		for pos := range 20 {
			buf := []byte(strings.Repeat("a~ 0", 6)[:21])
			buf[pos] = byte(c)
			for start := range 4 {
				want := start
				for want < len(buf) && plainASCII[buf[want]] {
					want++
				}
				d := fastDec{b: buf, i: start}
				if d.skipPlain(); d.i != want {
					t.Fatalf("byte %#x at %d, from %d: stopped at %d, want %d", c, pos, start, d.i, want)
				}
			}
		}
	}
}
