package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
)

// Body decoding texts (SPEC 2.1 step 4). Clients branch on status only.
const (
	textUnsupportedType = "Expected request with `Content-Type: application/json`"
	textTooLarge        = "Failed to buffer the request body: length limit exceeded"
	textSyntaxPrefix    = "Failed to parse the request body as JSON: "
	textDataPrefix      = "Failed to deserialize the JSON body into the target type: "
)

// decode reads a JSON body into dst in SPEC 2.1's order: 415 wrong content
// type, 413 too large, 400 not JSON, 422 wrong types or missing fields. It
// runs before the role check, for every route with a body (serveRoute);
// limit is the route's body limit. Bad input never becomes a 500.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any, limit int64) error {
	if !isJSONContentType(r.Header.Get("Content-Type")) {
		return &httpError{http.StatusUnsupportedMediaType, textUnsupportedType}
	}
	if r.ContentLength > limit {
		return &httpError{http.StatusRequestEntityTooLarge, textTooLarge}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &httpError{http.StatusRequestEntityTooLarge, textTooLarge}
		}
		// The client went away or sent a broken body: its fault, not ours.
		return &httpError{http.StatusBadRequest, textSyntaxPrefix + err.Error()}
	}
	if err := unmarshalBody(body, dst); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return &httpError{http.StatusBadRequest, textSyntaxPrefix + err.Error()}
		}
		return &httpError{http.StatusUnprocessableEntity, textDataPrefix + err.Error()}
	}
	return nil
}

// unmarshalBody decodes body into dst. The wire types' own UnmarshalJSON
// (required members) validates and decodes the whole body itself, so it is
// called directly: json.Unmarshal would first scan the body to validate it
// and again to find the value's end before calling it (four passes instead
// of two). Errors are the same values either way: a *json.SyntaxError for
// bad JSON, anything else for a well-formed body of the wrong shape.
func unmarshalBody(body []byte, dst any) error {
	if u, ok := dst.(json.Unmarshaler); ok {
		return u.UnmarshalJSON(body)
	}
	return json.Unmarshal(body, dst)
}

// isJSONContentType accepts application/json and application/*+json, with
// or without parameters, case-insensitively.
func isJSONContentType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "application/json" {
		return true
	}
	sub, ok := strings.CutPrefix(mt, "application/")
	return ok && strings.HasSuffix(sub, "+json") && len(sub) > len("+json") && !strings.Contains(sub, "/")
}
