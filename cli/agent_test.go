package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// agentProc is a `populi-db agent` child process.
type agentProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func startAgent(t *testing.T, env map[string]string, args ...string) *agentProc {
	t.Helper()
	bin := needBinary(t)
	p := &agentProc{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"agent"}, args...)...)
	p.cmd.Env = childEnv(t, env)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start agent: %v", err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// term sends SIGTERM and requires a clean exit within 20 s.
func (p *agentProc) term() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("agent did not exit after SIGTERM; stderr:\n%s", p.stderr)
	}
	if p.err != nil {
		p.t.Fatalf("agent exited with %v; stderr:\n%s", p.err, p.stderr)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The agent binary joins with a node id it keeps in its state dir,
// publishes the local registry file, and on SIGTERM leaves and exits 0.
// A restart keeps the node id. The bearer comes from a bootstrap token that
// is exchanged once: the restart (whose exchange would get 410) uses the
// token saved in the state dir.
func TestAgentCommandJoinLeaveStableIDBootstrap(t *testing.T) {
	t.Parallel()
	srv := startServer(t, filepath.Join(t.TempDir(), "p.db"), map[string]string{
		"VOX_MESH_TOKEN": "mesh-tok", "VOX_MESH_BOOTSTRAP_TOKEN": "boot-1",
	})
	state := filepath.Join(t.TempDir(), "state")
	registry := filepath.Join(t.TempDir(), "reg", "local-registry.json")
	env := map[string]string{
		"VOX_ORCHESTRATOR_MESH_CONTROL_URL": srv.URL, "VOX_MESH_AGENT_STATE_DIR": state,
		"VOX_MESH_BOOTSTRAP_TOKEN": "boot-1", "VOX_MESH_HTTP_HEARTBEAT_SECS": "1",
		"VOX_MESH_ENABLED": "1", "VOX_MESH_REGISTRY_PATH": registry,
	}
	a := startAgent(t, env)
	var id string
	waitFor(t, "node id in the state dir", func() bool {
		b, err := os.ReadFile(filepath.Join(state, "node-id"))
		id = strings.TrimSpace(string(b))
		return err == nil && id != ""
	})
	if !strings.HasPrefix(id, "local-") {
		t.Fatalf("generated id %q", id)
	}
	waitFor(t, "node listed", func() bool { return listNodeIDs(t, srv.URL, "mesh-tok")[id] })
	if fi, err := os.Stat(filepath.Join(state, "credentials.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials: %v %v", fi, err)
	}
	if b, err := os.ReadFile(registry); err != nil || !strings.Contains(string(b), `"id": "`+id+`"`) {
		t.Fatalf("registry file: %v\n%s", err, b)
	}
	a.term()
	if listNodeIDs(t, srv.URL, "mesh-tok")[id] {
		t.Fatalf("node still listed after SIGTERM; agent stderr:\n%s", a.stderr)
	}
	if !strings.Contains(a.stderr.String(), "left") {
		t.Errorf("no leave in the log:\n%s", a.stderr)
	}

	b := startAgent(t, env)
	waitFor(t, "node listed again", func() bool { return listNodeIDs(t, srv.URL, "mesh-tok")[id] })
	if !strings.Contains(b.stdout.String(), "node "+id) {
		t.Errorf("restart used another id: %s", b.stdout)
	}
	b.term()
	if strings.Contains(b.stderr.String(), "bootstrap token exchanged") {
		t.Error("the restart exchanged the bootstrap token again")
	}
}

// --claim/--exec: a delivered job runs with its payload on stdin and is
// acked.
func TestAgentCommandWorkLoop(t *testing.T) {
	t.Parallel()
	srv := startServer(t, filepath.Join(t.TempDir(), "p.db"), nil)
	dir := t.TempDir()
	a := startAgent(t, map[string]string{"VOX_MESH_NODE_ID": "worker-x", "VOX_MESH_AGENT_STATE_DIR": filepath.Join(dir, "state")},
		"--control-url", srv.URL, "--claim", "42", "--exec", "cat > "+filepath.Join(dir, "out-$POPULI_MESSAGE_ID"))
	waitFor(t, "node listed", func() bool { return listNodeIDs(t, srv.URL, "")["worker-x"] })
	var resp struct {
		MessageID uint64 `json:"message_id"`
	}
	if st, body := call(t, "POST", srv.URL+"/v1/populi/a2a/deliver", "", deliverBody("42", "payload-1", ""), &resp); st != 200 {
		t.Fatalf("deliver: %d %s", st, body)
	}
	out := filepath.Join(dir, "out-1")
	waitFor(t, "job output", func() bool { b, _ := os.ReadFile(out); return string(b) == "payload-1" })
	waitFor(t, "row acked", func() bool { return len(listAll(t, srv.URL, "", "42")) == 0 })
	a.term()
}

func TestAgentCommandUsageErrors(t *testing.T) {
	t.Parallel()
	state := map[string]string{"VOX_MESH_AGENT_STATE_DIR": t.TempDir()}
	for _, c := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, state, "no control plane URL"},
		{[]string{"--control-url", "http://0.0.0.0:9847"}, state, "invalid or bind-all control URL"},
		{[]string{"--control-url", "127.0.0.1:1", "--claim", "7"}, state, "--claim and --exec go together"},
		{nil, map[string]string{"VOX_MESH_HTTP_JOIN": "0"}, "nothing to do"},
	} {
		code, out := runBinary(t, c.env, 20*time.Second, append([]string{"agent"}, c.args...)...)
		if code != ExitUsage || !strings.Contains(out, c.want) {
			t.Errorf("agent %v: exit %d, want %d and %q:\n%s", c.args, code, ExitUsage, c.want, out)
		}
	}
}
