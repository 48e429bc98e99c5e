package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/client"
	"populi-db/internal/testserver"
	"populi-db/wire"
)

// cliEnv is a real in-process server (loopback, bbolt in t.TempDir()) and
// the environment the built binary runs with against it.
type cliEnv struct {
	t   *testing.T
	srv *testserver.Server
	env map[string]string
	adm *client.Client // full-rights client for setting up state
}

// secrets are the token values no command output may contain.
var secrets = []string{testserver.Tokens.Mesh, testserver.Tokens.Worker, testserver.Tokens.Submitter, testserver.Tokens.Admin}

// newCLIEnv starts a token-mode server; the binary's environment points
// at it and holds env (tokens, say).
func newCLIEnv(t *testing.T, o testserver.Options, env map[string]string) *cliEnv {
	t.Helper()
	if o.Tokens == (api.Tokens{}) {
		o.Tokens = testserver.Tokens
	}
	if o.Start.IsZero() {
		o.Start = time.Now() // tables print ages against the real clock
	}
	srv := testserver.Start(t, o)
	full := map[string]string{client.EnvControlURL: srv.URL}
	for k, v := range env {
		full[k] = v
	}
	adm, err := client.New(srv.URL, client.WithTokens(client.Tokens{Mesh: o.Tokens.Mesh, Admin: o.Tokens.Admin, Worker: o.Tokens.Worker}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close)
	return &cliEnv{t: t, srv: srv, env: full, adm: adm}
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// run runs the binary with the environment's variables.
func (e *cliEnv) run(args ...string) cliResult { return e.runWith(nil, "", args...) }

// runWith runs the binary with extra variables (a "" value unsets one) and
// stdin, and checks no secret is printed.
func (e *cliEnv) runWith(extra map[string]string, stdin string, args ...string) cliResult {
	e.t.Helper()
	env := map[string]string{}
	for k, v := range e.env {
		env[k] = v
	}
	for k, v := range extra {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	r := runCLI(e.t, env, stdin, args...)
	for _, s := range secrets {
		if strings.Contains(r.stdout+r.stderr, s) {
			e.t.Fatalf("populi-db %v printed a secret:\n%s\n%s", args, r.stdout, r.stderr)
		}
	}
	return r
}

// runCLI runs the built binary to completion (bounded) with a clean
// environment plus env.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) cliResult {
	t.Helper()
	bin := needBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = childEnv(t, env)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("populi-db %v did not finish in 30s", args)
	}
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run populi-db %v: %v", args, err)
	}
	return r
}

// want checks the exit code and that stdout and stderr contain the given
// texts ("" checks nothing).
func (r cliResult) want(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code || !strings.Contains(r.stdout, stdout) || !strings.Contains(r.stderr, stderr) {
		t.Fatalf("exit %d (want %d)\nstdout (want %q):\n%s\nstderr (want %q):\n%s", r.code, code, stdout, r.stdout, stderr, r.stderr)
	}
}

// roundTrip decodes -o json output into v and checks that encoding v again
// gives the same text: the output is exactly the wire type.
func roundTrip(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("-o json output does not parse: %v\n%s", err, out)
	}
	var b bytes.Buffer
	if err := printJSON(&b, v); err != nil {
		t.Fatal(err)
	}
	if b.String() != out {
		t.Fatalf("-o json does not round-trip:\nprinted:\n%s\nre-encoded:\n%s", out, b.String())
	}
}

func (e *cliEnv) join(id string) {
	e.t.Helper()
	if _, err := e.adm.Join(context.Background(), wire.NodeRecord{ID: id, Version: "1.2.3"}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *cliEnv) deliver(recv, payload string) uint64 {
	e.t.Helper()
	p := "private"
	id, err := e.adm.Deliver(context.Background(), wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: recv, MessageType: "task", Payload: payload, PrivacyClass: &p})
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// TestExitCodes: 0 ok, 1 the server said no, 2 usage, 3 unreachable; each
// error names what to set.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, testserver.Options{}, map[string]string{client.EnvMeshToken: testserver.Tokens.Mesh})

	e.run("nodes").want(t, 0, "ID", "")
	e.runWith(map[string]string{client.EnvMeshToken: "wrong"}, "", "nodes").
		want(t, 1, "", "populi HTTP 401 (list_nodes): unauthorized")
	e.runWith(map[string]string{client.EnvMeshToken: ""}, "", "leases").
		want(t, 1, "", "no token is set; export one of VOX_MESH_TOKEN, VOX_MESH_ADMIN_TOKEN")
	e.runWith(map[string]string{client.EnvMeshToken: testserver.Tokens.Worker}, "", "leases").
		want(t, 1, "", "populi HTTP 403 (exec_lease_list): populi: mesh/admin bearer required for exec lease list")

	// Usage errors: 2, naming the flag or variable.
	e.run("admin", "quarantine", "--state", "on").want(t, 2, "", "--node is required")
	e.run("nodes", "--bogus").want(t, 2, "", "flag provided but not defined: -bogus")
	e.run("nodes", "-o", "yaml").want(t, 2, "", `unknown --output "yaml"`)
	e.run("no-such-command").want(t, 2, "", `unknown command "no-such-command"`)
	e.runWith(map[string]string{client.EnvControlURL: ""}, "", "nodes").
		want(t, 2, "", "pass --control-url or set VOX_ORCHESTRATOR_MESH_CONTROL_URL (or VOX_MESH_CONTROL_ADDR)")
	e.runWith(map[string]string{client.EnvControlURL: "http://0.0.0.0:9847"}, "", "nodes").want(t, 2, "", "bind-all")
	// VOX_MESH_CONTROL_ADDR is the fallback.
	e.runWith(map[string]string{client.EnvControlURL: "", client.EnvControlAddr: e.srv.URL}, "", "nodes").want(t, 0, "ID", "")

	// Nobody listening: 3.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	e.run("queue", "--control-url", dead).want(t, 3, "", "cannot reach the server at "+dead)
}

func TestExitCodeMapping(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("x"), 1},
		{&client.HTTPStatusError{Status: 404}, 1},
		{usagef("--x is required"), 2},
		{&client.TransportError{Context: "c", Err: errors.New("refused")}, 3},
	} {
		if got := ExitCode(tc.err); got != tc.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

func TestHumanTimes(t *testing.T) {
	t.Parallel()
	now := time.UnixMilli(1_800_000_000_000)
	ms := func(d time.Duration) uint64 { return uint64(now.Add(d).UnixMilli()) }
	for in, want := range map[uint64]string{
		ms(-12 * time.Second): "12s ago",
		ms(-89 * time.Second): "89s ago",
		ms(-5 * time.Minute):  "5m ago",
		ms(-3 * time.Hour):    "3h ago",
		ms(-72 * time.Hour):   "3d ago",
		ms(25 * time.Minute):  "in 25m",
		0:                     "-",
	} {
		if got := ago(in, now); got != want {
			t.Errorf("ago(%v) = %q, want %q", now.Sub(time.UnixMilli(int64(in))), got, want)
		}
	}
	if got := clip("a\nlong   payload text", 8); got != "a long …" {
		t.Errorf("clip = %q", got)
	}
	for in, want := range map[string]string{"abc123": "abc123", "http://h:1": "http://h:1", "a b": "'a b'", "it's": `'it'\''s'`, "": "''"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %q, want %q", in, got, want)
		}
	}
}
