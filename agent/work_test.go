package agent_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"populi-db/agent"
	"populi-db/api"
	"populi-db/internal/clock"
	"populi-db/wire"
)

const (
	workReceiver = "7"
	workTTL      = 10 * time.Second
)

var serverT0 = time.UnixMilli(1_767_225_600_000)

// workSetup is a server on a fake clock (lease expiry is driven by the
// test) and a worker agent "w1" whose command is cmd.
type workSetup struct {
	srv *testServer
	clk *clock.Fake
	ev  *events
	run *runningAgent
	dir string // scratch dir for the command
}

func startWorker(t *testing.T, cmd string, w agent.WorkConfig) *workSetup {
	t.Helper()
	clk := clock.NewFake(serverT0)
	s := &workSetup{srv: startServer(t, clk, api.Config{}, workTTL), clk: clk, ev: newEvents(), dir: t.TempDir()}
	w.Receiver, w.Command = workReceiver, fmt.Sprintf("cd %s && %s", s.dir, cmd)
	if w.ClaimWait == 0 {
		w.ClaimWait = 5 * time.Second
	}
	w.Stdout, w.Stderr = io.Discard, io.Discard
	s.run = runAgent(t, agent.Config{
		CP: newClient(t, s.srv.URL, ""), Builder: builder("w1", nil), Interval: time.Hour,
		Observe: s.ev.observe, Work: &w,
	})
	eventually(t, 10*time.Second, "w1 joined", func() bool { return s.srv.node("w1") != nil })
	return s
}

// leasedTo waits until row id is leased to node and returns it.
func (s *workSetup) leasedTo(t *testing.T, id uint64, node string) *wire.StoredMessage {
	t.Helper()
	var m *wire.StoredMessage
	eventually(t, 10*time.Second, fmt.Sprintf("row %d leased to %s", id, node), func() bool {
		m = s.srv.message(workReceiver, id)
		return m != nil && wire.Str(m.LeaseHolderNodeID) == node
	})
	return m
}

func (s *workSetup) release(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitForGo is a command that runs until the test calls release.
const waitForGo = `while [ ! -e go ]; do sleep 0.02; done`

func (s *workSetup) joinOther(t *testing.T, id string) {
	t.Helper()
	if st, body := s.srv.call("POST", "/v1/populi/join", wire.NodeRecord{ID: id, Version: "t"}, nil); st != 200 {
		t.Fatalf("join %s: %d %s", id, st, body)
	}
}

// claimAs claims the next row for another node (nil when none).
func (s *workSetup) claimAs(t *testing.T, node string) *wire.StoredMessage {
	t.Helper()
	var resp wire.InboxResponse
	if st, body := s.srv.call("POST", "/v1/populi/a2a/inbox", map[string]any{"receiver_agent_id": workReceiver, "claimer_node_id": node}, &resp); st != 200 {
		t.Fatalf("claim as %s: %d %s", node, st, body)
	}
	if len(resp.Messages) == 0 {
		return nil
	}
	return &resp.Messages[0]
}

// Exit 0: the payload reached the command on stdin and the row is acked.
func TestWorkAcksOnSuccess(t *testing.T) {
	t.Parallel()
	s := startWorker(t, `cat > "out-$POPULI_MESSAGE_ID" && echo "$POPULI_NODE_ID $POPULI_RECEIVER_AGENT_ID" > env`, agent.WorkConfig{})
	id := s.srv.deliver(workReceiver, `{"job":"hello"}`)
	eventually(t, 10*time.Second, "ack", func() bool { return s.ev.count(agent.EvAck, false) == 1 })
	if m := s.srv.message(workReceiver, id); m != nil {
		t.Fatalf("row still unacked: %+v", m)
	}
	if b, _ := os.ReadFile(filepath.Join(s.dir, fmt.Sprintf("out-%d", id))); string(b) != `{"job":"hello"}` {
		t.Errorf("command stdin = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(s.dir, "env")); string(b) != "w1 7\n" {
		t.Errorf("command env = %q", b)
	}
	if s.ev.count(agent.EvNack, false)+s.ev.count(agent.EvLeaseLost, false) != 0 {
		t.Error("unexpected nack or lease loss")
	}

	// An ack that fails in transit (503) is retried.
	s.srv.failNext("/v1/populi/a2a/ack", 2)
	id2 := s.srv.deliver(workReceiver, "second")
	eventually(t, 10*time.Second, "second ack", func() bool { return s.ev.count(agent.EvAck, false) == 2 })
	if m := s.srv.message(workReceiver, id2); m != nil {
		t.Fatalf("second row still unacked: %+v", m)
	}
	if n := s.srv.requests("/v1/populi/a2a/ack"); n != 4 {
		t.Errorf("%d ack requests, want 1 + 2 failed + 1", n)
	}
}

// A failing command: the row is nacked (not acked) with the backoff's
// retry_after, so it is delayed, unleased, and claimable later.
func TestWorkNacksOnFailure(t *testing.T) {
	t.Parallel()
	s := startWorker(t, `exit 3`, agent.WorkConfig{
		NackBackoff: agent.Backoff{Base: time.Hour, Cap: time.Hour, Rand: func() float64 { return 0.5 }},
	})
	id := s.srv.deliver(workReceiver, "x")
	eventually(t, 10*time.Second, "nack", func() bool { return s.ev.count(agent.EvNack, false) == 1 })
	m := s.srv.message(workReceiver, id)
	if m == nil || m.Acknowledged || m.LeaseHolderNodeID != nil || m.State != wire.StateDelayed || m.DeliveryCount != 1 {
		t.Fatalf("row after nack = %+v", m)
	}
	// Delivery 1 → ceiling = base (1 h), draw 0.5 → 30 min on the server clock.
	if m.NotBeforeUnixMs == nil || *m.NotBeforeUnixMs != clock.UnixMs(serverT0.Add(30*time.Minute)) {
		t.Errorf("not_before = %v, want server now + 30 min", m.NotBeforeUnixMs)
	}
	if s.ev.count(agent.EvAck, false) != 0 {
		t.Error("a failed command was acked")
	}
}

// A command that outlives the lease TTL keeps its lease because the agent
// renews it, and is acked when it finishes.
func TestWorkRenewsDuringLongCommand(t *testing.T) {
	t.Parallel()
	s := startWorker(t, waitForGo, agent.WorkConfig{RenewEvery: 30 * time.Millisecond})
	s.joinOther(t, "w2")
	id := s.srv.deliver(workReceiver, "long")
	s.leasedTo(t, id, "w1")
	for step := 0; step < 3; step++ { // 3 x 6 s = 18 s on the server, TTL 10 s
		s.clk.Advance(6 * time.Second)
		want := clock.UnixMs(s.clk.Now().Add(workTTL))
		eventually(t, 10*time.Second, "a renew after the clock moved", func() bool {
			m := s.srv.message(workReceiver, id)
			return m != nil && m.LeaseExpiresUnixMs != nil && *m.LeaseExpiresUnixMs == want
		})
	}
	if m := s.claimAs(t, "w2"); m != nil {
		t.Fatalf("another node claimed the renewed row: %+v", m)
	}
	s.release(t)
	eventually(t, 10*time.Second, "ack", func() bool { return s.ev.count(agent.EvAck, false) == 1 })
	if m := s.srv.message(workReceiver, id); m != nil {
		t.Fatalf("row not acked: %+v", m)
	}
	if s.srv.requests("/v1/populi/a2a/lease-renew") < 3 || s.ev.count(agent.EvLeaseLost, false) != 0 {
		t.Errorf("renews %d, lease lost %d", s.srv.requests("/v1/populi/a2a/lease-renew"), s.ev.count(agent.EvLeaseLost, false))
	}
}

// The lease expires and another node takes the row over while the command
// still runs (no renew in time): the command's success is not acked — the
// fencing token is stale — and the new holder's lease is untouched.
func TestWorkDoesNotAckAfterLeaseTakeover(t *testing.T) {
	t.Parallel()
	s := startWorker(t, waitForGo, agent.WorkConfig{RenewEvery: time.Hour})
	s.joinOther(t, "w2")
	id := s.srv.deliver(workReceiver, "contested")
	first := s.leasedTo(t, id, "w1")
	s.clk.Advance(workTTL + time.Millisecond) // just past w1's lease
	taken := s.claimAs(t, "w2")
	if taken == nil || taken.ID != id || taken.LeaseToken == nil || *taken.LeaseToken == *first.LeaseToken {
		t.Fatalf("takeover claim = %+v (first token %v)", taken, first.LeaseToken)
	}
	s.release(t)
	eventually(t, 10*time.Second, "lease-lost report", func() bool { return s.ev.count(agent.EvLeaseLost, true) == 1 })
	m := s.srv.message(workReceiver, id)
	if m == nil || m.Acknowledged || wire.Str(m.LeaseHolderNodeID) != "w2" || *m.LeaseToken != *taken.LeaseToken {
		t.Fatalf("row after the stale ack = %+v", m)
	}
	if s.ev.count(agent.EvAck, false) != 0 || s.ev.count(agent.EvNack, false) != 0 {
		t.Error("the agent acked or nacked a row it no longer held")
	}
}

// A renew that finds the lease taken over stops the command at once and
// gives up the row without acking or nacking it.
func TestWorkStopsCommandWhenRenewFindsLeaseLost(t *testing.T) {
	t.Parallel()
	s := startWorker(t, waitForGo+`; touch finished`, agent.WorkConfig{RenewEvery: 30 * time.Millisecond, KillGrace: time.Second})
	s.joinOther(t, "w2")
	id := s.srv.deliver(workReceiver, "contested")
	s.leasedTo(t, id, "w1")
	s.clk.Advance(workTTL + time.Millisecond)
	taken := s.claimAs(t, "w2")
	if taken == nil || taken.ID != id {
		t.Fatalf("takeover claim = %+v", taken)
	}
	eventually(t, 10*time.Second, "renew finds the lease lost", func() bool { return s.ev.count(agent.EvLeaseLost, true) == 1 })
	s.release(t) // too late: the command was stopped
	if _, err := os.Stat(filepath.Join(s.dir, "finished")); err == nil {
		t.Error("the command ran to completion after its lease was lost")
	}
	m := s.srv.message(workReceiver, id)
	if m == nil || wire.Str(m.LeaseHolderNodeID) != "w2" || s.ev.count(agent.EvAck, false)+s.ev.count(agent.EvNack, false) != 0 {
		t.Fatalf("row = %+v; acks %d nacks %d", m, s.ev.count(agent.EvAck, false), s.ev.count(agent.EvNack, false))
	}
}

// Shutdown while a command runs: the command is stopped, the row is given
// back for immediate retry, and the node leaves.
func TestWorkShutdownGivesRowBack(t *testing.T) {
	t.Parallel()
	s := startWorker(t, "touch started; "+waitForGo, agent.WorkConfig{RenewEvery: time.Hour, KillGrace: time.Second})
	id := s.srv.deliver(workReceiver, "interrupted")
	s.leasedTo(t, id, "w1")
	// Stop once the command runs: a shutdown that interrupts the claim's
	// answer in flight leaves the row to lease expiry instead.
	eventually(t, 10*time.Second, "command started", func() bool {
		_, err := os.Stat(filepath.Join(s.dir, "started"))
		return err == nil
	})
	s.run.stop(t)
	m := s.srv.message(workReceiver, id)
	if m == nil || m.LeaseHolderNodeID != nil || m.State != wire.StateReady || m.Acknowledged {
		t.Fatalf("row after shutdown = %+v", m)
	}
	if s.srv.node("w1") != nil || s.ev.count(agent.EvNack, false) != 1 {
		t.Fatalf("node still registered or no nack (nacks %d)", s.ev.count(agent.EvNack, false))
	}
}

// emptyCP answers every claim at once with nothing (a draining server).
type emptyCP struct {
	agent.ControlPlane // nil: other calls are not expected
	claims             atomic.Int32
}

func (e *emptyCP) Join(_ context.Context, r wire.NodeRecord) (wire.NodeRecord, error) { return r, nil }
func (e *emptyCP) Leave(context.Context, string) (bool, error)                        { return true, nil }
func (e *emptyCP) Claim(context.Context, string, string, time.Duration) (*wire.StoredMessage, error) {
	e.claims.Add(1)
	return nil, nil
}

// Empty claims that come back at once are paced, not a polling loop.
func TestWorkPacesInstantEmptyClaims(t *testing.T) {
	t.Parallel()
	clk := clock.NewFake(serverT0)
	ev := newEvents()
	cp := &emptyCP{}
	runAgent(t, agent.Config{CP: cp, Builder: builder("w-empty", nil), Interval: 0, Clock: clk, Observe: ev.observe,
		Work: &agent.WorkConfig{Receiver: "7", Command: "true"}})
	for i := 1; i <= 3; i++ {
		e := nextEvent(t, ev, agent.EvClaimWait)
		if e.Delay != 250*time.Millisecond || cp.claims.Load() != int32(i) {
			t.Fatalf("pause %d: %v after %d claims", i, e.Delay, cp.claims.Load())
		}
		clk.Advance(e.Delay)
	}
}

// nextEvent waits (bounded) for the next event of kind.
func nextEvent(t *testing.T, ev *events, kind string) agent.Event {
	t.Helper()
	for {
		select {
		case e := <-ev.ch:
			if e.Kind == kind {
				return e
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("no %s event", kind)
		}
	}
}
