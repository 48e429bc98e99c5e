package api

import (
	"net/http"
	"testing"
)

// The route table carries every route's role class and the adapter
// enforces it, so the table itself must be complete: every authenticated
// route has its 403 text, only /health, /readyz, /openapi.yaml and bootstrap
// are public (/metrics only per server, with --metrics-open), and every
// POST route declares its body (decoded before the role check).
func TestRouteTableComplete(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, rt := range routes {
		key := rt.method + " " + rt.path
		if seen[key] {
			t.Errorf("%s listed twice", key)
		}
		seen[key] = true
		switch {
		case rt.class == classPublic && rt.path != pathHealth && rt.path != pathBootstrap && rt.path != pathReady && rt.path != pathOpenAPI:
			t.Errorf("%s is public: only %s, %s, %s and %s are", key, pathHealth, pathReady, pathOpenAPI, pathBootstrap)
		case rt.class != classPublic && (rt.denied == nil || rt.denied.Message == ""):
			t.Errorf("%s has no 403 text", key)
		case rt.handle.serve == nil:
			t.Errorf("%s has no handler", key)
		case rt.method == http.MethodPost && rt.handle.newBody == nil:
			t.Errorf("%s is a POST without a body type", key)
		case rt.method == http.MethodGet && rt.handle.newBody != nil:
			t.Errorf("%s is a GET with a body type", key)
		}
	}
}
