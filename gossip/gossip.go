// Package gossip is federation gossip (SPEC 2.20): a background component,
// beside the sweeper, that every Interval (the first round at start)
// announces this server's own directory entry to each peer — the
// configured bootstrap peers plus every known entry's control_url, except
// its own — and merges the entries each peer answers with into the
// durable directory, never adding its own scope.
//
// Bad peers cannot stall or crash it: each announcement has its own
// timeout, at most Concurrency run at once, answers are size-capped and
// checked like announcements, and a peer that fails is skipped for a
// jittered, doubling backoff. Merges run in small store transactions so
// requests never wait long behind them. A round that changed something
// logs one summary line.
package gossip

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"populi-db/federation"
	"populi-db/internal/clock"
	"populi-db/store"
	"populi-db/wire"
)

// Defaults.
const (
	IntervalDefault         = 60 * time.Second // SPEC 2.20
	PeerTimeoutDefault      = 10 * time.Second
	ConcurrencyDefault      = 8
	MaxResponseBytesDefault = 32 << 20
	BackoffMaxDefault       = 30 * time.Minute
	mergeBatch              = 500 // entries per store transaction
	AnnouncePath            = "/v1/populi/federation/announce"
)

// Own-entry defaults (SPEC 2.20).
const (
	ScopeIDDefault    = "unknown"
	ControlURLDefault = "http://127.0.0.1:9847"
)

// Self is what this server says about itself.
type Self struct {
	ScopeID    string // VOX_MESH_SCOPE_ID, default "unknown"
	ControlURL string // VOX_MESH_CONTROL_ADDR, default http://127.0.0.1:9847
	Public     bool   // VOX_MESH_VISIBILITY == "public"
	TaskKinds  []wire.TaskKind
	SigningKey ed25519.PrivateKey // nil: the entry is unsigned
}

// Config configures a Gossiper.
type Config struct {
	Store            *store.Store
	Self             Self
	Peers            []string // bootstrap peers (base URLs)
	Token            string   // outbound bearer (VOX_MESH_TOKEN); empty = none
	Interval         time.Duration
	PeerTimeout      time.Duration
	Concurrency      int
	MaxResponseBytes int64
	MaxEntries       int           // directory cap; default federation.MaxEntries
	BackoffMax       time.Duration // longest a failing peer is skipped
	Client           *http.Client  // default: no redirects, PeerTimeout
	Clock            clock.Clock   // drives the round timer and backoff; default clock.Real
	Logger           *slog.Logger
	// OnRound, if set, is called after every round (tests, metrics).
	OnRound func(Round)
}

// Round is what one round did.
type Round struct {
	Peers     int // peers announced to
	Skipped   int // peers skipped: backing off
	OK        int // peers that answered 200 with a directory
	Failed    int // peers that failed (network, status, size, JSON)
	Added     int // entries new to the directory
	Replaced  int // entries that changed
	Rejected  int // entries from peers that failed the announce checks
	Refused   int // new entries refused: directory full
	Recovered int // peers that answered after failing
	NewlyDown int // peers that failed after answering (or on first try)
	Elapsed   time.Duration
}

// Changed reports whether the round changed the directory or a peer's
// health: the rounds worth a log line.
func (r Round) Changed() bool {
	return r.Added+r.Replaced+r.Rejected+r.Refused+r.Recovered+r.NewlyDown > 0
}

// Gossiper runs gossip rounds.
type Gossiper struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	peers map[string]*peerState // by normalized base URL
}

type peerState struct {
	failures int
	next     time.Time // skipped until then
	lastErr  string
}

// New returns a gossiper; call Run to start it.
func New(cfg Config) (*Gossiper, error) {
	if cfg.Store == nil {
		return nil, errors.New("gossip: Config.Store is required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = IntervalDefault
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = PeerTimeoutDefault
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = ConcurrencyDefault
	}
	if cfg.MaxResponseBytes <= 0 {
		cfg.MaxResponseBytes = MaxResponseBytesDefault
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = federation.MaxEntries
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = BackoffMaxDefault
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Self.ScopeID == "" {
		cfg.Self.ScopeID = ScopeIDDefault
	}
	if cfg.Self.ControlURL == "" {
		cfg.Self.ControlURL = ControlURLDefault
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Timeout: cfg.PeerTimeout,
			// A redirect would carry the bearer to an address nobody
			// announced; treat it as a failed answer.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Gossiper{cfg: cfg, log: cfg.Logger.With("component", "gossip"), peers: map[string]*peerState{}}, nil
}

// Run runs a round at once, then every Interval, until ctx ends or the
// store closes. Rounds never overlap; a round's requests end with ctx.
func (g *Gossiper) Run(ctx context.Context) {
	for {
		if _, err := g.RunRound(ctx); errors.Is(err, store.ErrClosed) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-g.cfg.Clock.After(g.cfg.Interval):
		}
	}
}

// RunRound runs one round now and returns what it did. The error is set
// only when the round could not start (the store failed); peer failures
// are counted, logged and backed off, never returned.
func (g *Gossiper) RunRound(ctx context.Context) (Round, error) {
	start := time.Now()
	var rd Round
	own, err := g.ownEntry()
	if err != nil {
		if !errors.Is(err, store.ErrClosed) {
			g.log.Error("gossip round skipped", "err", err)
		}
		return rd, err
	}
	body, err := json.Marshal(wire.AnnounceRequest{Entry: own})
	if err != nil {
		return rd, err
	}
	targets, err := g.targets()
	if err != nil {
		if !errors.Is(err, store.ErrClosed) {
			g.log.Error("gossip round skipped", "err", err)
		}
		return rd, err
	}
	now := g.cfg.Clock.Now()
	var due []string
	g.mu.Lock()
	current := make(map[string]bool, len(targets))
	for _, p := range targets {
		current[p] = true
	}
	for p := range g.peers { // forget peers no longer in the directory
		if !current[p] {
			delete(g.peers, p)
		}
	}
	for _, p := range targets {
		if st := g.peers[p]; st != nil && now.Before(st.next) {
			rd.Skipped++
			continue
		}
		due = append(due, p)
	}
	g.mu.Unlock()
	rd.Peers = len(due)

	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		sem = make(chan struct{}, g.cfg.Concurrency)
	)
	for _, p := range due {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			res := g.exchange(ctx, p, body)
			mu.Lock()
			defer mu.Unlock()
			rd.add(res)
		}()
	}
	wg.Wait()
	rd.Elapsed = time.Since(start)
	g.report(rd)
	return rd, nil
}

// peerResult is one peer's outcome.
type peerResult struct {
	ok, recovered, newlyDown bool
	merge                    store.FederationMerge
	rejected                 int
}

func (rd *Round) add(r peerResult) {
	if r.ok {
		rd.OK++
	} else {
		rd.Failed++
	}
	rd.Added += r.merge.Added
	rd.Replaced += r.merge.Replaced
	rd.Refused += r.merge.Refused
	rd.Rejected += r.rejected
	if r.recovered {
		rd.Recovered++
	}
	if r.newlyDown {
		rd.NewlyDown++
	}
}

func (g *Gossiper) report(rd Round) {
	if g.cfg.OnRound != nil {
		g.cfg.OnRound(rd)
	}
	attrs := []any{"peers", rd.Peers, "ok", rd.OK, "failed", rd.Failed, "backing_off", rd.Skipped,
		"added", rd.Added, "replaced", rd.Replaced, "rejected", rd.Rejected, "refused_full", rd.Refused,
		"recovered", rd.Recovered, "newly_down", rd.NewlyDown, "elapsed", rd.Elapsed}
	if rd.Changed() {
		g.log.Info("gossip round", attrs...)
	} else if rd.Peers+rd.Skipped > 0 {
		g.log.Debug("gossip round", attrs...)
	}
}

// ownEntry builds this server's entry (SPEC 2.20): current_queue_depth is
// every stored A2A row, acknowledged included; region_label and
// supported_priorities are null; signed when a key is configured.
func (g *Gossiper) ownEntry() (wire.MeshDirectoryEntry, error) {
	st, err := g.cfg.Store.QueueStats()
	if err != nil {
		return wire.MeshDirectoryEntry{}, fmt.Errorf("count rows for own entry: %w", err)
	}
	b := st.ByState
	depth := b.Ready + b.Leased + b.Delayed + b.Dead + b.Acked
	kinds := append([]wire.TaskKind{}, g.cfg.Self.TaskKinds...)
	e := wire.MeshDirectoryEntry{
		ScopeID: g.cfg.Self.ScopeID, ControlURL: g.cfg.Self.ControlURL, TaskKinds: kinds,
		Public: g.cfg.Self.Public, CurrentQueueDepth: &depth,
	}
	if g.cfg.Self.SigningKey != nil {
		federation.Sign(&e, g.cfg.Self.SigningKey)
	}
	return e, nil
}

// targets is the round's peer list: bootstrap peers, then every known
// entry's control_url, normalized, deduplicated, without our own URL or
// anything that is not an http(s) URL.
func (g *Gossiper) targets() ([]string, error) {
	entries, err := g.cfg.Store.FederationEntries()
	if err != nil {
		return nil, fmt.Errorf("read directory: %w", err)
	}
	self := normalizePeer(g.cfg.Self.ControlURL)
	seen := map[string]bool{self: true, "": true}
	var out []string
	add := func(raw string) {
		p := normalizePeer(raw)
		if seen[p] {
			return
		}
		seen[p] = true
		if !usablePeer(p) {
			g.log.Debug("gossip: skipping peer that is not an http(s) URL", "peer", p)
			return
		}
		out = append(out, p)
	}
	for _, p := range g.cfg.Peers {
		add(p)
	}
	for _, e := range entries {
		if e.ScopeID != g.cfg.Self.ScopeID {
			add(e.ControlURL)
		}
	}
	return out, nil
}

func normalizePeer(s string) string { return strings.TrimRight(strings.TrimSpace(s), "/") }

func usablePeer(p string) bool {
	u, err := url.Parse(p)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" &&
		u.User == nil && u.RawQuery == "" && u.Fragment == ""
}

// exchange announces to one peer and merges its answer, updating the
// peer's backoff.
func (g *Gossiper) exchange(ctx context.Context, peer string, body []byte) peerResult {
	var res peerResult
	entries, err := g.announce(ctx, peer, body)
	if err == nil {
		var valid []wire.MeshDirectoryEntry
		for i := range entries {
			if federation.Check(&entries[i]) != nil {
				res.rejected++
				continue
			}
			valid = append(valid, entries[i])
		}
		res.merge, err = g.merge(valid)
		if err != nil {
			// Our store failed, not the peer: no backoff for it.
			if !errors.Is(err, store.ErrClosed) {
				g.log.Error("gossip: merging a peer's directory failed", "peer", peer, "err", err)
			}
			return res
		}
	}
	if ctx.Err() != nil {
		return res // shutting down: not the peer's fault
	}
	now := g.cfg.Clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.peers[peer]
	if st == nil {
		st = &peerState{}
		g.peers[peer] = st
	}
	if err == nil {
		res.ok = true
		res.recovered = st.failures > 0
		if res.recovered {
			g.log.Info("gossip peer answering again", "peer", peer, "after_failures", st.failures)
		}
		*st = peerState{}
		return res
	}
	res.newlyDown = st.failures == 0
	st.failures++
	st.lastErr = err.Error()
	st.next = now.Add(g.backoff(st.failures))
	level := slog.LevelDebug // a peer that keeps failing is in the round summary
	if res.newlyDown {
		level = slog.LevelWarn
	}
	g.log.Log(ctx, level, "gossip peer failed", "peer", peer, "failures", st.failures,
		"retry_after", st.next.Sub(now).Round(time.Second), "err", err)
	return res
}

// backoff is how long a peer that failed n times in a row is skipped:
// Interval·2^(n-1), at most BackoffMax, times a jitter in [0.5, 1.0) so
// peers that failed together do not come back together. The first failure
// waits less than one interval: the next round tries again.
func (g *Gossiper) backoff(n int) time.Duration {
	d := g.cfg.BackoffMax
	if n < 32 {
		d = min(g.cfg.Interval<<(n-1), g.cfg.BackoffMax)
	}
	return time.Duration(float64(d) * (0.5 + rand.Float64()/2))
}

// announce posts our entry and decodes the peer's directory.
func (g *Gossiper) announce(ctx context.Context, peer string, body []byte) ([]wire.MeshDirectoryEntry, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.PeerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, peer+AnnouncePath, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if g.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+g.cfg.Token)
	}
	resp, err := g.cfg.Client.Do(req)
	if err != nil {
		return nil, err // net/http errors name the URL, never the header
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, g.cfg.MaxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %d %q", resp.StatusCode, snippet(raw))
	}
	if int64(len(raw)) > g.cfg.MaxResponseBytes {
		return nil, fmt.Errorf("answer larger than %d bytes", g.cfg.MaxResponseBytes)
	}
	var dir wire.FederationDirectory
	if err := json.Unmarshal(raw, &dir); err != nil {
		return nil, fmt.Errorf("answer is not a federation directory: %w", err)
	}
	return dir.Entries, nil
}

func snippet(b []byte) string {
	const n = 120
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "?")
}

// merge stores valid entries in transactions of at most mergeBatch.
func (g *Gossiper) merge(entries []wire.MeshDirectoryEntry) (store.FederationMerge, error) {
	var total store.FederationMerge
	for len(entries) > 0 {
		n := min(len(entries), mergeBatch)
		m, err := g.cfg.Store.MergeFederation(entries[:n], g.cfg.Self.ScopeID, g.cfg.MaxEntries)
		if err != nil {
			return total, err
		}
		total.Added += m.Added
		total.Replaced += m.Replaced
		total.Unchanged += m.Unchanged
		total.Own += m.Own
		total.Refused += m.Refused
		entries = entries[n:]
	}
	return total, nil
}
