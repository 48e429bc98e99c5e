package client

import (
	"context"
	"errors"
	"net/http"

	"populi-db/wire"
)

// Health calls GET /health (no bearer); nil means the server answered 200.
func (c *Client) Health(ctx context.Context) error {
	_, err := c.do(ctx, call{name: "health", method: http.MethodGet, path: "/health", class: ClassPublic})
	return err
}

// ListNodes calls GET /v1/populi/nodes (worker-plane).
func (c *Client) ListNodes(ctx context.Context) (wire.Registry, error) {
	var out wire.Registry
	_, err := c.do(ctx, call{name: "list_nodes", method: http.MethodGet, path: "/v1/populi/nodes", class: ClassWorker, out: &out})
	return out, err
}

// Join calls POST /v1/populi/join (full upsert) and returns the stored record.
func (c *Client) Join(ctx context.Context, rec wire.NodeRecord) (wire.NodeRecord, error) {
	var out wire.NodeRecord
	_, err := c.do(ctx, call{name: "join", method: http.MethodPost, path: "/v1/populi/join", class: ClassWorker, in: rec, out: &out})
	return out, err
}

// Heartbeat calls POST /v1/populi/heartbeat (partial merge, upsert) and
// returns the stored record.
func (c *Client) Heartbeat(ctx context.Context, rec wire.NodeRecord) (wire.NodeRecord, error) {
	var out wire.NodeRecord
	_, err := c.do(ctx, call{name: "heartbeat", method: http.MethodPost, path: "/v1/populi/heartbeat", class: ClassWorker, in: rec, out: &out})
	return out, err
}

// Leave calls POST /v1/populi/leave: (true, nil) when the node was removed,
// (false, nil) when there was no such node.
func (c *Client) Leave(ctx context.Context, nodeID string) (bool, error) {
	_, err := c.do(ctx, call{name: "leave", method: http.MethodPost, path: "/v1/populi/leave", class: ClassWorker, in: wire.LeaveRequest{ID: nodeID}})
	return foundOr404(err)
}

// BootstrapExchange calls POST /v1/populi/bootstrap/exchange. It never sends
// an Authorization header, whatever tokens the client holds.
func (c *Client) BootstrapExchange(ctx context.Context, bootstrapToken string) (wire.BootstrapExchangeResponse, error) {
	var out wire.BootstrapExchangeResponse
	_, err := c.do(ctx, call{name: "bootstrap_exchange", method: http.MethodPost, path: "/v1/populi/bootstrap/exchange",
		class: ClassPublic, in: wire.BootstrapExchangeRequest{BootstrapToken: bootstrapToken}, out: &out})
	return out, err
}

// Metrics calls GET /metrics (mesh/admin, or anyone with serve --metrics-open)
// and returns the Prometheus text.
func (c *Client) Metrics(ctx context.Context) (string, error) {
	raw, err := c.do(ctx, call{name: "metrics", method: http.MethodGet, path: "/metrics", class: ClassAdmin})
	return string(raw), err
}

// foundOr404 turns an empty-404 answer into (false, nil). A 404 with a body
// is a different answer (a disabled feature, say) and stays an error.
func foundOr404(err error) (bool, error) {
	if err == nil {
		return true, nil
	}
	var se *HTTPStatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound && se.BodySuffix == "" {
		return false, nil
	}
	return false, err
}
