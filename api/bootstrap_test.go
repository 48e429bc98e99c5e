package api_test

import (
	"testing"
	"time"

	"populi-db/api"
	"populi-db/wire"
)

const pathExchange = "/v1/populi/bootstrap/exchange"

func exchange(tok string) map[string]any { return map[string]any{"bootstrap_token": tok} }

func scopePtr(s string) *string { return &s }

// D10 and SPEC 4 with 16.5's fixes.
func TestD10Bootstrap(t *testing.T) {
	t.Parallel()
	expiry := uint64(t0.Add(time.Hour).UnixMilli())
	cfg := opts{
		tokens:        api.Tokens{Mesh: "mesh-unit-token"},
		reportedScope: scopePtr("scope-unit"),
		bootstrap:     api.Bootstrap{Token: "boot-1", ExpiresUnixMs: expiry},
	}
	b := setup(t, cfg)
	b.post(pathExchange, exchange(" boot-1 "), as("")).expect(t, 200, `{"mesh_token":"mesh-unit-token","scope_id":"scope-unit"}`)
	b.post(pathExchange, exchange("boot-1"), as("")).expectErr(t, 410, wire.ErrBootstrapConsumed)
	// The consumed state is durable.
	b.restart()
	b.post(pathExchange, exchange("boot-1"), as("")).expectErr(t, 410, wire.ErrBootstrapConsumed)

	// Wrong token first → 401, and (16.5) the right one still works after.
	c := setup(t, cfg)
	c.post(pathExchange, exchange("nope"), as("")).expectErr(t, 401, wire.ErrBootstrapInvalid)
	c.post(pathExchange, exchange("boot-1"), as("")).expect(t, 200, `{"mesh_token":"mesh-unit-token","scope_id":"scope-unit"}`)

	// Five wrong tokens use it up.
	d := setup(t, cfg)
	for i := 0; i < 5; i++ {
		d.post(pathExchange, exchange("nope"), as("")).expectErr(t, 401, wire.ErrBootstrapInvalid)
	}
	d.post(pathExchange, exchange("boot-1"), as("")).expectErr(t, 410, wire.ErrBootstrapConsumed)

	// Expiry: at the deadline still valid, strictly after it expired.
	e := setup(t, cfg)
	e.clock.Advance(time.Hour + time.Millisecond)
	e.post(pathExchange, exchange("boot-1"), as("")).expectErr(t, 410, wire.ErrBootstrapExpired)
}

func TestBootstrapDisabledAndMisconfigured(t *testing.T) {
	t.Parallel()
	off := setup(t, opts{tokens: testTokens})
	off.post(pathExchange, exchange("x"), as("")).expectErr(t, 404, wire.ErrBootstrapDisabled)
	// Body decoding comes first, even when disabled.
	if r := off.post(pathExchange, map[string]any{}, as("")); r.status != 422 {
		t.Fatalf("missing field: %d %q", r.status, r.body)
	}
	if r := off.post(pathExchange, "{", as("")); r.status != 400 {
		t.Fatalf("bad JSON: %d %q", r.status, r.body)
	}
	// No mesh token to hand out → 503; scope_id is null when unset.
	nomesh := setup(t, opts{bootstrap: api.Bootstrap{Token: "b"}})
	nomesh.post(pathExchange, exchange("b")).expectErr(t, 503, wire.ErrBootstrapNoMesh)
	ok := setup(t, opts{tokens: api.Tokens{Mesh: "m"}, bootstrap: api.Bootstrap{Token: "b"}})
	ok.post(pathExchange, exchange("b"), as("")).expect(t, 200, `{"mesh_token":"m","scope_id":null}`)
}
