package crashtest

import (
	"bufio"
	"bytes"
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

	populi "populi-db/client"
	"populi-db/internal/testbin"
)

const meshToken = "crash-test-mesh-token"

// serverBinary builds the populi-db binary once per test process.
func serverBinary(t *testing.T) string {
	t.Helper()
	return testbin.Path(t, *raceServer)
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

// client speaks to one server incarnation with the mesh bearer: the
// populi-db client, without retries (an unanswered request is the ledger's
// business).
type client = populi.Client

func newClient(t *testing.T, base string, conns int) *client {
	t.Helper()
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 30 * time.Second}
	c, err := populi.New(base, populi.WithBearer(meshToken), populi.WithHTTPClient(&http.Client{Transport: tr}), populi.WithTimeout(15*time.Second))
	if err != nil {
		t.Fatalf("client for %s: %v", base, err)
	}
	return c
}

// status is the HTTP status of a failed call (0: no answer, or success).
func status(err error) int { return populi.StatusCode(err) }

// isTransport: the request got no answer, so its outcome is unknown.
func isTransport(err error) bool { return populi.IsTransport(err) }
