package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"populi-db/store"
	"populi-db/wire"
)

// statusOf is the one table from domain error code to HTTP status. The body
// is the error's own text (SPEC Appendix B); an empty text is an empty body.
var statusOf = map[wire.Code]int{
	wire.EINVALID:      http.StatusBadRequest,
	wire.EUNAUTHORIZED: http.StatusUnauthorized,
	wire.EFORBIDDEN:    http.StatusForbidden,
	wire.ENOTFOUND:     http.StatusNotFound,
	wire.ECONFLICT:     http.StatusConflict,
	wire.EGONE:         http.StatusGone,
	wire.ETOOMANY:      http.StatusTooManyRequests,
	wire.EUNAVAILABLE:  http.StatusServiceUnavailable,
}

// httpError is an answer the HTTP layer itself gives: body decoding
// failures (SPEC 2.1 step 4), whose statuses have no domain code.
type httpError struct {
	status int
	text   string
}

func (e *httpError) Error() string { return e.text }

const (
	internalErrorText = "internal error"
	shuttingDownText  = "populi: server is shutting down"
)

// writeError answers err: a *wire.Error or *httpError with its status and
// exact text; anything else is logged with the request's context and
// answered 500 with a generic text (503 while the store is closing).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var we *wire.Error
	var he *httpError
	switch {
	case errors.As(err, &we):
		status, ok := statusOf[we.Code]
		if !ok {
			s.log.Error("domain error with unmapped code", append(logAttrs(r), "code", string(we.Code), "error", we.Error())...)
			writeText(w, http.StatusInternalServerError, internalErrorText)
			return
		}
		if we.Message == "" {
			writeEmpty(w, status)
			return
		}
		writeText(w, status, we.Message)
	case errors.As(err, &he):
		writeText(w, he.status, he.text)
	case errors.Is(err, store.ErrClosed):
		writeText(w, http.StatusServiceUnavailable, shuttingDownText)
	default:
		s.log.Error("request failed", append(logAttrs(r), "error", err.Error())...)
		writeText(w, http.StatusInternalServerError, internalErrorText)
	}
}

// writeText writes an error body: text/plain, exact text, no newline.
func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

// writeEmpty answers with no body and no content type (empty 404s, 204).
func writeEmpty(w http.ResponseWriter, status int) {
	w.Header().Del("Content-Type")
	w.WriteHeader(status)
}

// writeJSON answers 200 with v as JSON.
func writeJSON(w http.ResponseWriter, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeRawJSON(w, b)
}

// writeRawJSON answers 200 with an already encoded JSON body.
func writeRawJSON(w http.ResponseWriter, b []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// noContent answers 204.
func noContent(w http.ResponseWriter) error {
	writeEmpty(w, http.StatusNoContent)
	return nil
}
