package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
)

// ParseError names the file, line and column of what could not be read.
type ParseError struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, e.Msg)
}

// legacyFile is one file's bytes, for positions.
type legacyFile struct {
	path string
	data []byte
	// unknown counts records per unknown field name (reported, then ignored).
	unknown map[string]int
	// lineCol's memo: newlines before cacheOff.
	cacheOff  int64
	cacheLine int
}

func (f *legacyFile) lineCol(off int64) (int, int) {
	if off < 0 {
		off = 0
	}
	if off > int64(len(f.data)) {
		off = int64(len(f.data))
	}
	// Offsets mostly grow: count newlines from the last answer, not from
	// the start (a 100,000-record file asks once per record).
	if off < f.cacheOff {
		f.cacheOff, f.cacheLine = 0, 0
	}
	f.cacheLine += bytes.Count(f.data[f.cacheOff:off], []byte{'\n'})
	f.cacheOff = off
	line := f.cacheLine + 1
	col := int(off) - (bytes.LastIndexByte(f.data[:off], '\n') + 1) + 1
	return line, col
}

func (f *legacyFile) errAt(off int64, format string, args ...any) *ParseError {
	line, col := f.lineCol(off)
	return &ParseError{File: f.path, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// Line is the line of a byte offset (for reports).
func (f *legacyFile) line(off int64) int { l, _ := f.lineCol(off); return l }

// decodeErr turns a decoder error at or after base into a positioned one.
func (f *legacyFile) decodeErr(err error, base int64, fallback int64) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return f.errAt(base+syn.Offset-1, "%v", syn) // Offset is just past the bad byte
	case errors.As(err, &typ):
		return f.errAt(base+typ.Offset, "%v", typ)
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return f.errAt(int64(len(f.data)), "unexpected end of file")
	default:
		return f.errAt(fallback, "%v", err)
	}
}

// element is one array element and where it starts.
type element struct {
	raw json.RawMessage
	off int64
}

func (f *legacyFile) skipSpace(off int64) int64 {
	for off < int64(len(f.data)) {
		switch f.data[off] {
		case ' ', '\t', '\r', '\n', ',', ':':
			off++
		default:
			return off
		}
	}
	return off
}

func (f *legacyFile) expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	start := f.skipSpace(dec.InputOffset())
	tok, err := dec.Token()
	if err != nil {
		if start >= int64(len(f.data)) {
			if len(bytes.TrimSpace(f.data)) == 0 {
				return f.errAt(start, "the file is empty, expected %s", what)
			}
			return f.errAt(start, "unexpected end of file, expected %s", what)
		}
		return f.decodeErr(err, 0, start)
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return f.errAt(start, "expected %s, found %v", what, tok)
	}
	return nil
}

// array reads a JSON array at the decoder's position, element by element.
func (f *legacyFile) array(dec *json.Decoder, what string, progress func(off int64)) ([]element, error) {
	if err := f.expectDelim(dec, '[', what); err != nil {
		return nil, err
	}
	var out []element
	for dec.More() {
		start := f.skipSpace(dec.InputOffset())
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, f.decodeErr(err, start, start) // a value's syntax error counts from the value
		}
		out = append(out, element{raw, start})
		if progress != nil && len(out)%1024 == 0 {
			progress(start)
		}
	}
	if err := f.expectDelim(dec, ']', "the end of the array"); err != nil {
		return nil, err
	}
	return out, nil
}

func (f *legacyFile) end(dec *json.Decoder) error {
	off := f.skipSpace(dec.InputOffset())
	if _, err := dec.Token(); err != io.EOF {
		return f.errAt(off, "unexpected data after the end of the document")
	}
	return nil
}

// topArray reads a file that is one JSON array.
func (f *legacyFile) topArray(what string, progress func(off int64)) ([]element, error) {
	dec := json.NewDecoder(bytes.NewReader(f.data))
	els, err := f.array(dec, what, progress)
	if err != nil {
		return nil, err
	}
	return els, f.end(dec)
}

// object reads a JSON object at the top level, calling field for each key.
func (f *legacyFile) object(what string, field func(dec *json.Decoder, key string, off int64) error) error {
	dec := json.NewDecoder(bytes.NewReader(f.data))
	if err := f.expectDelim(dec, '{', what); err != nil {
		return err
	}
	for dec.More() {
		off := f.skipSpace(dec.InputOffset())
		tok, err := dec.Token()
		if err != nil {
			return f.decodeErr(err, 0, off)
		}
		key, _ := tok.(string)
		if err := field(dec, key, f.skipSpace(dec.InputOffset())); err != nil {
			return err
		}
	}
	if err := f.expectDelim(dec, '}', "the end of the object"); err != nil {
		return err
	}
	return f.end(dec)
}

// skipValue reads and discards one value, counting the key as unknown.
func (f *legacyFile) skipValue(dec *json.Decoder, key string, off int64) error {
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return f.decodeErr(err, 0, off)
	}
	f.unknownField(key)
	return nil
}

func (f *legacyFile) unknownField(name string) {
	if f.unknown == nil {
		f.unknown = map[string]int{}
	}
	f.unknown[name]++
}

// UnknownFields describes the ignored fields, sorted.
func (f *legacyFile) unknownFields() []string {
	var out []string
	for k, n := range f.unknown {
		out = append(out, fmt.Sprintf("%q (%d record(s))", k, n))
	}
	sort.Strings(out)
	return out
}

// jsonFields are a struct's JSON names.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// record decodes one element into v after checking it is an object with
// the required keys; other keys not in known are counted as unknown.
func (f *legacyFile) record(el element, v any, known map[string]bool, required []string) error {
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(el.raw, &keys); err != nil {
		return f.errAt(el.off, "expected a JSON object: %v", err)
	}
	for _, k := range required {
		if _, ok := keys[k]; !ok {
			return f.errAt(el.off, "record lacks required field %q", k)
		}
	}
	for k := range keys {
		if !known[k] {
			f.unknownField(k)
		}
	}
	if err := json.Unmarshal(el.raw, v); err != nil {
		return f.decodeErr(err, el.off, el.off)
	}
	return nil
}
