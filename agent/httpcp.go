package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"populi-db/wire"
)

// httpControlPlane is a thin net/http adapter over the wire types.
// TODO(issue 15): replace with the typed client/ package.
type httpControlPlane struct {
	base, token string
	hc          *http.Client
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Status  int
	Context string
	Body    string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("populi HTTP %d (%s)", e.Status, e.Context)
	}
	return fmt.Sprintf("populi HTTP %d (%s): %s", e.Status, e.Context, e.Body)
}

// StatusCode is the HTTP status.
func (e *StatusError) StatusCode() int { return e.Status }

// NewHTTPControlPlane talks to base with an optional bearer.
func NewHTTPControlPlane(base, token string) interface {
	ControlPlane
	Exchanger
} {
	return &httpControlPlane{base: strings.TrimRight(base, "/"), token: token, hc: &http.Client{}}
}

func (c *httpControlPlane) do(ctx context.Context, name, method, path string, bearer bool, in, out any) (int, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer && c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return 0, fmt.Errorf("%s: read response: %w", name, err)
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, &StatusError{Status: resp.StatusCode, Context: name, Body: strings.TrimSpace(string(b))}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s: decode response: %w", name, err)
		}
	}
	return resp.StatusCode, nil
}

func (c *httpControlPlane) Join(ctx context.Context, rec wire.NodeRecord) (wire.NodeRecord, error) {
	var out wire.NodeRecord
	_, err := c.do(ctx, "join", "POST", "/v1/populi/join", true, rec, &out)
	return out, err
}

func (c *httpControlPlane) Heartbeat(ctx context.Context, rec wire.NodeRecord) (wire.NodeRecord, error) {
	var out wire.NodeRecord
	_, err := c.do(ctx, "heartbeat", "POST", "/v1/populi/heartbeat", true, rec, &out)
	return out, err
}

func (c *httpControlPlane) Leave(ctx context.Context, id string) (bool, error) {
	st, err := c.do(ctx, "leave", "POST", "/v1/populi/leave", true, wire.LeaveRequest{ID: id}, nil)
	if st == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

func (c *httpControlPlane) Claim(ctx context.Context, receiver, claimer string, wait time.Duration) (*wire.StoredMessage, error) {
	req := wire.InboxRequest{ReceiverAgentID: receiver, ClaimerNodeID: &claimer}
	if wait > 0 {
		ms := uint64(wait / time.Millisecond)
		req.WaitMs = &ms
	}
	var out wire.InboxResponse
	if _, err := c.do(ctx, "a2a_inbox", "POST", "/v1/populi/a2a/inbox", true, req, &out); err != nil {
		return nil, err
	}
	if len(out.Messages) == 0 {
		return nil, nil
	}
	return &out.Messages[0], nil
}

func (c *httpControlPlane) Ack(ctx context.Context, receiver string, id uint64, leaseToken *uint64) (bool, error) {
	st, err := c.do(ctx, "a2a_ack", "POST", "/v1/populi/a2a/ack", true, wire.AckRequest{ReceiverAgentID: receiver, MessageID: id, LeaseToken: leaseToken}, nil)
	if st == http.StatusNotFound {
		return false, nil
	}
	return err == nil, err
}

func (c *httpControlPlane) Nack(ctx context.Context, req wire.NackRequest) error {
	_, err := c.do(ctx, "a2a_nack", "POST", "/v1/populi/a2a/nack", true, req, nil)
	return err
}

func (c *httpControlPlane) RenewLease(ctx context.Context, req wire.LeaseRenewRequest) error {
	_, err := c.do(ctx, "a2a_lease_renew", "POST", "/v1/populi/a2a/lease-renew", true, req, nil)
	return err
}

func (c *httpControlPlane) BootstrapExchange(ctx context.Context, token string) (wire.BootstrapExchangeResponse, error) {
	var out wire.BootstrapExchangeResponse
	_, err := c.do(ctx, "bootstrap_exchange", "POST", "/v1/populi/bootstrap/exchange", false, wire.BootstrapExchangeRequest{BootstrapToken: token}, &out)
	return out, err
}
