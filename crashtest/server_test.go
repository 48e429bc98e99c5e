package crashtest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const meshToken = "crash-test-mesh-token"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// serverBinary builds the populi-db binary once per test process.
func serverBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "populi-crash-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "populi-db")
		args := []string{"build", "-o", binPath}
		if *raceServer {
			args = append(args, "-race")
		}
		args = append(args, "populi-db")
		cmd := exec.Command("go", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build server: %v", buildErr)
	}
	return binPath
}

// server is one running `populi-db serve` child.
type server struct {
	cmd    *exec.Cmd
	url    string
	stderr *lockedBuffer
	exited chan struct{}
	err    error // from Wait, valid after exited is closed
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// tail is the last n lines of the server's log.
func (l *lockedBuffer) tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startServer runs `populi-db serve` on a free loopback port over dbPath and
// waits until it prints the URL it listens on.
func startServer(bin, dbPath string, env map[string]string, sweepInterval time.Duration, extra ...string) (*server, error) {
	cmd := exec.Command(bin, append([]string{"serve", "--bind", "127.0.0.1:0", "--db", dbPath,
		"--sweep-interval", sweepInterval.String(), "--log-level", "warn"}, extra...)...)
	// A clean environment: nothing of the developer's VOX_* leaks in.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + filepath.Dir(dbPath)}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	urlCh := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, u, ok := strings.Cut(sc.Text(), "listening on "); ok {
				urlCh <- strings.TrimSpace(u)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { s.err = cmd.Wait(); close(s.exited) }()
	select {
	case s.url = <-urlCh:
		return s, nil
	case <-s.exited:
		return nil, fmt.Errorf("server exited before listening (%v):\n%s", s.err, s.stderr.tail(20))
	case <-time.After(20 * time.Second):
		s.kill()
		return nil, fmt.Errorf("server did not print its URL within 20s:\n%s", s.stderr.tail(20))
	}
}

// kill sends SIGKILL and waits for the process to be gone (its file lock
// with it).
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop sends SIGTERM (a clean shutdown, unless a crash point kills it on
// the way) and waits for the process to be gone.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.kill()
	}
}

// alive reports whether the process has not exited on its own.
func (s *server) alive() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// client speaks to one server incarnation with the mesh bearer.
type client struct {
	base string
	hc   *http.Client
}

func newClient(base string, conns int) *client {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second}
	return &client{base: base, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}}
}

func (c *client) close() { c.hc.CloseIdleConnections() }

// errTransport marks a request whose outcome is unknown (no response).
var errTransport = errors.New("no response")

// do sends a request with an optional JSON body and decodes a 2xx JSON
// answer into out. It returns the status, or errTransport when no response
// came (the server died mid-request, say).
func (c *client) do(method, path string, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+meshToken)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errTransport, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("%w: reading body: %v", errTransport, err)
	}
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("decode %s %s answer %q: %v", method, path, b, err)
		}
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, &statusError{resp.StatusCode, strings.TrimSpace(string(b))}
	}
	return resp.StatusCode, nil
}

type statusError struct {
	status int
	body   string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.body) }
