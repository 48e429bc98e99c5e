package security_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/security"
	"populi-db/store"
)

// httpT0 is where every fake clock of these tests starts, on a whole second
// (2030-01-01T00:00:00Z).
var httpT0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// Secrets of the HTTP tests. Each is distinctive so a leak is easy to grep.
const (
	meshTok      = "mesh-tok-4f1c9a7e2b"
	workerTok    = "worker-tok-8d3e6b1a5c"
	submitterTok = "submitter-tok-2a9f7c4e1d"
	adminTok     = "admin-tok-6b5d3a8f0e"
	jwtSecret    = "jwt-hmac-secret-9e8d7c6b5a4f3e2d"
	bootTok      = "boot-tok-1f2e3d4c5b6a7980"
)

var allTokens = api.Tokens{Mesh: meshTok, Worker: workerTok, Submitter: submitterTok, Admin: adminTok}

// srvOpts configures one server under test. The zero value is open mode.
type srvOpts struct {
	tokens        api.Tokens
	jwtSecret     string // "" = JWT bearers disabled
	verifyKey     string // passed to security.NewAttestor; "" = no key
	bootstrap     api.Bootstrap
	reportedScope *string
	replayCap     int          // store.Config.ReplayCapacity; 0 = default
	logger        *slog.Logger // nil = discard
}

// env is one populi-db server over loopback HTTP, backed by a real store in
// a temp dir, with one fake clock shared by store, api and security.
type env struct {
	t    *testing.T
	o    srvOpts
	path string
	clk  *clock.Fake
	st   *store.Store
	srv  *api.Server
	hs   *httptest.Server
}

func newEnv(t *testing.T, o srvOpts) *env {
	t.Helper()
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	e := &env{t: t, o: o, path: filepath.Join(t.TempDir(), "populi.db"), clk: clock.NewFake(httpT0)}
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *env) start() {
	e.t.Helper()
	st, err := store.Open(store.Config{Path: e.path, Clock: e.clk, Logger: e.o.logger, ReplayCapacity: e.o.replayCap})
	if err != nil {
		e.t.Fatalf("open store: %v", err)
	}
	cfg := api.Config{
		Store: st, Logger: e.o.logger, Tokens: e.o.tokens,
		Bootstrap: e.o.bootstrap, ReportedScopeID: e.o.reportedScope,
		JWT:        security.NewJWTVerifier(e.o.jwtSecret, st, e.clk, security.WithJWTLogger(e.o.logger)),
		JWTEnabled: strings.TrimSpace(e.o.jwtSecret) != "",
		Attestor:   security.NewAttestor(e.o.verifyKey, e.o.logger),
	}
	srv, err := api.New(cfg)
	if err != nil {
		e.t.Fatalf("api.New: %v", err)
	}
	e.st, e.srv = st, srv
	e.hs = httptest.NewServer(srv.Handler())
}

func (e *env) stop() {
	if e.hs == nil {
		return
	}
	e.srv.Drain()
	e.hs.Close()
	if err := e.st.Close(); err != nil {
		e.t.Errorf("close store: %v", err)
	}
	e.hs = nil
}

// restart closes server and store and reopens the same db file with a new
// verifier and server, as a process restart does.
func (e *env) restart() {
	e.t.Helper()
	e.stop()
	e.start()
}

type resp struct {
	status int
	header http.Header
	body   string
}

// send issues one request with the Authorization header set to auth
// verbatim ("" sends none). body: nil (none), string (raw JSON) or anything
// else (JSON-encoded). It does not fail the test, so goroutines may use it.
func (e *env) send(method, path, auth string, body any) (resp, error) {
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return resp{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.hs.URL+path, rd)
	if err != nil {
		return resp{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		return resp{}, err
	}
	defer r.Body.Close()
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return resp{}, err
	}
	return resp{status: r.StatusCode, header: r.Header, body: string(raw)}, nil
}

// do sends bearer as `Authorization: Bearer <bearer>` ("" sends none).
func (e *env) do(t *testing.T, method, path, bearer string, body any) resp {
	t.Helper()
	auth := ""
	if bearer != "" {
		auth = "Bearer " + bearer
	}
	return e.doAuth(t, method, path, auth, body)
}

// doAuth sends auth as the raw Authorization header value.
func (e *env) doAuth(t *testing.T, method, path, auth string, body any) resp {
	t.Helper()
	r, err := e.send(method, path, auth, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// expect checks status and exact body; error bodies must be text/plain.
func (r resp) expect(t *testing.T, what string, status int, body string) {
	t.Helper()
	if r.status != status || r.body != body {
		t.Fatalf("%s: got %d %q, want %d %q", what, r.status, r.body, status, body)
	}
	if status >= 400 && body != "" && r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("%s: error answer has Content-Type %q", what, r.header.Get("Content-Type"))
	}
}

// expectStatus checks the status only (success bodies are JSON).
func (r resp) expectStatus(t *testing.T, what string, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %d %q, want %d", what, r.status, r.body, status)
	}
}

// Route paths exercised by the tests, one per role class (SPEC 3.5).
const (
	pathNodes     = "/v1/populi/nodes"
	pathDeliver   = "/v1/populi/a2a/deliver"
	pathInbox     = "/v1/populi/a2a/inbox"
	pathLeases    = "/v1/populi/exec/leases"
	pathBootstrap = "/v1/populi/bootstrap/exchange"
)

// deliverBody is a valid delivery; extra key/value pairs are merged in.
func deliverBody(extra ...any) map[string]any {
	m := map[string]any{"sender_agent_id": "1", "receiver_agent_id": "2",
		"message_type": "job_submit", "payload": `{"task":"x"}`}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

// mint returns a fresh, single-use HS256 JWT for role expiring in 10 min on
// the env's clock.
func (e *env) mint(t *testing.T, role string) string {
	t.Helper()
	tok, err := security.MintJWT(jwtSecret, role, "", e.clk.Now().Add(10*time.Minute))
	if err != nil {
		t.Fatalf("MintJWT(%q): %v", role, err)
	}
	return tok
}

// claims returns role/jti/exp claims (fresh jti, exp in 10 min).
func (e *env) claims(role string) map[string]any {
	return map[string]any{"role": role, "jti": security.NewToken(), "exp": e.clk.Now().Add(10 * time.Minute).Unix()}
}

var hs256Header = map[string]any{"alg": "HS256", "typ": "JWT"}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return b
}

// signHMAC builds a JWT with the given header and claims, signed with HMAC
// over secret using hash h (sha256.New for a genuine HS256 token).
func signHMAC(t *testing.T, h func() hash.Hash, secret string, header, claims any) string {
	t.Helper()
	in := b64url(mustJSON(t, header)) + "." + b64url(mustJSON(t, claims))
	m := hmac.New(h, []byte(secret))
	m.Write([]byte(in))
	return in + "." + b64url(m.Sum(nil))
}

// hs256 signs claims as a genuine HS256 token under jwtSecret.
func hs256(t *testing.T, claims any) string {
	t.Helper()
	return signHMAC(t, sha256.New, jwtSecret, hs256Header, claims)
}

// notAPoint returns 32 bytes that are not the encoding of any Ed25519 curve
// point: y small, sign bit clear, and (y²-1)/(d·y²+1) a non-square mod p.
func notAPoint(t *testing.T) []byte {
	t.Helper()
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	// d = -121665/121666 mod p
	d := new(big.Int).Mul(big.NewInt(-121665), new(big.Int).ModInverse(big.NewInt(121666), p))
	d.Mod(d, p)
	half := new(big.Int).Rsh(new(big.Int).Sub(p, big.NewInt(1)), 1)
	one := big.NewInt(1)
	for y := int64(2); y < 1000; y++ {
		yy := new(big.Int).Mul(big.NewInt(y), big.NewInt(y))
		u := new(big.Int).Sub(yy, one)
		v := new(big.Int).Add(new(big.Int).Mul(d, yy), one)
		v.Mod(v, p)
		x2 := new(big.Int).Mul(u, new(big.Int).ModInverse(v, p))
		x2.Mod(x2, p)
		if x2.Sign() != 0 && new(big.Int).Exp(x2, half, p).Cmp(one) != 0 {
			b := make([]byte, 32)
			b[0], b[1] = byte(y), byte(y>>8)
			return b
		}
	}
	t.Fatal("no non-point found")
	return nil
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a slog
// handler shared by request goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
