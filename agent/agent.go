package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// LeaveTimeoutDefault bounds the leave call made on shutdown.
const LeaveTimeoutDefault = 10 * time.Second

// Event is something the agent did, reported to Config.Observe (tests and
// diagnostics). Err is set for failed calls.
type Event struct {
	Kind  string        // one of the Ev* constants
	Delay time.Duration // EvWait: how long it waits
	// Status is the HTTP status of a failed call (0 for a transport failure).
	Status    int
	MessageID uint64
	Err       error
}

// Event kinds.
const (
	EvJoin      = "join"
	EvHeartbeat = "heartbeat"
	EvWait      = "wait" // a heartbeat/join wait armed on the clock
	EvLeave     = "leave"
	EvPublish   = "publish"
	EvClaim     = "claim"
	EvClaimWait = "claim_wait" // a claim-error backoff armed on the clock
	EvRenew     = "renew"
	EvAck       = "ack"
	EvNack      = "nack"
	EvLeaseLost = "lease_lost" // renew or ack found another holder: not acked
)

// Config is one agent's wiring. CP nil means "no HTTP join" (SPEC 15.6 step
// 1): the agent only publishes the registry file.
type Config struct {
	CP      ControlPlane
	Builder *Builder
	// Interval is the heartbeat interval; 0 = join only.
	Interval time.Duration
	// Timeout bounds each join/heartbeat/ack call.
	Timeout time.Duration
	// Backoff for join/heartbeat failures; a zero Base means Interval (or
	// 1 s when Interval is 0), a zero Cap BackoffCapDefault.
	Backoff Backoff
	// RegistryPath, when set, gets the record published on every rebuild.
	RegistryPath string
	Work         *WorkConfig
	Clock        clock.Clock
	Log          *slog.Logger
	Observe      func(Event)
	LeaveTimeout time.Duration
}

// Agent runs one node's join/heartbeat loop and optional work loop.
type Agent struct {
	cfg Config
	clk clock.Clock
	log *slog.Logger
}

// New fills defaults.
func New(cfg Config) *Agent {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = HTTPTimeoutDefault
	}
	if cfg.LeaveTimeout <= 0 {
		cfg.LeaveTimeout = LeaveTimeoutDefault
	}
	if cfg.Backoff.Base <= 0 {
		cfg.Backoff.Base = cfg.Interval
		if cfg.Backoff.Base <= 0 {
			cfg.Backoff.Base = time.Second
		}
	}
	if cfg.Backoff.Cap <= 0 {
		cfg.Backoff.Cap = BackoffCapDefault
	}
	if cfg.Backoff.Floor <= 0 {
		cfg.Backoff.Floor = min(cfg.Backoff.Base/4, time.Second)
	}
	return &Agent{cfg: cfg, clk: cfg.Clock, log: cfg.Log}
}

func (a *Agent) observe(e Event) {
	if a.cfg.Observe != nil {
		a.cfg.Observe(e)
	}
}

// sleep waits d on the agent's clock; false when ctx ended first. The
// timer is armed before the event is reported, so a test that advances a
// fake clock on EvWait always fires it.
func (a *Agent) sleep(ctx context.Context, d time.Duration, kind string) bool {
	ch := a.clk.After(d)
	a.observe(Event{Kind: kind, Delay: d})
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run joins, heartbeats until ctx ends, then stops the work loop (a running
// job is stopped and its row given back) and leaves. It returns nil on a
// clean shutdown.
func (a *Agent) Run(ctx context.Context) error {
	rec := a.build()
	if a.cfg.CP == nil {
		return a.publishOnly(ctx)
	}
	a.log.Info("agent starting", "node_id", rec.ID, "interval", a.cfg.Interval)
	if !a.join(ctx) {
		return nil // stopped before the first join: nothing to leave
	}
	var wg sync.WaitGroup
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	if a.cfg.Work != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.workLoop(workCtx) }()
	}
	a.heartbeatLoop(ctx)
	stopWork()
	wg.Wait()
	a.leave()
	return nil
}

// build rebuilds the record and publishes it to the registry file.
func (a *Agent) build() wire.NodeRecord {
	rec := a.cfg.Builder.Build()
	if a.cfg.RegistryPath != "" {
		err := PublishRegistry(a.cfg.RegistryPath, rec, a.clk.Now())
		a.observe(Event{Kind: EvPublish, Err: err})
		if err != nil {
			a.log.Warn("publish local registry file", "path", a.cfg.RegistryPath, "err", err)
		}
	}
	return rec
}

func (a *Agent) publishOnly(ctx context.Context) error {
	a.log.Info("HTTP join disabled: publishing the local registry file only", "path", a.cfg.RegistryPath)
	for a.cfg.Interval > 0 && a.sleep(ctx, a.cfg.Interval, EvWait) {
		a.build()
	}
	<-ctx.Done()
	return nil
}

// join retries until the first join succeeds (false: ctx ended). Retryable
// failures back off; others (401, 403 scope mismatch, 4xx) are logged at
// warn level and retried at the normal interval.
func (a *Agent) join(ctx context.Context) bool {
	failures := 0
	for {
		rec := a.cfg.Builder.Build()
		cctx, cancel := a.callContext(ctx)
		_, err := a.cfg.CP.Join(cctx, rec)
		cancel()
		a.observe(Event{Kind: EvJoin, Err: err, Status: StatusOf(err)})
		if err == nil {
			a.log.Info("joined", "node_id", rec.ID)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d := a.failureDelay(&failures, err, "join")
		if !a.sleep(ctx, d, EvWait) {
			return false
		}
	}
}

// callContext bounds one join or heartbeat by Timeout but does not end it
// when ctx ends: a heartbeat cancelled on the client can still be applied
// by the server after the leave that follows, re-registering the node. A
// shutdown therefore waits for the call in flight (at most Timeout).
func (a *Agent) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), a.cfg.Timeout)
}

// failureDelay classifies a failed call and returns the wait before the
// next try: backoff for transport errors, 408, 429 and 5xx; the normal
// interval (failures reset) for anything else.
func (a *Agent) failureDelay(failures *int, err error, what string) time.Duration {
	if Retryable(err) {
		*failures++
		d := a.cfg.Backoff.Delay(*failures)
		a.log.Info(what+" failed; backing off", "err", err, "attempt", *failures, "retry_in", d)
		return d
	}
	*failures = 0
	a.log.Warn(what+" refused by the control plane", "err", err)
	if a.cfg.Interval > 0 {
		return a.cfg.Interval
	}
	return a.cfg.Backoff.Base
}

// heartbeatLoop sends a freshly built record every Interval until ctx
// ends. Heartbeat upserts, so a control plane that restarted or lost the
// node gets it back on the next success without a re-join.
func (a *Agent) heartbeatLoop(ctx context.Context) {
	if a.cfg.Interval <= 0 {
		<-ctx.Done()
		return
	}
	failures := 0
	d := a.cfg.Interval
	for a.sleep(ctx, d, EvWait) {
		rec := a.build()
		cctx, cancel := a.callContext(ctx)
		_, err := a.cfg.CP.Heartbeat(cctx, rec)
		cancel()
		if ctx.Err() != nil {
			return
		}
		a.observe(Event{Kind: EvHeartbeat, Err: err, Status: StatusOf(err)})
		if err == nil {
			if failures > 0 {
				a.log.Info("heartbeat recovered", "after_failures", failures)
			}
			failures, d = 0, a.cfg.Interval
			continue
		}
		d = a.failureDelay(&failures, err, "heartbeat")
	}
}

// leave deregisters the node with a fresh context (ctx is already done).
func (a *Agent) leave() {
	id := a.cfg.Builder.NodeID
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.LeaveTimeout)
	defer cancel()
	found, err := a.cfg.CP.Leave(ctx, id)
	a.observe(Event{Kind: EvLeave, Err: err, Status: StatusOf(err)})
	switch {
	case err != nil:
		a.log.Warn("leave failed", "node_id", id, "err", err)
	case !found:
		a.log.Info("left (the control plane did not know the node)", "node_id", id)
	default:
		a.log.Info("left", "node_id", id)
	}
}

// errLeaseLost marks a job whose lease another claimer took over.
var errLeaseLost = errors.New("lease lost")
