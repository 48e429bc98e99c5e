// Package client is the typed Go client of populi-db's HTTP API: one method
// per route, request and response types from package wire (the same types
// the server decodes and encodes), a context on every call, the bearer of
// the call's class, typed errors (HTTPStatusError, TransportError) and
// optional retries of transient failures with jittered exponential backoff.
//
//	c, err := client.New("http://127.0.0.1:9847", client.WithEnv(os.LookupEnv))
//	id, err := c.Deliver(ctx, wire.DeliverRequest{...})
//	m, err := c.Claim(ctx, "7", "node-a", 10*time.Second)
//	found, err := c.AckMessage(ctx, *m)
//
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"
)

// Client defaults (SPEC 15.1).
const (
	TimeoutDefault        = 30 * time.Second // per request attempt, plus any long-poll wait
	ConnectTimeoutDefault = 15 * time.Second
	IdleTimeoutDefault    = 90 * time.Second
	errorBodyMax          = 4096 // bytes of an error body read
)

// Class is a route's access class; it picks the bearer (SPEC 15.2).
type Class int

const (
	ClassPublic  Class = iota // no Authorization header: /health, bootstrap exchange
	ClassWorker               // worker-plane: worker → mesh → admin token
	ClassDeliver              // deliver: mesh → submitter → admin token
	ClassAdmin                // admin: mesh → admin token
)

// Tokens are the bearer secrets a client may hold; blank means not held.
type Tokens struct {
	Mesh, Worker, Submitter, Admin string
}

// For is the bearer for class c: the first non-blank token in the class's
// precedence order, "" (no Authorization header) when none is held.
func (t Tokens) For(c Class) string {
	var order []string
	switch c {
	case ClassWorker:
		order = []string{t.Worker, t.Mesh, t.Admin}
	case ClassDeliver:
		order = []string{t.Mesh, t.Submitter, t.Admin}
	case ClassAdmin:
		order = []string{t.Mesh, t.Admin}
	}
	for _, v := range order {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// TokenVars names the environment variables WithEnv consults for class c,
// in precedence order (for error messages that say what to set).
func TokenVars(c Class) []string {
	switch c {
	case ClassWorker:
		return []string{EnvWorkerToken, EnvMeshToken, EnvAdminToken}
	case ClassDeliver:
		return []string{EnvMeshToken, EnvSubmitterToken, EnvAdminToken}
	case ClassAdmin:
		return []string{EnvMeshToken, EnvAdminToken}
	}
	return nil
}

// Retry is the transient-retry policy: after a failed attempt, up to
// Attempts more, waiting a jittered exponential backoff (half of
// min(Cap, Base·2^n) plus a random part of the other half) between them.
// Transient: no answer (refused, reset, timeout), 408, 429 and 5xx.
type Retry struct {
	Attempts  int
	Base, Cap time.Duration
}

// DefaultRetry is the policy VOX_POPULI_HTTP_RETRY_TRANSIENT turns on:
// two retries (SPEC 15.1).
var DefaultRetry = Retry{Attempts: 2, Base: 200 * time.Millisecond, Cap: 2 * time.Second}

func (r Retry) backoff(n int) time.Duration {
	d := r.Base << min(n, 30)
	if d <= 0 || d > r.Cap {
		d = r.Cap
	}
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// Client calls one populi-db server.
type Client struct {
	base    string
	hc      *http.Client
	tokens  Tokens
	retry   Retry
	timeout time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient uses hc (its Timeout should be zero or above the longest
// long-poll wait; the client sets per-attempt deadlines itself).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTokens sets the bearer secrets; each call picks by its class.
func WithTokens(t Tokens) Option { return func(c *Client) { c.tokens = t } }

// WithBearer uses one token for every authenticated call (as the mesh
// token, which every class accepts).
func WithBearer(tok string) Option { return func(c *Client) { c.tokens = Tokens{Mesh: tok} } }

// WithRetry sets the transient-retry policy (zero Attempts: no retries).
func WithRetry(r Retry) Option { return func(c *Client) { c.retry = r } }

// WithTimeout sets the per-attempt timeout (default 30 s); a long-poll
// claim's wait is added to it.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithEnv reads the bearer variables (VOX_MESH_TOKEN, VOX_MESH_WORKER_TOKEN,
// VOX_MESH_SUBMITTER_TOKEN, VOX_MESH_ADMIN_TOKEN) and
// VOX_POPULI_HTTP_RETRY_TRANSIENT through lookup (os.LookupEnv, say).
func WithEnv(lookup LookupFunc) Option {
	return func(c *Client) {
		c.tokens = TokensFromEnv(lookup)
		if RetryFromEnv(lookup) {
			c.retry = DefaultRetry
		}
	}
}

// New returns a client for the server at baseURL, normalized like a
// control URL (scheme added when missing, trailing slashes removed). A
// blank or bind-all address is an error.
func New(baseURL string, opts ...Option) (*Client, error) {
	base, ok := NormalizeControlURL(baseURL)
	if !ok {
		return nil, fmt.Errorf("invalid or bind-all control URL: %s", baseURL)
	}
	c := &Client{base: base, timeout: TimeoutDefault}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: defaultTransport()}
	}
	if c.timeout <= 0 {
		c.timeout = TimeoutDefault
	}
	return c, nil
}

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: ConnectTimeoutDefault, KeepAlive: 30 * time.Second}).DialContext
	t.IdleConnTimeout = IdleTimeoutDefault
	t.MaxIdleConnsPerHost = 16
	return t
}

// BaseURL is the normalized server URL.
func (c *Client) BaseURL() string { return c.base }

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// call describes one request.
type call struct {
	name   string // context string of errors, e.g. "a2a_ack"
	method string
	path   string
	class  Class
	in     any // JSON body; nil = none
	out    any // decoded from a 200; nil = discarded
	extra  time.Duration
	// unsafeRetry: the request is not idempotent (a deliver without a key),
	// so only failures that prove it was never applied are retried.
	unsafeRetry bool
}

// do runs c with retries and returns the raw 2xx body when out is nil.
func (c *Client) do(ctx context.Context, k call) ([]byte, error) {
	var body []byte
	if k.in != nil {
		b, err := json.Marshal(k.in)
		if err != nil {
			return nil, fmt.Errorf("populi encode (%s): %w", k.name, err)
		}
		body = b
	}
	for attempt := 0; ; attempt++ {
		raw, retryAfter, err := c.once(ctx, k, body)
		if err == nil || attempt >= c.retry.Attempts || !retryable(err, k) || ctx.Err() != nil {
			return raw, err
		}
		d := max(c.retry.backoff(attempt), retryAfter)
		if c.retry.Cap > 0 {
			d = min(d, c.retry.Cap)
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// once is one attempt. retryAfter is the server's Retry-After, if any.
func (c *Client) once(ctx context.Context, k call, body []byte) ([]byte, time.Duration, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout+k.extra)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(actx, k.method, c.base+k.path, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("populi request (%s): %w", k.name, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := c.tokens.For(k.class); tok != "" && k.class != ClassPublic {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, 0, &TransportError{Context: k.name, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyMax))
		var ra time.Duration
		if s, err := time.ParseDuration(strings.TrimSpace(resp.Header.Get("Retry-After")) + "s"); err == nil && s > 0 {
			ra = s
		}
		return nil, ra, newStatusError(resp.StatusCode, k.name, string(b))
	}
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, &TransportError{Context: k.name, Err: fmt.Errorf("reading the answer: %w", err)}
	}
	if k.out != nil {
		if err := json.Unmarshal(raw, k.out); err != nil {
			return nil, 0, fmt.Errorf("populi decode (%s): %w", k.name, err)
		}
	}
	return raw, 0, nil
}

// retryable reports whether err is transient for k.
func retryable(err error, k call) bool {
	var se *HTTPStatusError
	if errors.As(err, &se) {
		if k.unsafeRetry {
			return se.Status == http.StatusTooManyRequests // refused before anything ran
		}
		return se.Transient()
	}
	var te *TransportError
	if !errors.As(err, &te) {
		return false
	}
	if k.unsafeRetry {
		var op *net.OpError
		return errors.As(err, &op) && op.Op == "dial" // never sent
	}
	return true
}
