package cli

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"populi-db/api"
)

var testNow = time.UnixMilli(1_700_000_000_000)

func TestParseServerEnvDefaults(t *testing.T) {
	t.Parallel()
	e := ParseServerEnv(MapLookup(nil), testNow)
	if !e.OpenMode() {
		t.Error("no secrets: want open mode")
	}
	if got := e.AuthModes(); !slices.Equal(got, []string{"open"}) {
		t.Errorf("AuthModes = %v, want [open]", got)
	}
	if e.Store.LeaseTTL != 120*time.Second || e.Store.MaxMessages != 50000 || e.Store.MaxDeliveries != 10 {
		t.Errorf("store defaults = %+v", e.Store)
	}
	if e.API.MaxBodyBytes != 524288 || e.API.StalePruneMs != 0 || e.API.ScopeID != "" || e.API.ReportedScopeID != nil {
		t.Errorf("api defaults = %+v", e.API)
	}
	if e.API.Bootstrap != (api.Bootstrap{}) || e.BootstrapExpired {
		t.Errorf("bootstrap = %+v expired=%v, want disabled", e.API.Bootstrap, e.BootstrapExpired)
	}
	if e.RateLimit != (RateLimit{Enabled: false, PerSec: 50, Burst: 100}) {
		t.Errorf("rate limit = %+v", e.RateLimit)
	}
	if e.AuthScheme != "ed25519-envelope" || len(e.Warnings) != 0 {
		t.Errorf("auth scheme %q, warnings %v", e.AuthScheme, e.Warnings)
	}
}

func TestParseServerEnvTable(t *testing.T) {
	t.Parallel()
	nowMs := uint64(testNow.UnixMilli())
	cases := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, e ServerEnv)
	}{
		// Secrets (SPEC 3.1): trimmed, blank = unset.
		{"mesh token trimmed", map[string]string{EnvMeshToken: "  m-tok \n"}, func(t *testing.T, e ServerEnv) {
			if e.API.Tokens.Mesh != "m-tok" || e.OpenMode() {
				t.Errorf("tokens %+v open=%v", e.API.Tokens, e.OpenMode())
			}
		}},
		{"blank token is unset", map[string]string{EnvMeshToken: "   "}, func(t *testing.T, e ServerEnv) {
			if e.API.Tokens.Mesh != "" || !e.OpenMode() {
				t.Errorf("tokens %+v open=%v", e.API.Tokens, e.OpenMode())
			}
		}},
		{"all four tokens", map[string]string{EnvMeshToken: "m", EnvWorkerToken: "w", EnvSubmitterToken: "s", EnvAdminToken: "a"}, func(t *testing.T, e ServerEnv) {
			if e.API.Tokens != (api.Tokens{Mesh: "m", Worker: "w", Submitter: "s", Admin: "a"}) {
				t.Errorf("tokens %+v", e.API.Tokens)
			}
			if got := e.AuthModes(); !slices.Equal(got, []string{"mesh-token", "worker-token", "submitter-token", "admin-token"}) {
				t.Errorf("AuthModes = %v", got)
			}
		}},
		{"jwt secret alone ends open mode", map[string]string{EnvJWTSecret: " s3cret "}, func(t *testing.T, e ServerEnv) {
			if e.JWTSecret != "s3cret" || !e.API.JWTEnabled || e.OpenMode() {
				t.Errorf("jwt %q enabled=%v open=%v", e.JWTSecret, e.API.JWTEnabled, e.OpenMode())
			}
			if got := e.AuthModes(); !slices.Equal(got, []string{"jwt-hs256"}) {
				t.Errorf("AuthModes = %v", got)
			}
		}},
		{"bootstrap token alone keeps open mode", map[string]string{EnvBootstrapToken: "boot"}, func(t *testing.T, e ServerEnv) {
			if !e.OpenMode() || e.API.Bootstrap.Token != "boot" {
				t.Errorf("open=%v bootstrap=%+v", e.OpenMode(), e.API.Bootstrap)
			}
		}},
		// Scope (SPEC 5).
		{"scope trimmed and reported", map[string]string{EnvScopeID: " cluster-a "}, func(t *testing.T, e ServerEnv) {
			if e.API.ScopeID != "cluster-a" || e.API.ReportedScopeID == nil || *e.API.ReportedScopeID != "cluster-a" {
				t.Errorf("scope %q reported %v", e.API.ScopeID, e.API.ReportedScopeID)
			}
		}},
		// Bootstrap expiry (SPEC 4, 16.5).
		{"future expiry kept", map[string]string{EnvBootstrapToken: "b", EnvBootstrapExpires: " 1700000060000 "}, func(t *testing.T, e ServerEnv) {
			if e.API.Bootstrap.ExpiresUnixMs != 1700000060000 || e.BootstrapExpired {
				t.Errorf("bootstrap %+v expired=%v", e.API.Bootstrap, e.BootstrapExpired)
			}
		}},
		{"expiry one ms ahead is still live", map[string]string{EnvBootstrapToken: "b", EnvBootstrapExpires: "1700000000001"}, func(t *testing.T, e ServerEnv) {
			if e.BootstrapExpired || e.API.Bootstrap.ExpiresUnixMs != nowMs+1 {
				t.Errorf("bootstrap %+v expired=%v", e.API.Bootstrap, e.BootstrapExpired)
			}
		}},
		{"expiry equal to now is expired", map[string]string{EnvBootstrapToken: "b", EnvBootstrapExpires: "1700000000000"}, func(t *testing.T, e ServerEnv) {
			if !e.BootstrapExpired || e.API.Bootstrap.ExpiresUnixMs != nowMs {
				t.Errorf("bootstrap %+v expired=%v", e.API.Bootstrap, e.BootstrapExpired)
			}
		}},
		{"past expiry kept as expired (16.5)", map[string]string{EnvBootstrapToken: "b", EnvBootstrapExpires: "5"}, func(t *testing.T, e ServerEnv) {
			if !e.BootstrapExpired || e.API.Bootstrap.ExpiresUnixMs != 5 || len(e.Warnings) != 1 {
				t.Errorf("bootstrap %+v expired=%v warnings=%v", e.API.Bootstrap, e.BootstrapExpired, e.Warnings)
			}
		}},
		{"expiry zero is past, stored as 1", map[string]string{EnvBootstrapToken: "b", EnvBootstrapExpires: "0"}, func(t *testing.T, e ServerEnv) {
			if !e.BootstrapExpired || e.API.Bootstrap.ExpiresUnixMs != 1 {
				t.Errorf("bootstrap %+v expired=%v", e.API.Bootstrap, e.BootstrapExpired)
			}
		}},
		{"unparsable expiry means none, with a warning", map[string]string{EnvBootstrapToken: "b", EnvBootstrapExpires: "soon"}, func(t *testing.T, e ServerEnv) {
			if e.BootstrapExpired || e.API.Bootstrap.ExpiresUnixMs != 0 || len(e.Warnings) != 1 {
				t.Errorf("bootstrap %+v expired=%v warnings=%v", e.API.Bootstrap, e.BootstrapExpired, e.Warnings)
			}
		}},
		// Attestation key (16.10): always loaded, trimmed.
		{"verify key trimmed", map[string]string{EnvVerifyKey: "  abcd  "}, func(t *testing.T, e ServerEnv) {
			if e.VerifyKey != "abcd" {
				t.Errorf("verify key %q", e.VerifyKey)
			}
		}},
		// Lease TTL: trim, u64, clamp [1000, 3600000], unparsable → default.
		{"lease ms trimmed", map[string]string{EnvLeaseMs: " 5000 "}, leaseIs(5 * time.Second)},
		{"lease ms below min clamps up", map[string]string{EnvLeaseMs: "999"}, leaseIs(time.Second)},
		{"lease ms at min", map[string]string{EnvLeaseMs: "1000"}, leaseIs(time.Second)},
		{"lease ms zero clamps up", map[string]string{EnvLeaseMs: "0"}, leaseIs(time.Second)},
		{"lease ms at max", map[string]string{EnvLeaseMs: "3600000"}, leaseIs(time.Hour)},
		{"lease ms above max clamps down", map[string]string{EnvLeaseMs: "3600001"}, leaseIs(time.Hour)},
		{"lease ms unparsable", map[string]string{EnvLeaseMs: "2m"}, leaseIs(120 * time.Second)},
		{"lease ms negative", map[string]string{EnvLeaseMs: "-5"}, leaseIs(120 * time.Second)},
		// Relay cap: clamp [1, 500000].
		{"max messages", map[string]string{EnvMaxMessages: " 3 "}, maxMsgsIs(3)},
		{"max messages zero clamps to 1", map[string]string{EnvMaxMessages: "0"}, maxMsgsIs(1)},
		{"max messages above max", map[string]string{EnvMaxMessages: "500001"}, maxMsgsIs(500000)},
		{"max messages unparsable", map[string]string{EnvMaxMessages: "lots"}, maxMsgsIs(50000)},
		// Dead-letter threshold (issue 9): default 10, 0 = unlimited.
		{"max deliveries zero is unlimited", map[string]string{EnvMaxDeliveries: "0"}, maxDelivIs(0)},
		{"max deliveries set", map[string]string{EnvMaxDeliveries: " 3 "}, maxDelivIs(3)},
		{"max deliveries unparsable", map[string]string{EnvMaxDeliveries: "x"}, maxDelivIs(10)},
		// Body limit (SPEC 11): no trim, [2048, 8388608] accepted, else default.
		{"body at min", map[string]string{EnvMaxBodyBytes: "2048"}, bodyIs(2048)},
		{"body just below min ignored", map[string]string{EnvMaxBodyBytes: "2047"}, bodyIs(524288)},
		{"body at max", map[string]string{EnvMaxBodyBytes: "8388608"}, bodyIs(8388608)},
		{"body just above max ignored, not clamped", map[string]string{EnvMaxBodyBytes: "8388609"}, bodyIs(524288)},
		{"body with spaces is not trimmed", map[string]string{EnvMaxBodyBytes: " 4096"}, bodyIs(524288)},
		{"body unparsable", map[string]string{EnvMaxBodyBytes: "1MiB"}, bodyIs(524288)},
		// Stale prune (SPEC 10).
		{"stale prune", map[string]string{EnvStalePruneMs: " 5 "}, func(t *testing.T, e ServerEnv) {
			if e.API.StalePruneMs != 5 {
				t.Errorf("stale %d", e.API.StalePruneMs)
			}
		}},
		{"stale prune unparsable is off", map[string]string{EnvStalePruneMs: "-1"}, func(t *testing.T, e ServerEnv) {
			if e.API.StalePruneMs != 0 {
				t.Errorf("stale %d", e.API.StalePruneMs)
			}
		}},
		// Rate limit (16.14).
		{"rate limit on", map[string]string{EnvRateLimit: " YES "}, rateIs(RateLimit{true, 50, 100})},
		{"rate limit true", map[string]string{EnvRateLimit: "true"}, rateIs(RateLimit{true, 50, 100})},
		{"rate limit 1", map[string]string{EnvRateLimit: "1"}, rateIs(RateLimit{true, 50, 100})},
		{"rate limit On", map[string]string{EnvRateLimit: "On"}, rateIs(RateLimit{true, 50, 100})},
		{"rate limit other value is off", map[string]string{EnvRateLimit: "enabled"}, rateIs(RateLimit{false, 50, 100})},
		{"rate per sec sets default burst", map[string]string{EnvRateLimit: "1", EnvRateLimitPerSec: "7"}, rateIs(RateLimit{true, 7, 14})},
		{"rate explicit burst", map[string]string{EnvRateLimit: "1", EnvRateLimitPerSec: "7", EnvRateLimitBurst: "3"}, rateIs(RateLimit{true, 7, 3})},
		{"rate zero per sec is default", map[string]string{EnvRateLimit: "1", EnvRateLimitPerSec: "0"}, rateIs(RateLimit{true, 50, 100})},
		// Auth scheme (SPEC 3.4): parsed, warning only.
		{"auth scheme jwt deprecated", map[string]string{EnvAuthScheme: " JWT-HS256 "}, func(t *testing.T, e ServerEnv) {
			if e.AuthScheme != "jwt-hs256" || len(e.Warnings) != 1 || !e.OpenMode() {
				t.Errorf("scheme %q warnings %v open %v", e.AuthScheme, e.Warnings, e.OpenMode())
			}
		}},
		{"auth scheme both deprecated", map[string]string{EnvAuthScheme: "both"}, func(t *testing.T, e ServerEnv) {
			if len(e.Warnings) != 1 {
				t.Errorf("warnings %v", e.Warnings)
			}
		}},
		{"auth scheme default silent", map[string]string{EnvAuthScheme: "ed25519-envelope"}, func(t *testing.T, e ServerEnv) {
			if len(e.Warnings) != 0 {
				t.Errorf("warnings %v", e.Warnings)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.check(t, ParseServerEnv(MapLookup(tc.env), testNow))
		})
	}
}

func leaseIs(d time.Duration) func(*testing.T, ServerEnv) {
	return func(t *testing.T, e ServerEnv) {
		if e.Store.LeaseTTL != d {
			t.Errorf("LeaseTTL = %s, want %s", e.Store.LeaseTTL, d)
		}
	}
}

func maxMsgsIs(n int) func(*testing.T, ServerEnv) {
	return func(t *testing.T, e ServerEnv) {
		if e.Store.MaxMessages != n {
			t.Errorf("MaxMessages = %d, want %d", e.Store.MaxMessages, n)
		}
	}
}

func maxDelivIs(n int) func(*testing.T, ServerEnv) {
	return func(t *testing.T, e ServerEnv) {
		if e.Store.MaxDeliveries != n {
			t.Errorf("MaxDeliveries = %d, want %d", e.Store.MaxDeliveries, n)
		}
	}
}

func bodyIs(n int64) func(*testing.T, ServerEnv) {
	return func(t *testing.T, e ServerEnv) {
		if e.API.MaxBodyBytes != n {
			t.Errorf("MaxBodyBytes = %d, want %d", e.API.MaxBodyBytes, n)
		}
	}
}

func rateIs(r RateLimit) func(*testing.T, ServerEnv) {
	return func(t *testing.T, e ServerEnv) {
		if e.RateLimit != r {
			t.Errorf("RateLimit = %+v, want %+v", e.RateLimit, r)
		}
	}
}

func TestSetBootstrapTokenFlagOverridesVerbatim(t *testing.T) {
	t.Parallel()
	e := ParseServerEnv(MapLookup(map[string]string{EnvBootstrapToken: "from-env"}), testNow)
	e.SetBootstrapToken(" from-flag ")
	if e.API.Bootstrap.Token != " from-flag " {
		t.Errorf("token %q, want the flag verbatim", e.API.Bootstrap.Token)
	}
	e.SetBootstrapToken("")
	if e.API.Bootstrap.Token != " from-flag " {
		t.Errorf("empty flag changed the token to %q", e.API.Bootstrap.Token)
	}
}

func TestWarningsNeverContainSecrets(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		EnvMeshToken: "s3kr1t-mesh", EnvJWTSecret: "s3kr1t-jwt", EnvBootstrapToken: "s3kr1t-boot",
		EnvBootstrapExpires: "1", EnvAuthScheme: "both", EnvMaxBodyBytes: "x",
	}
	e := ParseServerEnv(MapLookup(env), testNow)
	for _, w := range e.Warnings {
		if strings.Contains(w, "s3kr1t") {
			t.Errorf("warning leaks a secret: %s", w)
		}
	}
	for _, m := range e.AuthModes() {
		if strings.Contains(m, "s3kr1t") {
			t.Errorf("auth mode leaks a secret: %s", m)
		}
	}
}

func TestResolveDBPath(t *testing.T) {
	t.Parallel()
	home := func() (string, error) { return "/home/u", nil }
	noHome := func() (string, error) { return "", errors.New("no home") }
	cases := []struct {
		name, flag string
		env        map[string]string
		home       func() (string, error)
		want       string
		wantErr    bool
	}{
		{"default", "", nil, home, "/home/u/.vox/populi/populi.db", false},
		{"env", "", map[string]string{EnvDBPath: " /data/p.db "}, home, "/data/p.db", false},
		{"blank env falls back", "", map[string]string{EnvDBPath: "  "}, home, "/home/u/.vox/populi/populi.db", false},
		{"flag beats env", "/x/flag.db", map[string]string{EnvDBPath: "/data/p.db"}, home, "/x/flag.db", false},
		{"tilde in flag", "~/d/p.db", nil, home, "/home/u/d/p.db", false},
		{"no home for default", "", nil, noHome, "", true},
		{"no home needed for absolute", "/abs.db", nil, noHome, "/abs.db", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveDBPath(tc.flag, MapLookup(tc.env), tc.home)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && got != filepath.Clean(tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIsLoopbackBind(t *testing.T) {
	t.Parallel()
	cases := []struct {
		bind    string
		want    bool
		wantErr bool
	}{
		{"127.0.0.1:9847", true, false},
		{"127.0.0.2:0", true, false},
		{"localhost:9847", true, false},
		{"[::1]:9847", true, false},
		{"0.0.0.0:9847", false, false},
		{"[::]:9847", false, false},
		{":9847", false, false},
		{"10.0.0.5:9847", false, false},
		{"example.com:9847", false, false},
		{"127.0.0.1", false, true},
	}
	for _, tc := range cases {
		got, err := isLoopbackBind(tc.bind)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("isLoopbackBind(%q) = %v, %v; want %v, err %v", tc.bind, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestOpenModeRefusalIsOneLineNamingVariables(t *testing.T) {
	t.Parallel()
	msg := openModeRefusal("0.0.0.0:9847").Error()
	if strings.Contains(msg, "\n") {
		t.Errorf("refusal spans lines: %q", msg)
	}
	for _, want := range []string{"0.0.0.0:9847", EnvMeshToken, EnvWorkerToken, EnvSubmitterToken, EnvAdminToken, EnvJWTSecret, "--allow-open"} {
		if !strings.Contains(msg, want) {
			t.Errorf("refusal %q does not name %s", msg, want)
		}
	}
}

func TestParseLevel(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"debug", "info", "warn", "error", "INFO"} {
		if _, err := parseLevel(ok); err != nil {
			t.Errorf("parseLevel(%q): %v", ok, err)
		}
	}
	if _, err := parseLevel("loud"); err == nil {
		t.Error("parseLevel(loud) succeeded")
	}
}

func TestSetupWarnings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		flag string
		want []string
	}{
		{"bootstrap without mesh token", map[string]string{EnvBootstrapToken: "boot-s3kr1t"}, "", []string{"bootstrap exchange is enabled but VOX_MESH_TOKEN is not set"}},
		{"bootstrap flag without mesh token", nil, "boot-s3kr1t", []string{"every exchange will answer 503"}},
		{"bootstrap with mesh token", map[string]string{EnvBootstrapToken: "b", EnvMeshToken: "m"}, "", nil},
		{"short JWT secret", map[string]string{EnvJWTSecret: " short-s3kr1t "}, "", []string{"VOX_MESH_JWT_HMAC_SECRET is 12 bytes, shorter than 32"}},
		{"32-byte JWT secret", map[string]string{EnvJWTSecret: strings.Repeat("k", 32)}, "", nil},
	} {
		e := ParseServerEnv(MapLookup(tc.env), testNow)
		e.SetBootstrapToken(tc.flag)
		got := e.SetupWarnings()
		if len(got) != len(tc.want) {
			t.Errorf("%s: warnings %q, want %d", tc.name, got, len(tc.want))
			continue
		}
		for i, w := range tc.want {
			if !strings.Contains(got[i], w) || strings.Contains(got[i], "s3kr1t") {
				t.Errorf("%s: warning %q, want it to contain %q and no secret", tc.name, got[i], w)
			}
		}
	}
}
