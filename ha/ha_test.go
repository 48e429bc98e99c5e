package ha

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestStandbyAnswers(t *testing.T) {
	leader := "http://127.0.0.1:9847"
	var current atomic.Pointer[string]
	current.Store(&leader)
	sw := &Switch{}
	sw.Set(Unavailable(func() string { return *current.Load() }, StandbyText))
	srv := httptest.NewServer(sw)
	defer srv.Close()
	for _, c := range []struct {
		method, path string
		status       int
		body         string
		named        bool
	}{
		{"GET", "/health", 200, "ok\n", false},
		{"GET", "/readyz", 503, "not ready: standby\n", true},
		{"GET", "/v1/populi/nodes", 503, StandbyText, true},
		{"POST", "/v1/populi/a2a/deliver", 503, StandbyText, true},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status || string(b) != c.body || (resp.Header.Get(HeaderLeader) == leader) != c.named {
			t.Errorf("%s %s = %d %q leader %q", c.method, c.path, resp.StatusCode, b, resp.Header.Get(HeaderLeader))
		}
		if resp.Header.Get("x-populi-feature") == "" {
			t.Errorf("%s %s: no x-populi-feature", c.method, c.path)
		}
	}
	none := "" // no leader known: no header
	current.Store(&none)
	resp, err := http.Get(srv.URL + "/v1/populi/nodes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := resp.Header[http.CanonicalHeaderKey(HeaderLeader)]; ok || resp.StatusCode != 503 {
		t.Errorf("without a known leader: %d, header %q", resp.StatusCode, resp.Header.Get(HeaderLeader))
	}
}

func TestConnectRefusesBadPrefix(t *testing.T) {
	for _, p := range []string{"", "populi", "/populi/"} {
		if _, err := Connect(Config{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: p}); err == nil {
			t.Errorf("prefix %q accepted", p)
		}
	}
}

// An unreachable etcd fails Connect within the dial timeout.
func TestConnectUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	start := time.Now()
	_, err = Connect(Config{Endpoints: []string{"http://" + addr}, Prefix: "/populi/t", DialTimeout: 500 * time.Millisecond})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("Connect to nothing = %v after %s", err, time.Since(start))
	}
}
