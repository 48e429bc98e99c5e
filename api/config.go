// Package api is populi-db's HTTP layer: httprouter handlers that decode,
// authorize, call one store method and encode. Status codes and texts come
// from one table (errors.go); every response carries x-populi-feature and
// x-request-id.
package api

import (
	"log/slog"
	"time"

	"populi-db/metrics"
	"populi-db/store"
	"populi-db/wire"
)

// Role is the identity a request authenticated as (SPEC 3.5).
type Role int

const (
	RoleNone Role = iota
	RoleOpen      // open mode: no secret configured, everything allowed
	RoleMesh
	RoleWorker
	RoleSubmitter
	RoleAdmin
)

// JWTVerifier checks an HS256 bearer (SPEC 3.4), including the durable
// replay guard, and returns the role it grants. Any failure is
// wire.ErrUnauthorized. Implemented by package security.
type JWTVerifier interface {
	VerifyJWT(token string) (Role, error)
}

// Attestor checks the result-attestation fields of a delivery (SPEC 6.8)
// and returns a *wire.Error with the spec's status and text on failure.
// Implemented by package security.
type Attestor interface {
	VerifyDelivery(req *wire.DeliverRequest) error
}

// RateLimiter admits or refuses a request from a client IP (SPEC 16.14).
type RateLimiter interface {
	Allow(clientIP string) bool
}

// Bootstrap is the resolved bootstrap-exchange configuration (SPEC 4).
type Bootstrap struct {
	Token         string // empty = disabled
	ExpiresUnixMs uint64 // 0 = no expiry
}

// Tokens are the opaque bearer secrets (SPEC 3.1), already trimmed; empty
// means not configured.
type Tokens struct {
	Mesh, Worker, Submitter, Admin string
}

// Config is everything the HTTP layer needs; cli builds it from flags and
// the environment (SPEC 13.1).
type Config struct {
	Store        *store.Store
	Logger       *slog.Logger // default slog.Default()
	Tokens       Tokens
	JWT          JWTVerifier // nil = JWT bearers disabled
	JWTEnabled   bool        // a JWT secret is configured (affects open mode)
	Attestor     Attestor    // nil = no verify key: attested deliveries get 503
	RateLimiter  RateLimiter // nil = no rate limiting
	ScopeID      string      // required scope for join/heartbeat; empty = none
	StalePruneMs uint64      // node list filter; 0 = off
	MaxBodyBytes int64       // default 524288
	Bootstrap    Bootstrap
	// ReportedScopeID is VOX_MESH_SCOPE_ID as returned by bootstrap (nil when unset).
	ReportedScopeID *string
	// MaxWait caps long-poll claims; default store.MaxWait.
	MaxWait time.Duration
	// FederationMaxEntries caps the federation directory; default
	// federation.MaxEntries.
	FederationMaxEntries int

	// Metrics is the registry /metrics serves; nil = a fresh one. Pass one
	// to share it with the store's commit observer, the sweeper and the JWT
	// verifier.
	Metrics *metrics.Metrics
	// MetricsOpen serves /metrics without a bearer (e.g. for a scraper on
	// loopback); otherwise it needs a mesh or admin bearer.
	MetricsOpen bool
	// MetricsTopReceivers bounds the per-receiver series; 0 = default.
	MetricsTopReceivers int
	// AccessLogLevel is the level of the one access-log line per request
	// (default info; set slog.LevelDebug to see it only at --log-level debug).
	AccessLogLevel slog.Level
	// OpenAPI is the document GET /openapi.yaml serves; nil = 404.
	OpenAPI []byte
}

// MaxBodyBytesDefault is SPEC 11's default body limit.
const MaxBodyBytesDefault = 524288

// FeatureHeader is the constant x-populi-feature value (SPEC 12) followed by
// issue 9's additive tokens and issue 17's federation-persist-v1 (the directory
// is durable, SPEC 16.29).
const FeatureHeader = "mesh-auth-v1,a2a-observe-v1,quarantine-v1,maintenance-v1,maintenance-deadline-v1,lease-renew-v1,exec-lease-v1,exec-lease-admin-revoke-v1,exec-lease-persist-v1,a2a-inbox-limit-v1,jwt-bearer-v1,result-attest-v1,detached-results-v1,lease-fencing-v1,a2a-dead-letter-v1,a2a-nack-v1,a2a-long-poll-v1,queue-stats-by-state-v1,federation-persist-v1"
