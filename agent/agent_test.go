package agent_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"populi-db/agent"
	"populi-db/api"
	"populi-db/client"
	"populi-db/internal/clock"
	"populi-db/probe"
	"populi-db/wire"
)

// swapNVML lets a test change the fake GPU inventory between probes: each
// Init picks up the Fake set last.
type swapNVML struct {
	mu   sync.Mutex
	next *probe.Fake
	cur  *probe.Fake // used by the probing goroutine only, Init to Shutdown
}

func (s *swapNVML) set(f *probe.Fake) { s.mu.Lock(); s.next = f; s.mu.Unlock() }
func (s *swapNVML) Init() error {
	s.mu.Lock()
	s.cur = s.next
	s.mu.Unlock()
	return s.cur.Init()
}
func (s *swapNVML) Shutdown() error              { return s.cur.Shutdown() }
func (s *swapNVML) DeviceGetCount() (int, error) { return s.cur.DeviceGetCount() }
func (s *swapNVML) DeviceGetHandleByIndex(i int) (probe.Device, error) {
	return s.cur.DeviceGetHandleByIndex(i)
}
func (s *swapNVML) SystemGetDriverVersion() (string, error) { return s.cur.SystemGetDriverVersion() }
func (s *swapNVML) SystemGetCudaDriverVersion() (int, error) {
	return s.cur.SystemGetCudaDriverVersion()
}

func gpus(n int) *probe.Fake {
	f := &probe.Fake{DriverVersion: "550.54.15", CUDAVersion: 12040}
	for i := 0; i < n; i++ {
		f.Devices = append(f.Devices, probe.FakeDevice{Memory: probe.Memory{Total: 80 << 30}})
	}
	return f
}

// events collects what an agent reports.
type events struct {
	mu  sync.Mutex
	all []agent.Event
	ch  chan agent.Event // every event, for tests that step a fake clock
}

func newEvents() *events { return &events{ch: make(chan agent.Event, 4096)} }

func (e *events) observe(ev agent.Event) {
	e.mu.Lock()
	e.all = append(e.all, ev)
	e.mu.Unlock()
	select {
	case e.ch <- ev:
	default:
	}
}

// count is how many events of kind have been seen (with or without error).
func (e *events) count(kind string, failed bool) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind && (ev.Err != nil) == failed {
			n++
		}
	}
	return n
}

type runningAgent struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error
}

// stop cancels the agent (as SIGTERM does) and waits for Run to return.
func (r *runningAgent) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatalf("Run: %v", r.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent did not stop")
	}
}

func runAgent(t *testing.T, cfg agent.Config) *runningAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningAgent{cancel: cancel, done: make(chan struct{})}
	a := agent.New(cfg)
	go func() { r.err = a.Run(ctx); close(r.done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop at cleanup")
		}
	})
	return r
}

// newClient is the typed client with one bearer ("" = none) and no
// retries of its own: the agent does the backing off.
func newClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.New(url, client.WithBearer(token), client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func builder(id string, n probe.NVML) *agent.Builder {
	return &agent.Builder{NodeID: id, Version: "test", NVML: n, Getenv: func(string) string { return "" }}
}

// Join, then heartbeats carry a freshly probed record: a GPU added to the
// (fake) host shows up on the control plane without a restart. On cancel
// (what SIGTERM does) the agent leaves.
func TestJoinHeartbeatRefreshLeave(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil, api.Config{}, 0)
	nv := &swapNVML{}
	nv.set(gpus(1))
	ev := newEvents()
	b := builder("gpu-node", nv) // ProbeTTL 0: probe on every rebuild
	r := runAgent(t, agent.Config{
		CP: newClient(t, srv.URL, ""), Builder: b, Interval: 50 * time.Millisecond, Observe: ev.observe,
	})
	eventually(t, 10*time.Second, "join", func() bool { return srv.node("gpu-node") != nil })
	n := srv.node("gpu-node")
	if n.GPUTotalCount == nil || *n.GPUTotalCount != 1 || wire.Str(n.GPUTruthLayer) != "layer_a_verified" || n.Version != "test" {
		t.Fatalf("joined record = %+v", n)
	}
	nv.set(gpus(3))
	eventually(t, 10*time.Second, "heartbeat with 3 GPUs", func() bool {
		n := srv.node("gpu-node")
		return n != nil && n.GPUTotalCount != nil && *n.GPUTotalCount == 3
	})
	if srv.requests("/v1/populi/heartbeat") == 0 || srv.requests("/v1/populi/join") != 1 {
		t.Fatalf("refresh did not come from a heartbeat: %d joins, %d heartbeats",
			srv.requests("/v1/populi/join"), srv.requests("/v1/populi/heartbeat"))
	}

	r.stop(t)
	if srv.node("gpu-node") != nil {
		t.Fatal("node still registered after the agent stopped")
	}
	if ev.count(agent.EvLeave, false) != 1 || srv.requests("/v1/populi/leave") != 1 {
		t.Fatalf("leave events %d, requests %d", ev.count(agent.EvLeave, false), srv.requests("/v1/populi/leave"))
	}
}

// The control plane is stopped and restarted on the same db: the agent
// notices (failed heartbeat), backs off without a tight loop, and the node
// is heartbeating again within two intervals of the restart. A node the
// control plane lost (removed behind the agent's back) also comes back.
func TestRecoversAfterRestartAndNodeLoss(t *testing.T) {
	t.Parallel()
	const interval = 400 * time.Millisecond
	srv := startServer(t, nil, api.Config{}, 0)
	ev := newEvents()
	runAgent(t, agent.Config{
		CP: newClient(t, srv.URL, ""), Builder: builder("n-restart", nil), Interval: interval,
		Backoff: agent.Backoff{Rand: func() float64 { return 0.5 }}, Observe: ev.observe,
	})
	eventually(t, 10*time.Second, "first heartbeat", func() bool { return ev.count(agent.EvHeartbeat, false) >= 1 })

	srv.Stop()
	eventually(t, 10*time.Second, "a failed heartbeat", func() bool { return ev.count(agent.EvHeartbeat, true) >= 1 })
	failedBefore := ev.count(agent.EvHeartbeat, true)
	srv.Restart()
	restarted := time.Now() // serving again from here
	// First backoff is 0.5 x interval; a second failure during the restart
	// would wait 1 x interval: either way well inside two intervals.
	eventually(t, 10*time.Second, "heartbeat after restart", func() bool {
		n := srv.node("n-restart")
		return n != nil && time.UnixMilli(int64(n.LastSeenUnixMs)).After(restarted)
	})
	if took := time.Since(restarted); took > 2*interval {
		t.Errorf("node back %v after the restart, want within two intervals (%v)", took, 2*interval)
	}
	if f := ev.count(agent.EvHeartbeat, true); f-failedBefore > 3 {
		t.Errorf("%d failed heartbeats during a short restart: tight loop?", f-failedBefore)
	}

	// Lost: remove the node; the next heartbeat upserts it again.
	if st, body := srv.call("POST", "/v1/populi/leave", map[string]string{"id": "n-restart"}, nil); st != 204 {
		t.Fatalf("leave: %d %s", st, body)
	}
	removed := time.Now()
	eventually(t, 10*time.Second, "node back after loss", func() bool { return srv.node("n-restart") != nil })
	if took := time.Since(removed); took > 2*interval {
		t.Errorf("node back %v after loss, want within two intervals", took)
	}
}

// stepper drives an agent on a fake clock: every wait the agent arms is
// recorded, and fired only when the test says so.
type stepper struct {
	t   *testing.T
	clk *clock.Fake
	ev  *events
}

// armed returns the next wait the agent armed (skipping other events).
func (s *stepper) armed() time.Duration {
	s.t.Helper()
	for {
		select {
		case e := <-s.ev.ch:
			if e.Kind == agent.EvWait {
				return e.Delay
			}
		case <-time.After(20 * time.Second):
			s.t.Fatal("agent armed no wait")
			return 0
		}
	}
}

// fire lets an armed wait elapse.
func (s *stepper) fire(d time.Duration) { s.clk.Advance(d) }

// toggleLimiter refuses every request while on (real 429s from the server).
type toggleLimiter struct{ on atomic.Bool }

func (l *toggleLimiter) Allow(string) bool { return !l.on.Load() }

// Backoff on transport errors and 429: the recorded schedule grows
// exponentially with full jitter (injected random source), is capped, and
// resets to the interval after a success. 401/403 keep the normal interval.
func TestBackoffSchedule(t *testing.T) {
	t.Parallel()
	const interval = 10 * time.Second
	lim := &toggleLimiter{}
	srv := startServer(t, nil, api.Config{RateLimiter: lim, Tokens: api.Tokens{Mesh: "tok"}}, 0)
	clk := clock.NewFake(time.UnixMilli(1_767_225_600_000))
	ev := newEvents()
	draws := []float64{0.9, 0.5, 0.25, 0.75, 0.5, 0.5, 0.1}
	var i atomic.Int32
	rnd := func() float64 { return draws[int(i.Add(1)-1)%len(draws)] }
	token := "tok"
	cp := &swapCP{cp: newClient(t, srv.URL, token)}
	runAgent(t, agent.Config{
		CP: cp, Builder: builder("n-backoff", nil), Interval: interval, Clock: clk, Observe: ev.observe,
		Backoff: agent.Backoff{Cap: 60 * time.Second, Rand: rnd},
	})
	s := &stepper{t: t, clk: clk, ev: ev}

	d := s.armed() // joined; first heartbeat after one interval
	if d != interval {
		t.Fatalf("first wait %v", d)
	}
	s.fire(d)
	if d = s.armed(); d != interval { // heartbeat ok
		t.Fatalf("second wait %v", d)
	}
	srv.Stop() // transport errors from now on
	var got []time.Duration
	for k := range 7 {
		switch k {
		case 4: // server back, but answering 429
			lim.on.Store(true)
			srv.Restart()
		}
		s.fire(d)
		d = s.armed()
		got = append(got, d)
	}
	// ceilings 10, 20, 40, 60 (cap), 60, 60, 60 s times draws 0.9, 0.5, 0.25, 0.75, 0.5, 0.5, 0.1;
	// 0.1 x 60 s = 6 s is above the 2.5 s floor (base/4).
	want := []time.Duration{9 * time.Second, 10 * time.Second, 10 * time.Second, 45 * time.Second, 30 * time.Second, 30 * time.Second, 6 * time.Second}
	if len(got) != len(want) {
		t.Fatalf("schedule %v, want %v", got, want)
	}
	for k := range want {
		if got[k] != want[k] {
			t.Fatalf("schedule %v, want %v", got, want)
		}
	}
	if n429 := countStatus(ev, agent.EvHeartbeat, 429); n429 != 3 {
		t.Errorf("%d heartbeats answered 429, want 3", n429)
	}
	lim.on.Store(false)
	s.fire(d)
	if d = s.armed(); d != interval { // success resets
		t.Fatalf("after success waited %v, want the interval", d)
	}
	// 401 (wrong token): warn and keep the normal interval, no backoff.
	cp.swap(newClient(t, srv.URL, "wrong"))
	for range 2 {
		s.fire(d)
		if d = s.armed(); d != interval {
			t.Fatalf("after 401 waited %v, want the interval", d)
		}
	}
	if countStatus(ev, agent.EvHeartbeat, 401) < 1 {
		t.Error("no 401 seen")
	}
}

func countStatus(e *events, kind string, status int) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.all {
		if ev.Kind == kind && ev.Status == status && ev.Err != nil {
			n++
		}
	}
	return n
}

// swapCP lets a test change the bearer mid-run.
type swapCP struct {
	mu sync.Mutex
	cp agent.ControlPlane
}

func (s *swapCP) swap(cp agent.ControlPlane) { s.mu.Lock(); s.cp = cp; s.mu.Unlock() }
func (s *swapCP) get() agent.ControlPlane    { s.mu.Lock(); defer s.mu.Unlock(); return s.cp }
func (s *swapCP) Join(ctx context.Context, r wire.NodeRecord) (wire.NodeRecord, error) {
	return s.get().Join(ctx, r)
}
func (s *swapCP) Heartbeat(ctx context.Context, r wire.NodeRecord) (wire.NodeRecord, error) {
	return s.get().Heartbeat(ctx, r)
}
func (s *swapCP) Leave(ctx context.Context, id string) (bool, error) { return s.get().Leave(ctx, id) }
func (s *swapCP) Claim(ctx context.Context, rc, cl string, w time.Duration) (*wire.StoredMessage, error) {
	return s.get().Claim(ctx, rc, cl, w)
}
func (s *swapCP) Ack(ctx context.Context, r wire.AckRequest) (bool, error) {
	return s.get().Ack(ctx, r)
}
func (s *swapCP) Nack(ctx context.Context, r wire.NackRequest) error { return s.get().Nack(ctx, r) }
func (s *swapCP) RenewLease(ctx context.Context, r wire.LeaseRenewRequest) error {
	return s.get().RenewLease(ctx, r)
}

// A shutdown during a heartbeat waits for its answer before leaving: a
// heartbeat abandoned by the client could be applied by the server after
// the leave and register the node again.
func TestShutdownDuringHeartbeatStillLeaves(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil, api.Config{}, 0)
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	srv.setHold(func(path string) {
		if path == "/v1/populi/heartbeat" {
			select {
			case arrived <- struct{}{}:
			default:
			}
			<-release
		}
	})
	r := runAgent(t, agent.Config{CP: newClient(t, srv.URL, ""), Builder: builder("n-inflight", nil), Interval: 20 * time.Millisecond})
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat")
	}
	r.cancel()
	// Give a leave that does not wait for the heartbeat time to overtake it.
	time.Sleep(200 * time.Millisecond)
	if n := srv.requests("/v1/populi/leave"); n != 0 {
		t.Errorf("left while a heartbeat was in flight (%d leaves)", n)
	}
	close(release)
	r.stop(t)
	if srv.node("n-inflight") != nil {
		t.Fatal("node registered after the agent left")
	}
}
