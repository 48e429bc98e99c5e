package cli

import (
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestTokenJWTMintsSingleUseBearers(t *testing.T) {
	t.Parallel()
	const secret = "jwt-cli-test-secret"
	env := map[string]string{EnvJWTSecret: secret}
	code, out := runBinary(t, env, 15*time.Second, "token", "jwt", "--role", "worker", "--ttl", "10m", "--count", "3")
	if code != 0 {
		t.Fatalf("token jwt: %d %s", code, out)
	}
	toks := strings.Fields(out)
	if len(toks) != 3 || toks[0] == toks[1] || toks[1] == toks[2] {
		t.Fatalf("want 3 distinct JWTs, got %q", out)
	}
	parts := strings.Split(toks[0], ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", toks[0])
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Role string `json:"role"`
		JTI  string `json:"jti"`
		Exp  int64  `json:"exp"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(time.Unix(claims.Exp, 0)); claims.Role != "worker" || len(claims.JTI) != 2*JTIBytes || d < 9*time.Minute || d > 11*time.Minute {
		t.Errorf("claims = %+v (exp in %s)", claims, d)
	}

	s := startServer(t, filepath.Join(t.TempDir(), "p.db"), env)
	if st, body := call(t, "GET", s.URL+"/v1/populi/nodes", toks[0], nil, nil); st != 200 {
		t.Errorf("first use of a worker JWT = %d %s, want 200", st, body)
	}
	if st, _ := call(t, "GET", s.URL+"/v1/populi/nodes", toks[0], nil, nil); st != 401 {
		t.Errorf("replayed JWT = %d, want 401", st)
	}
	if st, _ := call(t, "GET", s.URL+"/v1/populi/nodes", toks[1], nil, nil); st != 200 {
		t.Errorf("second minted JWT = %d, want 200", st)
	}
	_, sub := runBinary(t, env, 15*time.Second, "token", "jwt", "--role", "submitter")
	if st, _ := call(t, "GET", s.URL+"/v1/populi/nodes", strings.TrimSpace(sub), nil, nil); st != 403 {
		t.Errorf("submitter JWT on the node list = %d, want 403", st)
	}
	s.signal(syscall.SIGTERM)
	s.wait(15 * time.Second)
}

func TestTokenJWTUsageErrors(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
		want string
	}{
		"no secret": {nil, []string{"token", "jwt"}, EnvJWTSecret},
		"bad role":  {map[string]string{EnvJWTSecret: "s"}, []string{"token", "jwt", "--role", "root"}, "--role"},
		"bad ttl":   {map[string]string{EnvJWTSecret: "s"}, []string{"token", "jwt", "--ttl", "-1m"}, "--ttl"},
		"bad count": {map[string]string{EnvJWTSecret: "s"}, []string{"token", "jwt", "--count", "0"}, "--count"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			code, out := runBinary(t, tc.env, 15*time.Second, tc.args...)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("%v: exit %d, output %q; want failure naming %s", tc.args, code, out, tc.want)
			}
		})
	}
}
