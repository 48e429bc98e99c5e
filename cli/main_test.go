package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"populi-db/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// needBinary returns the populi-db binary, built once per test process.
func needBinary(t *testing.T) string {
	t.Helper()
	return testbin.Path(t, false)
}

// syncBuffer is a goroutine-safe bytes.Buffer for a child's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// childEnv is the test process's environment without any VOX_* setting,
// with HOME pointed at a temp dir, plus extra.
func childEnv(t *testing.T, extra map[string]string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "VOX_") || strings.HasPrefix(kv, "HOME=") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "HOME="+t.TempDir())
	for k, v := range extra {
		env = append(env, k+"="+v)
	}
	return env
}

// server is a `populi-db serve` child process.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	URL    string
	DB     string
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{} // closed when the process exited
	err    error         // Wait's result, valid after done
}

// startServer runs `populi-db serve --bind 127.0.0.1:0 --db db args...` and
// waits for the bound URL it prints.
func startServer(t *testing.T, db string, env map[string]string, args ...string) *server {
	t.Helper()
	s, url := spawnServer(t, db, env, args...)
	if url == "" {
		t.Fatalf("server did not print its URL; stdout:\n%s\nstderr:\n%s", s.stdout, s.stderr)
	}
	return s
}

func spawnServer(t *testing.T, db string, env map[string]string, args ...string) (*server, string) {
	t.Helper()
	binPath := needBinary(t)
	full := append([]string{"serve", "--db", db}, args...)
	hasBind := false
	for _, a := range args {
		hasBind = hasBind || a == "--bind" || strings.HasPrefix(a, "--bind=")
	}
	if !hasBind {
		full = append(full, "--bind", "127.0.0.1:0")
	}
	s := &server{t: t, DB: db, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(binPath, full...)
	s.cmd.Env = childEnv(t, env)
	s.cmd.Stderr = s.stderr
	pr, pw := io.Pipe()
	s.cmd.Stdout = pw
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", binPath, err)
	}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			s.stdout.Write([]byte(line + "\n"))
			if _, u, ok := strings.Cut(line, "listening on "); ok && !sent {
				urls <- strings.TrimSpace(u)
				sent = true
			}
		}
		if !sent {
			close(urls)
		}
	}()
	go func() {
		s.err = s.cmd.Wait()
		pw.Close()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case u := <-urls:
		s.URL = u
		return s, u
	case <-s.done:
		return s, ""
	case <-time.After(20 * time.Second):
		return s, ""
	}
}

// wait waits up to d for the process to exit and returns its exit code.
func (s *server) wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		s.t.Fatalf("server still running after %s; stderr:\n%s", d, s.stderr)
	}
	var ee *exec.ExitError
	switch {
	case s.err == nil:
		return 0
	case errors.As(s.err, &ee):
		return ee.ExitCode()
	default:
		s.t.Fatalf("wait: %v", s.err)
		return -1
	}
}

func (s *server) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signal %v: %v", sig, err)
	}
}

// runBinary runs the binary with args to completion (bounded) and returns
// the exit code and combined output.
func runBinary(t *testing.T, env map[string]string, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	binPath := needBinary(t)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = childEnv(t, env)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("populi-db %v did not finish within %s; output:\n%s", args, timeout, out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	default:
		t.Fatalf("run populi-db %v: %v", args, err)
		return -1, ""
	}
}

var testHTTP = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true}, // the TLS test's self-signed cert
	},
}

// call sends a request (JSON body when in != nil) and returns the status and
// body; out, when non-nil, receives the decoded JSON of a 2xx answer.
func call(t *testing.T, method, url, token string, in, out any) (int, string) {
	t.Helper()
	st, body, err := tryCall(method, url, token, in, out)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return st, body
}

func tryCall(method, url, token string, in, out any) (int, string, error) {
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, "", err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := testHTTP.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, string(b), fmt.Errorf("decode %s: %w", b, err)
		}
	}
	return resp.StatusCode, string(b), nil
}

func nodeRecord(id string) map[string]any {
	return map[string]any{"id": id, "capabilities": map[string]any{}, "version": "test", "last_seen_unix_ms": 0}
}

func deliverBody(receiver, payload, key string) map[string]any {
	m := map[string]any{
		"sender_agent_id": "1", "receiver_agent_id": receiver, "message_type": "task",
		"payload": payload, "privacy_class": "private",
	}
	if key != "" {
		m["idempotency_key"] = key
	}
	return m
}

type listedMessage struct {
	ID           uint64  `json:"id"`
	Payload      string  `json:"payload"`
	Acknowledged bool    `json:"acknowledged"`
	LeaseToken   *uint64 `json:"lease_token"`
}

// listAll pages a receiver's inbox listing newest-first (SPEC 15.3).
func listAll(t *testing.T, base, token, receiver string) []listedMessage {
	t.Helper()
	var all []listedMessage
	var before *uint64
	for {
		req := map[string]any{"receiver_agent_id": receiver, "max_messages": 256}
		if before != nil {
			req["before_message_id"] = *before
		}
		var resp struct {
			Messages []listedMessage `json:"messages"`
		}
		if st, body := call(t, "POST", base+"/v1/populi/a2a/inbox", token, req, &resp); st != 200 {
			t.Fatalf("inbox listing: %d %s", st, body)
		}
		if len(resp.Messages) == 0 {
			return all
		}
		all = append(all, resp.Messages...)
		last := resp.Messages[len(resp.Messages)-1].ID
		before = &last
	}
}

func listNodeIDs(t *testing.T, base, token string) map[string]bool {
	t.Helper()
	var reg struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
	}
	if st, body := call(t, "GET", base+"/v1/populi/nodes", token, nil, &reg); st != 200 {
		t.Fatalf("list nodes: %d %s", st, body)
	}
	ids := map[string]bool{}
	for _, n := range reg.Nodes {
		ids[n.ID] = true
	}
	return ids
}

// newRawRequest builds a bodiless request with no content type.
func newRawRequest(method, url string) (*http.Request, error) {
	return http.NewRequest(method, url, nil)
}
