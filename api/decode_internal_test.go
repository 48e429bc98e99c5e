package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"populi-db/wire"
)

// unmarshalBody calls the wire types' UnmarshalJSON directly; it must answer
// exactly what json.Unmarshal answers (same value, same error text, same
// syntax/data classification), for good and bad bodies alike.
func TestUnmarshalBodyMatchesJSONUnmarshal(t *testing.T) {
	bodies := []string{
		``, ` `, `null`, `{}`, `[]`, `"x"`, `{"a":1}`, `{"a":1} x`, `{"a":`, `{"a":1}}`,
		`{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"t","payload":"p"}`,
		`{"sender_agent_id":"1","receiver_agent_id":2,"message_type":"t","payload":"p"}`,
		`{"receiver_agent_id":"2","message_id":7,"lease_token":3}`,
		`{"receiver_agent_id":"2","message_id":-7}`,
		`{"receiver_agent_id":"2","claimer_node_id":"n","max_messages":1}`,
		`{"id":"n","capabilities":{},"version":"1","last_seen_unix_ms":0}`,
		`{"id":"n","capabilities":[],"version":"1","last_seen_unix_ms":0}`,
		` {"receiver_agent_id":"2","message_id":7}` + "\n",
	}
	types := []any{
		wire.DeliverRequest{}, wire.InboxRequest{}, wire.AckRequest{}, wire.LeaseRenewRequest{},
		wire.NackRequest{}, wire.NodeRecord{}, wire.LeaveRequest{}, wire.ExecGrantRequest{},
		wire.MaintenanceRequest{}, wire.AnnounceRequest{},
	}
	for _, proto := range types {
		typ := reflect.TypeOf(proto)
		if _, ok := reflect.New(typ).Interface().(json.Unmarshaler); !ok {
			t.Fatalf("%s has no UnmarshalJSON: the direct path is not exercised", typ)
		}
		for _, body := range bodies {
			want, got := reflect.New(typ).Interface(), reflect.New(typ).Interface()
			werr := json.Unmarshal([]byte(body), want)
			gerr := unmarshalBody([]byte(body), got)
			if fmt.Sprint(werr) != fmt.Sprint(gerr) {
				t.Errorf("%s %q: error %v, json.Unmarshal says %v", typ, body, gerr, werr)
			}
			var ws, gs *json.SyntaxError
			if (werr != nil && errors.As(werr, &ws)) != (gerr != nil && errors.As(gerr, &gs)) {
				t.Errorf("%s %q: syntax classification differs: %v vs %v", typ, body, gerr, werr)
			}
			if werr == nil && !reflect.DeepEqual(want, got) {
				t.Errorf("%s %q: decoded %+v, json.Unmarshal %+v", typ, body, got, want)
			}
		}
	}
}
