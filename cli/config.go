package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"populi-db/api"
	"populi-db/store"
)

// Environment variables read by `serve` (SPEC 13.1, 16.5, 16.10, 16.14,
// issue 9). Each is resolved once at startup.
const (
	EnvDBPath           = "VOX_MESH_DB_PATH"
	EnvMeshToken        = "VOX_MESH_TOKEN"
	EnvWorkerToken      = "VOX_MESH_WORKER_TOKEN"
	EnvSubmitterToken   = "VOX_MESH_SUBMITTER_TOKEN"
	EnvAdminToken       = "VOX_MESH_ADMIN_TOKEN"
	EnvJWTSecret        = "VOX_MESH_JWT_HMAC_SECRET"
	EnvAuthScheme       = "VOX_MESH_AUTH_SCHEME"
	EnvScopeID          = "VOX_MESH_SCOPE_ID"
	EnvBootstrapToken   = "VOX_MESH_BOOTSTRAP_TOKEN"
	EnvBootstrapExpires = "VOX_MESH_BOOTSTRAP_EXPIRES_UNIX_MS"
	EnvVerifyKey        = "VOX_MESH_WORKER_RESULT_VERIFY_KEY"
	EnvLeaseMs          = "VOX_MESH_A2A_LEASE_MS"
	EnvMaxMessages      = "VOX_MESH_A2A_MAX_MESSAGES"
	EnvMaxDeliveries    = "VOX_MESH_A2A_MAX_DELIVERIES"
	EnvMaxBodyBytes     = "VOX_MESH_HTTP_MAX_BODY_BYTES"
	EnvStalePruneMs     = "VOX_MESH_SERVER_STALE_PRUNE_MS"
	EnvRateLimit        = "VOX_MESH_HTTP_RATE_LIMIT"
	EnvRateLimitPerSec  = "VOX_MESH_HTTP_RATE_LIMIT_PER_SEC"
	EnvRateLimitBurst   = "VOX_MESH_HTTP_RATE_LIMIT_BURST"
)

// Defaults and clamps of the environment (SPEC 13.1, 11, 16.14, issue 9).
const (
	LeaseMsDefault         = 120_000
	LeaseMsMin             = 1_000
	LeaseMsMax             = 3_600_000
	MaxMessagesDefault     = store.MaxMessagesDefault // 50000
	MaxMessagesMin         = 1
	MaxMessagesMax         = store.MaxMessagesMax // 500000
	MaxDeliveriesDefault   = store.MaxDeliveriesDefault
	MaxBodyBytesDefault    = api.MaxBodyBytesDefault // 524288
	MaxBodyBytesMin        = 2048
	MaxBodyBytesMax        = 8_388_608
	RateLimitPerSecDefault = 50
	AuthSchemeDefault      = "ed25519-envelope"
)

// LookupFunc reads one environment variable, like os.LookupEnv.
type LookupFunc func(key string) (string, bool)

// MapLookup adapts a map to a LookupFunc (tests).
func MapLookup(m map[string]string) LookupFunc {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// RateLimit is the resolved VOX_MESH_HTTP_RATE_LIMIT* setting (SPEC 16.14).
type RateLimit struct {
	Enabled bool
	PerSec  int
	Burst   int
}

// ServerEnv is everything `serve` takes from the environment. Store and API
// carry the plain settings; the secrets that need a constructor from package
// security (JWT secret, verify key, rate limit) are kept apart so serve can
// build the verifiers once the store is open.
type ServerEnv struct {
	Store      store.Config // LeaseTTL, MaxMessages, MaxDeliveries (Path is set by serve)
	API        api.Config   // Tokens, ScopeID, ReportedScopeID, StalePruneMs, MaxBodyBytes, Bootstrap, JWTEnabled
	JWTSecret  string
	VerifyKey  string
	RateLimit  RateLimit
	AuthScheme string
	// BootstrapExpired: the configured expiry was already past at startup
	// (SPEC 16.5: kept, so every exchange answers 410 "bootstrap token expired").
	BootstrapExpired bool
	// Warnings are operator-facing notes (never containing a secret) that
	// serve logs at warn level.
	Warnings []string
}

// OpenMode reports whether no secret at all is configured (SPEC 3.2): every
// request is then fully privileged.
func (e *ServerEnv) OpenMode() bool {
	t := e.API.Tokens
	return t.Mesh == "" && t.Worker == "" && t.Submitter == "" && t.Admin == "" && e.JWTSecret == ""
}

// AuthModes names the active authentication modes for the startup log —
// names only, never values.
func (e *ServerEnv) AuthModes() []string {
	if e.OpenMode() {
		return []string{"open"}
	}
	var m []string
	t := e.API.Tokens
	for _, x := range []struct {
		name string
		set  bool
	}{
		{"mesh-token", t.Mesh != ""},
		{"worker-token", t.Worker != ""},
		{"submitter-token", t.Submitter != ""},
		{"admin-token", t.Admin != ""},
		{"jwt-hs256", e.JWTSecret != ""},
	} {
		if x.set {
			m = append(m, x.name)
		}
	}
	return m
}

// SetBootstrapToken applies `serve --bootstrap-token`, which overrides the
// environment and is used verbatim (SPEC 4). An empty flag changes nothing.
func (e *ServerEnv) SetBootstrapToken(flag string) {
	if flag != "" {
		e.API.Bootstrap.Token = flag
	}
}

// JWTSecretMinBytes is the shortest VOX_MESH_JWT_HMAC_SECRET serve accepts
// without a warning (HS256 keys should be at least the hash size).
const JWTSecretMinBytes = 32

// SetupWarnings are the startup warnings about settings that work but
// defeat themselves; call after SetBootstrapToken. They name variables,
// never values.
func (e *ServerEnv) SetupWarnings() []string {
	var w []string
	if e.API.Bootstrap.Token != "" && e.API.Tokens.Mesh == "" {
		w = append(w, fmt.Sprintf("bootstrap exchange is enabled but %s is not set: every exchange will answer 503 (set %s, the token the exchange hands out)",
			EnvMeshToken, EnvMeshToken))
	}
	if n := len(e.JWTSecret); n > 0 && n < JWTSecretMinBytes {
		w = append(w, fmt.Sprintf("%s is %d bytes, shorter than %d: use at least %d random bytes (e.g. the output of `openssl rand -hex 32`)",
			EnvJWTSecret, n, JWTSecretMinBytes, JWTSecretMinBytes))
	}
	return w
}

// ParseServerEnv resolves SPEC 13.1 (plus issue 9's VOX_MESH_A2A_MAX_DELIVERIES)
// from lookup at instant now. It never fails: a value it cannot use falls
// back to its default, with a warning where the operator would want one.
func ParseServerEnv(lookup LookupFunc, now time.Time) ServerEnv {
	var e ServerEnv
	get := func(k string) string { // trimmed; blank = unset
		v, _ := lookup(k)
		return strings.TrimSpace(v)
	}

	e.API.Tokens = api.Tokens{
		Mesh:      get(EnvMeshToken),
		Worker:    get(EnvWorkerToken),
		Submitter: get(EnvSubmitterToken),
		Admin:     get(EnvAdminToken),
	}
	e.JWTSecret = get(EnvJWTSecret)
	e.API.JWTEnabled = e.JWTSecret != ""

	e.AuthScheme = strings.ToLower(get(EnvAuthScheme))
	switch e.AuthScheme {
	case "":
		e.AuthScheme = AuthSchemeDefault
	case AuthSchemeDefault:
	case "jwt-hs256", "both":
		e.Warnings = append(e.Warnings, fmt.Sprintf(
			"%s=%s is deprecated and has no effect: JWT bearers are accepted whenever %s is set",
			EnvAuthScheme, e.AuthScheme, EnvJWTSecret))
	default:
		e.Warnings = append(e.Warnings, fmt.Sprintf(
			"%s=%q is not one of ed25519-envelope, jwt-hs256, both; it has no effect on HTTP auth",
			EnvAuthScheme, e.AuthScheme))
	}

	if s := get(EnvScopeID); s != "" {
		e.API.ScopeID = s
		e.API.ReportedScopeID = &s
	}

	e.API.Bootstrap.Token = get(EnvBootstrapToken)
	if v := get(EnvBootstrapExpires); v != "" {
		exp, err := strconv.ParseUint(v, 10, 64)
		switch {
		case err != nil:
			e.Warnings = append(e.Warnings, fmt.Sprintf("%s is not an unsigned integer; the bootstrap token has no expiry", EnvBootstrapExpires))
		case exp <= uint64(now.UnixMilli()):
			// SPEC 16.5: a past expiry means expired (the original discarded
			// it, i.e. "never expires"). 0 is api's "no expiry", so a past 0
			// is stored as 1 — still in the past.
			e.API.Bootstrap.ExpiresUnixMs = max(exp, 1)
			e.BootstrapExpired = true
			if e.API.Bootstrap.Token != "" {
				e.Warnings = append(e.Warnings, fmt.Sprintf("%s is in the past: bootstrap exchange will answer 410 bootstrap token expired", EnvBootstrapExpires))
			}
		default:
			e.API.Bootstrap.ExpiresUnixMs = exp
		}
	}

	e.VerifyKey = get(EnvVerifyKey)

	leaseMs := parseUintDefault(get(EnvLeaseMs), LeaseMsDefault)
	leaseMs = min(max(leaseMs, LeaseMsMin), LeaseMsMax)
	e.Store.LeaseTTL = time.Duration(leaseMs) * time.Millisecond

	maxMsgs := parseUintDefault(get(EnvMaxMessages), MaxMessagesDefault)
	e.Store.MaxMessages = int(min(max(maxMsgs, MaxMessagesMin), MaxMessagesMax))

	e.Store.MaxDeliveries = int(min(parseUintDefault(get(EnvMaxDeliveries), MaxDeliveriesDefault), 1<<31-1))

	// SPEC 11: no trim; out of range is ignored, not clamped.
	body := uint64(MaxBodyBytesDefault)
	if raw, ok := lookup(EnvMaxBodyBytes); ok {
		if v, err := strconv.ParseUint(raw, 10, 64); err == nil && v >= MaxBodyBytesMin && v <= MaxBodyBytesMax {
			body = v
		} else if raw != "" {
			e.Warnings = append(e.Warnings, fmt.Sprintf("%s=%q ignored (must be an integer in [%d, %d]); using %d",
				EnvMaxBodyBytes, raw, MaxBodyBytesMin, MaxBodyBytesMax, MaxBodyBytesDefault))
		}
	}
	e.API.MaxBodyBytes = int64(body)

	e.API.StalePruneMs = parseUintDefault(get(EnvStalePruneMs), 0)

	switch strings.ToLower(get(EnvRateLimit)) {
	case "1", "true", "on", "yes":
		e.RateLimit.Enabled = true
	}
	perSec := parseUintDefault(get(EnvRateLimitPerSec), RateLimitPerSecDefault)
	if perSec == 0 {
		perSec = RateLimitPerSecDefault
	}
	perSec = min(perSec, 1<<30)
	burst := parseUintDefault(get(EnvRateLimitBurst), 2*perSec)
	if burst == 0 {
		burst = 2 * perSec
	}
	burst = min(burst, 1<<30)
	e.RateLimit.PerSec, e.RateLimit.Burst = int(perSec), int(burst)
	return e
}

// parseUintDefault parses an already-trimmed unsigned decimal; blank or
// unparsable gives def.
func parseUintDefault(v string, def uint64) uint64 {
	if v == "" {
		return def
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return def
	}
	return n
}
