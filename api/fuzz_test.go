package api_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/store"
)

// FuzzPostBodies sends arbitrary bodies to every POST route: whatever the
// bytes, the answer is never a 500 (SPEC 2.1: bad input is 400/413/415/422
// or a business answer). The seeds run as a normal test.
func FuzzPostBodies(f *testing.F) {
	var posts []string
	for _, rc := range authRoutes {
		if rc.method == http.MethodPost {
			posts = append(posts, rc.path)
		}
	}
	posts = append(posts, "/v1/populi/bootstrap/exchange")
	for i := range posts {
		for _, seed := range []string{
			``, `{`, `null`, `[]`, `{}`, `"x"`, `{"id":"a","capabilities":{},"version":"1","last_seen_unix_ms":0}`,
			`{"id":"","capabilities":{"labels":null},"version":"1","last_seen_unix_ms":-1}`,
			`{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"job_result","payload":"p","payload_blake3_hex":"zz","worker_ed25519_sig_b64":"x"}`,
			`{"receiver_agent_id":"2","claimer_node_id":"a","wait_ms":0,"max_messages":18446744073709551615}`,
			`{"receiver_agent_id":"2","message_id":18446744073709551615,"claimer_node_id":"a","retry_after_ms":18446744073709551615}`,
			`{"claimer_node_id":"a","scope_key":"` + strings.Repeat("k", 3000) + `"}`,
			`{"node_id":"a","maintenance":true,"maintenance_until_unix_ms":18446744073709551615,"maintenance_for_ms":18446744073709551615}`,
			`{"lease_id":"\u0000","claimer_node_id":"\u0000"}`,
			`{"bootstrap_token":"\ud800"}`,
		} {
			f.Add(uint8(i), []byte(seed))
		}
	}
	st, err := store.Open(store.Config{Path: filepath.Join(f.TempDir(), "fuzz.db"), Clock: clock.NewFake(t0)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = st.Close() })
	srv, err := api.New(api.Config{Store: st, Bootstrap: api.Bootstrap{Token: "b"}, Tokens: api.Tokens{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := st.Join(mustNode("a")); err != nil {
		f.Fatal(err)
	}
	srv.Drain() // long polls must not wait on a fake clock that never moves
	h := srv.Handler()
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		path := posts[int(route)%len(posts)]
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		start := time.Now()
		h.ServeHTTP(rec, req)
		if d := time.Since(start); d > 2*time.Second { // a long poll must never wait here
			t.Fatalf("POST %s %q took %v", path, body, d)
		}
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("POST %s %q → %d %q", path, body, rec.Code, rec.Body.String())
		}
	})
}
