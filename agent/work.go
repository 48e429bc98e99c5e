package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// Work loop defaults.
const (
	// ClaimWaitDefault is the long-poll wait of one claim (the server caps
	// it at 30 s).
	ClaimWaitDefault = 25 * time.Second
	// RenewFallback is the renew period when the lease expiry is unknown.
	RenewFallback = 10 * time.Second
	// RenewMin is the shortest renew period derived from a lease.
	RenewMin = time.Second
	// KillGraceDefault is how long a stopped CMD gets between SIGTERM and
	// SIGKILL.
	KillGraceDefault = 10 * time.Second
	// NackBackoffBase and NackBackoffCap shape the retry_after_ms of a
	// failed job, by its delivery count.
	NackBackoffBase = 5 * time.Second
	NackBackoffCap  = 5 * time.Minute
	// emptyClaimMin: an empty claim answered faster than this is followed
	// by a pause of ClaimBackoff.Floor.
	emptyClaimMin = 100 * time.Millisecond
)

// WorkConfig turns the agent into a worker for one A2A receiver: claim a
// row, run Command with its payload on stdin, ack on exit 0, nack otherwise.
type WorkConfig struct {
	Receiver string
	// Command runs under `sh -c`.
	Command string
	// ClaimWait is the long-poll wait per claim (default ClaimWaitDefault).
	ClaimWait time.Duration
	// RenewEvery renews the lease while Command runs; 0 = a third of the
	// lease time left at claim (at least RenewMin), or RenewFallback.
	RenewEvery time.Duration
	// ClaimBackoff paces claims after errors (default base 1 s, cap 5 min).
	ClaimBackoff Backoff
	// NackBackoff gives retry_after_ms of a failed job by delivery count.
	NackBackoff Backoff
	KillGrace   time.Duration
	// Stdout and Stderr receive Command's output (default os.Stderr).
	Stdout, Stderr io.Writer
}

func (w *WorkConfig) defaults() {
	if w.ClaimWait <= 0 {
		w.ClaimWait = ClaimWaitDefault
	}
	if w.ClaimBackoff.Base <= 0 {
		w.ClaimBackoff.Base = time.Second
	}
	if w.ClaimBackoff.Cap <= 0 {
		w.ClaimBackoff.Cap = BackoffCapDefault
	}
	if w.ClaimBackoff.Floor <= 0 {
		w.ClaimBackoff.Floor = w.ClaimBackoff.Base / 4
	}
	if w.NackBackoff.Base <= 0 {
		w.NackBackoff.Base = NackBackoffBase
	}
	if w.NackBackoff.Cap <= 0 {
		w.NackBackoff.Cap = NackBackoffCap
	}
	if w.NackBackoff.Floor <= 0 {
		w.NackBackoff.Floor = w.NackBackoff.Base / 4
	}
	if w.KillGrace <= 0 {
		w.KillGrace = KillGraceDefault
	}
	if w.Stdout == nil {
		w.Stdout = os.Stderr
	}
	if w.Stderr == nil {
		w.Stderr = os.Stderr
	}
}

// workLoop claims and runs jobs one at a time until ctx ends.
func (a *Agent) workLoop(ctx context.Context) {
	w := *a.cfg.Work
	w.defaults()
	node := a.cfg.Builder.NodeID
	a.log.Info("work loop started", "receiver", w.Receiver, "node_id", node)
	failures := 0
	for ctx.Err() == nil {
		started := a.clk.Now()
		cctx, cancel := context.WithTimeout(ctx, w.ClaimWait+a.cfg.Timeout)
		m, err := a.cfg.CP.Claim(cctx, w.Receiver, node, w.ClaimWait)
		cancel()
		if ctx.Err() != nil {
			if m != nil { // claimed as the shutdown began: give it back
				a.nack(m, node, 0, a.log.With("message_id", m.ID))
			}
			return
		}
		a.observe(Event{Kind: EvClaim, Err: err, Status: StatusOf(err)})
		if err != nil {
			failures++
			d := w.ClaimBackoff.Delay(failures)
			a.log.Info("claim failed; backing off", "err", err, "attempt", failures, "retry_in", d)
			if !a.sleep(ctx, d, EvClaimWait) {
				return
			}
			continue
		}
		failures = 0
		if m != nil {
			a.runJob(ctx, &w, m)
			continue
		}
		// An empty answer that came back at once (a draining server, a
		// server without long-poll) must not become a polling loop.
		if a.clk.Now().Sub(started) < emptyClaimMin && !a.sleep(ctx, w.ClaimBackoff.Floor, EvClaimWait) {
			return
		}
	}
}

// runJob runs one claimed row to completion. While Command runs the lease
// is renewed; if a renew finds the lease gone (404/409) Command is stopped
// and the row is neither acked nor nacked. On ctx end Command is stopped and
// the row nacked for immediate retry elsewhere. The ack carries the row's
// lease_token, so the server refuses it if the lease changed hands anyway.
func (a *Agent) runJob(ctx context.Context, w *WorkConfig, m *wire.StoredMessage) {
	node := a.cfg.Builder.NodeID
	log := a.log.With("message_id", m.ID, "receiver", m.ReceiverAgentID, "delivery", m.DeliveryCount)
	log.Info("claimed; running command")

	jobCtx, stopJob := context.WithCancel(context.Background())
	defer stopJob()
	cmd := exec.CommandContext(jobCtx, "sh", "-c", w.Command)
	cmd.Stdin = strings.NewReader(m.Payload)
	cmd.Stdout, cmd.Stderr = w.Stdout, w.Stderr
	cmd.Env = append(os.Environ(), jobEnv(m, node)...)
	setProcessGroup(cmd) // so a stop reaches the children of sh too
	cmd.WaitDelay = w.KillGrace

	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		done <- fmt.Errorf("start command: %w", err)
	} else {
		go func() { done <- cmd.Wait() }()
	}

	every := w.RenewEvery
	if every <= 0 {
		every = renewPeriod(m, a.clk)
	}
	var runErr error
	lost, stopping := false, false
	ctxDone := ctx.Done()
wait:
	for {
		tick := a.clk.After(every)
		select {
		case runErr = <-done:
			break wait
		case <-ctxDone:
			log.Info("shutting down: stopping the command and giving the row back")
			stopping, ctxDone = true, nil
			stopJob()
		case <-tick:
			if lost || stopping {
				continue
			}
			err := a.renew(m, node)
			a.observe(Event{Kind: EvRenew, MessageID: m.ID, Err: err, Status: StatusOf(err)})
			if errors.Is(err, errLeaseLost) {
				lost = true
				a.observe(Event{Kind: EvLeaseLost, MessageID: m.ID, Err: err})
				log.Warn("lease lost while the command ran: stopping it; the row will not be acked", "err", err)
				stopJob()
			} else if err != nil {
				log.Warn("lease renew failed; will retry", "err", err)
			}
		}
	}

	switch {
	case lost:
		return
	case stopping:
		a.nack(m, node, 0, log)
	case runErr == nil:
		a.ack(m, log)
	default:
		d := w.NackBackoff.Delay(int(max(m.DeliveryCount, 1)))
		log.Warn("command failed; nacking", "err", runErr, "retry_after", d)
		a.nack(m, node, d, log)
	}
}

// renewPeriod is a third of the lease time left at claim on the agent's
// clock, at least RenewMin; RenewFallback when the row has no expiry.
func renewPeriod(m *wire.StoredMessage, clk clock.Clock) time.Duration {
	if m.LeaseExpiresUnixMs == nil {
		return RenewFallback
	}
	left := time.UnixMilli(int64(*m.LeaseExpiresUnixMs)).Sub(clk.Now())
	return max(left/3, RenewMin)
}

// jobEnv describes the row to Command.
func jobEnv(m *wire.StoredMessage, node string) []string {
	env := []string{
		"POPULI_MESSAGE_ID=" + strconv.FormatUint(m.ID, 10),
		"POPULI_SENDER_AGENT_ID=" + m.SenderAgentID,
		"POPULI_RECEIVER_AGENT_ID=" + m.ReceiverAgentID,
		"POPULI_MESSAGE_TYPE=" + m.MessageType,
		"POPULI_DELIVERY_COUNT=" + strconv.FormatUint(uint64(m.DeliveryCount), 10),
		"POPULI_NODE_ID=" + node,
	}
	if m.TaskKind != nil {
		env = append(env, "POPULI_TASK_KIND="+*m.TaskKind)
	}
	if m.ModelID != nil {
		env = append(env, "POPULI_MODEL_ID="+*m.ModelID)
	}
	if m.Traceparent != nil {
		env = append(env, "TRACEPARENT="+*m.Traceparent)
	}
	return env
}

// renew extends the lease; errLeaseLost (wrapped) when the server says the
// row is gone (404) or held by someone else (409).
func (a *Agent) renew(m *wire.StoredMessage, node string) error {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
	defer cancel()
	err := a.cfg.CP.RenewLease(ctx, wire.LeaseRenewRequest{
		ReceiverAgentID: m.ReceiverAgentID, MessageID: m.ID, ClaimerNodeID: node, LeaseToken: m.LeaseToken,
	})
	if s := StatusOf(err); s == 404 || s == 409 {
		return fmt.Errorf("%w: %v", errLeaseLost, err)
	}
	return err
}

// settleAttempts bounds the tries of an ack or nack that failed in transit
// (transport error, 429, 5xx); both are safe to repeat.
const settleAttempts = 3

// settle calls f up to settleAttempts times while it fails retryably,
// pausing settleBackoff in between (on the agent's clock).
func (a *Agent) settle(f func(ctx context.Context) error) error {
	var err error
	for n := 1; ; n++ {
		ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
		err = f(ctx)
		cancel()
		if err == nil || !Retryable(err) || n == settleAttempts {
			return err
		}
		<-a.clk.After(settleBackoff.Delay(n))
	}
}

var settleBackoff = Backoff{Base: 500 * time.Millisecond, Cap: 2 * time.Second, Floor: 100 * time.Millisecond}

func (a *Agent) ack(m *wire.StoredMessage, log *slog.Logger) {
	var found bool
	err := a.settle(func(ctx context.Context) (err error) {
		found, err = a.cfg.CP.Ack(ctx, wire.AckRequest{ReceiverAgentID: m.ReceiverAgentID, MessageID: m.ID, LeaseToken: m.LeaseToken})
		return err
	})
	if StatusOf(err) == 409 {
		a.observe(Event{Kind: EvLeaseLost, MessageID: m.ID, Err: err})
		log.Warn("not acked: the lease changed hands while the command ran", "err", err)
		return
	}
	a.observe(Event{Kind: EvAck, MessageID: m.ID, Err: err, Status: StatusOf(err)})
	switch {
	case err != nil:
		log.Warn("ack failed", "err", err)
	case !found:
		log.Warn("ack: the row no longer exists")
	default:
		log.Info("done; acked")
	}
}

func (a *Agent) nack(m *wire.StoredMessage, node string, retryAfter time.Duration, log *slog.Logger) {
	ms := uint64(retryAfter / time.Millisecond)
	err := a.settle(func(ctx context.Context) error {
		return a.cfg.CP.Nack(ctx, wire.NackRequest{
			ReceiverAgentID: m.ReceiverAgentID, MessageID: m.ID, ClaimerNodeID: node,
			LeaseToken: m.LeaseToken, RetryAfterMs: &ms,
		})
	})
	a.observe(Event{Kind: EvNack, MessageID: m.ID, Err: err, Status: StatusOf(err)})
	if err != nil {
		log.Warn("nack failed (the lease will expire instead)", "err", err)
		return
	}
	log.Info("nacked", "retry_after", retryAfter)
}
