package client

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"populi-db/wire"
)

// Deliver calls POST /v1/populi/a2a/deliver (deliver class) and returns the
// message id. Without an idempotency key a delivery is retried only when it
// provably never reached the server; with one, like any other call.
func (c *Client) Deliver(ctx context.Context, req wire.DeliverRequest) (uint64, error) {
	var out wire.DeliverResponse
	_, err := c.do(ctx, call{name: "a2a_deliver", method: http.MethodPost, path: "/v1/populi/a2a/deliver", class: ClassDeliver,
		in: req, out: &out, unsafeRetry: req.IdempotencyKey == nil || *req.IdempotencyKey == ""})
	if err == nil && !out.Accepted {
		return 0, fmt.Errorf("populi decode (a2a_deliver): answer without accepted=true")
	}
	return out.MessageID, err
}

// Inbox calls POST /v1/populi/a2a/inbox with req as is: a listing (no
// claimer_node_id) or a claim. Use Claim and the pager for the common cases.
func (c *Client) Inbox(ctx context.Context, req wire.InboxRequest) ([]wire.StoredMessage, error) {
	var extra time.Duration
	if req.WaitMs != nil {
		extra = time.Duration(*req.WaitMs) * time.Millisecond
	}
	var out wire.InboxResponse
	_, err := c.do(ctx, call{name: "a2a_inbox", method: http.MethodPost, path: "/v1/populi/a2a/inbox", class: ClassWorker, in: req, out: &out, extra: extra})
	return out.Messages, err
}

// Claim leases the next claimable row of receiver's mailbox to claimer. With
// wait > 0 the server holds the request up to wait (capped server-side) for
// a row to arrive. It returns nil, nil when there was nothing to claim.
func (c *Client) Claim(ctx context.Context, receiver, claimer string, wait time.Duration) (*wire.StoredMessage, error) {
	req := wire.InboxRequest{ReceiverAgentID: receiver, ClaimerNodeID: &claimer}
	if ms := uint64(wait / time.Millisecond); ms > 0 {
		req.WaitMs = &ms
	}
	msgs, err := c.Inbox(ctx, req)
	if err != nil || len(msgs) == 0 {
		return nil, err
	}
	return &msgs[0], nil
}

// Ack calls POST /v1/populi/a2a/ack: (true, nil) when acknowledged, (false,
// nil) when there is no such message; a stale lease token is a 409 error.
func (c *Client) Ack(ctx context.Context, req wire.AckRequest) (bool, error) {
	_, err := c.do(ctx, call{name: "a2a_ack", method: http.MethodPost, path: "/v1/populi/a2a/ack", class: ClassWorker, in: req})
	return foundOr404(err)
}

// AckMessage acknowledges a claimed row with its own lease token.
func (c *Client) AckMessage(ctx context.Context, m wire.StoredMessage) (bool, error) {
	return c.Ack(ctx, wire.AckRequest{ReceiverAgentID: m.ReceiverAgentID, MessageID: m.ID, LeaseToken: m.LeaseToken})
}

// RenewLease calls POST /v1/populi/a2a/lease-renew: extends the holder's
// lease on a claimed row.
func (c *Client) RenewLease(ctx context.Context, req wire.LeaseRenewRequest) error {
	_, err := c.do(ctx, call{name: "a2a_lease_renew", method: http.MethodPost, path: "/v1/populi/a2a/lease-renew", class: ClassWorker, in: req})
	return err
}

// Nack calls POST /v1/populi/a2a/nack: the holder gives a claimed row back,
// claimable again after RetryAfterMs (or the server's backoff).
func (c *Client) Nack(ctx context.Context, req wire.NackRequest) error {
	_, err := c.do(ctx, call{name: "a2a_nack", method: http.MethodPost, path: "/v1/populi/a2a/nack", class: ClassWorker, in: req})
	return err
}

// DeadLetters calls POST /v1/populi/admin/a2a/dead (admin): one page of a
// receiver's dead letters, newest first. See NewDeadPager for all of them.
func (c *Client) DeadLetters(ctx context.Context, req wire.DeadListRequest) ([]wire.StoredMessage, error) {
	var out wire.InboxResponse
	_, err := c.do(ctx, call{name: "admin_a2a_dead", method: http.MethodPost, path: "/v1/populi/admin/a2a/dead", class: ClassAdmin, in: req, out: &out})
	return out.Messages, err
}

// Requeue calls POST /v1/populi/admin/a2a/requeue (admin): a dead letter
// becomes claimable again with its delivery count reset.
func (c *Client) Requeue(ctx context.Context, receiver string, messageID uint64) error {
	_, err := c.do(ctx, call{name: "admin_a2a_requeue", method: http.MethodPost, path: "/v1/populi/admin/a2a/requeue", class: ClassAdmin,
		in: wire.RequeueRequest{ReceiverAgentID: receiver, MessageID: messageID}})
	return err
}

// QueueStats calls GET /v1/populi/queue/stats (worker-plane).
func (c *Client) QueueStats(ctx context.Context) (wire.QueueStats, error) {
	var out wire.QueueStats
	_, err := c.do(ctx, call{name: "queue_stats", method: http.MethodGet, path: "/v1/populi/queue/stats", class: ClassWorker, out: &out})
	return out, err
}
