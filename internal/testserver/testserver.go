// Package testserver is the one in-process test server of populi-db's tests:
// a real api.Server over a real bbolt file in t.TempDir(), served on
// loopback by internal/h1 (serve's default HTTP server), with a fake clock
// shared by store, api and security.
// The api, security, client and cli tests all build on it.
package testserver

import (
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/internal/etcdtest"
	"populi-db/internal/h1"
	"populi-db/metrics"
	"populi-db/security"
	"populi-db/store"
)

// T0 is where a fake clock starts unless Options.Start says otherwise
// (2026-01-01T00:00:00Z).
var T0 = time.UnixMilli(1_767_225_600_000)

// Tokens is a full set of distinct bearer secrets for token-mode tests.
var Tokens = api.Tokens{Mesh: "tok-mesh", Worker: "tok-worker", Submitter: "tok-submitter", Admin: "tok-admin"}

// Options configures one server. The zero value is open mode with defaults.
type Options struct {
	Start time.Time    // fake clock start; zero = T0
	Log   *slog.Logger // nil = discard

	// Store settings.
	LeaseTTL       time.Duration
	MaxMessages    int
	MaxDeliveries  int
	ReplayCapacity int

	// API settings.
	Tokens          api.Tokens
	ScopeID         string
	ReportedScopeID *string
	StalePruneMs    uint64
	MaxBody         int64
	MaxWait         time.Duration
	FedMaxEntries   int // api.Config.FederationMaxEntries (0: its default)
	Bootstrap       api.Bootstrap
	RateLimiter     api.RateLimiter

	// Observability: Metrics, when set, is the registry /metrics serves and
	// the store's commit observer (nil: api.New's own, and no observer).
	Metrics             *metrics.Metrics
	MetricsOpen         bool
	MetricsTopReceivers int
	AccessLogLevel      slog.Level // zero = info
	OpenAPI             []byte     // what /openapi.yaml serves; nil = 404

	// JWT bearers: JWT wins when set; else a non-blank JWTSecret builds the
	// security package's verifier over this server's store and clock.
	JWT        api.JWTVerifier
	JWTEnabled bool
	JWTSecret  string

	// Attestation: Attestor wins when set; else a non-blank VerifyKey builds
	// the security package's attestor.
	Attestor  api.Attestor
	VerifyKey string
}

// Server is one running test server. Start, Stop and Restart may be called
// from the test goroutine only.
type Server struct {
	t    testing.TB
	o    Options
	Path string            // the db file (with etcd: the cache file)
	Etcd *store.EtcdConfig // set when POPULI_TEST_BACKEND=etcd (the backend matrix)
	Clk  *clock.Fake       // shared by store, api and security
	St   *store.Store
	API  *api.Server
	HTTP *h1.Server
	URL  string // http://127.0.0.1:port

	mu   sync.Mutex
	base http.Handler // the api handler (SetHandler swaps it)
	hook http.Handler // wraps base when set
}

// Start opens a store in t.TempDir() and serves it; t.Cleanup stops it.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Start.IsZero() {
		o.Start = T0
	}
	s := &Server{t: t, o: o, Path: filepath.Join(t.TempDir(), "populi.db"), Clk: clock.NewFake(o.Start)}
	if etcdtest.UseEtcd() {
		s.Etcd = etcdConfig(t)
	}
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	o := s.o
	var obs store.Observer
	if o.Metrics != nil {
		obs = o.Metrics
	}
	st, err := store.Open(store.Config{
		Path: s.Path, Clock: s.Clk, Logger: o.Log, LeaseTTL: o.LeaseTTL,
		MaxMessages: o.MaxMessages, MaxDeliveries: o.MaxDeliveries, ReplayCapacity: o.ReplayCapacity,
		Observer: obs, Etcd: s.Etcd,
	})
	if err != nil {
		s.t.Fatalf("open store: %v", err)
	}
	cfg := api.Config{
		Store: st, Logger: o.Log, Tokens: o.Tokens, JWT: o.JWT, JWTEnabled: o.JWTEnabled,
		Attestor: o.Attestor, RateLimiter: o.RateLimiter, ScopeID: o.ScopeID,
		StalePruneMs: o.StalePruneMs, MaxBodyBytes: o.MaxBody, Bootstrap: o.Bootstrap,
		ReportedScopeID: o.ReportedScopeID, MaxWait: o.MaxWait, FederationMaxEntries: o.FedMaxEntries,
		Metrics: o.Metrics, MetricsOpen: o.MetricsOpen, MetricsTopReceivers: o.MetricsTopReceivers,
		AccessLogLevel: o.AccessLogLevel, OpenAPI: o.OpenAPI,
	}
	if cfg.JWT == nil && strings.TrimSpace(o.JWTSecret) != "" {
		cfg.JWT = security.NewJWTVerifier(o.JWTSecret, st, s.Clk, security.WithJWTLogger(o.Log))
		cfg.JWTEnabled = true
	}
	if cfg.Attestor == nil && o.VerifyKey != "" {
		cfg.Attestor = security.NewAttestor(o.VerifyKey, o.Log)
	}
	srv, err := api.New(cfg)
	if err != nil {
		_ = st.Close()
		s.t.Fatalf("api.New: %v", err)
	}
	s.St, s.API = st, srv
	s.SetHandler(srv.Handler())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		_ = st.Close()
		s.t.Fatalf("listen on loopback: %v", err)
	}
	s.HTTP = &h1.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		hook := s.hook
		s.mu.Unlock()
		if hook != nil {
			hook.ServeHTTP(w, r)
			return
		}
		s.serveBase(w, r)
	}), Logger: s.o.Log}
	go func() { _ = s.HTTP.Serve(ln) }()
	s.URL = "http://" + ln.Addr().String()
}

// Stop drains long polls, closes the listener and the store. Idempotent.
func (s *Server) Stop() {
	if s.HTTP == nil {
		return
	}
	s.API.Drain()
	s.HTTP.Close()
	if err := s.St.Close(); err != nil {
		s.t.Errorf("close store: %v", err)
	}
	s.HTTP = nil
}

// Restart stops the server and reopens the same db file on a new port, as a
// process restart would.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Handler is the api handler of the current incarnation.
func (s *Server) Handler() http.Handler { return s.API.Handler() }

// SetHandler makes the server answer with h (e.g. another api.Server over
// the same store, built with other settings) from the next request. Restart
// goes back to the new incarnation's api handler.
func (s *Server) SetHandler(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.base = h
}

func (s *Server) serveBase(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.base
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

// Wrap puts mw in front of the api handler (SetHandler's, if swapped) for
// the requests that follow (nil removes it): fault injection, request
// inspection.
func (s *Server) Wrap(mw func(next http.Handler) http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mw == nil {
		s.hook = nil
		return
	}
	s.hook = mw(http.HandlerFunc(s.serveBase))
}

// OnRequest calls f with each request as it arrives, before the api
// handler (nil removes it).
func (s *Server) OnRequest(f func(*http.Request)) {
	if f == nil {
		s.Wrap(nil)
		return
	}
	s.Wrap(func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { f(r); next.ServeHTTP(w, r) })
	})
}

// Eventually polls cond every 5 ms until it holds, failing the test after
// 5 s. The only sanctioned polling loop in tests.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// etcdConfig is a fresh prefix on the test binary's shared embedded etcd
// (the package's TestMain calls etcdtest.CloseShared), guarded by a key
// standing in for a won election.
func etcdConfig(t testing.TB) *store.EtcdConfig {
	t.Helper()
	p := etcdtest.FreshPrefix(t)
	return &store.EtcdConfig{Client: p.Client, Prefix: p.Prefix, GuardKey: p.GuardKey, GuardRev: p.GuardRev}
}
