package security

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/store"
)

// fuzzSecret signs the seed tokens under testdata/fuzz; t0 is their clock.
const fuzzSecret = "fuzz-secret-populi"

func fuzzVerifier(f *testing.F) api.JWTVerifier {
	clk := clock.NewFake(t0)
	st, err := store.Open(store.Config{Path: filepath.Join(f.TempDir(), "db"), Clock: clk})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	return NewJWTVerifier(fuzzSecret, st, clk)
}

// FuzzVerifyJWT feeds arbitrary bearer values to the JWT path. It must never
// panic, and whatever it accepts must carry the HS256 MAC of its first two
// segments under the secret, spelled canonically, with an HS256 header, a
// jti never accepted before and a role.
func FuzzVerifyJWT(f *testing.F) {
	v := fuzzVerifier(f)
	accepted := map[string]bool{} // jtis
	f.Fuzz(func(t *testing.T, token string) {
		role, err := v.VerifyJWT(token)
		if err != nil {
			if role != api.RoleNone || err.Error() != "unauthorized" {
				t.Fatalf("refusal = (%v, %q)", role, err)
			}
			return
		}
		parts := strings.Split(token, ".")
		if len(parts) != 3 {
			t.Fatalf("accepted a token with %d segments", len(parts))
		}
		mac := hmac.New(sha256.New, []byte(fuzzSecret))
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if parts[2] != b64.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("accepted a token not minted with the secret: %q", token)
		}
		hdr, c := oracleDecode(t, parts[0], parts[1])
		if hdr["alg"] != "HS256" {
			t.Fatalf("accepted alg %v", hdr["alg"])
		}
		jti, _ := c["jti"].(string)
		if accepted[jti] {
			t.Fatalf("accepted jti %q twice", jti)
		}
		accepted[jti] = true
		if role < api.RoleMesh || role > api.RoleAdmin {
			t.Fatalf("accepted with role %v", role)
		}
	})
}

// FuzzVerifyJWTClaims signs arbitrary header and payload bytes with the
// secret, so the fuzzer explores what happens after the signature checks.
// An independent oracle (generic JSON decoding) says which of those SPEC 3.4
// accepts; the verifier must agree exactly, given which jtis it has already
// consumed.
func FuzzVerifyJWTClaims(f *testing.F) {
	v := fuzzVerifier(f)
	consumed := map[string]bool{}
	f.Fuzz(func(t *testing.T, header, payload []byte) {
		h, p := b64.EncodeToString(header), b64.EncodeToString(payload)
		token := signSegments(fuzzSecret, h, p)
		role, err := v.VerifyJWT(token)

		want, jti, reachesGuard := oracleJudge(header, payload, len(token))
		fresh := reachesGuard && !consumed[jti]
		if reachesGuard {
			consumed[jti] = true
		}
		switch {
		case !fresh && err == nil:
			t.Fatalf("accepted (role %v); oracle: reaches guard %v, jti seen %v\nheader %q\npayload %q", role, reachesGuard, !fresh, header, payload)
		case fresh && want != api.RoleNone && (err != nil || role != want):
			t.Fatalf("VerifyJWT = (%v, %v), oracle wants %v\nheader %q\npayload %q", role, err, want, header, payload)
		case fresh && want == api.RoleNone && err == nil:
			t.Fatalf("accepted role %v, oracle wants a refusal (unknown role)\nheader %q\npayload %q", role, header, payload)
		}
	})
}

func oracleDecode(t *testing.T, h, p string) (hdr, c map[string]any) {
	hb, err := b64.DecodeString(h)
	if err != nil {
		t.Fatalf("accepted undecodable header: %v", err)
	}
	pb, err := b64.DecodeString(p)
	if err != nil {
		t.Fatalf("accepted undecodable payload: %v", err)
	}
	if json.Unmarshal(hb, &hdr) != nil {
		t.Fatalf("accepted header %q", hb)
	}
	d := json.NewDecoder(bytes.NewReader(pb))
	d.UseNumber()
	if d.Decode(&c) != nil {
		t.Fatalf("accepted payload %q", pb)
	}
	return hdr, c
}

var digitsOnly = regexp.MustCompile(`^[0-9]+$`)

// oracleJudge restates SPEC 3.4 over generic JSON: reachesGuard says the
// token gets as far as the replay guard (step 7) with jti; role is the
// step 8 result (RoleNone for an unknown role).
func oracleJudge(header, payload []byte, tokenLen int) (role api.Role, jti string, reachesGuard bool) {
	if len(header) == 0 || len(payload) == 0 || tokenLen > MaxJWTBytes {
		return api.RoleNone, "", false
	}
	var hdr map[string]any
	if json.Unmarshal(header, &hdr) != nil || hdr == nil || hdr["alg"] != "HS256" {
		return api.RoleNone, "", false
	}
	var c map[string]any
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if d.Decode(&c) != nil || d.InputOffset() != int64(len(bytes.TrimRight(payload, " \t\r\n"))) || c == nil {
		return api.RoleNone, "", false
	}
	r, ok1 := c["role"].(string)
	j, ok2 := c["jti"].(string)
	exp, ok3 := c["exp"].(json.Number)
	if !ok1 || !ok2 || !ok3 || !digitsOnly.MatchString(string(exp)) {
		return api.RoleNone, "", false
	}
	e, err := strconv.ParseUint(string(exp), 10, 64)
	if err != nil || e < uint64(t0.Unix()-60) {
		return api.RoleNone, "", false
	}
	if _, has := c["aud"]; has || strings.TrimSpace(j) == "" {
		return api.RoleNone, "", false
	}
	switch strings.ToLower(strings.TrimSpace(r)) {
	case "mesh":
		role = api.RoleMesh
	case "worker":
		role = api.RoleWorker
	case "submitter":
		role = api.RoleSubmitter
	case "admin":
		role = api.RoleAdmin
	}
	if strings.ContainsFunc(strings.TrimSpace(r), func(c rune) bool { return c >= 0x80 }) {
		role = api.RoleNone // ASCII-only case folding
	}
	return role, j, true
}
