package gossip_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/federation"
	"populi-db/gossip"
	"populi-db/internal/clock"
	"populi-db/store"
	"populi-db/wire"
)

// Every address in these tests is loopback: gossip dials the control_url
// of every entry it knows.

const meshToken = "gossip-test-mesh"

// node is a real populi-db HTTP server (store on a temp file) on loopback.
type node struct {
	store *store.Store
	url   string
}

func newNode(t *testing.T) *node {
	t.Helper()
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "p.db")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := api.New(api.Config{Store: st, Tokens: api.Tokens{Mesh: meshToken}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.Drain(); hs.Close(); _ = st.Close() })
	return &node{store: st, url: hs.URL}
}

func (n *node) announce(t *testing.T, e wire.MeshDirectoryEntry) {
	t.Helper()
	if err := n.store.AnnounceFederation(e, federation.MaxEntries); err != nil {
		t.Fatal(err)
	}
}

func (n *node) entries(t *testing.T) map[string]wire.MeshDirectoryEntry {
	t.Helper()
	es, err := n.store.FederationEntries()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]wire.MeshDirectoryEntry{}
	for _, e := range es {
		m[e.ScopeID] = e
	}
	return m
}

func key(b byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	seed[0] = b
	return ed25519.NewKeyFromSeed(seed)
}

// closedURL is a loopback URL nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String()
	ln.Close()
	return u
}

func entry(scope, url string) wire.MeshDirectoryEntry {
	return wire.MeshDirectoryEntry{ScopeID: scope, ControlURL: url, TaskKinds: []wire.TaskKind{}}
}

// logBuffer collects log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) lines(msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), "msg=\""+msg+"\"")
}

func newGossiper(t *testing.T, cfg gossip.Config) *gossip.Gossiper {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	g, err := gossip.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// Two real servers: B announces its signed entry to A (its bootstrap peer)
// and learns the entries A answers with — never its own scope.
func TestTwoServersGossip(t *testing.T) {
	t.Parallel()
	a, b := newNode(t), newNode(t)
	c := entry("mesh-c", closedURL(t))
	a.announce(t, c)
	a.announce(t, entry("mesh-b", "http://127.0.0.1:1")) // a stale entry for B's own scope
	if _, err := b.store.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "2", MessageType: "job_submit", Payload: "p"}, ""); err != nil {
		t.Fatal(err)
	}
	g := newGossiper(t, gossip.Config{
		Store: b.store, Peers: []string{a.url + "/"}, Token: meshToken,
		Self: gossip.Self{ScopeID: "mesh-b", ControlURL: b.url, Public: true, TaskKinds: []wire.TaskKind{"embed"}, SigningKey: key(5)},
	})
	rd, err := g.RunRound(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rd.Peers != 1 || rd.OK != 1 || rd.Added != 1 {
		t.Fatalf("round %+v, want 1 peer ok and 1 entry added", rd)
	}
	got := a.entries(t)["mesh-b"]
	if got.ControlURL != b.url || got.Signature == nil || !got.Public || len(got.TaskKinds) != 1 ||
		got.CurrentQueueDepth == nil || *got.CurrentQueueDepth != 1 {
		t.Fatalf("A holds B's entry as %+v", got)
	}
	if err := federation.Check(&got); err != nil {
		t.Fatalf("B's entry at A does not verify: %v", err)
	}
	if pk := ed25519.PublicKey(*got.PublicKey); !pk.Equal(key(5).Public()) {
		t.Fatal("B's entry carries the wrong public key")
	}
	bs := b.entries(t)
	if _, ok := bs["mesh-c"]; !ok || len(bs) != 1 {
		t.Fatalf("B learned %v, want only mesh-c (never its own scope)", bs)
	}
	// Second round: A's URL once (bootstrap and no entry), C's URL from
	// the directory (refused connection: fails and backs off).
	rd, _ = g.RunRound(context.Background())
	if rd.Peers != 2 || rd.OK != 1 || rd.Failed != 1 || rd.NewlyDown != 1 {
		t.Fatalf("second round %+v", rd)
	}
}

// Bad peers — hanging, 500, garbage, oversized, redirecting, closed — cost
// one timeout at most and change nothing; a peer's forged entries are
// dropped while its good ones are merged.
func TestBadPeers(t *testing.T) {
	t.Parallel()
	local := newNode(t)
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // only then does the server notice a client that gives up
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer hang.Close()
	defer close(release) // runs before hang.Close
	status500 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	}))
	defer status500.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"entries":[{"scope_id":`))
	}))
	defer garbage.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"entries":[`))
		for range 10000 {
			if _, err := w.Write([]byte(`{"scope_id":"h","control_url":"http://127.0.0.1:1","task_kinds":[],"public":false},`)); err != nil {
				return
			}
		}
	}))
	defer huge.Close()
	redirect := httptest.NewServer(http.RedirectHandler(status500.URL+"/elsewhere", http.StatusTemporaryRedirect))
	defer redirect.Close()
	forged := entry("forged", "http://127.0.0.1:1")
	federation.Sign(&forged, key(1))
	forged.ControlURL = "http://127.0.0.1:2" // signature no longer matches
	good := entry("good", closedURL(t))
	mixed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+meshToken {
			http.Error(w, "unauthorized", 401)
			return
		}
		json.NewEncoder(w).Encode(wire.FederationDirectory{Entries: []wire.MeshDirectoryEntry{forged, good}})
	}))
	defer mixed.Close()

	const timeout = 300 * time.Millisecond
	g := newGossiper(t, gossip.Config{
		Store: local.store, Token: meshToken, PeerTimeout: timeout, MaxResponseBytes: 64 << 10,
		Peers: []string{hang.URL, status500.URL, garbage.URL, huge.URL, redirect.URL, closedURL(t), mixed.URL,
			"ftp://127.0.0.1:21", "not a url", local.url},
		Self: gossip.Self{ScopeID: "local", ControlURL: local.url},
	})
	start := time.Now()
	rd, err := g.RunRound(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("round took %v with a %v peer timeout", d, timeout)
	}
	if rd.Peers != 7 || rd.OK != 1 || rd.Failed != 6 || rd.Rejected != 1 || rd.Added != 1 {
		t.Fatalf("round %+v: want 7 peers (own URL and non-http skipped), 1 ok, 6 failed, 1 rejected, 1 added", rd)
	}
	if es := local.entries(t); len(es) != 1 || es["good"].ScopeID != "good" {
		t.Fatalf("directory after bad peers %+v", es)
	}
}

// Concurrency is bounded: with 2 workers, 4 hanging peers take two
// timeouts, not one, and no more than 2 requests are ever in flight
// (counted at the client, where the bound applies).
func TestBoundedConcurrency(t *testing.T) {
	t.Parallel()
	local := newNode(t)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	defer hang.Close()
	var peers []string
	for i := range 4 {
		peers = append(peers, fmt.Sprintf("%s/p%d", hang.URL, i))
	}
	ct := &countingTransport{next: http.DefaultTransport}
	g := newGossiper(t, gossip.Config{Store: local.store, Peers: peers, Concurrency: 2, PeerTimeout: 200 * time.Millisecond,
		Client: &http.Client{Transport: ct}, Self: gossip.Self{ControlURL: local.url}})
	rd, _ := g.RunRound(context.Background())
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if rd.Failed != 4 || ct.most > 2 || ct.total != 4 {
		t.Fatalf("round %+v, %d requests, at most %d at once (want 4, ≤ 2)", rd, ct.total, ct.most)
	}
	if rd.Elapsed < 400*time.Millisecond {
		t.Fatalf("4 hanging peers with 2 workers took only %v", rd.Elapsed)
	}
}

type countingTransport struct {
	next                  http.RoundTripper
	mu                    sync.Mutex
	inFlight, most, total int
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.inFlight++
	c.total++
	c.most = max(c.most, c.inFlight)
	c.mu.Unlock()
	defer func() { c.mu.Lock(); c.inFlight--; c.mu.Unlock() }()
	return c.next.RoundTrip(r)
}

// A failing peer is skipped for a jittered, doubling backoff; when it
// answers again it is counted as recovered. Time is a fake clock.
func TestBackoffAndRecovery(t *testing.T) {
	t.Parallel()
	local := newNode(t)
	var mu sync.Mutex
	fail := true
	calls := 0
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if fail {
			http.Error(w, "down", 503)
			return
		}
		w.Write([]byte(`{"entries":[]}`))
	}))
	defer peer.Close()
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	logs := &logBuffer{}
	g := newGossiper(t, gossip.Config{Store: local.store, Peers: []string{peer.URL}, Interval: time.Minute,
		BackoffMax: 8 * time.Minute, Clock: clk, Self: gossip.Self{ControlURL: local.url},
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	round := func() gossip.Round { rd, _ := g.RunRound(context.Background()); return rd }

	if rd := round(); rd.Failed != 1 || rd.NewlyDown != 1 {
		t.Fatalf("first round %+v", rd)
	}
	// Just after the failure: skipped. Backoff after 1 failure is within
	// [30 s, 60 s): at 29 s still skipped, at 60 s tried again.
	clk.Advance(29 * time.Second)
	if rd := round(); rd.Skipped != 1 || rd.Peers != 0 {
		t.Fatalf("29 s after the first failure %+v, want skipped", rd)
	}
	clk.Advance(31 * time.Second)
	if rd := round(); rd.Failed != 1 || rd.NewlyDown != 0 {
		t.Fatalf("60 s after the first failure %+v, want a second failure", rd)
	}
	// After 2 failures: [60 s, 120 s).
	clk.Advance(59 * time.Second)
	if rd := round(); rd.Skipped != 1 {
		t.Fatalf("59 s after the second failure %+v, want skipped", rd)
	}
	mu.Lock()
	fail = false
	mu.Unlock()
	clk.Advance(61 * time.Second)
	if rd := round(); rd.OK != 1 || rd.Recovered != 1 {
		t.Fatalf("after recovery %+v", rd)
	}
	if rd := round(); rd.OK != 1 || rd.Recovered != 0 || rd.Changed() {
		t.Fatalf("steady round %+v", rd)
	}
	// One summary line per round that changed something: failure,
	// failure (no: a second failure is not a change), recovery.
	if n := logs.lines("gossip round"); n != 2 {
		t.Fatalf("%d summary lines, want 2 (first failure, recovery):\n%s", n, logs.b.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 4 {
		t.Fatalf("peer called %d times, want 4", calls)
	}
}

// Run's first round is immediate; cancelling its context stops it at once
// even while a peer hangs, and requests to the local server are answered
// meanwhile.
func TestRunStopsAndNeverBlocksRequests(t *testing.T) {
	t.Parallel()
	local := newNode(t)
	started := make(chan struct{}, 1)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case started <- struct{}{}:
		default:
		}
		<-r.Context().Done()
	}))
	defer hang.Close()
	g := newGossiper(t, gossip.Config{Store: local.store, Peers: []string{hang.URL}, PeerTimeout: time.Hour,
		Self: gossip.Self{ControlURL: local.url}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("first round did not start at once")
	}
	t0 := time.Now()
	req, _ := http.NewRequest("GET", local.url+"/v1/populi/federation/directory", nil)
	req.Header.Set("Authorization", "Bearer "+meshToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || time.Since(t0) > 2*time.Second {
		t.Fatalf("directory during a hanging round: %d %q after %v", resp.StatusCode, body, time.Since(t0))
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop after cancel")
	}
}

// Merges go through the directory cap: past it new scopes are refused and
// counted.
func TestMergeRespectsCap(t *testing.T) {
	t.Parallel()
	local, peer := newNode(t), newNode(t)
	for i := range 5 {
		peer.announce(t, entry(fmt.Sprintf("s%d", i), "http://127.0.0.1:1"))
	}
	g := newGossiper(t, gossip.Config{Store: local.store, Peers: []string{peer.url}, Token: meshToken, MaxEntries: 3,
		Self: gossip.Self{ScopeID: "local", ControlURL: local.url}})
	rd, _ := g.RunRound(context.Background())
	if n := len(local.entries(t)); n != 3 {
		t.Fatalf("%d entries, want the cap of 3", n)
	}
	if rd.Added != 3 || rd.Refused != 2 { // s0-s2 added; s3, s4 refused
		t.Fatalf("round %+v, want 3 added and 2 refused", rd)
	}
}
