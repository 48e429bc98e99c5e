package api_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"populi-db/api"
	"populi-db/store"
)

// BenchmarkRequestOverhead is the per-request cost of the metrics and the
// access log, on an authenticated GET that touches no store
// (GET /openapi.yaml), in process: "quiet" has the access line filtered
// out by level (as at --access-log-level debug); "logged" writes it as JSON
// to io.Discard. Both count the request and observe its latency.
func BenchmarkRequestOverhead(b *testing.B) {
	st, err := store.Open(store.Config{Path: filepath.Join(b.TempDir(), "p.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	for _, tc := range []struct {
		name  string
		level slog.Level
	}{{"quiet", slog.LevelDebug}, {"logged", slog.LevelInfo}} {
		b.Run(tc.name, func(b *testing.B) {
			log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
			srv, err := api.New(api.Config{Store: st, Logger: log, AccessLogLevel: tc.level,
				Tokens: testTokens, OpenAPI: []byte("openapi: 3.1.0\n")})
			if err != nil {
				b.Fatal(err)
			}
			h := srv.Handler()
			req := httptest.NewRequest(http.MethodGet, "/openapi.yaml", nil)
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
	}
}
