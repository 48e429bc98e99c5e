package api_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/internal/testserver"
	"populi-db/metrics"
	"populi-db/store"
	"populi-db/wire"
)

// t0 is where every fake clock starts (2026-01-01T00:00:00Z).
var t0 = time.UnixMilli(1_767_225_600_000)

// Bearer secrets used by the token-mode tests.
var testTokens = api.Tokens{Mesh: "tok-mesh", Worker: "tok-worker", Submitter: "tok-submitter", Admin: "tok-admin"}

// opts configures one test server; the zero value is open mode with
// defaults.
type opts struct {
	tokens        api.Tokens
	scope         string
	stalePruneMs  uint64
	maxMessages   int
	maxDeliveries int
	leaseTTL      time.Duration
	maxBody       int64
	bootstrap     api.Bootstrap
	reportedScope *string
	jwt           api.JWTVerifier
	jwtEnabled    bool
	attestor      api.Attestor
	limiter       api.RateLimiter
	maxWait       time.Duration
	fedMax        int
	logger        *slog.Logger     // nil = discard
	metrics       *metrics.Metrics // nil = api.New's own (the store then has no commit observer)
	metricsOpen   bool
	openAPI       []byte
}

// bundle is what a test needs: the shared in-process server (real server
// on loopback over a real db file, internal/testserver), its store and fake
// clock, and a request helper.
type bundle struct {
	t     *testing.T
	o     opts
	ts    *testserver.Server
	clock *clock.Fake
	store *store.Store // of the current incarnation
	srv   *api.Server
	url   string
	token string // default bearer; "" sends none
}

func setup(t *testing.T, o opts) *bundle {
	t.Helper()
	b := &bundle{t: t, o: o, token: o.tokens.Mesh}
	b.ts = testserver.Start(t, testserver.Options{
		Start: t0, LeaseTTL: o.leaseTTL, MaxMessages: o.maxMessages, MaxDeliveries: o.maxDeliveries,
		Tokens: o.tokens, ScopeID: o.scope, ReportedScopeID: o.reportedScope, StalePruneMs: o.stalePruneMs,
		MaxBody: o.maxBody, MaxWait: o.maxWait, Bootstrap: o.bootstrap, RateLimiter: o.limiter,
		JWT: o.jwt, JWTEnabled: o.jwtEnabled, Attestor: o.attestor, FedMaxEntries: o.fedMax,
		Log: o.logger, Metrics: o.metrics, MetricsOpen: o.metricsOpen, OpenAPI: o.openAPI,
	})
	b.clock = b.ts.Clk
	b.sync()
	return b
}

func (b *bundle) sync() { b.store, b.srv, b.url = b.ts.St, b.ts.API, b.ts.URL }

// setHandler makes the test server answer with srv from the next request.
func (b *bundle) setHandler(srv *api.Server) { b.ts.SetHandler(srv.Handler()) }

// restart stops the server and store and reopens the same db file, as a
// process restart would.
func (b *bundle) restart() {
	b.t.Helper()
	b.ts.Restart()
	b.sync()
}

// setHook calls f with each request as it arrives (nil removes it).
func (b *bundle) setHook(f func(*http.Request)) { b.ts.OnRequest(f) }

type response struct {
	status int
	header http.Header
	body   string
}

// reqOpt adjusts a request before it is sent.
type reqOpt func(*http.Request)

// as sends tok as the bearer ("" sends no Authorization header).
func as(tok string) reqOpt {
	return func(r *http.Request) {
		r.Header.Del("Authorization")
		if tok != "" {
			r.Header.Set("Authorization", "Bearer "+tok)
		}
	}
}

func withHeader(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func withoutHeader(k string) reqOpt { return func(r *http.Request) { r.Header.Del(k) } }

// do sends a request. body: nil (none), string or []byte (raw), an
// io.Reader (streamed without a length), or anything else (JSON-encoded).
func (b *bundle) do(method, path string, body any, o ...reqOpt) response {
	b.t.Helper()
	r, err := b.send(method, path, body, o...)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// send is do without failing the test, for use off the test goroutine.
func (b *bundle) send(method, path string, body any, o ...reqOpt) (response, error) {
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	case []byte:
		rd = bytes.NewReader(v)
	case io.Reader:
		rd = v
	default:
		j, err := json.Marshal(v)
		if err != nil {
			return response{}, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, b.url+path, rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if b.token != "" {
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
	for _, f := range o {
		f(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(raw)}, nil
}

func (b *bundle) post(path string, body any, o ...reqOpt) response {
	b.t.Helper()
	return b.do(http.MethodPost, path, body, o...)
}

func (b *bundle) get(path string, o ...reqOpt) response {
	b.t.Helper()
	return b.do(http.MethodGet, path, nil, o...)
}

// expect checks status and exact body; for empty bodies also that there is
// no content type.
func (r response) expect(t *testing.T, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Fatalf("got %d %q, want %d %q", r.status, r.body, status, body)
	}
	if body == "" && r.header.Get("Content-Type") != "" {
		t.Fatalf("empty %d answer has Content-Type %q", status, r.header.Get("Content-Type"))
	}
	if body != "" && status >= 400 && r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("error answer has Content-Type %q", r.header.Get("Content-Type"))
	}
}

// expectErr checks status and the exact text of a *wire.Error.
func (r response) expectErr(t *testing.T, status int, e *wire.Error) {
	t.Helper()
	r.expect(t, status, e.Message)
}

// decode checks for a 200 JSON answer and decodes it into v.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("got %d %q, want 200", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decode %q: %v", r.body, err)
	}
}

// node is a minimal valid NodeRecord body; extra fields are merged in.
func node(id string, extra ...any) map[string]any {
	m := map[string]any{"id": id, "capabilities": map[string]any{}, "version": "1.0.0", "last_seen_unix_ms": 0}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func (b *bundle) join(id string, extra ...any) wire.NodeRecord {
	b.t.Helper()
	var rec wire.NodeRecord
	b.post("/v1/populi/join", node(id, extra...)).decode(b.t, &rec)
	return rec
}

// msg is a deliverable private message (claimable by default-visibility
// nodes, SPEC 6.6 R7); extra fields are merged in.
func msg(sender, receiver string, extra ...any) map[string]any {
	m := map[string]any{"sender_agent_id": sender, "receiver_agent_id": receiver,
		"message_type": "job_submit", "payload": `{"task":"x"}`, "privacy_class": "private"}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func (b *bundle) deliver(sender, receiver string, extra ...any) uint64 {
	b.t.Helper()
	var out wire.DeliverResponse
	b.post("/v1/populi/a2a/deliver", msg(sender, receiver, extra...)).decode(b.t, &out)
	if !out.Accepted || out.MessageID == 0 {
		b.t.Fatalf("deliver answered %+v", out)
	}
	return out.MessageID
}

// inbox posts an inbox request and returns the rows.
func (b *bundle) inbox(body map[string]any, o ...reqOpt) []wire.StoredMessage {
	b.t.Helper()
	var out struct {
		Messages []wire.StoredMessage `json:"messages"`
	}
	b.post("/v1/populi/a2a/inbox", body, o...).decode(b.t, &out)
	if out.Messages == nil {
		b.t.Fatalf("messages is null, want an array")
	}
	return out.Messages
}

func (b *bundle) claim(receiver, claimer string) []wire.StoredMessage {
	b.t.Helper()
	return b.inbox(map[string]any{"receiver_agent_id": receiver, "claimer_node_id": claimer})
}

func (b *bundle) list(receiver string, extra ...any) []wire.StoredMessage {
	b.t.Helper()
	m := map[string]any{"receiver_agent_id": receiver}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return b.inbox(m)
}

func (b *bundle) nodes() []wire.NodeRecord {
	b.t.Helper()
	var reg wire.Registry
	b.get("/v1/populi/nodes").decode(b.t, &reg)
	return reg.Nodes
}

func ids(ms []wire.StoredMessage) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func nowMs(c *clock.Fake) uint64 { return uint64(c.Now().UnixMilli()) }

// eventually polls cond (the only polling in these tests) for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testserver.Eventually(t, what, cond)
}

func apiTokens(mesh, worker, submitter, admin string) api.Tokens {
	return api.Tokens{Mesh: mesh, Worker: worker, Submitter: submitter, Admin: admin}
}

func mustNode(id string) wire.NodeRecord {
	return wire.NodeRecord{ID: id, Version: "1"}
}
