package agent_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/store"
	"populi-db/wire"
)

// testServer is a real api.Server over a real bbolt file, served on a fixed
// loopback address so it can be stopped and restarted on the same db and
// port, as a control plane process restart would.
type testServer struct {
	t     *testing.T
	path  string
	addr  string
	URL   string
	clk   clock.Clock
	opts  api.Config
	lease time.Duration

	mu    sync.Mutex
	st    *store.Store
	srv   *api.Server
	hs    *http.Server
	done  chan struct{}
	count map[string]int    // requests per path
	hold  func(path string) // called before each request is served
	fail  map[string]int    // answer this many requests per path with 503
}

// startServer serves a fresh db; clk nil means the wall clock.
func startServer(t *testing.T, clk clock.Clock, cfg api.Config, lease time.Duration) *testServer {
	t.Helper()
	if clk == nil {
		clk = clock.Real{}
	}
	s := &testServer{t: t, path: filepath.Join(t.TempDir(), "populi.db"), clk: clk, opts: cfg, lease: lease, count: map[string]int{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = ln.Addr().String()
	s.URL = "http://" + s.addr
	s.serve(ln)
	t.Cleanup(s.Stop)
	return s
}

func (s *testServer) serve(ln net.Listener) {
	st, err := store.Open(store.Config{Path: s.path, Clock: s.clk, LeaseTTL: s.lease})
	if err != nil {
		s.t.Fatalf("open store: %v", err)
	}
	cfg := s.opts
	cfg.Store = st
	srv, err := api.New(cfg)
	if err != nil {
		s.t.Fatalf("api.New: %v", err)
	}
	h := srv.Handler()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.count[r.URL.Path]++
		hold := s.hold
		failing := s.fail[r.URL.Path] > 0
		if failing {
			s.fail[r.URL.Path]--
		}
		s.mu.Unlock()
		if failing {
			http.Error(w, "injected failure", http.StatusServiceUnavailable)
			return
		}
		if hold != nil {
			hold(r.URL.Path)
		}
		h.ServeHTTP(w, r)
	})}
	done := make(chan struct{})
	go func() { _ = hs.Serve(ln); close(done) }()
	s.mu.Lock()
	s.st, s.srv, s.hs, s.done = st, srv, hs, done
	s.mu.Unlock()
}

// Stop closes the listener and connections and the db.
func (s *testServer) Stop() {
	s.mu.Lock()
	hs, srv, st, done := s.hs, s.srv, s.st, s.done
	s.hs = nil
	s.mu.Unlock()
	if hs == nil {
		return
	}
	srv.Drain()
	_ = hs.Close()
	<-done
	if err := st.Close(); err != nil {
		s.t.Errorf("close store: %v", err)
	}
}

// Restart serves the same db on the same address again.
func (s *testServer) Restart() {
	s.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port is ours; a just-closed socket may linger briefly
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		s.t.Fatalf("relisten on %s: %v", s.addr, err)
	}
	s.serve(ln)
}

// failNext answers the next n requests to path with 503.
func (s *testServer) failNext(path string, n int) {
	s.mu.Lock()
	if s.fail == nil {
		s.fail = map[string]int{}
	}
	s.fail[path] = n
	s.mu.Unlock()
}

func (s *testServer) setHold(f func(path string)) {
	s.mu.Lock()
	s.hold = f
	s.mu.Unlock()
}

func (s *testServer) requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count[path]
}

// call posts (in != nil) or gets path and decodes a 2xx answer into out.
func (s *testServer) call(method, path string, in, out any) (int, string) {
	s.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.URL+path, body)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := s.opts.Tokens.Mesh; tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("decode %s: %v", b, err)
		}
	}
	return resp.StatusCode, string(b)
}

// node returns the registered record of id, or nil.
func (s *testServer) node(id string) *wire.NodeRecord {
	s.t.Helper()
	var reg wire.Registry
	if st, body := s.call("GET", "/v1/populi/nodes", nil, &reg); st != 200 {
		s.t.Fatalf("list nodes: %d %s", st, body)
	}
	for i := range reg.Nodes {
		if reg.Nodes[i].ID == id {
			return &reg.Nodes[i]
		}
	}
	return nil
}

// message returns row id of receiver from a listing (unacked rows only).
func (s *testServer) message(receiver string, id uint64) *wire.StoredMessage {
	s.t.Helper()
	var resp wire.InboxResponse
	if st, body := s.call("POST", "/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": receiver, "max_messages": 256}, &resp); st != 200 {
		s.t.Fatalf("inbox listing: %d %s", st, body)
	}
	for i := range resp.Messages {
		if resp.Messages[i].ID == id {
			return &resp.Messages[i]
		}
	}
	return nil
}

func (s *testServer) deliver(receiver, payload string) uint64 {
	s.t.Helper()
	var out wire.DeliverResponse
	st, body := s.call("POST", "/v1/populi/a2a/deliver", map[string]any{
		"sender_agent_id": "1", "receiver_agent_id": receiver, "message_type": "job_submit",
		"payload": payload, "privacy_class": "private",
	}, &out)
	if st != 200 {
		s.t.Fatalf("deliver: %d %s", st, body)
	}
	return out.MessageID
}

// eventually polls cond every 10 ms for up to d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
