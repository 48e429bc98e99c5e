// Package ha is active/standby serving on etcd (issue 19): every populi-db
// serve process pointed at one etcd prefix campaigns in one election
// (go.etcd.io/etcd/client/v3/concurrency, key PREFIX/leader); the winner
// opens the store on etcd, guarded by its election key's create revision
// (store.EtcdConfig), and serves; the others are standbys that answer 503
// naming the leader. A leader that loses its etcd session, or finds a write
// fenced, is lost: serve stops answering at once and exits non-zero, for a
// supervisor to restart it as a standby.
package ha

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"populi-db/api"
	"populi-db/store"
)

// LeaseTTLDefault is the etcd session TTL: how long a dead leader keeps the
// election before a standby takes over.
const LeaseTTLDefault = 5 * time.Second

// HeaderLeader names the leader's advertised URL on a standby's 503s.
const HeaderLeader = "X-Populi-Leader"

// Config says how to reach etcd and what this process advertises.
type Config struct {
	Endpoints            []string
	Prefix               string // e.g. /populi/prod
	CACert, Cert, Key    string // TLS files, like etcdctl's --cacert/--cert/--key
	LeaseTTL             time.Duration
	Advertise            string // this server's URL, the election value
	DialTimeout, Timeout time.Duration
	Logger               *slog.Logger
}

// Node is one process's membership in the election.
type Node struct {
	cfg     Config
	cli     *clientv3.Client
	sess    *concurrency.Session
	el      *concurrency.Election
	leader  atomic.Pointer[string] // the current leader's URL ("" none)
	lost    chan struct{}
	lostErr error
	once    sync.Once
	stopObs context.CancelFunc
	endSess context.CancelFunc
	// validUntil (ns since t0, on the monotonic clock, so a wall-clock step
	// neither extends nor cuts the lease): before it, the leader's lease is
	// surely held (Guard); maintained from keep-alive answers.
	validUntil atomic.Int64
	t0         time.Time
}

// Connect dials etcd and opens the session whose lease holds this
// process's election key.
func Connect(cfg Config) (*Node, error) {
	if len(cfg.Endpoints) == 0 || cfg.Prefix == "" || !strings.HasPrefix(cfg.Prefix, "/") || strings.HasSuffix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("etcd: need endpoints and a prefix like /populi/NAME (leading slash, no trailing one); got %q", cfg.Prefix)
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = LeaseTTLDefault
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var tlsCfg *tls.Config
	if cfg.CACert != "" || cfg.Cert != "" || cfg.Key != "" {
		info := transport.TLSInfo{CertFile: cfg.Cert, KeyFile: cfg.Key, TrustedCAFile: cfg.CACert}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd TLS: %w", err)
		}
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: cfg.Endpoints, DialTimeout: cfg.DialTimeout, TLS: tlsCfg,
		Logger: zap.NewNop(), DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	// The lease is granted under a deadline (an unreachable etcd fails the
	// start instead of hanging it); the session's context then lives as
	// long as the node: it carries the lease's keep-alives.
	gctx, gcancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	lease, err := cli.Grant(gctx, int64(max(1, cfg.LeaseTTL.Round(time.Second)/time.Second)))
	gcancel()
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("etcd lease on %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sess, err := concurrency.NewSession(cli, concurrency.WithLease(lease.ID), concurrency.WithContext(ctx))
	if err != nil {
		cancel()
		cli.Close()
		return nil, fmt.Errorf("etcd session on %s: %w", strings.Join(cfg.Endpoints, ","), err)
	}
	n := &Node{cfg: cfg, cli: cli, sess: sess, el: concurrency.NewElection(sess, cfg.Prefix+"/leader"), lost: make(chan struct{}), endSess: cancel, t0: time.Now()}
	empty := ""
	n.leader.Store(&empty)
	obsCtx, stop := context.WithCancel(context.Background())
	n.stopObs = stop
	go n.observe(obsCtx)
	return n, nil
}

// observe keeps the leader's URL current for the standby answers.
func (n *Node) observe(ctx context.Context) {
	for ctx.Err() == nil {
		for resp := range n.el.Observe(ctx) {
			if len(resp.Kvs) > 0 {
				v := string(resp.Kvs[0].Value)
				n.leader.Store(&v)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// Campaign blocks until this process is the leader (or ctx ends). Then it
// watches the session: its loss makes the node lost.
func (n *Node) Campaign(ctx context.Context) error {
	if err := n.el.Campaign(ctx, n.cfg.Advertise); err != nil {
		return fmt.Errorf("etcd election %s/leader: %w", n.cfg.Prefix, err)
	}
	// The leader's own renewals, beside the session's, time the lease for
	// Guard: a renewal sent at s holds the lease at least until s + TTL.
	if err := n.renew(); err != nil {
		return fmt.Errorf("etcd lease renewal: %w", err)
	}
	go func() {
		tick := time.NewTicker(max(n.cfg.LeaseTTL/4, 250*time.Millisecond))
		defer tick.Stop()
		for {
			select {
			case <-n.sess.Done():
				n.Lose(errors.New("etcd session lost (lease expired or etcd unreachable): no longer the leader"))
				return
			case <-n.lost:
				return
			case <-tick.C:
				if err := n.renew(); err != nil {
					n.cfg.Logger.Warn("etcd lease renewal failed", "err", err)
				}
			}
		}
	}()
	return nil
}

// renew renews the session's lease once and records when.
func (n *Node) renew() error {
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), n.cfg.LeaseTTL/2)
	defer cancel()
	if _, err := n.cli.KeepAliveOnce(ctx, n.sess.Lease()); err != nil {
		return err
	}
	n.extend(sent)
	return nil
}

// extend records a lease renewal sent at renewed: etcd holds the lease at
// least until renewed + TTL; a small margin before that, requests stop.
func (n *Node) extend(renewed time.Time) {
	until := int64(renewed.Add(n.cfg.LeaseTTL - leaseMargin).Sub(n.t0))
	for {
		old := n.validUntil.Load()
		if until <= old || n.validUntil.CompareAndSwap(old, until) {
			return
		}
	}
}

// leaseMargin is how long before its lease may end a leader stops
// answering (clock rate differences between hosts, a request's own time).
const leaseMargin = 500 * time.Millisecond

// Guard wraps the leader's handler: once the lease may have expired (the
// process was paused, or keep-alives stopped arriving) no request is
// answered from this process's state, not even a read, even before the
// session notices; the node is lost then.
func (n *Node) Guard(h http.Handler) http.Handler {
	lost := Unavailable(n.Leader, LostText)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if int64(time.Since(n.t0)) > n.validUntil.Load() {
			n.Lose(errors.New("etcd lease not renewed in time (paused or cut off from etcd): no longer the leader"))
			lost.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// StoreConfig is the store's etcd backend, guarded by this node's
// election key; a fenced write makes the node lost.
func (n *Node) StoreConfig() *store.EtcdConfig {
	return &store.EtcdConfig{
		Client: n.cli, Prefix: n.cfg.Prefix, GuardKey: n.el.Key(), GuardRev: n.el.Rev(),
		OnFenced: n.Lose, Timeout: n.cfg.Timeout,
	}
}

// Lose marks the node lost (once): Lost is closed.
func (n *Node) Lose(err error) {
	n.once.Do(func() {
		n.lostErr = err
		n.cfg.Logger.Error("lost etcd leadership: refusing every request and exiting", "err", err)
		close(n.lost)
	})
}

// Lost is closed when this leader must stop serving; Err says why.
func (n *Node) Lost() <-chan struct{} { return n.lost }

// Err is why the node was lost.
func (n *Node) Err() error { return n.lostErr }

// Leader is the current leader's advertised URL ("" when unknown).
func (n *Node) Leader() string { return *n.leader.Load() }

// Close resigns (a clean stop hands over at once instead of after the
// lease TTL), ends the session and closes the client.
func (n *Node) Close() {
	n.stopObs()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	lost := false
	select {
	case <-n.lost:
		lost = true
	default:
	}
	n.once.Do(func() { close(n.lost) }) // a clean stop is not a loss: no error logged
	if !lost {
		_ = n.el.Resign(ctx)
	}
	_ = n.sess.Close()
	n.endSess()
	_ = n.cli.Close()
}

// Standby answers while this process is not the leader: /health 200 (the
// process is alive), /readyz 503 "not ready: standby", every other route
// 503 StandbyText; each 503 names the leader's URL in X-Populi-Leader
// (absent while no leader is known) and says Retry-After: 1.
func (n *Node) Standby() http.Handler {
	return Unavailable(n.Leader, StandbyText)
}

// Unavailable is the standby answer with a given reason (also what a lost
// leader answers while it exits).
func Unavailable(leader func() string, msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("x-populi-feature", api.FeatureHeader)
		if r.URL.Path == "/health" {
			_, _ = w.Write([]byte("ok\n"))
			return
		}
		if l := leader(); l != "" {
			h.Set(HeaderLeader, l)
		}
		h.Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		if r.URL.Path == "/readyz" {
			_, _ = w.Write([]byte("not ready: standby\n"))
			return
		}
		_, _ = w.Write([]byte(msg))
	})
}

// StandbyText and LostText are the 503 bodies of a standby and of a
// leader that lost its election while it exits.
const (
	StandbyText = "populi: standby; send requests to the leader named in X-Populi-Leader"
	LostText    = "populi: this server lost its etcd leadership and is stopping; retry on the leader named in X-Populi-Leader"
)

// Switch is an http.Handler whose target can change while serving.
type Switch struct{ h atomic.Pointer[http.Handler] }

// Set makes h answer the next requests.
func (s *Switch) Set(h http.Handler) { s.h.Store(&h) }

func (s *Switch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := s.h.Load()
	if p == nil {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	(*p).ServeHTTP(w, r)
}
