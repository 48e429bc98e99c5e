package wire

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MeshDirectoryEntry is one mesh in the federation directory (SPEC 2.20),
// fields in the wire order. The nullable fields are pointers: nil is
// written as null (always emitted), and null or absent on input is nil.
type MeshDirectoryEntry struct {
	ScopeID             string     `json:"scope_id"`
	ControlURL          string     `json:"control_url"`
	RegionLabel         *string    `json:"region_label"`
	TaskKinds           []TaskKind `json:"task_kinds"`
	Public              bool       `json:"public"`
	CurrentQueueDepth   *uint64    `json:"current_queue_depth"`
	SupportedPriorities *ByteList  `json:"supported_priorities"`
	Signature           *ByteList  `json:"signature"`
	PublicKey           *ByteList  `json:"public_key"` // exactly 32 bytes when present
}

// PublicKeySize is the length public_key must have on input (a 422
// otherwise, as a wrong-length fixed array is a type error).
const PublicKeySize = 32

func (e *MeshDirectoryEntry) UnmarshalJSON(b []byte) error {
	var aux struct {
		ScopeID             *string     `json:"scope_id"`
		ControlURL          *string     `json:"control_url"`
		RegionLabel         *string     `json:"region_label"`
		TaskKinds           *[]TaskKind `json:"task_kinds"`
		Public              *bool       `json:"public"`
		CurrentQueueDepth   *uint64     `json:"current_queue_depth"`
		SupportedPriorities *ByteList   `json:"supported_priorities"`
		Signature           *ByteList   `json:"signature"`
		PublicKey           *ByteList   `json:"public_key"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ScopeID == nil:
		return missing("scope_id")
	case aux.ControlURL == nil:
		return missing("control_url")
	case aux.TaskKinds == nil:
		return missing("task_kinds")
	case aux.Public == nil:
		return missing("public")
	case aux.PublicKey != nil && len(*aux.PublicKey) != PublicKeySize:
		return fmt.Errorf("invalid length %d for `public_key`, expected an array of length %d", len(*aux.PublicKey), PublicKeySize)
	}
	*e = MeshDirectoryEntry{
		ScopeID: *aux.ScopeID, ControlURL: *aux.ControlURL, RegionLabel: aux.RegionLabel,
		TaskKinds: *aux.TaskKinds, Public: *aux.Public, CurrentQueueDepth: aux.CurrentQueueDepth,
		SupportedPriorities: aux.SupportedPriorities, Signature: aux.Signature, PublicKey: aux.PublicKey,
	}
	return nil
}

// MarshalJSON writes the canonical form (AppendCanonical).
func (e MeshDirectoryEntry) MarshalJSON() ([]byte, error) { return e.AppendCanonical(nil), nil }

// SigningBytes is what an announcement signature covers (SPEC 2.20): the
// canonical JSON of the entry with signature and public_key set to null.
func (e MeshDirectoryEntry) SigningBytes() []byte {
	e.Signature, e.PublicKey = nil, nil
	return e.AppendCanonical(nil)
}

// AppendCanonical appends the entry's compact JSON as the original's
// serializer writes it: keys in field order, nullable keys always present,
// no whitespace, no HTML escaping; strings escape only '"', '\' and control
// characters (\b \t \n \f \r, else \u00xx). Signatures are checked over
// these exact bytes, so encoding/json, which escapes <, >, & and U+2028/9,
// is not used.
func (e MeshDirectoryEntry) AppendCanonical(b []byte) []byte {
	b = append(b, `{"scope_id":`...)
	b = appendString(b, e.ScopeID)
	b = append(b, `,"control_url":`...)
	b = appendString(b, e.ControlURL)
	b = append(b, `,"region_label":`...)
	if e.RegionLabel == nil {
		b = append(b, "null"...)
	} else {
		b = appendString(b, *e.RegionLabel)
	}
	b = append(b, `,"task_kinds":[`...)
	for i, k := range e.TaskKinds {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, string(k))
	}
	b = append(b, `],"public":`...)
	b = strconv.AppendBool(b, e.Public)
	b = append(b, `,"current_queue_depth":`...)
	if e.CurrentQueueDepth == nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendUint(b, *e.CurrentQueueDepth, 10)
	}
	b = append(b, `,"supported_priorities":`...)
	b = e.SupportedPriorities.appendJSON(b)
	b = append(b, `,"signature":`...)
	b = e.Signature.appendJSON(b)
	b = append(b, `,"public_key":`...)
	b = e.PublicKey.appendJSON(b)
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c >= 0x20:
			b = append(b, c)
		case c == '\b':
			b = append(b, `\b`...)
		case c == '\t':
			b = append(b, `\t`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '\f':
			b = append(b, `\f`...)
		case c == '\r':
			b = append(b, `\r`...)
		default:
			const hex = "0123456789abcdef"
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
	}
	return append(b, '"')
}

// ByteList is a byte string written as a JSON array of numbers 0-255 (not
// base64, which is what encoding/json does with []byte).
type ByteList []byte

func (l *ByteList) appendJSON(b []byte) []byte {
	if l == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, v := range *l {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(v), 10)
	}
	return append(b, ']')
}

func (l ByteList) MarshalJSON() ([]byte, error) { return l.appendJSON(nil), nil }

func (l *ByteList) UnmarshalJSON(b []byte) error {
	if t := strings.TrimLeft(string(b), " \t\r\n"); t == "" || t[0] != '[' {
		// encoding/json would take a base64 string for []byte.
		return &json.UnmarshalTypeError{Value: "non-array", Type: reflect.TypeFor[ByteList]()}
	}
	var nums []uint8 // a JSON array decodes element by element: 0-255 only
	if err := json.Unmarshal(b, &nums); err != nil {
		return err
	}
	if nums == nil {
		nums = []uint8{}
	}
	*l = nums
	return nil
}

// AnnounceRequest is the body of POST /v1/populi/federation/announce.
type AnnounceRequest struct {
	Entry MeshDirectoryEntry `json:"entry"`
}

func (r *AnnounceRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		Entry *MeshDirectoryEntry `json:"entry"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.Entry == nil {
		return missing("entry")
	}
	r.Entry = *aux.Entry
	return nil
}

// FederationDirectory is the answer of both federation routes: every
// known entry, in announcement order.
type FederationDirectory struct {
	Entries []MeshDirectoryEntry `json:"entries"`
}
