package client_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/client"
	"populi-db/internal/testserver"
	"populi-db/wire"
)

var toks = testserver.Tokens

// allTokens is a client holding every token the server knows.
var allTokens = client.Tokens{Mesh: toks.Mesh, Worker: toks.Worker, Submitter: toks.Submitter, Admin: toks.Admin}

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatalf("client.New(%q): %v", url, err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func node(id string) wire.NodeRecord { return wire.NodeRecord{ID: id, Version: "1"} }

// msg is a private delivery: claimable by a default-visibility node (a row
// without privacy_class is a public row, which such a node never claims).
func msg(receiver, payload string) wire.DeliverRequest {
	return wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: receiver, MessageType: "task", Payload: payload, PrivacyClass: ptr("private")}
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func ok(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// wantStatus checks err is an *HTTPStatusError with status and exact text.
func wantStatus(t *testing.T, err error, status int, context, body string) {
	t.Helper()
	var se *client.HTTPStatusError
	if !errors.As(err, &se) {
		t.Fatalf("got %v (%T), want HTTP %d", err, err, status)
	}
	if se.StatusCode() != status || !se.IsHTTPStatus(status) || !client.IsHTTPStatus(err, status) || client.StatusCode(err) != status {
		t.Fatalf("status %d, want %d (%v)", se.Status, status, err)
	}
	if se.Context != context || se.Body() != body {
		t.Fatalf("got context %q body %q, want %q %q", se.Context, se.Body(), context, body)
	}
	want := "populi HTTP " + strconv.Itoa(status) + " (" + context + ")"
	if body != "" {
		want += ": " + body
	}
	if err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

// TestEveryRoute walks every route the server serves through the client,
// in token mode, checking each answer.
func TestEveryRoute(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{
		Tokens: toks, MaxDeliveries: 1,
		Bootstrap: api.Bootstrap{Token: "boot-tok"}, ReportedScopeID: ptr("scope-x"),
	})
	c := newClient(t, s.URL+"/", client.WithTokens(allTokens))
	bg := ctx(t)

	ok(t, "health", c.Health(bg))

	joined := must[wire.NodeRecord](t, "join")(c.Join(bg, node("n1")))
	if joined.ID != "n1" || joined.LastSeenUnixMs != uint64(testserver.T0.UnixMilli()) {
		t.Fatalf("join answer %+v", joined)
	}
	hb := node("n1")
	hb.Version = "2"
	if got := must[wire.NodeRecord](t, "heartbeat")(c.Heartbeat(bg, hb)); got.Version != "2" {
		t.Fatalf("heartbeat answer %+v", got)
	}
	must[wire.NodeRecord](t, "join n2")(c.Join(bg, node("n2")))
	reg := must[wire.Registry](t, "list nodes")(c.ListNodes(bg))
	if len(reg.Nodes) != 2 {
		t.Fatalf("nodes %+v", reg.Nodes)
	}

	// Deliver, list, claim, renew, ack.
	id1 := must[uint64](t, "deliver")(c.Deliver(bg, msg("7", "one")))
	key := "k-2"
	m2 := msg("7", "two")
	m2.IdempotencyKey = &key
	id2 := must[uint64](t, "deliver 2")(c.Deliver(bg, m2))
	if again := must[uint64](t, "deliver 2 again")(c.Deliver(bg, m2)); again != id2 || id2 <= id1 {
		t.Fatalf("ids %d %d %d", id1, id2, again)
	}
	listed := must[[]wire.StoredMessage](t, "inbox")(c.Inbox(bg, wire.InboxRequest{ReceiverAgentID: "7"}))
	if len(listed) != 2 || listed[0].ID != id2 || listed[1].ID != id1 {
		t.Fatalf("listing %+v", listed)
	}
	claimed := must[*wire.StoredMessage](t, "claim")(c.Claim(bg, "7", "n1", 0))
	if claimed == nil || claimed.LeaseToken == nil || wire.Str(claimed.LeaseHolderNodeID) != "n1" {
		t.Fatalf("claim %+v", claimed)
	}
	ok(t, "renew", c.RenewLease(bg, wire.LeaseRenewRequest{ReceiverAgentID: "7", MessageID: claimed.ID, ClaimerNodeID: "n1", LeaseToken: claimed.LeaseToken}))
	if found := must[bool](t, "ack")(c.AckMessage(bg, *claimed)); !found {
		t.Fatal("ack: not found")
	}
	if found := must[bool](t, "ack unknown")(c.Ack(bg, wire.AckRequest{ReceiverAgentID: "7", MessageID: 999})); found {
		t.Fatal("ack of an unknown message reported found")
	}

	// Nack at the delivery limit (1) dead-letters; requeue brings it back.
	other := must[*wire.StoredMessage](t, "claim 2")(c.Claim(bg, "7", "n1", 0))
	if other == nil || other.ID == claimed.ID {
		t.Fatalf("second claim %+v", other)
	}
	ok(t, "nack", c.Nack(bg, wire.NackRequest{ReceiverAgentID: "7", MessageID: other.ID, ClaimerNodeID: "n1", LeaseToken: other.LeaseToken}))
	dead := must[[]wire.StoredMessage](t, "dead")(c.DeadLetters(bg, wire.DeadListRequest{ReceiverAgentID: "7"}))
	if len(dead) != 1 || dead[0].ID != other.ID || dead[0].State != wire.StateDead {
		t.Fatalf("dead letters %+v", dead)
	}
	stats := must[wire.QueueStats](t, "stats")(c.QueueStats(bg))
	if stats.ByState.Dead != 1 || stats.ByState.Acked != 1 {
		t.Fatalf("stats %+v", stats)
	}
	ok(t, "requeue", c.Requeue(bg, "7", other.ID))
	if again := must[*wire.StoredMessage](t, "claim requeued")(c.Claim(bg, "7", "n2", 0)); again == nil || again.ID != other.ID {
		t.Fatalf("claim after requeue %+v", again)
	}

	// Exec leases.
	lease := must[wire.ExecLease](t, "grant")(c.GrantExecLease(bg, "n1", "scope/a"))
	if lease.HolderNodeID != "n1" || lease.ScopeKey != "scope/a" || lease.LeaseToken == nil {
		t.Fatalf("lease %+v", lease)
	}
	lr := wire.ExecLeaseRequest{LeaseID: lease.LeaseID, ClaimerNodeID: "n1", LeaseToken: lease.LeaseToken}
	ok(t, "exec renew", c.RenewExecLease(bg, lr))
	if ls := must[[]wire.ExecLease](t, "exec list")(c.ListExecLeases(bg)); len(ls) != 1 || ls[0].LeaseID != lease.LeaseID {
		t.Fatalf("exec leases %+v", ls)
	}
	ok(t, "exec release", c.ReleaseExecLease(bg, lr))
	lease2 := must[wire.ExecLease](t, "grant 2")(c.GrantExecLease(bg, "n2", "scope/b"))
	ok(t, "revoke", c.RevokeExecLease(bg, lease2.LeaseID))
	if ls := must[[]wire.ExecLease](t, "exec list 2")(c.ListExecLeases(bg)); len(ls) != 0 {
		t.Fatalf("exec leases after release and revoke %+v", ls)
	}

	// Admin node states.
	ok(t, "quarantine", c.SetQuarantine(bg, "n2", true))
	forMs := uint64(60_000)
	ok(t, "maintenance", c.SetMaintenance(bg, wire.MaintenanceRequest{NodeID: "n1", Maintenance: true, MaintenanceForMs: &forMs}))
	reg = must[wire.Registry](t, "list nodes 2")(c.ListNodes(bg))
	for _, n := range reg.Nodes {
		switch n.ID {
		case "n1":
			if n.Maintenance == nil || !*n.Maintenance || n.MaintenanceUntilUnixMs == nil {
				t.Fatalf("n1 not in maintenance: %+v", n)
			}
		case "n2":
			if n.Quarantined == nil || !*n.Quarantined {
				t.Fatalf("n2 not quarantined: %+v", n)
			}
		}
	}

	if m := must[string](t, "metrics")(c.Metrics(bg)); !strings.Contains(m, "populi") {
		t.Fatalf("metrics text lacks populi series: %.200s", m)
	}

	// Leave: found, then not.
	if found := must[bool](t, "leave")(c.Leave(bg, "n2")); !found {
		t.Fatal("leave n2: not found")
	}
	if found := must[bool](t, "leave again")(c.Leave(bg, "n2")); found {
		t.Fatal("second leave reported found")
	}

	// Bootstrap exchange: once, then 410.
	bx := must[wire.BootstrapExchangeResponse](t, "bootstrap")(c.BootstrapExchange(bg, "boot-tok"))
	if bx.MeshToken != toks.Mesh || wire.Str(bx.ScopeID) != "scope-x" {
		t.Fatalf("bootstrap answer %+v", bx)
	}
	_, err := c.BootstrapExchange(bg, "boot-tok")
	wantStatus(t, err, http.StatusGone, "bootstrap_exchange", wire.ErrBootstrapConsumed.Message)
}

// TestBearerPrecedence checks the token each call class sends.
func TestBearerPrecedence(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Tokens: toks, Bootstrap: api.Bootstrap{Token: "boot"}})
	var mu sync.Mutex
	seen := map[string]string{}
	s.OnRequest(func(r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen[r.URL.Path] = r.Header.Get("Authorization")
	})
	bg := ctx(t)
	exercise := func(c *client.Client) {
		_, _ = c.ListNodes(bg)                 // worker
		_, _ = c.Deliver(bg, msg("1", "x"))    // deliver
		_, _ = c.ListExecLeases(bg)            // admin
		_, _ = c.BootstrapExchange(bg, "boot") // public
		_ = c.Health(bg)                       // public
	}
	for _, tc := range []struct {
		name                   string
		tokens                 client.Tokens
		worker, deliver, admin string
	}{
		{"all", allTokens, toks.Worker, toks.Mesh, toks.Mesh},
		{"no mesh", client.Tokens{Worker: toks.Worker, Submitter: toks.Submitter, Admin: toks.Admin}, toks.Worker, toks.Submitter, toks.Admin},
		{"admin only", client.Tokens{Admin: toks.Admin}, toks.Admin, toks.Admin, toks.Admin},
		{"mesh only", client.Tokens{Mesh: toks.Mesh}, toks.Mesh, toks.Mesh, toks.Mesh},
		{"none", client.Tokens{}, "", "", ""},
	} {
		mu.Lock()
		clear(seen)
		mu.Unlock()
		exercise(newClient(t, s.URL, client.WithTokens(tc.tokens)))
		mu.Lock()
		for path, want := range map[string]string{
			"/v1/populi/nodes": tc.worker, "/v1/populi/a2a/deliver": tc.deliver, "/v1/populi/exec/leases": tc.admin,
			"/v1/populi/bootstrap/exchange": "", "/health": "",
		} {
			if want != "" {
				want = "Bearer " + want
			}
			if got := seen[path]; got != want {
				t.Errorf("%s: %s sent Authorization %q, want %q", tc.name, path, got, want)
			}
		}
		mu.Unlock()
	}
	// WithEnv reads the same variables the server does.
	env := map[string]string{client.EnvWorkerToken: " " + toks.Worker + " ", client.EnvSubmitterToken: toks.Submitter}
	got := client.TokensFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if got.For(client.ClassWorker) != toks.Worker || got.For(client.ClassDeliver) != toks.Submitter || got.For(client.ClassAdmin) != "" {
		t.Fatalf("TokensFromEnv: %+v", got)
	}
}

// TestTypedErrors checks each error answer becomes an HTTPStatusError with
// the call's context and the server's exact text.
func TestTypedErrors(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{Tokens: toks, Bootstrap: api.Bootstrap{Token: "boot"}})
	bg := ctx(t)
	mesh := newClient(t, s.URL, client.WithBearer(toks.Mesh))

	_, err := newClient(t, s.URL, client.WithBearer("wrong")).ListNodes(bg)
	wantStatus(t, err, 401, "list_nodes", "unauthorized")

	_, err = newClient(t, s.URL).Deliver(bg, msg("1", "x")) // no bearer at all
	wantStatus(t, err, 401, "a2a_deliver", "unauthorized")

	sub := newClient(t, s.URL, client.WithBearer(toks.Submitter)) // sent on every class
	err = sub.SetQuarantine(bg, "n1", true)
	wantStatus(t, err, 403, "admin_quarantine", "populi: mesh/admin bearer required for quarantine")

	err = mesh.SetQuarantine(bg, "nobody", true)
	wantStatus(t, err, 404, "admin_quarantine", "")

	_, err = mesh.Deliver(bg, msg("abc", "x"))
	wantStatus(t, err, 400, "a2a_deliver", wire.ErrReceiverDigits.Message)

	must[wire.NodeRecord](t, "join")(mesh.Join(bg, node("n1")))
	id := must[uint64](t, "deliver")(mesh.Deliver(bg, msg("3", "x")))
	m := must[*wire.StoredMessage](t, "claim")(mesh.Claim(bg, "3", "n1", 0))
	stale := *m.LeaseToken + 1
	_, err = mesh.Ack(bg, wire.AckRequest{ReceiverAgentID: "3", MessageID: id, LeaseToken: &stale})
	wantStatus(t, err, 409, "a2a_ack", wire.ErrStaleLeaseToken.Message)
	err = mesh.Requeue(bg, "3", id)
	wantStatus(t, err, 409, "admin_a2a_requeue", wire.ErrNotDead.Message)

	_, err = mesh.BootstrapExchange(bg, "not-it")
	wantStatus(t, err, 401, "bootstrap_exchange", "invalid bootstrap token")

	// A 404 with a body is an answer, not "not found": Leave keeps it an error.
	s.Wrap(func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, strings.Repeat("z", 300), 404) })
	})
	found, err := mesh.Leave(bg, "n1")
	if found {
		t.Fatal("leave: found on an error")
	}
	wantStatus(t, err, 404, "leave", strings.Repeat("z", 240)+"...")
	s.Wrap(nil)

	// A server that is not there: a TransportError, not a status.
	l, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	gone := "http://" + l.Addr().String()
	_ = l.Close()
	_, err = newClient(t, gone).ListNodes(bg)
	var te *client.TransportError
	if !errors.As(err, &te) || !client.IsTransport(err) || te.Context != "list_nodes" || client.StatusCode(err) != 0 {
		t.Fatalf("unreachable server: %v (%T)", err, err)
	}
}

// flaky answers 503 to the first n requests, then passes them on.
func flaky(n int64, status int, count *atomic.Int64) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if count.Add(1) <= n {
				http.Error(w, "try later", status)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestTransientRetries(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	bg := ctx(t)
	fast := client.Retry{Attempts: 2, Base: time.Millisecond, Cap: 5 * time.Millisecond}

	// Fails twice, then answers: two retries are enough.
	var n atomic.Int64
	s.Wrap(flaky(2, 503, &n))
	if _, err := newClient(t, s.URL, client.WithRetry(fast)).ListNodes(bg); err != nil || n.Load() != 3 {
		t.Fatalf("with retries: err %v after %d requests, want success after 3", err, n.Load())
	}

	// Fails three times: two retries are not, and the last error comes back.
	n.Store(0)
	s.Wrap(flaky(3, 503, &n))
	_, err := newClient(t, s.URL, client.WithRetry(fast)).ListNodes(bg)
	wantStatus(t, err, 503, "list_nodes", "try later")
	if n.Load() != 3 {
		t.Fatalf("%d requests, want 3", n.Load())
	}

	// Off by default.
	n.Store(0)
	s.Wrap(flaky(1, 503, &n))
	_, err = newClient(t, s.URL).ListNodes(bg)
	wantStatus(t, err, 503, "list_nodes", "try later")

	// A 4xx other than 408/429 is an answer, never retried.
	n.Store(0)
	s.Wrap(flaky(1, 409, &n))
	_, err = newClient(t, s.URL, client.WithRetry(fast)).ListNodes(bg)
	wantStatus(t, err, 409, "list_nodes", "try later")

	// A deliver without an idempotency key is not retried after a 5xx (it
	// may have been applied) but is after a 429 (refused up front); with a
	// key it is retried like anything else.
	n.Store(0)
	s.Wrap(flaky(1, 503, &n))
	_, err = newClient(t, s.URL, client.WithRetry(fast)).Deliver(bg, msg("1", "x"))
	wantStatus(t, err, 503, "a2a_deliver", "try later")
	n.Store(0)
	s.Wrap(flaky(2, 429, &n))
	if _, err := newClient(t, s.URL, client.WithRetry(fast)).Deliver(bg, msg("1", "x")); err != nil {
		t.Fatalf("deliver after two 429s: %v", err)
	}
	n.Store(0)
	s.Wrap(flaky(2, 502, &n))
	keyed := msg("1", "y")
	key := "retry-key"
	keyed.IdempotencyKey = &key
	if _, err := newClient(t, s.URL, client.WithRetry(fast)).Deliver(bg, keyed); err != nil {
		t.Fatalf("keyed deliver after two 502s: %v", err)
	}

	// VOX_POPULI_HTTP_RETRY_TRANSIENT turns the default policy on.
	for v, want := range map[string]bool{"1": true, " TRUE ": true, "yes": true, "0": false, "": false, "on": false} {
		got := client.RetryFromEnv(func(string) (string, bool) { return v, true })
		if got != want {
			t.Errorf("RetryFromEnv(%q) = %v, want %v", v, got, want)
		}
	}
}

// TestPager is SPEC 15.3's case: 4 rows, page size 2 → pages of 2, 2, then
// empty twice (the second without a request); ids strictly decreasing.
func TestPager(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{MaxDeliveries: 1})
	bg := ctx(t)
	c := newClient(t, s.URL)
	var want []uint64
	for i := range 4 {
		want = append([]uint64{must[uint64](t, "deliver")(c.Deliver(bg, msg("5", strconv.Itoa(i))))}, want...)
	}
	var requests atomic.Int64
	s.OnRequest(func(*http.Request) { requests.Add(1) })
	p := c.NewInboxPager("5", 2)
	var got []uint64
	for i, size := range []int{2, 2, 0, 0} {
		page := must[[]wire.StoredMessage](t, "page")(p.NextPage(bg))
		if len(page) != size {
			t.Fatalf("page %d has %d rows, want %d", i, len(page), size)
		}
		for _, m := range page {
			got = append(got, m.ID)
		}
	}
	if requests.Load() != 3 || !p.Done() {
		t.Fatalf("%d requests (done %v), want 3", requests.Load(), p.Done())
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	all := must[[]wire.StoredMessage](t, "all")(c.InboxAllPaged(bg, "5", 3))
	if len(all) != 4 || all[0].ID != want[0] || all[3].ID != want[3] {
		t.Fatalf("InboxAllPaged: %v", all)
	}
	// Page size is clamped to [1, 256]: 0 still pages, one row at a time.
	requests.Store(0)
	if all := must[[]wire.StoredMessage](t, "all size 0")(c.InboxAllPaged(bg, "5", 0)); len(all) != 4 || requests.Load() != 5 {
		t.Fatalf("page size 0: %d rows in %d requests", len(all), requests.Load())
	}

	// Dead letters page the same way.
	must[wire.NodeRecord](t, "join")(c.Join(bg, node("n")))
	for range 3 {
		m := must[*wire.StoredMessage](t, "claim")(c.Claim(bg, "5", "n", 0))
		ok(t, "nack", c.Nack(bg, wire.NackRequest{ReceiverAgentID: "5", MessageID: m.ID, ClaimerNodeID: "n", LeaseToken: m.LeaseToken}))
	}
	dead := must[[]wire.StoredMessage](t, "dead all")(c.DeadAllPaged(bg, "5", 2))
	if len(dead) != 3 || dead[0].ID <= dead[1].ID || dead[1].ID <= dead[2].ID {
		t.Fatalf("dead letters %v", dead)
	}
}

// TestClaimLongPoll: a claim waiting on an empty mailbox returns the row
// delivered while it waits; cancelling the context ends a wait.
func TestClaimLongPoll(t *testing.T) {
	t.Parallel()
	s := testserver.Start(t, testserver.Options{})
	bg := ctx(t)
	c := newClient(t, s.URL)
	must[wire.NodeRecord](t, "join")(c.Join(bg, node("n")))
	waiting := make(chan struct{})
	s.OnRequest(func(r *http.Request) {
		if r.URL.Path == "/v1/populi/a2a/inbox" {
			close(waiting)
		}
	})
	type res struct {
		m   *wire.StoredMessage
		err error
	}
	done := make(chan res, 1)
	go func() { m, err := c.Claim(bg, "9", "n", 20*time.Second); done <- res{m, err} }()
	<-waiting
	s.OnRequest(nil)
	id := must[uint64](t, "deliver")(c.Deliver(bg, msg("9", "late")))
	r := <-done
	if r.err != nil || r.m == nil || r.m.ID != id {
		t.Fatalf("long-poll claim: %+v, %v", r.m, r.err)
	}

	cctx, cancel := context.WithCancel(bg)
	go func() { m, err := c.Claim(cctx, "9", "n", 20*time.Second); done <- res{m, err} }()
	cancel()
	if r := <-done; !errors.Is(r.err, context.Canceled) || !client.IsTransport(r.err) {
		t.Fatalf("cancelled claim: %v", r.err)
	}
}

func TestControlURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"populi-ctrl:9847/":         "http://populi-ctrl:9847",
		" http://127.0.0.1:9847 ":   "http://127.0.0.1:9847",
		"HTTPS://h.example///":      "HTTPS://h.example",
		"http://0.0.0.0:9847":       "",
		"http://[::]:9847":          "",
		"0.0.0.0":                   "",
		"http://user:pw@[::1]:9847": "http://user:pw@[::1]:9847",
		"":                          "",
	} {
		got, ok := client.NormalizeControlURL(in)
		if got != want || ok != (want != "") {
			t.Errorf("NormalizeControlURL(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	env := map[string]string{client.EnvControlURL: "0.0.0.0:9847", client.EnvControlAddr: "127.0.0.1:1"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if u, err := client.ControlURLFromEnv("", lookup); err != nil || u != "http://127.0.0.1:1" {
		t.Fatalf("bind-all first value should fall through: %q %v", u, err)
	}
	if u, err := client.ControlURLFromEnv("h:2", lookup); err != nil || u != "http://h:2" {
		t.Fatalf("flag wins: %q %v", u, err)
	}
	if _, err := client.ControlURLFromEnv("[::]:1", lookup); err == nil || !strings.Contains(err.Error(), "--control-url") {
		t.Fatalf("bind-all flag: %v", err)
	}
	if _, err := client.ControlURLFromEnv("", func(string) (string, bool) { return "", false }); err == nil ||
		!strings.Contains(err.Error(), client.EnvControlURL) || !strings.Contains(err.Error(), client.EnvControlAddr) {
		t.Fatalf("nothing set: %v", err)
	}
	if _, err := client.New("http://0.0.0.0:1"); err == nil {
		t.Fatal("New accepted a bind-all address")
	}
}

func ptr[T any](v T) *T { return &v }
