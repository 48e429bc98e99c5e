package agent

import (
	"context"
	"errors"
	"time"

	"populi-db/client"
	"populi-db/wire"
)

// ControlPlane is the slice of the HTTP API the agent calls; *client.Client
// implements it. Errors for a non-2xx answer must expose the status through
// a StatusCode() int method (as client.HTTPStatusError does); any other
// error counts as a transport failure.
type ControlPlane interface {
	Join(ctx context.Context, rec wire.NodeRecord) (wire.NodeRecord, error)
	Heartbeat(ctx context.Context, rec wire.NodeRecord) (wire.NodeRecord, error)
	// Leave reports whether the node was registered (204 vs 404).
	Leave(ctx context.Context, id string) (bool, error)
	// Claim long-polls for up to wait; nil without error when nothing came.
	Claim(ctx context.Context, receiver, claimer string, wait time.Duration) (*wire.StoredMessage, error)
	// Ack reports whether the row was found (204 vs 404).
	Ack(ctx context.Context, req wire.AckRequest) (bool, error)
	Nack(ctx context.Context, req wire.NackRequest) error
	RenewLease(ctx context.Context, req wire.LeaseRenewRequest) error
}

// Exchanger trades a one-time bootstrap token for the mesh token (SPEC 4).
type Exchanger interface {
	BootstrapExchange(ctx context.Context, token string) (wire.BootstrapExchangeResponse, error)
}

// StatusOf is the HTTP status carried by err, or 0 when err has none
// (a transport failure).
func StatusOf(err error) int {
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		return sc.StatusCode()
	}
	return 0
}

// Retryable reports whether err calls for backoff (SPEC 15.6): a transport
// failure, 408, 429 or a 5xx.
func Retryable(err error) bool {
	s := StatusOf(err)
	return s == 0 || s == 408 || s == 429 || s >= 500
}

var (
	_ ControlPlane = (*client.Client)(nil)
	_ Exchanger    = (*client.Client)(nil)
)
