package wire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

// fastDecoded is a wire type with a hand-written fast path (decodeFast),
// its encoding/json reference (unmarshalSlow) and the UnmarshalJSON that
// picks between them. The checks below are shared by every such type.
type fastDecoded[T any] interface {
	*T
	UnmarshalJSON([]byte) error
	unmarshalSlow([]byte) error
	decodeFast([]byte) bool
}

// fastSubject is one fast-path type under test: a non-zero starting value
// (both paths must replace it wholesale on success and leave it alone on
// failure) and a dump that shows pointers' targets, which %+v does not.
type fastSubject[T any] struct {
	prefilled func() T
}

func (fastSubject[T]) dump(v T) string {
	j, _ := json.Marshal(v)
	return string(j)
}

// checkSameAs decodes b with the full UnmarshalJSON and with the reference,
// from a zero and from a prefilled value, and reports any difference in
// value, error text or error type. It returns whether the fast path took
// the input, and fails if the fast path gave up after changing the value.
func checkSameAs[T any, P fastDecoded[T]](t *testing.T, s fastSubject[T], b []byte) bool {
	t.Helper()
	var zero T
	for _, start := range []T{zero, s.prefilled()} {
		got, want := start, start
		gerr := P(&got).UnmarshalJSON(b)
		werr := P(&want).unmarshalSlow(b)
		if fmt.Sprint(gerr) != fmt.Sprint(werr) || reflect.TypeOf(gerr) != reflect.TypeOf(werr) {
			t.Fatalf("%q: error %T %v, encoding/json path %T %v", b, gerr, gerr, werr, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: decoded\n%s\nencoding/json path\n%s", b, s.dump(got), s.dump(want))
		}
	}
	fast := s.prefilled()
	took := P(&fast).decodeFast(b)
	if !took && !reflect.DeepEqual(fast, s.prefilled()) {
		t.Fatalf("%q: the fast path gave up but changed the value: %s", b, s.dump(fast))
	}
	return took
}

// checkTakesGoEncoding: what a Go client sends (json.Marshal of a value
// decoded from each input) takes the fast path.
func checkTakesGoEncoding[T any, P fastDecoded[T]](t *testing.T, s fastSubject[T], inputs ...string) {
	t.Helper()
	for _, in := range inputs {
		var v T
		if err := P(&v).unmarshalSlow([]byte(in)); err != nil {
			t.Fatal(err)
		}
		enc, err := json.Marshal(&v)
		if err != nil {
			t.Fatal(err)
		}
		if !checkSameAs[T, P](t, s, enc) {
			t.Errorf("%s: the fast path did not take it", enc)
		}
	}
}

// checkCopiesStrings: the decoded strings must not share the caller's
// buffer, which the server reuses; overwrite it after decoding and compare.
func checkCopiesStrings[T any, P fastDecoded[T]](t *testing.T, s fastSubject[T], inputs ...string) {
	t.Helper()
	for _, in := range inputs {
		var want T
		if err := P(&want).unmarshalSlow([]byte(in)); err != nil {
			t.Fatal(err)
		}
		buf := []byte(in)
		var got T
		if !P(&got).decodeFast(buf) {
			t.Fatalf("%.40q...: the fast path did not take it", in)
		}
		for i := range buf {
			buf[i] = 'x'
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%.40q...: after overwriting the input the value is\n%s", in, s.dump(got))
		}
	}
}
