// Package agent is the worker side of the control plane (SPEC 13.2, 14,
// 15.6): it builds this machine's NodeRecord from the environment and the
// GPU probe, joins, heartbeats with backoff, leaves on shutdown, optionally
// publishes the local registry file, and optionally runs a claim → exec →
// ack/nack work loop over the A2A queue.
package agent

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"populi-db/client"
	"populi-db/probe"
	"populi-db/wire"
)

// Environment variables the agent reads (SPEC 13.2, 15.2, 15.5).
const (
	EnvEnabled           = "VOX_MESH_ENABLED"
	EnvNodeID            = "VOX_MESH_NODE_ID"
	EnvControlURL        = client.EnvControlURL
	EnvControlAddr       = client.EnvControlAddr
	EnvHTTPJoin          = "VOX_MESH_HTTP_JOIN"
	EnvHeartbeatSecs     = "VOX_MESH_HTTP_HEARTBEAT_SECS"
	EnvHTTPTimeoutMs     = "VOX_ORCHESTRATOR_MESH_HTTP_TIMEOUT_MS"
	EnvScopeID           = "VOX_MESH_SCOPE_ID"
	EnvVisibility        = "VOX_MESH_VISIBILITY"
	EnvDonationPolicy    = "VOX_MESH_DONATION_POLICY_JSON"
	EnvRegistryPath      = "VOX_MESH_REGISTRY_PATH"
	EnvWorkerToken       = client.EnvWorkerToken
	EnvMeshToken         = client.EnvMeshToken
	EnvAdminToken        = client.EnvAdminToken
	EnvBootstrapToken    = "VOX_MESH_BOOTSTRAP_TOKEN"
	EnvStateDir          = "VOX_MESH_AGENT_STATE_DIR"
	EnvReadinessProbeOff = "VOX_MESH_GPU_READINESS_PROBE_OFF"
)

// Defaults (SPEC 13.2, 14.3, 15.6, 16.20).
const (
	HeartbeatIntervalDefault = 30 * time.Second
	// HeartbeatIntervalMin is the effective minimum of a non-zero interval.
	HeartbeatIntervalMin = time.Second
	HTTPTimeoutDefault   = 15 * time.Second
	HTTPTimeoutMin       = 500 * time.Millisecond
	// ProbeTTLDefault is how long a GPU probe result is reused between
	// record rebuilds (SPEC 14.3: "a cache TTL of 5 minutes").
	ProbeTTLDefault = 5 * time.Minute
	// BackoffCapDefault caps the heartbeat backoff (SPEC 15.6).
	BackoffCapDefault = 5 * time.Minute
	// StateDirDefault is the state directory under the home directory.
	StateDirDefault = "~/.vox/populi/agent"
	// RegistryPathDefault is the local registry file under the home
	// directory (SPEC 1.4).
	RegistryPathDefault = "~/.vox/cache/populi/local-registry.json"
)

// Env is what the agent takes from the environment (SPEC 13.2), resolved
// once. Blank values count as unset.
type Env struct {
	// ControlURL is the normalized control-plane base URL (15.5, 15.6 step
	// 1); "" when none is configured or the values are bind-all addresses.
	ControlURL string
	// JoinEnabled is false when VOX_MESH_HTTP_JOIN is 0/false.
	JoinEnabled bool
	// Interval is the heartbeat interval; 0 means join only.
	Interval time.Duration
	// Timeout is the per-request timeout for join/heartbeat.
	Timeout time.Duration
	// Token is the worker-plane bearer: worker → mesh → admin (16.11).
	Token string
	// BootstrapToken is a one-time token to exchange for the mesh token.
	BootstrapToken string
	// NodeID is VOX_MESH_NODE_ID (trimmed); "" = use the state dir's id.
	NodeID string
	// PublishRegistry is VOX_MESH_ENABLED truthy; RegistryPath is
	// VOX_MESH_REGISTRY_PATH verbatim ("" = the default location).
	PublishRegistry bool
	RegistryPath    string
	// StateDir is VOX_MESH_AGENT_STATE_DIR ("" = the default).
	StateDir string
	// Warnings are operator-facing notes about values that were ignored.
	Warnings []string
}

// ParseEnv resolves the agent's environment. A nil getenv is an empty
// environment.
func ParseEnv(getenv func(string) string) Env {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	e := Env{JoinEnabled: true, Interval: HeartbeatIntervalDefault, Timeout: HTTPTimeoutDefault}

	e.ControlURL = NormalizeControlURL(get(EnvControlURL))
	if e.ControlURL == "" {
		e.ControlURL = NormalizeControlURL(get(EnvControlAddr))
	}
	switch strings.ToLower(get(EnvHTTPJoin)) {
	case "0", "false":
		e.JoinEnabled = false
	}
	if v := get(EnvHeartbeatSecs); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			e.Interval = time.Duration(min(n, 1<<30)) * time.Second
		} else {
			e.Warnings = append(e.Warnings, EnvHeartbeatSecs+" is not an unsigned integer; using 30")
		}
	}
	if v := get(EnvHTTPTimeoutMs); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err == nil && time.Duration(n)*time.Millisecond >= HTTPTimeoutMin && n < 1<<40 {
			e.Timeout = time.Duration(n) * time.Millisecond
		} else {
			e.Warnings = append(e.Warnings, EnvHTTPTimeoutMs+" ignored (want an integer >= 500); using 15000")
		}
	}
	for _, k := range []string{EnvWorkerToken, EnvMeshToken, EnvAdminToken} {
		if v := get(k); v != "" {
			e.Token = v
			break
		}
	}
	e.BootstrapToken = get(EnvBootstrapToken)
	e.NodeID = get(EnvNodeID)
	e.PublishRegistry = probe.Truthy(getenv(EnvEnabled))
	e.RegistryPath = getenv(EnvRegistryPath) // verbatim (SPEC 1.4)
	e.StateDir = get(EnvStateDir)
	return e
}

// NormalizeControlURL applies SPEC 15.5 (client.NormalizeControlURL):
// trim; add http:// when there is no scheme; drop trailing slashes; a blank
// value or a bind-all host (0.0.0.0, ::) gives "".
func NormalizeControlURL(raw string) string {
	u, ok := client.NormalizeControlURL(raw)
	if !ok {
		return ""
	}
	return u
}

// RecordEnv is the part of the environment that goes into the NodeRecord
// (SPEC 13.2, 14.4, 14.5).
type RecordEnv struct {
	ScopeID, Visibility string
	DonationPolicy      *wire.WorkerDonationPolicy
	Probe               probe.Options
}

// ParseRecordEnv reads scope, visibility, donation policy and the readiness
// switch. An invalid VOX_MESH_DONATION_POLICY_JSON is ignored (13.2), with
// a warning.
func ParseRecordEnv(getenv func(string) string) (RecordEnv, []string) {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	var warn []string
	r := RecordEnv{
		ScopeID:    strings.TrimSpace(getenv(EnvScopeID)),
		Visibility: strings.TrimSpace(getenv(EnvVisibility)),
		Probe:      probe.OptionsFromEnv(getenv),
	}
	if v := strings.TrimSpace(getenv(EnvDonationPolicy)); v != "" {
		var p wire.WorkerDonationPolicy
		if err := json.Unmarshal([]byte(v), &p); err != nil {
			warn = append(warn, EnvDonationPolicy+" is not a valid donation policy and is ignored: "+err.Error())
		} else {
			r.DonationPolicy = &p
		}
	}
	return r, warn
}
