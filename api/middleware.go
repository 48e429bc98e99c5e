package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"populi-db/wire"
)

// Header names (SPEC 2.1, 12).
const (
	headerRequestID = "X-Request-Id"
	headerFeature   = "X-Populi-Feature"
)

type ctxKey int

const (
	ctxRole ctxKey = iota
	ctxRequestID
)

// recorder remembers the status a handler wrote, for metrics and the access
// log, and whether anything was written (so a panic can still answer 500).
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64 // body bytes written
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// withCommon is the outermost layer (SPEC 2.1 step 1, section 12): it sets
// x-request-id and x-populi-feature on every response before anything else
// can answer, counts the request, and turns a panic into a logged 500.
func (s *Server) withCommon(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(headerRequestID)
		if id == "" {
			id = newUUID()
		}
		h := w.Header()
		h.Set(headerRequestID, id)
		h.Set(headerFeature, FeatureHeader)
		rec := &recorder{ResponseWriter: w}
		r = r.WithContext(context.WithValue(r.Context(), ctxRequestID, id))
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panicked", "request_id", id, "method", r.Method, "path", r.URL.Path,
					"panic", p, "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeText(rec, http.StatusInternalServerError, internalErrorText)
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			route := s.routeLabel(r)
			s.metrics.Request(route, methodLabel(r.Method), status, d)
			// The access log: the route pattern, never the raw path or
			// query, and no header or body, so no secret can reach it.
			if s.log.Enabled(r.Context(), s.cfg.AccessLogLevel) {
				s.log.LogAttrs(r.Context(), s.cfg.AccessLogLevel, "http request",
					slog.String("request_id", id), slog.String("method", methodLabel(r.Method)),
					slog.String("route", route), slog.Int("status", status),
					slog.Float64("duration_ms", float64(d.Microseconds())/1000), slog.Int64("bytes", rec.bytes))
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// withRateLimit refuses a client IP over its budget with 429 before
// authentication (SPEC 16.14); /health is exempt.
func (s *Server) withRateLimit(next http.Handler) http.Handler {
	if s.cfg.RateLimiter == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != pathHealth && !s.cfg.RateLimiter.Allow(clientIP(r)) {
			s.metrics.RateLimited()
			s.writeError(w, r, wire.ErrTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientIP is the peer address without its port. Forwarding headers are not
// trusted: a client could set them to dodge its budget.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// routeLabel is the metric label for a request: its route path when the
// path is one of ours (no route has path parameters), else "unmatched", so
// scanners cannot blow up label cardinality.
func (s *Server) routeLabel(r *http.Request) string {
	if s.knownPaths[r.URL.Path] {
		return r.URL.Path
	}
	return "unmatched"
}

func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch,
		http.MethodHead, http.MethodOptions:
		return m
	}
	return "other"
}

func requestID(r *http.Request) string {
	id, _ := r.Context().Value(ctxRequestID).(string)
	return id
}

// newUUID returns a random (version 4) UUID from crypto/rand.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	// 8-4-4-4-12 hex digits; hex.Encode instead of fmt: one allocation.
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:36], b[10:16])
	return string(out[:])
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// logAttrs are the attributes every error log line of a request carries.
func logAttrs(r *http.Request) []any {
	return []any{slog.String("request_id", requestID(r)), slog.String("method", r.Method),
		slog.String("path", r.URL.Path)}
}
