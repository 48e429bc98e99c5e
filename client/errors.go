package client

import (
	"errors"
	"fmt"
	"strings"
)

// bodySuffixMax is how much of an error body HTTPStatusError keeps.
const bodySuffixMax = 240

// HTTPStatusError is a non-2xx answer: the status, the call that got it
// (Context, e.g. "a2a_ack") and the server's text. It renders as
// `populi HTTP <status> (<context>)<suffix>`, where the suffix is
// ": <body>" (trimmed, cut at 240 bytes plus "...") or empty.
type HTTPStatusError struct {
	Status     int
	Context    string
	BodySuffix string
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("populi HTTP %d (%s)%s", e.Status, e.Context, e.BodySuffix)
}

// StatusCode is the HTTP status.
func (e *HTTPStatusError) StatusCode() int { return e.Status }

// IsHTTPStatus reports whether the status is code.
func (e *HTTPStatusError) IsHTTPStatus(code int) bool { return e.Status == code }

// Body is the server's text without the ": " prefix ("" for an empty body).
func (e *HTTPStatusError) Body() string { return strings.TrimPrefix(e.BodySuffix, ": ") }

// Transient reports whether the status is worth retrying (408, 429, 5xx).
func (e *HTTPStatusError) Transient() bool {
	return e.Status == 408 || e.Status == 429 || e.Status >= 500
}

func newStatusError(status int, context, body string) *HTTPStatusError {
	body = strings.TrimSpace(body)
	suffix := ""
	if body != "" {
		if len(body) > bodySuffixMax {
			body = body[:bodySuffixMax] + "..."
		}
		suffix = ": " + body
	}
	return &HTTPStatusError{Status: status, Context: context, BodySuffix: suffix}
}

// StatusCode returns the HTTP status carried by err, or 0 when err is not
// (and does not wrap) an *HTTPStatusError.
func StatusCode(err error) int {
	var se *HTTPStatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// IsHTTPStatus reports whether err is (or wraps) an *HTTPStatusError with
// status code.
func IsHTTPStatus(err error, code int) bool { return StatusCode(err) == code }

// TransportError is a call that got no HTTP answer: refused connection,
// timeout, reset, cancelled context, unreadable response. The request may
// or may not have been applied.
type TransportError struct {
	Context string
	Err     error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("populi transport error (%s): %v", e.Context, e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// IsTransport reports whether err is (or wraps) a *TransportError.
func IsTransport(err error) bool {
	var te *TransportError
	return errors.As(err, &te)
}
