package security

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"populi-db/internal/clock"
	"populi-db/store"
)

// TestJWTRefusalReasons checks the reason each refusal reports (the
// populi_jwt_refusals_total label) and that a guard failure is logged
// through the configured logger, without the token.
func TestJWTRefusalReasons(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(t0)
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "db"), Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	var logs bytes.Buffer
	v := NewJWTVerifier(testSecret, st, clk,
		WithJWTLogger(slog.New(slog.NewTextHandler(&logs, nil))),
		WithJWTRefusals(func(r string) { reasons = append(reasons, r) }))

	good := signRaw(t, testSecret, hs256, claimsAt("worker", "j1"))
	for _, tc := range []struct {
		token, reason string
	}{
		{"not-a-jwt", "malformed"},
		{signRaw(t, testSecret+"x", hs256, claimsAt("admin", "j2")), "signature"},
		{signRaw(t, testSecret, hs256, with(claimsAt("admin", "j3"), "exp", t0.Add(-time.Hour).Unix())), "claims"},
		{good, ""},
		{good, "replayed"},
		{signRaw(t, testSecret, hs256, claimsAt("root", "j4")), "role"},
	} {
		reasons = reasons[:0]
		_, err := v.VerifyJWT(tc.token)
		got := strings.Join(reasons, ",")
		if got != tc.reason || (tc.reason == "") != (err == nil) {
			t.Errorf("token for reason %q: reported %q, err %v", tc.reason, got, err)
		}
	}

	// A closed store is a guard failure: logged through our logger.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	reasons = reasons[:0]
	late := signRaw(t, testSecret, hs256, claimsAt("worker", "j5"))
	if _, err := v.VerifyJWT(late); err == nil || strings.Join(reasons, ",") != "guard_error" {
		t.Fatalf("closed store: err %v, reasons %v", err, reasons)
	}
	if !strings.Contains(logs.String(), "jwt replay guard unavailable") || strings.Contains(logs.String(), late) {
		t.Fatalf("guard failure log via the configured logger, without the token; got:\n%s", logs.String())
	}
}
