package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeObservability runs the binary with JSON logs and pprof: every
// log line parses, requests leave one access-log line each, /metrics is for
// mesh/admin only, /readyz answers, and pprof listens on loopback.
func TestServeObservability(t *testing.T) {
	t.Parallel()
	env := map[string]string{EnvMeshToken: "mesh-obs-token-aaaaaaaa", EnvWorkerToken: "worker-obs-token-bbbbbbb"}
	s := startServer(t, filepath.Join(t.TempDir(), "p.db"), env, "--log-format", "json", "--pprof", "127.0.0.1:0")

	if st, body := call(t, "GET", s.URL+"/readyz", "", nil, nil); st != 200 || body != "ready\n" {
		t.Errorf("GET /readyz = %d %q", st, body)
	}
	if st, body := call(t, "GET", s.URL+"/metrics", env[EnvWorkerToken], nil, nil); st != 403 || body != "populi: mesh/admin bearer required for metrics" {
		t.Errorf("worker scrape = %d %q", st, body)
	}
	st, scrape := call(t, "GET", s.URL+"/metrics", env[EnvMeshToken], nil, nil)
	for _, want := range []string{"populi_store_commits_total", "populi_store_commit_duration_seconds_count",
		"populi_sweep_pass_duration_seconds_count", "populi_nodes{state=\"active\"}", "go_goroutines"} {
		if st != 200 || !strings.Contains(scrape, want) {
			t.Errorf("mesh scrape (%d) lacks %s", st, want)
		}
	}
	call(t, "GET", s.URL+"/v1/populi/nodes", "a.b.c", nil, nil) // a malformed JWT-shaped bearer: 401

	pprofURL := ""
	eventuallyCLI(t, "the pprof URL in the log", func() bool {
		for _, rec := range jsonLines(t, s.stderr.String()) {
			if rec["msg"] == "pprof serving" {
				pprofURL, _ = rec["url"].(string)
			}
		}
		return pprofURL != ""
	})
	if !strings.HasPrefix(pprofURL, "http://127.0.0.1:") {
		t.Errorf("pprof URL %q is not loopback", pprofURL)
	}
	if st, body := call(t, "GET", pprofURL+"cmdline", "", nil, nil); st != 200 || !strings.Contains(body, "serve") {
		t.Errorf("pprof cmdline = %d %q", st, body)
	}
	if st, _ := call(t, "GET", s.URL+"/debug/pprof/cmdline", env[EnvMeshToken], nil, nil); st != 404 {
		t.Errorf("pprof on the API listener: %d, want 404", st)
	}

	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, s.stderr)
	}
	access := 0
	for _, rec := range jsonLines(t, s.stderr.String()) {
		if rec["msg"] != "http request" {
			continue
		}
		access++
		for _, k := range []string{"request_id", "method", "route", "status", "duration_ms", "bytes"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("access-log line lacks %s: %v", k, rec)
			}
		}
	}
	if access != 5 {
		t.Errorf("%d access-log lines, want one per API request (5)", access)
	}
	for _, v := range env {
		if strings.Contains(s.stderr.String(), v) {
			t.Errorf("a bearer appears in the logs")
		}
	}
}

// jsonLines parses every non-empty line of a JSON log, failing on any that
// is not a JSON object.
func jsonLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %v\n%s", err, line)
		}
		recs = append(recs, rec)
	}
	return recs
}

func eventuallyCLI(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeMetricsOpen(t *testing.T) {
	t.Parallel()
	env := map[string]string{EnvMeshToken: "mesh-open-metrics-cccccc"}
	s := startServer(t, filepath.Join(t.TempDir(), "p.db"), env, "--metrics-open")
	if st, body := call(t, "GET", s.URL+"/metrics", "", nil, nil); st != 200 || !strings.Contains(body, "populi_a2a_messages") {
		t.Errorf("--metrics-open scrape without a bearer = %d", st)
	}
	if st, _ := call(t, "GET", s.URL+"/v1/populi/nodes", "", nil, nil); st != 401 {
		t.Errorf("node list without a bearer = %d, want 401", st)
	}
	s.signal(syscall.SIGTERM)
	s.wait(15 * time.Second)
}

func TestServeObservabilityFlagErrors(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "p.db")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--pprof", "0.0.0.0:0"}, "refusing --pprof on 0.0.0.0:0"},
		{[]string{"--pprof", "nonsense"}, "--pprof"},
		{[]string{"--log-format", "xml"}, `unknown --log-format "xml"`},
		{[]string{"--access-log-level", "warn"}, `unknown --access-log-level "warn"`},
	} {
		code, out := runBinary(t, nil, 15*time.Second, append([]string{"serve", "--db", db, "--bind", "127.0.0.1:0"}, tc.args...)...)
		if code == 0 || !strings.Contains(out, tc.want) {
			t.Errorf("serve %v: exit %d, output %q; want a refusal naming %q", tc.args, code, out, tc.want)
		}
	}
}
