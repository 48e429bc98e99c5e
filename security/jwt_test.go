package security

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/store"
	"populi-db/wire"
)

const testSecret = "test-jwt-secret-0123456789"

// t0 is the fake clock's start, on a whole second.
var t0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

type jwtBundle struct {
	clk    *clock.Fake
	st     *store.Store
	path   string
	verify api.JWTVerifier
}

func setupJWT(t *testing.T) *jwtBundle {
	t.Helper()
	b := &jwtBundle{clk: clock.NewFake(t0), path: filepath.Join(t.TempDir(), "db")}
	b.open(t)
	return b
}

func (b *jwtBundle) open(t *testing.T) {
	t.Helper()
	st, err := store.Open(store.Config{Path: b.path, Clock: b.clk})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	b.st = st
	b.verify = NewJWTVerifier(testSecret, st, b.clk)
}

// reopen closes the store and opens the same file again, as a restart does.
func (b *jwtBundle) reopen(t *testing.T) {
	t.Helper()
	if err := b.st.Close(); err != nil {
		t.Fatalf("close store: %v", err)
	}
	b.open(t)
}

func (b *jwtBundle) expectRole(t *testing.T, token string, want api.Role) {
	t.Helper()
	got, err := b.verify.VerifyJWT(token)
	if err != nil || got != want {
		t.Fatalf("VerifyJWT = (%v, %v), want (%v, nil)", got, err, want)
	}
}

func (b *jwtBundle) expectRefused(t *testing.T, token string) {
	t.Helper()
	got, err := b.verify.VerifyJWT(token)
	if err != wire.ErrUnauthorized || got != api.RoleNone {
		t.Fatalf("VerifyJWT = (%v, %v), want (RoleNone, wire.ErrUnauthorized)", got, err)
	}
	if token != "" && strings.Contains(err.Error(), token) {
		t.Fatalf("error text contains the token")
	}
}

var b64 = base64.RawURLEncoding

// signRaw builds header.payload.signature from arbitrary JSON values, signed
// with HMAC-SHA256 whatever the header says.
func signRaw(t *testing.T, secret string, header, payload any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return signSegments(secret, b64.EncodeToString(h), b64.EncodeToString(p))
}

func signSegments(secret, h, p string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(h + "." + p))
	return h + "." + p + "." + b64.EncodeToString(mac.Sum(nil))
}

var hs256 = map[string]any{"alg": "HS256", "typ": "JWT"}

// claimsAt is a valid claim set expiring an hour after the fake clock's t0.
func claimsAt(role, jti string) map[string]any {
	return map[string]any{"role": role, "jti": jti, "exp": t0.Add(time.Hour).Unix()}
}

func with(c map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func without(c map[string]any, key string) map[string]any {
	out := with(c)
	delete(out, key)
	return out
}

func TestJWTValidPerRole(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	for i, tc := range []struct {
		role string
		want api.Role
	}{
		{"mesh", api.RoleMesh},
		{"worker", api.RoleWorker},
		{"submitter", api.RoleSubmitter},
		{"admin", api.RoleAdmin},
		{"  Worker\t", api.RoleWorker}, // trimmed, case-insensitive
		{"ADMIN", api.RoleAdmin},
	} {
		b.expectRole(t, signRaw(t, testSecret, hs256, claimsAt(tc.role, "jti-role-"+string(rune('a'+i)))), tc.want)
	}
}

func TestJWTMintedTokenVerifiesOnce(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	tok, err := MintJWT(testSecret, "worker", "", t0.Add(5*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	b.expectRole(t, tok, api.RoleWorker)
	b.expectRefused(t, tok) // replay
}

func TestJWTSecretIsTrimmed(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	v := NewJWTVerifier("  "+testSecret+"\n", b.st, b.clk)
	tok, err := MintJWT(testSecret, "mesh", "trim-1", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r, err := v.VerifyJWT(tok); err != nil || r != api.RoleMesh {
		t.Fatalf("VerifyJWT = (%v, %v)", r, err)
	}
	if v := NewJWTVerifier(" \t", b.st, b.clk); v != nil {
		t.Fatalf("blank secret: got a verifier, want nil (JWT disabled)")
	}
}

func TestJWTRefusals(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	good := claimsAt("worker", "x")
	cases := []struct {
		name  string
		token func(t *testing.T, jti string) string
	}{
		{"wrong secret", func(t *testing.T, jti string) string {
			return signRaw(t, "other-secret", hs256, claimsAt("worker", jti))
		}},
		{"alg none, empty signature", func(t *testing.T, jti string) string {
			s, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims(claimsAt("worker", jti))).
				SignedString(jwt.UnsafeAllowNoneSignatureType)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"alg none, HMAC signature", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, map[string]any{"alg": "none"}, claimsAt("worker", jti))
		}},
		{"alg lower-case hs256", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, map[string]any{"alg": "hs256"}, claimsAt("worker", jti))
		}},
		{"alg missing", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, map[string]any{"typ": "JWT"}, claimsAt("worker", jti))
		}},
		{"RS256", func(t *testing.T, jti string) string {
			s, err := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims(claimsAt("worker", jti))).SignedString(rsaKey)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"RS256 header, HMAC signature", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, map[string]any{"alg": "RS256"}, claimsAt("worker", jti))
		}},
		{"HS384 with the right secret", func(t *testing.T, jti string) string {
			s, err := jwt.NewWithClaims(jwt.SigningMethodHS384, jwt.MapClaims(claimsAt("worker", jti))).SignedString([]byte(testSecret))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"HS512 with the right secret", func(t *testing.T, jti string) string {
			s, err := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.MapClaims(claimsAt("worker", jti))).SignedString([]byte(testSecret))
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"missing role", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, without(claimsAt("worker", jti), "role"))
		}},
		{"missing jti", func(t *testing.T, jti string) string { return signRaw(t, testSecret, hs256, without(good, "jti")) }},
		{"missing exp", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, without(claimsAt("worker", jti), "exp"))
		}},
		{"role not a string", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "role", 1))
		}},
		{"role null", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "role", nil))
		}},
		{"jti a number", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(good, "jti", 12345))
		}},
		{"jti null", func(t *testing.T, jti string) string { return signRaw(t, testSecret, hs256, with(good, "jti", nil)) }},
		{"exp a string", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "exp", "1893459600"))
		}},
		{"exp a fraction", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "exp", 1893459600.5))
		}},
		{"exp with exponent", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "exp", json.RawMessage("1.8934596e9")))
		}},
		{"exp negative", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "exp", -1))
		}},
		{"exp null", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "exp", nil))
		}},
		{"exp above uint64", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "exp", json.RawMessage("18446744073709551616")))
		}},
		{"aud string", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "aud", "populi"))
		}},
		{"aud array", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "aud", []string{"populi"}))
		}},
		{"aud null", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, with(claimsAt("worker", jti), "aud", nil))
		}},
		{"jti empty", func(t *testing.T, jti string) string { return signRaw(t, testSecret, hs256, with(good, "jti", "")) }},
		{"jti blank", func(t *testing.T, jti string) string { return signRaw(t, testSecret, hs256, with(good, "jti", " \t ")) }},
		{"unknown role", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, claimsAt("superuser", jti))
		}},
		{"role with Kelvin sign", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, claimsAt("wor\u212Aer", jti))
		}},
		{"claims not an object", func(t *testing.T, jti string) string {
			return signRaw(t, testSecret, hs256, []string{"worker", jti})
		}},
		{"claims null", func(t *testing.T, jti string) string { return signRaw(t, testSecret, hs256, nil) }},
		{"tampered claims", func(t *testing.T, jti string) string {
			tok := signRaw(t, testSecret, hs256, claimsAt("worker", jti))
			parts := strings.Split(tok, ".")
			p, _ := json.Marshal(claimsAt("admin", jti))
			return parts[0] + "." + b64.EncodeToString(p) + "." + parts[2]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupJWT(t)
			b.expectRefused(t, tc.token(t, "refusal-jti"))
		})
	}
}

func TestJWTShapeGate(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	tok := signRaw(t, testSecret, hs256, claimsAt("worker", "shape"))
	parts := strings.Split(tok, ".")
	sig, _ := b64.DecodeString(parts[2])
	for name, bad := range map[string]string{
		"empty":                "",
		"two segments":         parts[0] + "." + parts[1],
		"four segments":        tok + "." + parts[2],
		"empty header":         "." + parts[1] + "." + parts[2],
		"empty claims":         parts[0] + ".." + parts[2],
		"empty signature":      parts[0] + "." + parts[1] + ".",
		"padded signature":     tok + "=",
		"std base64 signature": parts[0] + "." + parts[1] + "." + base64.StdEncoding.EncodeToString(sig),
		"newline in signature": parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:],
		"leading space":        " " + tok,
		"trailing space":       tok + " ",
		"Bearer prefix":        "Bearer " + tok,
		"oversized":            parts[0] + "." + parts[1] + strings.Repeat("A", MaxJWTBytes) + "." + parts[2],
		// The last character of a 32-byte signature carries 2 padding
		// bits; a non-zero one is another spelling of the same bytes.
		"non-canonical signature": parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-1] + string(b64Bump(parts[2][len(parts[2])-1])),
	} {
		t.Run(name, func(t *testing.T) { b.expectRefused(t, bad) })
	}
	b.expectRole(t, tok, api.RoleWorker) // the well-formed original still works
}

// b64Bump returns a base64url character differing from c only in its two
// lowest bits, which a 43-character signature segment must leave zero.
func b64Bump(c byte) byte {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return alpha[strings.IndexByte(alpha, c)|1]
}

func TestJWTExpiryLeeway(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	now := t0.Add(10 * time.Minute).Add(400 * time.Millisecond) // mid-second
	b.clk.Set(now)
	at := func(exp int64, jti string) string {
		return signRaw(t, testSecret, hs256, map[string]any{"role": "worker", "jti": jti, "exp": exp})
	}
	// exp < now - 60 s: one second past the leeway, refused.
	b.expectRefused(t, at(now.Unix()-61, "leeway-out"))
	// exp = now - 60 s: last second inside the leeway, accepted.
	b.expectRole(t, at(now.Unix()-60, "leeway-edge"), api.RoleWorker)
	// Expired 30 s ago, inside the leeway: accepted.
	b.expectRole(t, at(now.Unix()-30, "leeway-in"), api.RoleWorker)
	// exp = 0 long ago: refused.
	b.expectRefused(t, at(0, "epoch"))
}

func TestJWTIgnoresNbfAndIat(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	future := t0.Add(24 * time.Hour).Unix()
	b.expectRole(t, signRaw(t, testSecret, hs256, with(claimsAt("worker", "nbf"), "nbf", future)), api.RoleWorker)
	b.expectRole(t, signRaw(t, testSecret, hs256, with(claimsAt("worker", "iat"), "iat", future)), api.RoleWorker)
	b.expectRole(t, signRaw(t, testSecret, hs256, with(claimsAt("worker", "nbf-str"), "nbf", "soon", "iat", "x")), api.RoleWorker)
	b.expectRole(t, signRaw(t, testSecret, hs256, with(claimsAt("worker", "iss"), "iss", "anyone", "sub", 7)), api.RoleWorker)
}

func TestJWTReplay(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	tok := signRaw(t, testSecret, hs256, claimsAt("worker", "once"))
	b.expectRole(t, tok, api.RoleWorker)
	b.expectRefused(t, tok)
	// A different token with the same jti (another role, later exp) is a
	// replay too: the guard keys on the jti.
	b.expectRefused(t, signRaw(t, testSecret, hs256, with(claimsAt("admin", "once"), "exp", t0.Add(2*time.Hour).Unix())))
	// The jti is the key as received: " once" is another id.
	b.expectRole(t, signRaw(t, testSecret, hs256, claimsAt("worker", " once")), api.RoleWorker)
}

func TestJWTReplayAfterRestart(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	tok := signRaw(t, testSecret, hs256, claimsAt("mesh", "restart"))
	b.expectRole(t, tok, api.RoleMesh)
	b.reopen(t)
	b.expectRefused(t, tok)
	b.clk.Advance(30 * time.Minute) // still before exp
	b.reopen(t)
	b.expectRefused(t, tok)
}

func TestJWTUnknownRoleSpendsJTI(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	b.expectRefused(t, signRaw(t, testSecret, hs256, claimsAt("operator", "spent")))
	b.expectRefused(t, signRaw(t, testSecret, hs256, claimsAt("worker", "spent")))
}

// A token used before its exp must stay spent through the last second of
// its leeway (exp + 60 s, which SPEC 3.4 step 4 still accepts).
func TestJWTReplayAtLeewayEdge(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	exp := t0.Add(time.Minute)
	tok := signRaw(t, testSecret, hs256, map[string]any{"role": "worker", "jti": "edge", "exp": exp.Unix()})
	b.expectRole(t, tok, api.RoleWorker) // used 60 s before exp
	b.clk.Set(exp.Add(JWTLeeway - time.Second))
	b.expectRefused(t, tok) // one second inside the leeway
	b.clk.Set(exp.Add(JWTLeeway))
	b.expectRefused(t, tok) // last accepted second: still a replay
	b.clk.Set(exp.Add(JWTLeeway + time.Second))
	b.expectRefused(t, tok) // expired
}

func TestJWTHugeExp(t *testing.T) {
	t.Parallel()
	b := setupJWT(t)
	for _, exp := range []string{"9223372036854775807", "9223372036854775800", "18446744073709551615"} {
		tok := signRaw(t, testSecret, hs256, map[string]any{"role": "worker", "jti": "huge-" + exp, "exp": json.RawMessage(exp)})
		b.expectRole(t, tok, api.RoleWorker)
		b.expectRefused(t, tok)
		b.clk.Advance(24 * time.Hour)
		b.expectRefused(t, tok)
	}
}

func TestJWTStoreFailureIsUnauthorizedAndSilent(t *testing.T) {
	// Not parallel: swaps the default logger.
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(prev)

	b := setupJWT(t)
	tok := signRaw(t, testSecret, hs256, claimsAt("worker", "closed-store-jti"))
	b.st.Close()
	b.expectRefused(t, tok)
	if !strings.Contains(logs.String(), "replay guard") {
		t.Fatalf("store failure not logged: %q", logs.String())
	}
	for _, secret := range []string{tok, testSecret, "closed-store-jti"} {
		if strings.Contains(logs.String(), secret) {
			t.Fatalf("log line carries a secret: %q", logs.String())
		}
	}
}

func TestMintJWT(t *testing.T) {
	t.Parallel()
	tok, err := MintJWT(" "+testSecret+" ", " Submitter ", "", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	parts := strings.Split(tok, ".")
	raw, _ := b64.DecodeString(parts[1])
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	if c["role"] != "submitter" || c["exp"] != float64(t0.Add(time.Hour).Unix()) {
		t.Fatalf("claims = %v", c)
	}
	if jti, _ := c["jti"].(string); !regexp.MustCompile(`^[0-9a-f]{48}$`).MatchString(jti) {
		t.Fatalf("blank jti not replaced by a fresh token: %q", jti)
	}
	hdr, _ := b64.DecodeString(parts[0])
	if !strings.Contains(string(hdr), `"alg":"HS256"`) {
		t.Fatalf("header = %s", hdr)
	}
	b := setupJWT(t)
	b.expectRole(t, tok, api.RoleSubmitter)

	for name, call := range map[string]func() (string, error){
		"blank secret": func() (string, error) { return MintJWT("  ", "worker", "j", t0) },
		"unknown role": func() (string, error) { return MintJWT(testSecret, "root", "j", t0) },
		"exp pre-1970": func() (string, error) { return MintJWT(testSecret, "worker", "j", time.Unix(-5, 0)) },
	} {
		if _, err := call(); err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), testSecret) {
			t.Errorf("%s: error carries the secret", name)
		}
	}
}

func TestNewToken(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[0-9a-f]{48}$`)
	seen := map[string]bool{}
	for range 100 {
		tok := NewToken()
		if !re.MatchString(tok) || seen[tok] {
			t.Fatalf("NewToken() = %q (seen before: %v)", tok, seen[tok])
		}
		seen[tok] = true
	}
}
