package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"populi-db/api"
	"populi-db/metrics"
	"populi-db/sweep"
	"populi-db/wire"
)

// scrape is one parsed /metrics answer.
type scrape map[string]*dto.MetricFamily

func (b *bundle) scrape(t *testing.T) scrape {
	t.Helper()
	r := b.get("/metrics", as(testTokens.Mesh))
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(r.body))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, r.body)
	}
	return fams
}

// value is the sample of family name whose labels include every given
// name=value pair: a gauge's or counter's value, a histogram's count. NaN
// when there is no such sample.
func (s scrape) value(name string, labels ...string) float64 {
	f := s[name]
	if f == nil {
		return math.NaN()
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return math.NaN()
}

func (s scrape) series(name string) int {
	if f := s[name]; f != nil {
		return len(f.Metric)
	}
	return 0
}

// expectMoved checks after - before == want for each named sample.
func expectMoved(t *testing.T, what string, before, after scrape, want float64, name string, labels ...string) {
	t.Helper()
	b, a := before.value(name, labels...), after.value(name, labels...)
	if math.IsNaN(b) {
		b = 0 // a labelled series appears on first use
	}
	if math.IsNaN(a) || a-b != want {
		t.Errorf("%s: %s%v went %v -> %v, want a change of %v", what, name, labels, b, a, want)
	}
}

func TestMetricsFamiliesMove(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	b := setup(t, opts{tokens: testTokens, metrics: m, leaseTTL: 10 * time.Second})
	b.join("w")
	s0 := b.scrape(t)
	for _, name := range []string{
		"populi_http_requests_total", "populi_http_request_duration_seconds", "populi_a2a_messages",
		"populi_a2a_pending_messages", "populi_a2a_receivers", "populi_a2a_oldest_ready_age_seconds",
		"populi_nodes", "populi_exec_leases_active", "populi_store_db_size_bytes", "populi_store_free_pages",
		"populi_store_commits_total", "populi_store_commit_duration_seconds", "populi_store_commit_batch_writes",
		"populi_store_fsync_duration_seconds", "populi_sweep_actions_total", "populi_sweep_errors_total",
		"populi_a2a_long_poll_waiters", "populi_http_rate_limited_total",
	} {
		if s0[name] == nil {
			t.Errorf("scrape lacks family %s", name)
		}
	}

	// deliver → ready +1, a commit observed, the request histogram observes.
	b.deliver("1", "42")
	s1 := b.scrape(t)
	expectMoved(t, "deliver", s0, s1, 1, "populi_a2a_messages", "state", "ready")
	expectMoved(t, "deliver", s0, s1, 1, "populi_a2a_pending_messages")
	expectMoved(t, "deliver", s0, s1, 1, "populi_http_request_duration_seconds",
		"route", "/v1/populi/a2a/deliver", "method", "POST", "status_class", "2xx")
	expectMoved(t, "deliver", s0, s1, 1, "populi_http_requests_total",
		"route", "/v1/populi/a2a/deliver", "method", "POST", "code", "200")
	for _, name := range []string{"populi_store_commits_total", "populi_store_commit_duration_seconds",
		"populi_store_commit_batch_writes"} {
		if d := s1.value(name) - s0.value(name); d < 1 {
			t.Errorf("deliver: %s moved by %v, want at least one commit", name, d)
		}
	}
	// A write is acknowledged after the write-ahead log's fdatasync; bbolt
	// ("db") is committed in the background, so only "wal" moves here.
	if d := s1.value("populi_store_fsync_duration_seconds", "file", "wal") - s0.value("populi_store_fsync_duration_seconds", "file", "wal"); d < 1 {
		t.Errorf("deliver: no wal fsync observed")
	}
	if s1.value("populi_a2a_receiver_ready_messages", "receiver_agent_id", "42") != 1 {
		t.Errorf("receiver 42's ready depth is not 1")
	}

	// claim → leased +1, ready -1.
	b.claim("42", "w")
	s2 := b.scrape(t)
	expectMoved(t, "claim", s1, s2, 1, "populi_a2a_messages", "state", "leased")
	expectMoved(t, "claim", s1, s2, -1, "populi_a2a_messages", "state", "ready")

	// sweep after the lease ran out → inbox_leases action counted, pass timed.
	sw := sweep.New(b.store, time.Second, slog.New(slog.DiscardHandler))
	sw.OnPass = m.SweepPass
	b.clock.Advance(11 * time.Second)
	if _, err := sw.Pass(); err != nil {
		t.Fatal(err)
	}
	s3 := b.scrape(t)
	expectMoved(t, "sweep", s2, s3, 1, "populi_sweep_actions_total", "kind", string(sweep.InboxLeases))
	expectMoved(t, "sweep", s2, s3, 1, "populi_sweep_pass_duration_seconds")
	expectMoved(t, "sweep", s2, s3, 0, "populi_sweep_errors_total", "kind", string(sweep.InboxLeases))
	expectMoved(t, "sweep", s2, s3, -1, "populi_a2a_messages", "state", "leased")
	if got := s3.value("populi_a2a_oldest_ready_age_seconds"); got != 11 {
		t.Errorf("oldest ready age %v s, want 11 (the fake clock moved 11 s since deliver)", got)
	}

	// Exec leases.
	b.post(pathGrant, map[string]any{"claimer_node_id": "w", "scope_key": "s1"}).expect2xx(t)
	s4 := b.scrape(t)
	expectMoved(t, "grant", s3, s4, 1, "populi_exec_leases_active")

	// Bootstrap refusals by reason (the exchange is disabled here).
	b.post("/v1/populi/bootstrap/exchange", map[string]any{"bootstrap_token": "x"}, as("")).expect(t, 404, "bootstrap exchange is not enabled")
	s5 := b.scrape(t)
	expectMoved(t, "bootstrap", s4, s5, 1, "populi_bootstrap_refusals_total", "reason", "disabled")
}

func (r response) expect2xx(t *testing.T) {
	t.Helper()
	if r.status/100 != 2 {
		t.Fatalf("got %d %q, want 2xx", r.status, r.body)
	}
}

func TestMetricsNodesByState(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens, stalePruneMs: 30_000})
	for _, id := range []string{"a", "q", "m", "s"} {
		b.join(id)
	}
	b.post("/v1/populi/admin/quarantine", map[string]any{"node_id": "q", "quarantined": true}).expect(t, 204, "")
	b.post("/v1/populi/admin/maintenance", map[string]any{"node_id": "m", "maintenance": true}).expect(t, 204, "")
	s := b.scrape(t)
	for state, want := range map[string]float64{"active": 4 - 2, "quarantined": 1, "maintenance": 1, "stale": 0} {
		if got := s.value("populi_nodes", "state", state); got != want {
			t.Errorf("before: nodes{state=%q} = %v, want %v", state, got, want)
		}
	}
	b.clock.Advance(31 * time.Second) // past the 30 s stale window
	b.post("/v1/populi/heartbeat", node("a")).expect2xx(t)
	s = b.scrape(t)
	for state, want := range map[string]float64{"active": 1, "quarantined": 1, "maintenance": 1, "stale": 1} {
		if got := s.value("populi_nodes", "state", state); got != want {
			t.Errorf("after 31 s: nodes{state=%q} = %v, want %v", state, got, want)
		}
	}
}

func TestMetricsTopReceiversBounded(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	b.srvTop(2)
	for recv, n := range map[string]int{"1": 1, "2": 3, "3": 2} {
		for range n {
			b.deliver("9", recv)
		}
	}
	s := b.scrape(t)
	if n := s.series("populi_a2a_receiver_ready_messages"); n != 2 {
		t.Fatalf("%d per-receiver series, want the top 2", n)
	}
	if s.value("populi_a2a_receiver_ready_messages", "receiver_agent_id", "2") != 3 ||
		s.value("populi_a2a_receiver_ready_messages", "receiver_agent_id", "3") != 2 {
		t.Errorf("top receivers are not 2 and 3 by depth")
	}
	if s.value("populi_a2a_receivers") != 3 {
		t.Errorf("populi_a2a_receivers = %v, want all 3", s.value("populi_a2a_receivers"))
	}
}

// srvTop rebuilds the bundle's server with MetricsTopReceivers = n.
func (b *bundle) srvTop(n int) {
	srv, err := api.New(api.Config{Store: b.store, Tokens: b.o.tokens, MetricsTopReceivers: n,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.t.Fatal(err)
	}
	b.setHandler(srv)
}

func TestMetricsLongPollWaiters(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	b.join("w")
	done := make(chan response, 1)
	go func() {
		r, _ := b.send("POST", "/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": "5", "claimer_node_id": "w", "wait_ms": 20000})
		done <- r
	}()
	eventually(t, "a parked long poll", func() bool { return b.scrape(t).value("populi_a2a_long_poll_waiters") == 1 })
	b.deliver("1", "5")
	if r := <-done; r.status != 200 || !strings.Contains(r.body, `"receiver_agent_id":"5"`) {
		t.Fatalf("long poll answered %d %s", r.status, r.body)
	}
	if got := b.scrape(t).value("populi_a2a_long_poll_waiters"); got != 0 {
		t.Fatalf("waiters %v after the poll returned, want 0", got)
	}
}

func TestMetricsRateLimitRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens, limiter: denyAfter(1)})
	b.get("/v1/populi/nodes").expect2xx(t)
	b.get("/v1/populi/nodes").expect(t, 429, "too many requests")
	b.o.limiter.(*countingLimiter).off()
	if got := b.scrape(t).value("populi_http_rate_limited_total"); got != 1 {
		t.Fatalf("rate-limited counter %v, want 1", got)
	}
}

// countingLimiter admits the first n requests, then refuses until off.
type countingLimiter struct {
	mu       sync.Mutex
	n        int
	disabled bool
}

func denyAfter(n int) *countingLimiter { return &countingLimiter{n: n} }

func (l *countingLimiter) Allow(string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.disabled {
		return true
	}
	l.n--
	return l.n >= 0
}

func (l *countingLimiter) off() { l.mu.Lock(); l.disabled = true; l.mu.Unlock() }

func TestMetricsAccess(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	for _, tok := range []string{testTokens.Worker, testTokens.Submitter} {
		b.get("/metrics", as(tok)).expect(t, 403, "populi: mesh/admin bearer required for metrics")
	}
	b.get("/metrics", as("")).expect(t, 401, "unauthorized")
	for _, tok := range []string{testTokens.Mesh, testTokens.Admin} {
		if r := b.get("/metrics", as(tok)); r.status != 200 {
			t.Errorf("scrape with an admin-class bearer: %d", r.status)
		}
	}
	open := setup(t, opts{tokens: testTokens, metricsOpen: true})
	if r := open.get("/metrics", as("")); r.status != 200 || !strings.Contains(r.body, "populi_a2a_messages") {
		t.Errorf("--metrics-open scrape without a bearer: %d", r.status)
	}
	// Open metrics opens nothing else.
	open.get("/v1/populi/queue/stats", as("")).expect(t, 401, "unauthorized")
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	b.get("/readyz", as("")).expect(t, 200, "ready\n")
	b.srv.Drain()
	b.get("/readyz", as("")).expect(t, 503, "not ready: shutting down\n")

	c := setup(t, opts{tokens: testTokens})
	c.get("/readyz", as("")).expect(t, 200, "ready\n")
	if err := c.store.Close(); err != nil {
		t.Fatal(err)
	}
	c.get("/readyz", as("")).expect(t, 503, "not ready: store closed\n")
	c.get("/health", as("")).expect(t, 200, "ok\n") // liveness is not readiness
}

func TestOpenAPIServedAsIs(t *testing.T) {
	t.Parallel()
	doc := []byte("openapi: 3.1.0\n# served verbatim\n")
	b := setup(t, opts{tokens: testTokens, openAPI: doc})
	r := b.get("/openapi.yaml", as(""))
	if r.status != 200 || r.body != string(doc) || r.header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /openapi.yaml: %d %q %q", r.status, r.header.Get("Content-Type"), r.body)
	}
}

// TestAccessLog checks the one line per request: its fields, JSON that
// parses, the route pattern instead of the raw path (so a query string
// never reaches the log), and the level switch.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	var buf syncBuf
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	b := setup(t, opts{tokens: testTokens, logger: log})
	r := b.get("/v1/populi/nodes?token=" + testTokens.Admin)
	b.get("/no/such/path?secret=" + testTokens.Worker)

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per request:\n%s", len(lines), buf.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatalf("log line is not JSON: %v\n%s", err, lines[0])
	}
	want := map[string]any{"level": "INFO", "msg": "http request", "request_id": r.header.Get("X-Request-Id"),
		"method": "GET", "route": "/v1/populi/nodes", "status": float64(200), "bytes": float64(len(r.body))}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("access log %s = %v, want %v", k, rec[k], v)
		}
	}
	if d, ok := rec["duration_ms"].(float64); !ok || d < 0 {
		t.Errorf("duration_ms = %v", rec["duration_ms"])
	}
	if !strings.Contains(lines[1], `"route":"unmatched"`) || !strings.Contains(lines[1], `"status":404`) {
		t.Errorf("unknown path line: %s", lines[1])
	}
	for _, s := range []string{testTokens.Admin, testTokens.Worker, testTokens.Mesh, "token=", "secret="} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("log carries %q", s)
		}
	}

	// At debug level the line is hidden from an info logger.
	var quiet syncBuf
	q := setup(t, opts{tokens: testTokens, logger: slog.New(slog.NewTextHandler(&quiet, nil))})
	q.srvAccessLevel(slog.LevelDebug, slog.New(slog.NewTextHandler(&quiet, nil)))
	q.get("/v1/populi/nodes")
	if quiet.String() != "" {
		t.Errorf("debug access log printed by an info logger: %s", quiet.String())
	}
}

func (b *bundle) srvAccessLevel(l slog.Level, log *slog.Logger) {
	srv, err := api.New(api.Config{Store: b.store, Tokens: b.o.tokens, AccessLogLevel: l, Logger: log})
	if err != nil {
		b.t.Fatal(err)
	}
	b.setHandler(srv)
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A long-poll claim whose client hangs up stops waiting (the h1 server
// cancels its context) and leases nothing: the row delivered afterwards
// goes to the next claimer at once, not to the node that left.
func TestLongPollClientHangUpLeasesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	b.join("gone")
	b.join("w")
	nc, err := net.Dial("tcp", strings.TrimPrefix(b.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"receiver_agent_id":"6","claimer_node_id":"gone","wait_ms":30000}`
	fmt.Fprintf(nc, "POST /v1/populi/a2a/inbox HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", b.token, len(body), body)
	eventually(t, "a parked long poll", func() bool { return b.scrape(t).value("populi_a2a_long_poll_waiters") == 1 })
	nc.Close()
	eventually(t, "the hung-up poll to end", func() bool { return b.scrape(t).value("populi_a2a_long_poll_waiters") == 0 })
	id := b.deliver("1", "6")
	got := b.claim("6", "w")
	if len(got) != 1 || got[0].ID != id || wire.Str(got[0].LeaseHolderNodeID) != "w" {
		t.Fatalf("claim after the hang-up got %+v, want row %d leased to w", got, id)
	}
}
