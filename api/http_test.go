package api_test

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"populi-db/api"
	"populi-db/wire"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	// D4: no bearer needed while a token is required.
	r := b.get("/health", as(""))
	if r.status != 200 || r.body != "ok\n" || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("health: %d %q %q", r.status, r.body, r.header.Get("Content-Type"))
	}
	if r.header.Get("X-Populi-Feature") != api.FeatureHeader {
		t.Fatalf("feature header %q", r.header.Get("X-Populi-Feature"))
	}
}

func TestFeatureHeaderOnEveryAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens, maxBody: 4096})
	b.join("n1")
	big := `{"id":"` + strings.Repeat("x", 5000) + `"}`
	cases := []struct {
		name   string
		r      response
		status int
	}{
		{"200", b.get("/v1/populi/nodes"), 200},
		{"204", b.post("/v1/populi/leave", map[string]any{"id": "n1"}), 204},
		{"401", b.get("/v1/populi/nodes", as("")), 401},
		{"401 unknown path", b.get("/nope", as("")), 401},
		{"403", b.get("/v1/populi/nodes", as(testTokens.Submitter)), 403},
		{"404 unknown path", b.get("/nope"), 404},
		{"404 empty", b.post("/v1/populi/leave", map[string]any{"id": "n1"}), 404},
		{"405", b.get("/v1/populi/join"), 405},
		{"413", b.post("/v1/populi/join", big), 413},
		{"415", b.post("/v1/populi/join", "{}", withHeader("Content-Type", "text/plain")), 415},
		{"400", b.post("/v1/populi/join", "{"), 400},
		{"422", b.post("/v1/populi/join", "{}"), 422},
		{"bootstrap 404", b.post("/v1/populi/bootstrap/exchange", map[string]any{"bootstrap_token": "x"}), 404},
	}
	for _, c := range cases {
		if c.r.status != c.status {
			t.Errorf("%s: status %d (%q)", c.name, c.r.status, c.r.body)
		}
		if got := c.r.header.Get("X-Populi-Feature"); got != api.FeatureHeader {
			t.Errorf("%s: x-populi-feature %q", c.name, got)
		}
		if c.r.header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no x-request-id", c.name)
		}
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	if got := b.get("/health", withHeader("X-Request-Id", "req-123")).header.Get("X-Request-Id"); got != "req-123" {
		t.Fatalf("echoed id %q", got)
	}
	uuid4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a := b.get("/nope", as("")).header.Get("X-Request-Id") // generated on a 401 too
	c := b.get("/health").header.Get("X-Request-Id")
	if !uuid4.MatchString(a) || !uuid4.MatchString(c) || a == c {
		t.Fatalf("generated ids %q %q", a, c)
	}
}

func TestRouting(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	// D28: legacy paths do not exist; 401 beats 404 when auth is on.
	b.get("/v1/mens/nodes").expect(t, 404, "")
	b.get("/v1/mens/nodes", as("")).expect(t, 401, "unauthorized")
	b.get("/v1/populi/nodes/").expect(t, 404, "") // no trailing-slash redirect
	b.get("/V1/POPULI/NODES").expect(t, 404, "")  // no case-fixing redirect
	b.get("/v1/populi/nodes").decode(t, &wire.Registry{})

	r := b.get("/v1/populi/join")
	r.expect(t, 405, "")
	if r.header.Get("Allow") != "POST" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	r = b.post("/health", "{}", as(""))
	r.expect(t, 405, "")
	if r.header.Get("Allow") != "GET" {
		t.Fatalf("Allow %q", r.header.Get("Allow"))
	}
	b.do(http.MethodOptions, "/v1/populi/join", nil).expect(t, 405, "")
}

func TestBodyDecoding(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	const join = "/v1/populi/join"
	big := `{"id":"` + strings.Repeat("x", 600*1024) + `","capabilities":{},"version":"1","last_seen_unix_ms":0}`

	// D9: 600 KiB id → 413 with the default 512 KiB limit; also when the
	// body is streamed without a Content-Length.
	b.post(join, big).expect(t, 413, "Failed to buffer the request body: length limit exceeded")
	b.post(join, strings.NewReader(big)).expect(t, 413, "Failed to buffer the request body: length limit exceeded")
	// Authentication runs before the body is looked at.
	b.post(join, big, as("")).expect(t, 401, "unauthorized")
	// 415 wins over 413.
	b.post(join, big, withHeader("Content-Type", "text/plain")).expect(t, 415, "Expected request with `Content-Type: application/json`")

	for _, ct := range []string{"", "text/plain", "application/xml", "application/jsonx", "json"} {
		o := withHeader("Content-Type", ct)
		if ct == "" {
			o = withoutHeader("Content-Type")
		}
		b.post(join, node("n"), o).expect(t, 415, "Expected request with `Content-Type: application/json`")
	}
	for _, ct := range []string{"application/json; charset=utf-8", "Application/JSON", "application/vnd.populi+json"} {
		b.post(join, node("n"), withHeader("Content-Type", ct)).decode(t, &wire.NodeRecord{})
	}

	for _, body := range []string{"", "{", `{"id":`, `{"id":"a"} trailing`, "nul"} {
		r := b.post(join, body)
		if r.status != 400 || !strings.HasPrefix(r.body, "Failed to parse the request body as JSON: ") {
			t.Errorf("body %q: %d %q", body, r.status, r.body)
		}
	}
	for path, body := range map[string]string{
		join:                          `{}`,
		"/v1/populi/leave":            `{"id":5}`,
		"/v1/populi/heartbeat":        `[]`,
		"/v1/populi/a2a/ack":          `{"receiver_agent_id":"1","message_id":-1}`,
		"/v1/populi/a2a/lease-renew":  `{"receiver_agent_id":"1","message_id":1.5,"claimer_node_id":"n"}`,
		"/v1/populi/a2a/deliver":      `{"sender_agent_id":"1","receiver_agent_id":"2","message_type":"t","payload":"p","priority":256}`,
		"/v1/populi/a2a/inbox":        `null`,
		"/v1/populi/a2a/nack":         `{"receiver_agent_id":"1","message_id":18446744073709551616,"claimer_node_id":"n"}`,
		"/v1/populi/admin/quarantine": `{"node_id":"n","quarantined":"yes"}`,
	} {
		r := b.post(path, body)
		if r.status != 422 || !strings.HasPrefix(r.body, "Failed to deserialize the JSON body into the target type: ") {
			t.Errorf("%s %s: %d %q", path, body, r.status, r.body)
		}
	}
	// Unknown fields are ignored and not stored.
	var rec wire.NodeRecord
	b.post(join, node("n2", "surprise", true)).decode(t, &rec)
	if strings.Contains(b.get("/v1/populi/nodes").body, "surprise") {
		t.Fatal("unknown field was stored")
	}
	// Decoding comes before the role check: a submitter's bad body is 400/422, not 403.
	sub := as(testTokens.Submitter)
	if r := b.post(join, "{", sub); r.status != 400 {
		t.Fatalf("submitter malformed join: %d", r.status)
	}
	if r := b.post(join, `{"id":"x"}`, sub); r.status != 422 {
		t.Fatalf("submitter incomplete join: %d", r.status)
	}
}

func TestBodyLimitConfigured(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{maxBody: 2048})
	b.post("/v1/populi/join", node(strings.Repeat("x", 1900))).decode(t, &wire.NodeRecord{})
	b.post("/v1/populi/join", node(strings.Repeat("x", 2100))).expect(t, 413, "Failed to buffer the request body: length limit exceeded")
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	const nodes = "/v1/populi/nodes"
	// D3: a fixed token is required.
	b.get(nodes, as("")).expect(t, 401, "unauthorized")
	b.get(nodes).decode(t, &wire.Registry{})
	for name, h := range map[string]string{
		"lowercase scheme": "bearer " + testTokens.Mesh,
		"no space":         "Bearer" + testTokens.Mesh,
		"basic scheme":     "Basic " + testTokens.Mesh,
		"empty token":      "Bearer    ",
		"wrong token":      "Bearer nope",
		"prefix of token":  "Bearer tok-mes",
		"longer token":     "Bearer tok-mesh2",
		"non-ascii":        "Bearer tok-mesh\u00e9",
	} {
		if r := b.get(nodes, withHeader("Authorization", h)); r.status != 401 || r.body != "unauthorized" {
			t.Errorf("%s: %d %q", name, r.status, r.body)
		}
	}
	// The remainder is trimmed.
	b.get(nodes, withHeader("Authorization", "Bearer   "+testTokens.Worker+"  ")).decode(t, &wire.Registry{})
}

func TestOpenModeIgnoresAuthorization(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	for _, h := range []string{"", "Bearer whatever", "bearer x", "Basic Zm9vOmJhcg=="} {
		b.get("/v1/populi/exec/leases", withHeader("Authorization", h)).decode(t, &wire.ExecLeaseList{})
	}
}

// fakeJWT accepts "jwt-<role>" bearers.
type fakeJWT struct{}

func (fakeJWT) VerifyJWT(tok string) (api.Role, error) {
	switch tok {
	case "jwt-worker":
		return api.RoleWorker, nil
	case "jwt-admin":
		return api.RoleAdmin, nil
	case "jwt-odd":
		return api.RoleOpen, nil // not a role a JWT may grant
	}
	return api.RoleNone, wire.ErrUnauthorized
}

func TestJWTSeam(t *testing.T) {
	t.Parallel()
	// A JWT secret alone turns open mode off.
	b := setup(t, opts{jwt: fakeJWT{}, jwtEnabled: true})
	b.get("/v1/populi/nodes", as("")).expect(t, 401, "unauthorized")
	b.get("/v1/populi/nodes", as("jwt-worker")).decode(t, &wire.Registry{})
	b.get("/v1/populi/exec/leases", as("jwt-worker")).expect(t, 403, "populi: mesh/admin bearer required for exec lease list")
	b.get("/v1/populi/exec/leases", as("jwt-admin")).decode(t, &wire.ExecLeaseList{})
	b.get("/v1/populi/nodes", as("jwt-odd")).expect(t, 401, "unauthorized")
	b.get("/v1/populi/nodes", as("jwt-bogus")).expect(t, 401, "unauthorized")

	// Opaque tokens are tried first; with no verifier a non-matching bearer is 401.
	c := setup(t, opts{tokens: testTokens})
	c.get("/v1/populi/nodes", as("jwt-worker")).expect(t, 401, "unauthorized")
}

// countLimiter admits the first n requests.
type countLimiter struct {
	n    int64
	seen atomic.Int64
	ips  atomic.Value
}

func (l *countLimiter) Allow(ip string) bool {
	l.ips.Store(ip)
	return l.seen.Add(1) <= l.n
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	lim := &countLimiter{n: 2}
	b := setup(t, opts{tokens: testTokens, limiter: lim})
	b.get("/v1/populi/nodes").decode(t, &wire.Registry{})
	b.get("/v1/populi/nodes", as("")).expect(t, 401, "unauthorized")
	// Over budget: 429 before authentication, with the feature header.
	r := b.get("/v1/populi/nodes", as(""))
	r.expect(t, 429, "too many requests")
	if r.header.Get("X-Populi-Feature") != api.FeatureHeader {
		t.Fatal("429 lacks x-populi-feature")
	}
	b.get("/health").expect(t, 200, "ok\n") // exempt
	if ip, _ := lim.ips.Load().(string); ip != "127.0.0.1" {
		t.Fatalf("limiter saw client ip %q", ip)
	}
}

func TestStoreClosedIsNot500(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{})
	if err := b.store.Close(); err != nil {
		t.Fatal(err)
	}
	b.post("/v1/populi/join", node("n")).expect(t, 503, "populi: server is shutting down")
}

type panicAttestor struct{}

func (panicAttestor) VerifyDelivery(*wire.DeliverRequest) error { panic("boom") }

type brokenJWT struct{}

func (brokenJWT) VerifyJWT(string) (api.Role, error) {
	return api.RoleNone, errors.New("replay guard: disk on fire")
}

// Internal failures are logged and answered 500 with a generic text, never
// with the internal detail, and the server keeps serving.
func TestInternalErrors(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{attestor: panicAttestor{}})
	r := b.post(pathDeliver, msg("1", "2", "message_type", "job_result", "payload_blake3_hex", "a", "worker_ed25519_sig_b64", "b"))
	r.expect(t, 500, "internal error")
	if r.header.Get("X-Populi-Feature") != api.FeatureHeader {
		t.Fatal("500 lacks x-populi-feature")
	}
	b.deliver("1", "2")

	c := setup(t, opts{tokens: testTokens, jwt: brokenJWT{}, jwtEnabled: true})
	c.get("/v1/populi/nodes", as("not-a-token")).expect(t, 500, "internal error")
	c.get("/v1/populi/nodes").decode(t, &wire.Registry{})
}
