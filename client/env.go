package client

import (
	"fmt"
	"net"
	"strings"
)

// Environment variables the client reads through WithEnv (SPEC-compatible
// names shared with the server and the worker agent).
const (
	EnvControlURL     = "VOX_ORCHESTRATOR_MESH_CONTROL_URL"
	EnvControlAddr    = "VOX_MESH_CONTROL_ADDR"
	EnvMeshToken      = "VOX_MESH_TOKEN"
	EnvWorkerToken    = "VOX_MESH_WORKER_TOKEN"
	EnvSubmitterToken = "VOX_MESH_SUBMITTER_TOKEN"
	EnvAdminToken     = "VOX_MESH_ADMIN_TOKEN"
	EnvRetryTransient = "VOX_POPULI_HTTP_RETRY_TRANSIENT"
)

// LookupFunc reads one environment variable, like os.LookupEnv.
type LookupFunc func(key string) (string, bool)

// NormalizeControlURL turns an operator-given control URL into a base URL:
// trimmed, "http://" added when no scheme is given, trailing slashes
// removed. It reports false for a blank value or a bind-all host (0.0.0.0,
// ::), which is a listen address, not somewhere to send requests.
func NormalizeControlURL(raw string) (string, bool) {
	u := strings.TrimSpace(raw)
	if u == "" {
		return "", false
	}
	lower := strings.ToLower(u)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		u = "http://" + u
	}
	u = strings.TrimRight(u, "/")
	rest := u[strings.Index(u, "://")+3:]
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	host := rest
	if h, _, err := net.SplitHostPort(rest); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" || host == "0.0.0.0" || host == "::" {
		return "", false
	}
	return u, true
}

// ControlURLFromEnv resolves the control URL the way every populi-db
// command does: flag (when non-blank), else VOX_ORCHESTRATOR_MESH_CONTROL_URL,
// else VOX_MESH_CONTROL_ADDR; a bind-all or blank value falls through to the
// next. The error names what to set.
func ControlURLFromEnv(flag string, lookup LookupFunc) (string, error) {
	if strings.TrimSpace(flag) != "" {
		u, ok := NormalizeControlURL(flag)
		if !ok {
			return "", fmt.Errorf("invalid or bind-all control URL: %s (pass a reachable --control-url such as http://127.0.0.1:9847)", flag)
		}
		return u, nil
	}
	var seen []string
	for _, k := range []string{EnvControlURL, EnvControlAddr} {
		v, _ := lookup(k)
		if strings.TrimSpace(v) == "" {
			continue
		}
		if u, ok := NormalizeControlURL(v); ok {
			return u, nil
		}
		seen = append(seen, fmt.Sprintf("%s=%s", k, v))
	}
	if len(seen) > 0 {
		return "", fmt.Errorf("invalid or bind-all control URL (%s): pass --control-url or set %s to a reachable URL such as http://127.0.0.1:9847",
			strings.Join(seen, ", "), EnvControlURL)
	}
	return "", fmt.Errorf("no control URL: pass --control-url or set %s (or %s), e.g. http://127.0.0.1:9847", EnvControlURL, EnvControlAddr)
}

// TokensFromEnv reads the four bearer variables, trimmed.
func TokensFromEnv(lookup LookupFunc) Tokens {
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }
	return Tokens{
		Mesh:      get(EnvMeshToken),
		Worker:    get(EnvWorkerToken),
		Submitter: get(EnvSubmitterToken),
		Admin:     get(EnvAdminToken),
	}
}

// RetryFromEnv reports whether VOX_POPULI_HTTP_RETRY_TRANSIENT enables
// transient retries (trimmed, case-insensitive 1, true or yes).
func RetryFromEnv(lookup LookupFunc) bool {
	v, _ := lookup(EnvRetryTransient)
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes":
		return true
	}
	return false
}
