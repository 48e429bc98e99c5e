package security_test

// Tests of the security features over real loopback HTTP (issue 3): a real
// api.Server over a real store file, with JWT verifier and attestor from
// this package and one fake clock shared by all three. Expiry is reached by
// advancing the fake clock, never by sleeping.

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/zeebo/blake3"

	"populi-db/api"
	"populi-db/security"
)

const unauthorized = "unauthorized"

// TestHTTPRoleMatrix checks one route of each role class (SPEC 3.5) for
// every role, presented as an opaque bearer, as a minted JWT (fresh jti per
// request), and as a JWT whose role claim is spelled in another case.
func TestHTTPRoleMatrix(t *testing.T) {
	t.Parallel()
	e := newEnv(t, srvOpts{tokens: allTokens, jwtSecret: jwtSecret})
	type routeCase struct {
		class, method, path string
		body                any
		allowed             map[string]bool
		denied              string
	}
	routes := []routeCase{
		{"worker-plane", http.MethodGet, pathNodes, nil,
			map[string]bool{"mesh": true, "worker": true, "admin": true},
			"populi: worker/mesh/admin token required for node list"},
		{"deliver", http.MethodPost, pathDeliver, deliverBody(),
			map[string]bool{"mesh": true, "submitter": true, "admin": true},
			"populi: submitter/mesh/admin token required for a2a/deliver"},
		{"admin", http.MethodGet, pathLeases, nil,
			map[string]bool{"mesh": true, "admin": true},
			"populi: mesh/admin bearer required for exec lease list"},
	}
	opaque := map[string]string{"mesh": meshTok, "worker": workerTok, "submitter": submitterTok, "admin": adminTok}
	bearers := []struct {
		kind string
		tok  func(t *testing.T, role string) string
	}{
		{"opaque", func(_ *testing.T, role string) string { return opaque[role] }},
		{"jwt", e.mint},
		{"jwt-titlecase-role", func(t *testing.T, role string) string {
			return hs256(t, e.claims(strings.ToUpper(role[:1])+role[1:])) // "Worker"
		}},
		{"jwt-upper-padded-role", func(t *testing.T, role string) string {
			return hs256(t, e.claims(" "+strings.ToUpper(role)+"\t")) // " WORKER\t"
		}},
	}
	for _, b := range bearers {
		for _, role := range []string{"mesh", "worker", "submitter", "admin"} {
			for _, rc := range routes {
				name := fmt.Sprintf("%s/%s/%s", b.kind, role, rc.class)
				t.Run(name, func(t *testing.T) {
					r := e.do(t, rc.method, rc.path, b.tok(t, role), rc.body)
					if rc.allowed[role] {
						r.expectStatus(t, name, http.StatusOK)
						if ct := r.header.Get("Content-Type"); ct != "application/json" {
							t.Fatalf("%s: Content-Type %q", name, ct)
						}
					} else {
						r.expect(t, name, http.StatusForbidden, rc.denied)
					}
				})
			}
		}
	}
}

// TestHTTPJWTRefusals: every way a JWT bearer fails is 401 `unauthorized`
// over HTTP (SPEC 3.4), while the near-miss that the spec allows is 200.
func TestHTTPJWTRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, jwtSecret: jwtSecret})
	now := func() int64 { return e.clk.Now().Unix() }
	with := func(c map[string]any, kv ...any) map[string]any {
		for i := 0; i+1 < len(kv); i += 2 {
			c[kv[i].(string)] = kv[i+1]
		}
		return c
	}
	without := func(c map[string]any, k string) map[string]any { delete(c, k); return c }
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	refused := []struct {
		name string
		tok  func(t *testing.T) string
	}{
		{"wrong secret", func(t *testing.T) string {
			return signHMAC(t, sha256.New, "not-the-secret", hs256Header, e.claims("worker"))
		}},
		{"alg none, empty signature", func(t *testing.T) string {
			return b64url(mustJSON(t, map[string]any{"alg": "none", "typ": "JWT"})) + "." +
				b64url(mustJSON(t, e.claims("worker"))) + "."
		}},
		{"alg none, HMAC signature", func(t *testing.T) string {
			return signHMAC(t, sha256.New, jwtSecret, map[string]any{"alg": "none", "typ": "JWT"}, e.claims("worker"))
		}},
		{"HS384", func(t *testing.T) string {
			return signHMAC(t, sha512.New384, jwtSecret, map[string]any{"alg": "HS384", "typ": "JWT"}, e.claims("worker"))
		}},
		{"HS512", func(t *testing.T) string {
			return signHMAC(t, sha512.New, jwtSecret, map[string]any{"alg": "HS512", "typ": "JWT"}, e.claims("worker"))
		}},
		{"RS256 header, HMAC-SHA256 signature (alg confusion)", func(t *testing.T) string {
			return signHMAC(t, sha256.New, jwtSecret, map[string]any{"alg": "RS256", "typ": "JWT"}, e.claims("worker"))
		}},
		{"RS256, real RSA signature", func(t *testing.T) string {
			s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(e.claims("worker"))).SignedString(rsaKey)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"expired beyond leeway (exp = now-61s)", func(t *testing.T) string {
			return hs256(t, with(e.claims("worker"), "exp", now()-61))
		}},
		{"aud string", func(t *testing.T) string { return hs256(t, with(e.claims("worker"), "aud", "populi")) }},
		{"aud array", func(t *testing.T) string { return hs256(t, with(e.claims("worker"), "aud", []string{"populi"})) }},
		{"aud empty string", func(t *testing.T) string { return hs256(t, with(e.claims("worker"), "aud", "")) }},
		{"missing jti", func(t *testing.T) string { return hs256(t, without(e.claims("worker"), "jti")) }},
		{"missing role", func(t *testing.T) string { return hs256(t, without(e.claims("worker"), "role")) }},
		{"missing exp", func(t *testing.T) string { return hs256(t, without(e.claims("worker"), "exp")) }},
		{"blank jti", func(t *testing.T) string { return hs256(t, with(e.claims("worker"), "jti", "   ")) }},
		{"numeric jti", func(t *testing.T) string { return hs256(t, with(e.claims("worker"), "jti", 12345)) }},
		{"numeric role", func(t *testing.T) string { return hs256(t, with(e.claims("worker"), "role", 2)) }},
		{"string exp", func(t *testing.T) string {
			return hs256(t, with(e.claims("worker"), "exp", fmt.Sprint(now()+600)))
		}},
		{"fractional exp", func(t *testing.T) string {
			return hs256(t, with(e.claims("worker"), "exp", float64(now()+600)+0.5))
		}},
		{"negative exp", func(t *testing.T) string { return hs256(t, with(e.claims("worker"), "exp", -1)) }},
		{"unknown role", func(t *testing.T) string { return hs256(t, e.claims("root")) }},
		{"empty role", func(t *testing.T) string { return hs256(t, e.claims("")) }},
		{"tampered claims", func(t *testing.T) string {
			good := strings.Split(hs256(t, e.claims("worker")), ".")
			return good[0] + "." + b64url(mustJSON(t, e.claims("admin"))) + "." + good[2]
		}},
		{"two segments", func(t *testing.T) string {
			return strings.Join(strings.Split(e.mint(t, "worker"), ".")[:2], ".")
		}},
		{"not a JWT", func(*testing.T) string { return "definitely-not-a-jwt" }},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			e.do(t, http.MethodGet, pathNodes, c.tok(t), nil).expect(t, c.name, http.StatusUnauthorized, unauthorized)
		})
	}

	accepted := []struct {
		name string
		tok  func(t *testing.T) string
	}{
		{"expired within leeway (exp = now-59s)", func(t *testing.T) string {
			return hs256(t, with(e.claims("worker"), "exp", now()-59))
		}},
		{"expired exactly at leeway (exp = now-60s)", func(t *testing.T) string {
			return hs256(t, with(e.claims("worker"), "exp", now()-60))
		}},
		{"nbf and iat in the future are ignored", func(t *testing.T) string {
			return hs256(t, with(e.claims("worker"), "nbf", now()+3600, "iat", now()+3600))
		}},
		{"issuer is not checked", func(t *testing.T) string {
			return hs256(t, with(e.claims("worker"), "iss", "someone"))
		}},
	}
	for _, c := range accepted {
		t.Run(c.name, func(t *testing.T) {
			e.do(t, http.MethodGet, pathNodes, c.tok(t), nil).expectStatus(t, c.name, http.StatusOK)
		})
	}

	t.Run("Bearer prefix is case-sensitive", func(t *testing.T) {
		e.doAuth(t, http.MethodGet, pathNodes, "bearer "+e.mint(t, "worker"), nil).
			expect(t, "lowercase bearer", http.StatusUnauthorized, unauthorized)
	})
	t.Run("no bearer", func(t *testing.T) {
		e.do(t, http.MethodGet, pathNodes, "", nil).expect(t, "no bearer", http.StatusUnauthorized, unauthorized)
	})
	t.Run("opaque mesh token still works", func(t *testing.T) {
		for i := 0; i < 3; i++ { // opaque tokens are not single-use
			e.do(t, http.MethodGet, pathLeases, meshTok, nil).expectStatus(t, "mesh token", http.StatusOK)
		}
	})
}

// TestHTTPJWTReplay is D26: a worker JWT lists nodes once; the identical
// second request is 401, on any route.
func TestHTTPJWTReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, jwtSecret: jwtSecret})
	tok := e.mint(t, "worker")
	e.do(t, http.MethodGet, pathNodes, tok, nil).expectStatus(t, "first use", http.StatusOK)
	e.do(t, http.MethodGet, pathNodes, tok, nil).expect(t, "replay", http.StatusUnauthorized, unauthorized)
	e.do(t, http.MethodPost, pathInbox, tok, map[string]any{"receiver_agent_id": "2"}).
		expect(t, "replay on another route", http.StatusUnauthorized, unauthorized)

	// A token used inside its leeway stays spent until it can no longer verify.
	c := e.claims("worker")
	c["exp"] = e.clk.Now().Unix()
	edge := hs256(t, c)
	e.do(t, http.MethodGet, pathNodes, edge, nil).expectStatus(t, "edge first use", http.StatusOK)
	e.clk.Advance(59 * time.Second)
	e.do(t, http.MethodGet, pathNodes, edge, nil).expect(t, "replay inside leeway", http.StatusUnauthorized, unauthorized)
	e.clk.Advance(time.Second)
	e.do(t, http.MethodGet, pathNodes, edge, nil).expect(t, "replay at leeway edge", http.StatusUnauthorized, unauthorized)

	// A JWT with an unknown role spends its jti (SPEC 3.4 step 8 note)...
	jti := security.NewToken()
	root := e.claims("root")
	root["jti"] = jti
	e.do(t, http.MethodGet, pathNodes, hs256(t, root), nil).expect(t, "unknown role", http.StatusUnauthorized, unauthorized)
	w := e.claims("worker")
	w["jti"] = jti
	e.do(t, http.MethodGet, pathNodes, hs256(t, w), nil).expect(t, "jti spent by unknown role", http.StatusUnauthorized, unauthorized)

	// ...but a forged token (wrong secret) never reaches the replay guard, so
	// it cannot burn a jti.
	jti = security.NewToken()
	f := e.claims("worker")
	f["jti"] = jti
	e.do(t, http.MethodGet, pathNodes, signHMAC(t, sha256.New, "forger", hs256Header, f), nil).
		expect(t, "forged", http.StatusUnauthorized, unauthorized)
	g := e.claims("worker")
	g["jti"] = jti
	e.do(t, http.MethodGet, pathNodes, hs256(t, g), nil).expectStatus(t, "jti not burnt by forgery", http.StatusOK)
}

// TestHTTPJWTReplayAfterRestart: the replay guard is durable; closing and
// reopening server and store on the same file does not reopen the hole.
func TestHTTPJWTReplayAfterRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, jwtSecret: jwtSecret})
	tok := e.mint(t, "worker")
	unused := e.mint(t, "admin")
	e.do(t, http.MethodGet, pathNodes, tok, nil).expectStatus(t, "first use", http.StatusOK)
	e.restart()
	e.do(t, http.MethodGet, pathNodes, tok, nil).expect(t, "replay after restart", http.StatusUnauthorized, unauthorized)
	e.do(t, http.MethodGet, pathLeases, unused, nil).expectStatus(t, "unused token minted before restart", http.StatusOK)
	e.do(t, http.MethodGet, pathNodes, e.mint(t, "worker"), nil).expectStatus(t, "fresh token after restart", http.StatusOK)
	e.restart()
	e.do(t, http.MethodGet, pathLeases, unused, nil).expect(t, "second replay after second restart", http.StatusUnauthorized, unauthorized)
}

// TestHTTPJWTReplayTableFull: under a flood of distinct JWTs the guard
// refuses (401) rather than forgetting, and frees room by time only.
func TestHTTPJWTReplayTableFull(t *testing.T) {
	t.Parallel()
	e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, jwtSecret: jwtSecret, replayCap: 3})
	short := func() string {
		c := e.claims("worker")
		c["exp"] = e.clk.Now().Add(10 * time.Second).Unix()
		return hs256(t, c)
	}
	first := short()
	e.do(t, http.MethodGet, pathNodes, first, nil).expectStatus(t, "jwt 1", http.StatusOK)
	e.do(t, http.MethodGet, pathNodes, short(), nil).expectStatus(t, "jwt 2", http.StatusOK)
	e.do(t, http.MethodGet, pathNodes, short(), nil).expectStatus(t, "jwt 3", http.StatusOK)
	e.do(t, http.MethodGet, pathNodes, short(), nil).expect(t, "jwt 4 (table full)", http.StatusUnauthorized, unauthorized)
	e.do(t, http.MethodGet, pathNodes, first, nil).expect(t, "replay while full", http.StatusUnauthorized, unauthorized)
	e.do(t, http.MethodGet, pathNodes, meshTok, nil).expectStatus(t, "opaque bearer unaffected", http.StatusOK)
	// Entries purge at max(exp, now)+60s = t0+70s; one second later there is room.
	e.clk.Advance(71 * time.Second)
	e.do(t, http.MethodGet, pathNodes, short(), nil).expectStatus(t, "after purge time", http.StatusOK)
}

// TestHTTPOpaqueCheckedFirst: a bearer equal to a configured opaque token
// gets that token's role and is never treated as a (single-use) JWT, even
// when it is a valid JWT for another role.
func TestHTTPOpaqueCheckedFirst(t *testing.T) {
	t.Parallel()
	adminJWT, err := security.MintJWT(jwtSecret, "admin", "", httpT0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok, Worker: adminJWT}, jwtSecret: jwtSecret})
	for i := 0; i < 2; i++ {
		e.do(t, http.MethodGet, pathLeases, adminJWT, nil).
			expect(t, "opaque worker (not JWT admin) on admin route", http.StatusForbidden, "populi: mesh/admin bearer required for exec lease list")
		e.do(t, http.MethodGet, pathNodes, adminJWT, nil).expectStatus(t, "opaque worker reused", http.StatusOK)
		e.do(t, http.MethodGet, pathLeases, meshTok, nil).expectStatus(t, "mesh token with JWT enabled", http.StatusOK)
	}
}

// --- bootstrap exchange (SPEC 4 with 16.5) ---

const (
	bootMesh  = "mesh-unit-token"
	bootScope = "scope-unit"
)

func bootEnv(t *testing.T, mutate func(*srvOpts)) *env {
	t.Helper()
	scope := bootScope
	o := srvOpts{
		tokens:        api.Tokens{Mesh: bootMesh},
		bootstrap:     api.Bootstrap{Token: bootTok, ExpiresUnixMs: uint64(httpT0.Add(time.Hour).UnixMilli())},
		reportedScope: &scope,
	}
	if mutate != nil {
		mutate(&o)
	}
	return newEnv(t, o)
}

func (e *env) exchange(t *testing.T, token string) resp {
	t.Helper()
	return e.do(t, http.MethodPost, pathBootstrap, "", map[string]any{"bootstrap_token": token})
}

const (
	bootConsumed = "bootstrap token already consumed"
	bootExpired  = "bootstrap token expired"
	bootInvalid  = "invalid bootstrap token"
)

// expectExchanged checks a 200 exchange carrying the mesh token and scope.
func (r resp) expectExchanged(t *testing.T, what, mesh string, scope *string) {
	t.Helper()
	r.expectStatus(t, what, http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q", what, ct)
	}
	var out struct {
		MeshToken *string         `json:"mesh_token"`
		ScopeID   json.RawMessage `json:"scope_id"`
	}
	if err := json.Unmarshal([]byte(r.body), &out); err != nil {
		t.Fatalf("%s: decode %q: %v", what, r.body, err)
	}
	if out.MeshToken == nil || *out.MeshToken != mesh {
		t.Fatalf("%s: mesh_token in %q, want %q", what, r.body, mesh)
	}
	want := "null"
	if scope != nil {
		want = string(mustJSON(t, *scope))
	}
	if string(out.ScopeID) != want {
		t.Fatalf("%s: scope_id %s in %q, want %s", what, out.ScopeID, r.body, want)
	}
}

func TestHTTPBootstrap(t *testing.T) {
	t.Parallel()
	scope := bootScope

	t.Run("D10 exchange once then 410", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		e.exchange(t, bootTok).expectExchanged(t, "first", bootMesh, &scope)
		e.exchange(t, bootTok).expect(t, "second", http.StatusGone, bootConsumed)
		e.exchange(t, "wrong").expect(t, "wrong after consumed", http.StatusGone, bootConsumed)
	})
	t.Run("no scope reports null", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, func(o *srvOpts) { o.reportedScope = nil })
		e.exchange(t, bootTok).expectExchanged(t, "exchange", bootMesh, nil)
	})
	t.Run("presented token is trimmed", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		e.exchange(t, "  "+bootTok+"\t").expectExchanged(t, "padded token", bootMesh, &scope)
	})
	t.Run("unauthenticated route ignores bearers", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		e.do(t, http.MethodPost, pathBootstrap, "garbage-bearer", map[string]any{"bootstrap_token": bootTok}).
			expectExchanged(t, "with a bad bearer", bootMesh, &scope)
	})
	t.Run("wrong token does not consume", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		e.exchange(t, "wrong").expect(t, "wrong", http.StatusUnauthorized, bootInvalid)
		e.exchange(t, bootTok[:len(bootTok)-1]).expect(t, "prefix of the token", http.StatusUnauthorized, bootInvalid)
		e.exchange(t, "").expect(t, "empty", http.StatusUnauthorized, bootInvalid)
		e.exchange(t, bootTok).expectExchanged(t, "right after wrong", bootMesh, &scope)
		e.exchange(t, bootTok).expect(t, "after success", http.StatusGone, bootConsumed)
	})
	t.Run("failure cap", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		for i := 0; i < 5; i++ {
			e.exchange(t, fmt.Sprintf("wrong-%d", i)).expect(t, fmt.Sprintf("wrong #%d", i+1), http.StatusUnauthorized, bootInvalid)
		}
		e.exchange(t, bootTok).expect(t, "right after 5 failures", http.StatusGone, bootConsumed)
		e.exchange(t, "wrong").expect(t, "wrong after cap", http.StatusGone, bootConsumed)
	})
	t.Run("failure count survives restart", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		for i := 0; i < 3; i++ {
			e.exchange(t, "wrong").expect(t, "wrong before restart", http.StatusUnauthorized, bootInvalid)
		}
		e.restart()
		for i := 0; i < 2; i++ {
			e.exchange(t, "wrong").expect(t, "wrong after restart", http.StatusUnauthorized, bootInvalid)
		}
		e.exchange(t, bootTok).expect(t, "right after 3+2 failures", http.StatusGone, bootConsumed)
	})
	t.Run("expiry in the past at startup", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, func(o *srvOpts) { o.bootstrap.ExpiresUnixMs = uint64(httpT0.Add(-time.Second).UnixMilli()) })
		e.exchange(t, bootTok).expect(t, "past expiry", http.StatusGone, bootExpired)
		e.exchange(t, "wrong").expect(t, "wrong, past expiry", http.StatusGone, bootExpired)
	})
	t.Run("expiry reached on the clock", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		e.exchange(t, "wrong").expect(t, "wrong before expiry", http.StatusUnauthorized, bootInvalid)
		e.clk.Advance(time.Hour + time.Millisecond)
		e.exchange(t, bootTok).expect(t, "right after expiry", http.StatusGone, bootExpired)
	})
	t.Run("expiry instant itself is still valid", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		e.clk.Advance(time.Hour) // now == expiry; expired only when now > expiry
		e.exchange(t, bootTok).expectExchanged(t, "at expiry", bootMesh, &scope)
	})
	t.Run("consumed state survives restart", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		e.exchange(t, bootTok).expectExchanged(t, "first", bootMesh, &scope)
		e.restart()
		e.exchange(t, bootTok).expect(t, "after restart", http.StatusGone, bootConsumed)
	})
	t.Run("not configured", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, func(o *srvOpts) { o.bootstrap = api.Bootstrap{} })
		e.exchange(t, bootTok).expect(t, "disabled", http.StatusNotFound, "bootstrap exchange is not enabled")
		e.exchange(t, "").expect(t, "disabled, empty token", http.StatusNotFound, "bootstrap exchange is not enabled")
	})
	t.Run("missing VOX_MESH_TOKEN", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, func(o *srvOpts) { o.tokens = api.Tokens{Worker: workerTok} })
		e.exchange(t, bootTok).expect(t, "no mesh token", http.StatusServiceUnavailable, "server missing VOX_MESH_TOKEN")
		e.exchange(t, bootTok).expect(t, "no mesh token again (not consumed)", http.StatusServiceUnavailable, "server missing VOX_MESH_TOKEN")
		e.exchange(t, "wrong").expect(t, "wrong token is still 401", http.StatusUnauthorized, bootInvalid)
	})
	t.Run("hands out the mesh token, never another role's", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, func(o *srvOpts) { o.tokens = allTokens })
		r := e.exchange(t, bootTok)
		r.expectExchanged(t, "all tokens configured", meshTok, &scope)
		for _, s := range []string{workerTok, submitterTok, adminTok, bootTok} {
			if strings.Contains(r.body, s) {
				t.Fatalf("exchange body %q contains a secret other than the mesh token", r.body)
			}
		}
		e.do(t, http.MethodGet, pathNodes, meshTok, nil).expectStatus(t, "returned token works", http.StatusOK)
	})
	t.Run("race of 50 right tokens", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		got := race(t, e, 50, func(int) string { return bootTok })
		if got[200] != 1 || got[410] != 49 || len(got) != 2 {
			t.Fatalf("statuses %v, want exactly one 200 and 49 410", got)
		}
	})
	t.Run("race of 50 wrong tokens", func(t *testing.T) {
		t.Parallel()
		e := bootEnv(t, nil)
		got := race(t, e, 50, func(i int) string { return fmt.Sprintf("wrong-%d", i) })
		if got[401] != 5 || got[410] != 45 || len(got) != 2 {
			t.Fatalf("statuses %v, want exactly five 401 (the cap) and 45 410", got)
		}
		e.exchange(t, bootTok).expect(t, "right after the race", http.StatusGone, bootConsumed)
	})
}

// race fires n concurrent exchanges released together and counts statuses;
// every body must be the text its status implies.
func race(t *testing.T, e *env, n int, token func(i int) string) map[int]int {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[int]int{}
	var errs []string
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := e.send(http.MethodPost, pathBootstrap, "", map[string]any{"bootstrap_token": token(i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, err.Error())
				return
			case r.status == http.StatusGone && r.body != bootConsumed,
				r.status == http.StatusUnauthorized && r.body != bootInvalid:
				errs = append(errs, fmt.Sprintf("%d %q", r.status, r.body))
			case r.status == http.StatusOK && !strings.Contains(r.body, bootMesh):
				errs = append(errs, fmt.Sprintf("200 without the mesh token: %q", r.body))
			}
			got[r.status]++
		}()
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("race: %v", errs)
	}
	return got
}

// --- result attestation (SPEC 6.8) ---

const okPayload = `{"status":"ok"}`

type attestKeys struct {
	pub    ed25519.PublicKey
	priv   ed25519.PrivateKey
	digest [32]byte
	d, s   string // hex digest and std-base64 signature of okPayload
}

func newAttestKeys(t *testing.T) attestKeys {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := attestKeys{pub: pub, priv: priv, digest: blake3.Sum256([]byte(okPayload))}
	k.d = hex.EncodeToString(k.digest[:])
	k.s = base64.StdEncoding.EncodeToString(ed25519.Sign(priv, k.digest[:]))
	return k
}

// attested is a job_result delivery of okPayload carrying d and s (a nil
// pointer omits the field); extra pairs are merged in.
func attested(d, s *string, extra ...any) map[string]any {
	m := deliverBody("message_type", "job_result", "payload", okPayload)
	if d != nil {
		m["payload_blake3_hex"] = *d
	}
	if s != nil {
		m["worker_ed25519_sig_b64"] = *s
	}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	return m
}

func sp(s string) *string { return &s }

const (
	attPair     = "populi: payload_blake3_hex and worker_ed25519_sig_b64 must both be set or both omitted"
	attType     = "populi: attestation fields are only allowed for job_result and job_fail"
	attNoKey    = "populi: VOX_MESH_WORKER_RESULT_VERIFY_KEY is not configured (required when attestation is present)"
	attBadKey   = "populi: invalid configured worker verify key"
	attHex      = "invalid payload_blake3_hex"
	attHexLen   = "payload_blake3_hex must represent 32 bytes (64 hex chars)"
	attMismatch = "populi: payload_blake3_hex does not match payload"
	attSigB64   = "populi: invalid worker_ed25519_sig_b64"
	attSigLen   = "populi: Ed25519 signature must be 64 bytes"
	attSigBad   = "populi: worker_ed25519_sig_b64 verification failed"
)

func TestHTTPAttestation(t *testing.T) {
	t.Parallel()
	k := newAttestKeys(t)
	e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, verifyKey: hex.EncodeToString(k.pub)})
	post := func(t *testing.T, body any) resp {
		t.Helper()
		return e.do(t, http.MethodPost, pathDeliver, meshTok, body)
	}

	t.Run("D27 valid attestation", func(t *testing.T) {
		post(t, attested(sp(k.d), sp(k.s))).expectStatus(t, "signed job_result", http.StatusOK)
	})
	t.Run("valid variants", func(t *testing.T) {
		for name, body := range map[string]map[string]any{
			"job_fail":                   attested(sp(k.d), sp(k.s), "message_type", "job_fail"),
			"message type case+space":    attested(sp(k.d), sp(k.s), "message_type", "  JOB_Result "),
			"upper-case digest hex":      attested(sp(strings.ToUpper(k.d)), sp(k.s)),
			"no attestation, job_result": attested(nil, nil),
			"no attestation, any type":   attested(nil, nil, "message_type", "job_submit"),
			"blank fields count absent":  attested(sp("  "), sp("\t")),
		} {
			post(t, body).expectStatus(t, name, http.StatusOK)
		}
	})
	t.Run("row stores the untrimmed fields", func(t *testing.T) {
		d, s := " "+k.d+" ", "\t"+k.s
		post(t, attested(sp(d), sp(s), "receiver_agent_id", "77")).expectStatus(t, "padded fields", http.StatusOK)
		lr := e.do(t, http.MethodPost, pathInbox, meshTok, map[string]any{"receiver_agent_id": "77"})
		lr.expectStatus(t, "list", http.StatusOK)
		var out struct {
			Messages []struct {
				D *string `json:"payload_blake3_hex"`
				S *string `json:"worker_ed25519_sig_b64"`
			} `json:"messages"`
		}
		if err := json.Unmarshal([]byte(lr.body), &out); err != nil {
			t.Fatal(err)
		}
		if len(out.Messages) != 1 || out.Messages[0].D == nil || *out.Messages[0].D != d ||
			out.Messages[0].S == nil || *out.Messages[0].S != s {
			t.Fatalf("stored row %s, want digest %q and signature %q verbatim", lr.body, d, s)
		}
	})

	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherDigest := blake3.Sum256([]byte("something else"))
	flipped, _ := base64.StdEncoding.DecodeString(k.s)
	flipped[40] ^= 1
	urlSafe := []byte(k.s)
	urlSafe[0] = '-' // not in the standard alphabet
	sigOver := func(msg []byte) string { return base64.StdEncoding.EncodeToString(ed25519.Sign(k.priv, msg)) }
	rejects := []struct {
		name   string
		body   map[string]any
		status int
		text   string
	}{
		{"only digest", attested(sp(k.d), nil), 400, attPair},
		{"only signature", attested(nil, sp(k.s)), 400, attPair},
		{"digest and blank signature", attested(sp(k.d), sp("   ")), 400, attPair},
		{"type job_submit", attested(sp(k.d), sp(k.s), "message_type", "job_submit"), 400, attType},
		{"type job_results", attested(sp(k.d), sp(k.s), "message_type", "job_results"), 400, attType},
		{"digest not hex", attested(sp(strings.Repeat("zz", 32)), sp(k.s)), 400, attHex},
		{"digest odd length", attested(sp(k.d[:63]), sp(k.s)), 400, attHex},
		{"digest 31 bytes", attested(sp(k.d[:62]), sp(k.s)), 400, attHexLen},
		{"digest 33 bytes", attested(sp(k.d+"00"), sp(k.s)), 400, attHexLen},
		{"digest of another payload", attested(sp(hex.EncodeToString(otherDigest[:])), sp(k.s)), 400, attMismatch},
		{"digest right, payload changed", attested(sp(k.d), sp(k.s), "payload", `{"status":"OK"}`), 400, attMismatch},
		{"signature not base64", attested(sp(k.d), sp("!!!not-base64!!!")), 400, attSigB64},
		{"signature unpadded base64", attested(sp(k.d), sp(strings.TrimRight(k.s, "="))), 400, attSigB64},
		{"signature with a url-safe character", attested(sp(k.d), sp(string(urlSafe))), 400, attSigB64},
		{"signature 63 bytes", attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(flipped[:63]))), 400, attSigLen},
		{"signature 65 bytes", attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(append(flipped, 0)))), 400, attSigLen},
		{"signature by another key", attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(ed25519.Sign(otherPriv, k.digest[:])))), 400, attSigBad},
		{"signature bit flipped", attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(flipped))), 400, attSigBad},
		{"signature over the hex string", attested(sp(k.d), sp(sigOver([]byte(k.d)))), 400, attSigBad},
		{"signature over the payload", attested(sp(k.d), sp(sigOver([]byte(okPayload)))), 400, attSigBad},
		{"zero signature", attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(make([]byte, 64)))), 400, attSigBad},
	}
	for _, c := range rejects {
		t.Run(c.name, func(t *testing.T) {
			post(t, c.body).expect(t, c.name, c.status, c.text)
		})
	}
}

// TestHTTPAttestationKeyConfig covers the configured-key side of SPEC 6.8:
// accepted encodings, no (or undecodable) key → 503, a key that is not a
// curve point → 400, a small-order key verifies nothing.
func TestHTTPAttestationKeyConfig(t *testing.T) {
	t.Parallel()
	k := newAttestKeys(t)
	deliver := func(t *testing.T, e *env, body any) resp {
		t.Helper()
		return e.do(t, http.MethodPost, pathDeliver, meshTok, body)
	}
	good := attested(sp(k.d), sp(k.s))

	accepted := map[string]string{
		"hex lower":            hex.EncodeToString(k.pub),
		"hex upper":            strings.ToUpper(hex.EncodeToString(k.pub)),
		"base64 std":           base64.StdEncoding.EncodeToString(k.pub),
		"hex, padded by space": "  " + hex.EncodeToString(k.pub) + "\n",
	}
	for name, key := range accepted {
		t.Run("key "+name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, verifyKey: key})
			deliver(t, e, good).expectStatus(t, name, http.StatusOK)
			wrong := attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(make([]byte, 64))))
			deliver(t, e, wrong).expect(t, name+", bad signature", 400, attSigBad)
		})
	}

	// Undecodable keys disable verification: attested deliveries get 503.
	disabled := map[string]string{
		"not configured":     "",
		"blank":              "   ",
		"63 hex chars":       hex.EncodeToString(k.pub)[:63],
		"hex of 31 bytes":    hex.EncodeToString(k.pub[:31]),
		"base64 of 31 bytes": base64.StdEncoding.EncodeToString(k.pub[:31]),
		"unpadded base64":    base64.RawStdEncoding.EncodeToString(k.pub),
		"garbage":            "not-a-key",
	}
	for name, key := range disabled {
		t.Run("key "+name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, verifyKey: key})
			deliver(t, e, good).expect(t, name, http.StatusServiceUnavailable, attNoKey)
			// D27 first half: zero digest + zero signature, no key → 503.
			zero := attested(sp(strings.Repeat("0", 64)), sp(base64.StdEncoding.EncodeToString(make([]byte, 64))))
			deliver(t, e, zero).expect(t, name+", zero attestation", http.StatusServiceUnavailable, attNoKey)
			// Shape rules need no key and come first.
			deliver(t, e, attested(sp(k.d), nil)).expect(t, name+", only digest", 400, attPair)
			deliver(t, e, attested(sp(k.d), sp(k.s), "message_type", "job_submit")).expect(t, name+", wrong type", 400, attType)
			deliver(t, e, attested(nil, nil)).expectStatus(t, name+", unattested", http.StatusOK)
		})
	}

	t.Run("key not a curve point", func(t *testing.T) {
		t.Parallel()
		np := notAPoint(t)
		for _, key := range []string{hex.EncodeToString(np), base64.StdEncoding.EncodeToString(np)} {
			e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, verifyKey: key})
			deliver(t, e, good).expect(t, "non-point key", 400, attBadKey)
			deliver(t, e, attested(sp("zz"), sp("!!"))).expect(t, "non-point key before digest checks", 400, attBadKey)
			deliver(t, e, attested(sp(k.d), nil)).expect(t, "non-point key, only digest", 400, attPair)
			deliver(t, e, attested(sp(k.d), sp(k.s), "message_type", "job_submit")).expect(t, "non-point key, wrong type", 400, attType)
		}
	})

	t.Run("small-order key", func(t *testing.T) {
		t.Parallel()
		identity := make([]byte, 32)
		identity[0] = 1 // the neutral point (0, 1)
		e := newEnv(t, srvOpts{tokens: api.Tokens{Mesh: meshTok}, verifyKey: hex.EncodeToString(identity)})
		// R = identity, S = 0 satisfies [S]B = R + [k]A for A = identity:
		// a cofactorless check alone would accept it for any message.
		sig := append(append([]byte(nil), identity...), make([]byte, 32)...)
		deliver(t, e, attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(sig)))).expect(t, "identity key", 400, attSigBad)
	})
}

// TestHTTPSecretHygiene drives a mix of good and bad requests against a
// server with every secret configured and its logger at debug, then greps
// the logs and every response for each secret and minted JWT.
func TestHTTPSecretHygiene(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	k := newAttestKeys(t)
	scope := "scope-hygiene"
	e := newEnv(t, srvOpts{
		tokens: allTokens, jwtSecret: jwtSecret, verifyKey: hex.EncodeToString(k.pub),
		bootstrap:     api.Bootstrap{Token: bootTok, ExpiresUnixMs: uint64(httpT0.Add(time.Hour).UnixMilli())},
		reportedScope: &scope, logger: logger,
	})

	secrets := []string{meshTok, workerTok, submitterTok, adminTok, jwtSecret, bootTok}
	var seen []resp

	record := func(r resp) resp { seen = append(seen, r); return r }
	jwtFor := func(role string) string {
		tok := e.mint(t, role)
		secrets = append(secrets, tok, strings.Split(tok, ".")[2])
		return tok
	}

	// Opaque bearers: good, near misses, wrong scheme.
	record(e.do(t, http.MethodGet, pathNodes, workerTok, nil)).expectStatus(t, "worker token", 200)
	record(e.do(t, http.MethodGet, pathLeases, workerTok, nil)).expectStatus(t, "worker on admin route", 403)
	record(e.do(t, http.MethodGet, pathNodes, meshTok+"x", nil)).expect(t, "mesh token + x", 401, unauthorized)
	record(e.do(t, http.MethodGet, pathNodes, "x"+adminTok, nil)).expect(t, "x + admin token", 401, unauthorized)
	record(e.do(t, http.MethodGet, pathNodes, jwtSecret, nil)).expect(t, "JWT secret as bearer", 401, unauthorized)
	record(e.doAuth(t, http.MethodGet, pathNodes, "bearer "+meshTok, nil)).expect(t, "lowercase scheme", 401, unauthorized)
	record(e.doAuth(t, http.MethodGet, pathNodes, "Basic "+meshTok, nil)).expect(t, "basic scheme", 401, unauthorized)
	record(e.do(t, http.MethodGet, "/v1/populi/no-such-route", submitterTok+"-nope", nil)).expect(t, "unknown path, bad bearer", 401, unauthorized)

	// JWTs: good, replayed, wrong secret, bad claims.
	good := jwtFor("worker")
	record(e.do(t, http.MethodGet, pathNodes, good, nil)).expectStatus(t, "good JWT", 200)
	record(e.do(t, http.MethodGet, pathNodes, good, nil)).expect(t, "replayed JWT", 401, unauthorized)
	sub := jwtFor("submitter")
	record(e.do(t, http.MethodGet, pathNodes, sub, nil)).expectStatus(t, "submitter JWT on node list", 403)
	forged := signHMAC(t, sha256.New, jwtSecret+"-wrong", hs256Header, e.claims("admin"))
	secrets = append(secrets, forged)
	record(e.do(t, http.MethodGet, pathLeases, forged, nil)).expect(t, "wrong-secret JWT", 401, unauthorized)
	unknownRole := hs256(t, e.claims("root"))
	secrets = append(secrets, unknownRole)
	record(e.do(t, http.MethodGet, pathNodes, unknownRole, nil)).expect(t, "unknown-role JWT", 401, unauthorized)
	expired := hs256(t, map[string]any{"role": "admin", "jti": security.NewToken(), "exp": e.clk.Now().Unix() - 3600})
	secrets = append(secrets, expired)
	record(e.do(t, http.MethodGet, pathNodes, expired, nil)).expect(t, "expired JWT", 401, unauthorized)

	// Bodies that fail decoding while carrying a valid bearer.
	record(e.do(t, http.MethodPost, pathDeliver, jwtFor("admin"), `{"sender_agent_id":`)).expectStatus(t, "bad JSON", 400)

	// Attestation failures.
	mesh := jwtFor("mesh")
	record(e.do(t, http.MethodPost, pathDeliver, mesh, attested(sp(k.d), sp(base64.StdEncoding.EncodeToString(make([]byte, 64)))))).
		expect(t, "bad signature", 400, attSigBad)
	record(e.do(t, http.MethodPost, pathDeliver, adminTok, attested(sp(k.d), sp(k.s)))).expectStatus(t, "good attestation", 200)

	// Bootstrap: wrong tokens (one of them a near miss), then the right one.
	record(e.exchange(t, "wrong")).expect(t, "wrong bootstrap token", 401, bootInvalid)
	record(e.exchange(t, bootTok+"x")).expect(t, "bootstrap token + x", 401, bootInvalid)
	record(e.exchange(t, meshTok)).expect(t, "mesh token as bootstrap token", 401, bootInvalid)
	ex := e.exchange(t, bootTok)
	ex.expectExchanged(t, "right bootstrap token", meshTok, &scope)
	exchangeBody := ex.body // carries the mesh token by design; checked below
	record(e.exchange(t, bootTok)).expect(t, "consumed", 410, bootConsumed)

	// A restart, to capture open/close logs too.
	e.restart()
	record(e.do(t, http.MethodGet, pathNodes, good, nil)).expect(t, "replay after restart", 401, unauthorized)

	// Observability routes, and a secret in a query string (the access log
	// names the route pattern, never the raw path or query).
	record(e.do(t, http.MethodGet, "/metrics", meshTok, nil)).expectStatus(t, "scrape", 200)
	record(e.do(t, http.MethodGet, "/metrics", workerTok, nil)).expectStatus(t, "worker scrape", 403)
	record(e.do(t, http.MethodGet, "/readyz", "", nil)).expectStatus(t, "readyz", 200)
	record(e.do(t, http.MethodGet, pathNodes+"?token="+adminTok, workerTok, nil)).expectStatus(t, "secret in query", 200)
	record(e.do(t, http.MethodGet, "/nope?k="+jwtSecret, "", nil)).expectStatus(t, "secret in unknown path's query", 401)

	captured := logs.String()
	if !strings.Contains(captured, "http request") {
		t.Fatalf("no debug access-log lines captured; the grep would prove nothing:\n%s", captured)
	}
	for _, s := range secrets {
		if strings.Contains(captured, s) {
			t.Errorf("a secret or JWT (%d chars, starts %q) appears in the logs", len(s), s[:4])
		}
		for _, r := range seen {
			if strings.Contains(r.body, s) {
				t.Errorf("a secret or JWT (%d chars, starts %q) appears in a %d response body", len(s), s[:4], r.status)
			}
			for name, vs := range r.header {
				for _, v := range vs {
					if strings.Contains(v, s) {
						t.Errorf("a secret or JWT appears in response header %s", name)
					}
				}
			}
		}
		if s != meshTok && strings.Contains(exchangeBody, s) {
			t.Errorf("the bootstrap answer carries a secret other than the mesh token (%d chars)", len(s))
		}
	}
}
