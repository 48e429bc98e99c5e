package store

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"populi-db/wire"
)

// fullRow sets every field of StoredMessage by reflection, each to a value
// distinct from its zero, so a field the codec drops shows up as a diff.
func fullRow(t testing.TB) wire.StoredMessage {
	var m wire.StoredMessage
	v := reflect.ValueOf(&m).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		name := v.Type().Field(i).Name
		switch {
		case f.Kind() == reflect.String:
			f.SetString("s-" + name)
		case f.Kind() == reflect.Bool:
			f.SetBool(true)
		case f.CanUint():
			f.SetUint(uint64(100 + i))
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.String:
			s := "p-" + name
			f.Set(reflect.ValueOf(&s))
		case f.Kind() == reflect.Pointer && f.Type().Elem().Kind() == reflect.Uint64:
			n := uint64(1<<40 + i)
			f.Set(reflect.ValueOf(&n))
		default:
			t.Fatalf("StoredMessage.%s has kind %s: teach fullRow and the row codec about it", name, f.Type())
		}
	}
	return m
}

func TestRowCodecCoversEveryField(t *testing.T) {
	m := fullRow(t)
	var got wire.StoredMessage
	if err := decodeRow(appendRow(nil, &m), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatalf("binary round trip lost fields:\n got %+v\nwant %+v", got, m)
	}
	// Every optional field alone, and none.
	strs, nums := optStrings(&m), optNumbers(&m)
	for i := range optCount {
		one := wire.StoredMessage{ID: 7, State: wire.StateReady, Priority: 3}
		os, on := optStrings(&one), optNumbers(&one)
		if strs[i] != nil {
			*os[i] = *strs[i]
		} else {
			*on[i] = *nums[i]
		}
		var back wire.StoredMessage
		if err := decodeRow(appendRow(nil, &one), &back); err != nil || !reflect.DeepEqual(back, one) {
			t.Fatalf("optional field %d alone: err %v, got %+v want %+v", i, err, back, one)
		}
	}
}

// Rows written before schema 3 are JSON and decode to the same message.
func TestRowCodecReadsJSONRows(t *testing.T) {
	m := fullRow(t)
	js, err := json.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	var got, idx wire.StoredMessage
	if err := decodeRow(js, &got); err != nil || !reflect.DeepEqual(got, m) {
		t.Fatalf("JSON row: err %v\n got %+v\nwant %+v", err, got, m)
	}
	if err := decodeRowForIndex(js, &idx); err != nil || idx.ID != m.ID || *idx.TaskKind != *m.TaskKind || *idx.NotBeforeUnixMs != *m.NotBeforeUnixMs {
		t.Fatalf("JSON row for the index: err %v, got %+v", err, idx)
	}
}

func TestRowCodecRefusesDamage(t *testing.T) {
	m := fullRow(t)
	b := appendRow(nil, &m)
	for n := range len(b) {
		var got wire.StoredMessage
		if err := decodeRow(b[:n], &got); err == nil {
			t.Fatalf("a row cut to %d of %d bytes decoded", n, len(b))
		}
	}
	var got wire.StoredMessage
	for _, bad := range [][]byte{append(append([]byte{}, b...), 0), {rowMagic, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, []byte("x")} {
		if err := decodeRow(bad, &got); err == nil {
			t.Fatalf("%x decoded", bad)
		}
	}
	// An optional-field bit this binary does not know: refused by name.
	unknown := appendRow(nil, &wire.StoredMessage{ID: 1})
	unknown[len(unknown)-1] = 0x80
	unknown = append(unknown, 0x40) // bit 13
	if err := decodeRow(unknown, &got); err == nil || !strings.Contains(err.Error(), "newer populi-db") {
		t.Fatalf("unknown optional field: %v", err)
	}
}

func FuzzDecodeRow(f *testing.F) {
	m := fullRow(f)
	f.Add(appendRow(nil, &m))
	f.Add(appendRow(nil, &wire.StoredMessage{ID: 1, State: wire.StateReady}))
	js, _ := json.Marshal(&m)
	f.Add(js)
	f.Fuzz(func(t *testing.T, b []byte) {
		var got wire.StoredMessage
		if decodeRow(b, &got) != nil || len(b) == 0 || b[0] != rowMagic {
			return
		}
		var again wire.StoredMessage
		if err := decodeRow(appendRow(nil, &got), &again); err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("re-encoded row does not round-trip: %v", err)
		}
	})
}

// BenchmarkRowCodec compares the binary row encoding with the JSON one it
// replaced, on a claimed row with a 256-byte payload (the bench's shape).
func BenchmarkRowCodec(b *testing.B) {
	holder, exp, token, key := "node-1", uint64(1796063576951), uint64(42), "lg-run-123"
	m := wire.StoredMessage{ID: 123456, SenderAgentID: "1", ReceiverAgentID: "1001", MessageType: "job_submit",
		Payload: strings.Repeat("x", 256), CreatedUnixMs: 1796063570000, Priority: 128, State: wire.StateLeased,
		DeliveryCount: 1, LeaseHolderNodeID: &holder, LeaseExpiresUnixMs: &exp, LeaseToken: &token, IdempotencyDedupeKey: &key}
	js, _ := json.Marshal(&m)
	bin := appendRow(nil, &m)
	b.Run("json-decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got wire.StoredMessage
			if err := json.Unmarshal(js, (*rowJSON)(&got)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary-decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var got wire.StoredMessage
			if err := decodeRow(bin, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("json-encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(&m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("binary-encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = appendRow(make([]byte, 0, 96+len(m.Payload)), &m)
		}
	})
	b.Logf("sizes: json %d bytes, binary %d bytes", len(js), len(bin))
}
