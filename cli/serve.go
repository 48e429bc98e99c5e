package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/api"
	"populi-db/gossip"
	"populi-db/ha"
	"populi-db/internal/clock"
	"populi-db/metrics"
	"populi-db/security"
	"populi-db/store"
	"populi-db/sweep"
)

// Serve defaults.
const (
	BindDefault            = "127.0.0.1:9847"
	SweepIntervalDefault   = time.Second
	ShutdownTimeoutDefault = 10 * time.Second
	ReadHeaderTimeout      = 10 * time.Second
	// ReadTimeout bounds reading one request (headers and body), so a
	// client trickling a body cannot hold a connection for ever. There is
	// no write timeout: long-poll claims legitimately take up to 30 s.
	ReadTimeout = time.Minute
)

// envDoc is one row of the environment table shown by `serve --help` (and
// mirrored in README.md).
type envDoc struct{ name, def, meaning string }

var serveEnvDocs = []envDoc{
	{EnvDBPath, DefaultDBPath, "db file when --db is not given (directory created 0700)"},
	{EnvMeshToken, "unset", "mesh bearer (full access); the token bootstrap exchange hands out"},
	{EnvWorkerToken, "unset", "worker bearer: worker-plane routes (nodes, inbox, ack, leases)"},
	{EnvSubmitterToken, "unset", "submitter bearer: a2a/deliver only"},
	{EnvAdminToken, "unset", "admin bearer (same rights as mesh)"},
	{EnvJWTSecret, "unset", "enables single-use HS256 JWT bearers (claims role, jti, exp); mint with `populi-db token jwt`"},
	{EnvScopeID, "unset", "required scope_id on join/heartbeat; returned by bootstrap exchange"},
	{EnvBootstrapToken, "unset", "one-time bootstrap token (--bootstrap-token overrides); empty = exchange disabled (404)"},
	{EnvBootstrapExpires, "unset", "bootstrap expiry, Unix ms; a value already past at startup means expired (410)"},
	{EnvVerifyKey, "unset", "Ed25519 public key (64 hex or base64) verifying job_result/job_fail attestations; invalid = off + warning"},
	{EnvLeaseMs, "120000", "inbox and exec lease TTL in ms, clamped to [1000, 3600000]; unparsable = default"},
	{EnvMaxMessages, "50000", "A2A row cap, clamped to [1, 500000]; acked rows are evicted first"},
	{EnvMaxDeliveries, "10", "claims without ack before a row is dead-lettered; 0 = unlimited"},
	{EnvMaxBodyBytes, "524288", "request body limit; values outside [2048, 8388608] are ignored (not trimmed)"},
	{EnvStalePruneMs, "0 (off)", "hide nodes not seen for this many ms from the node list"},
	{EnvRateLimit, "off", "1/true/on/yes: per-client-IP token bucket, 429 when over (/health exempt)"},
	{EnvRateLimitPerSec, "50", "rate limit: requests per second per client IP"},
	{EnvRateLimitBurst, "2 x per-sec", "rate limit: burst size"},
	{EnvAuthScheme, AuthSchemeDefault, "parsed for compatibility only; jwt-hs256/both log a deprecation warning"},
	{EnvFederationPeers, "unset", "comma-separated base URLs gossip announces to (--bootstrap-peers overrides)"},
	{EnvFederationSigningKey, "unset", "standard base64 of a 32-byte Ed25519 seed signing this server's gossip entry; invalid = unsigned + warning"},
	{EnvControlAddr, gossip.ControlURLDefault, "this server's control_url in its gossip entry (used verbatim)"},
	{EnvVisibility, "unset", "`public` marks this server's gossip entry public"},
	{EnvDonationPolicy, "unset", "donation policy JSON; its slots' task kinds go in the gossip entry"},
}

func serveDescription() string {
	var b strings.Builder
	b.WriteString(`Serve the Populi HTTP API from one bbolt file, or, with --etcd-endpoints, from
etcd: every serve on one --etcd-prefix is the leader or a standby that answers 503
with X-Populi-Leader (a deposed leader exits non-zero; run it under a supervisor).

With no secret configured (none of VOX_MESH_TOKEN, VOX_MESH_WORKER_TOKEN,
VOX_MESH_SUBMITTER_TOKEN, VOX_MESH_ADMIN_TOKEN, VOX_MESH_JWT_HMAC_SECRET) the
server runs in open mode: every request is fully privileged. Open mode only
binds loopback addresses unless --allow-open is given. ` + "`populi-db init`" + ` mints a
token and scope to export.

The first SIGTERM/SIGINT drains: long-poll claims end, the listener closes,
in-flight requests finish (up to --shutdown-timeout), the sweeper stops and
the db is closed. A second signal exits at once.

Environment (resolved once at startup; values are trimmed, blank = unset):
`)
	w := 0
	for _, d := range serveEnvDocs {
		w = max(w, len(d.name))
	}
	for _, d := range serveEnvDocs {
		fmt.Fprintf(&b, "  %-*s  (default %s)\n  %-*s  %s\n", w, d.name, d.def, w, "", d.meaning)
	}
	return b.String()
}

func serveCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "serve",
		Usage:       "run the control plane HTTP server",
		Description: serveDescription(),
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "bind", Value: BindDefault, Usage: "listen address host:port (port 0 picks a free port; the bound URL is printed)"},
			&ucli.StringFlag{Name: "db", DefaultText: "$" + EnvDBPath + ", else " + DefaultDBPath, Usage: "bbolt database file (created if missing; its directory is created 0700)"},
			&ucli.BoolFlag{Name: "allow-open", Usage: "allow open mode (no secret configured) on a non-loopback address"},
			&ucli.StringFlag{Name: "bootstrap-token", Usage: "one-time bootstrap token, used verbatim; overrides $" + EnvBootstrapToken + " (prefer the variable: flags show up in ps)"},
			&ucli.DurationFlag{Name: "sweep-interval", Value: SweepIntervalDefault, Usage: "background sweeper period (expired leases, timed maintenance, relay cap, JWT ids); 0 disables it"},
			&ucli.StringFlag{Name: "tls-cert", Usage: "PEM certificate file: serve HTTPS (needs --tls-key); default is plain HTTP"},
			&ucli.StringFlag{Name: "tls-key", Usage: "PEM private key file for --tls-cert"},
			&ucli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error (logs go to stderr)"},
			&ucli.StringFlag{Name: "log-format", Value: "text", Usage: "text (key=value lines) or json (one JSON object per line)"},
			&ucli.StringFlag{Name: "access-log-level", Value: "info", Usage: "level of the one access-log line per request: info, or debug to see it only with --log-level debug"},
			&ucli.BoolFlag{Name: "metrics-open", Usage: "serve GET /metrics without a bearer (default: mesh/admin bearer required when auth is on)"},
			&ucli.IntFlag{Name: "metrics-top-receivers", Value: metrics.TopReceiversDefault, Usage: "how many receivers (deepest ready queue first) get per-receiver metric series"},
			&ucli.StringFlag{Name: "pprof", Usage: "serve net/http/pprof on this loopback host:port (a separate listener; non-loopback addresses are refused)"},
			&ucli.DurationFlag{Name: "shutdown-timeout", Value: ShutdownTimeoutDefault, Usage: "how long graceful shutdown waits for in-flight requests"},
			&ucli.StringFlag{Name: "bootstrap-peers", Usage: "comma-separated base URLs of federation peers to gossip with; overrides $" + EnvFederationPeers},
			&ucli.DurationFlag{Name: "gossip-interval", Value: gossip.IntervalDefault, Usage: "federation gossip period (first round at start); 0 disables gossip"},
			&ucli.BoolFlag{Name: "no-backup", Usage: "upgrade an older database schema without keeping a <db>.schema-v<N>.bak copy first"},
			&ucli.BoolFlag{Name: "net-http", Usage: "serve plain HTTP with Go's net/http instead of populi-db's own HTTP/1.1 loop (TLS always uses net/http)"},
		}, append(storageFlags(), haFlags()...)...),
		Action: func(c *ucli.Context) error {
			return runServe(c.Context, serveOptions{
				Bind:            c.String("bind"),
				DB:              c.String("db"),
				AllowOpen:       c.Bool("allow-open"),
				BootstrapToken:  c.String("bootstrap-token"),
				SweepInterval:   c.Duration("sweep-interval"),
				TLSCert:         c.String("tls-cert"),
				TLSKey:          c.String("tls-key"),
				LogLevel:        c.String("log-level"),
				LogFormat:       c.String("log-format"),
				AccessLogLevel:  c.String("access-log-level"),
				MetricsOpen:     c.Bool("metrics-open"),
				TopReceivers:    c.Int("metrics-top-receivers"),
				Pprof:           c.String("pprof"),
				OpenAPI:         embeddedOpenAPI(c.App),
				ShutdownTimeout: c.Duration("shutdown-timeout"),
				Storage:         storageOptionsFrom(c),
				HA:              haOptionsFrom(c),
				BootstrapPeers:  c.String("bootstrap-peers"),
				GossipInterval:  c.Duration("gossip-interval"),
				NoUpgradeBackup: c.Bool("no-backup"),
				NetHTTP:         c.Bool("net-http"),
				Stdout:          c.App.Writer,
				Stderr:          c.App.ErrWriter,
				Lookup:          osLookup(),
			})
		},
	}
}

type serveOptions struct {
	Bind, DB, BootstrapToken, TLSCert, TLSKey, LogLevel string
	LogFormat, AccessLogLevel, Pprof                    string
	BootstrapPeers                                      string
	AllowOpen, NoUpgradeBackup, MetricsOpen, NetHTTP    bool
	TopReceivers                                        int
	SweepInterval, ShutdownTimeout, GossipInterval      time.Duration
	Storage                                             storageOptions
	HA                                                  haOptions // etcd backend and election (serve_ha.go)
	Stdout, Stderr                                      io.Writer
	Lookup                                              LookupFunc
	OpenAPI                                             []byte // served at GET /openapi.yaml
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.TrimSpace(s))); err != nil {
		return 0, fmt.Errorf("unknown --log-level %q (try debug, info, warn or error)", s)
	}
	return l, nil
}

// isLoopbackBind reports whether a host:port listen address only accepts
// local connections. An empty host (all interfaces) and names other than
// localhost count as non-loopback.
func isLoopbackBind(bind string) (bool, error) {
	host, _, err := net.SplitHostPort(bind)
	if err != nil {
		return false, fmt.Errorf("invalid --bind %q (want host:port, e.g. %s): %w", bind, BindDefault, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback(), nil
}

// openModeRefusal is the one-line error for open mode on a public address.
func openModeRefusal(bind string) error {
	return fmt.Errorf("refusing open mode on non-loopback address %s: no secret is configured, so every request would be fully privileged; "+
		"set %s (or %s, %s, %s, %s; `populi-db init` mints one), or pass --allow-open",
		bind, EnvMeshToken, EnvWorkerToken, EnvSubmitterToken, EnvAdminToken, EnvJWTSecret)
}

// errLeadershipLost ends serve when an etcd leader is deposed.
var errLeadershipLost = errors.New("lost etcd leadership; exiting so a supervisor restarts this server as a standby")

// gcPercentServe is serve's GOGC unless the environment sets one.
const gcPercentServe = 400

func runServe(ctx context.Context, o serveOptions) (runErr error) {
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	log, closeLog, err := newLogger(o.Stderr, o.LogLevel, o.LogFormat)
	if err != nil {
		return err
	}
	defer closeLog()
	accessLevel, err := parseAccessLevel(o.AccessLogLevel)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		// The heap is small and short-lived per request; GC was ~10% of
		// server CPU under load at the default, and collecting at 5x the
		// live heap instead of 2x raised bench scenario B ~7% (2,009 to
		// 2,161 msg/s end to end).
		debug.SetGCPercent(gcPercentServe)
	}

	env := ParseServerEnv(o.Lookup, time.Now())
	env.SetBootstrapToken(o.BootstrapToken)

	loopback, err := isLoopbackBind(o.Bind)
	if err != nil {
		return err
	}
	if env.OpenMode() && !loopback && !o.AllowOpen {
		return openModeRefusal(o.Bind)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key must be given together")
	}
	var tlsCfg *tls.Config
	if o.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
		if err != nil {
			return fmt.Errorf("load TLS certificate: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if o.SweepInterval < 0 {
		return fmt.Errorf("--sweep-interval must not be negative (got %s)", o.SweepInterval)
	}
	if o.GossipInterval < 0 {
		return fmt.Errorf("--gossip-interval must not be negative (got %s)", o.GossipInterval)
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = ShutdownTimeoutDefault
	}

	dbPath, err := ResolveDBPath(o.DB, o.Lookup, os.UserHomeDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return fmt.Errorf("create db directory: %w", err)
	}

	genv := ParseGossipEnv(o.Lookup, o.BootstrapPeers)
	for _, w := range append(append(env.Warnings, env.SetupWarnings()...), genv.Warnings...) {
		log.Warn(w)
	}

	var pprofLn net.Listener
	if o.Pprof != "" {
		if pprofLn, err = listenPprof(o.Pprof); err != nil {
			return err
		}
		defer pprofLn.Close()
	}

	clk := clock.Real{}
	reg := metrics.New()
	scfg := env.Store
	scfg.Path, scfg.Clock, scfg.Logger, scfg.Observer = dbPath, clk, log, reg
	if err := o.Storage.apply(&scfg, o.Lookup); err != nil {
		return err
	}
	scfg.NoUpgradeBackup = o.NoUpgradeBackup

	ln, err := net.Listen("tcp", o.Bind)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", o.Bind, err)
	}
	defer ln.Close()
	scheme := "http"
	if tlsCfg != nil {
		scheme = "https"
	}
	url := scheme + "://" + ln.Addr().String()
	sw := &ha.Switch{} // the api once the store is open; a standby's answers before
	hs := newHTTPServer(sw, tlsCfg, o.NetHTTP, log)
	defer hs.Close()
	serveErr := make(chan error, 1)
	startServing := func() {
		go func() { serveErr <- hs.Serve(ln) }()
		fmt.Fprintf(o.Stdout, "populi-db listening on %s\n", url)
	}
	var lost <-chan struct{} // closed when an etcd leader is deposed
	var node *ha.Node
	if o.HA.enabled() {
		node, err = o.HA.campaign(ctx, url, log, sw, startServing)
		if err != nil {
			if ctx.Err() != nil {
				log.Info("stopped while standby")
				return nil
			}
			return err
		}
		defer node.Close()
		scfg.Etcd, lost = node.StoreConfig(), node.Lost()
		startServing = func() {}
		sw.Set(ha.Unavailable(node.Leader, "populi: elected leader, loading state from etcd; retry shortly"))
		defer func() {
			if errors.Is(runErr, errLeadershipLost) {
				runErr = fmt.Errorf("%w: %v", errLeadershipLost, node.Err())
			}
		}()
	}
	st, err := store.Open(scfg)
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return fmt.Errorf("database %s is locked: another populi-db is serving it (stop it, or pass a different --db)", dbPath)
		}
		if errors.Is(err, store.ErrDamaged) || errors.Is(err, store.ErrSchemaNewer) {
			return err // already names the file, the problem and what to do
		}
		return fmt.Errorf("open database %s: %w", dbPath, err)
	}
	storeClosed := false
	defer func() {
		if !storeClosed {
			_ = st.Close()
		}
	}()

	acfg := env.API
	acfg.Store, acfg.Logger = st, log
	acfg.Metrics, acfg.MetricsOpen, acfg.MetricsTopReceivers = reg, o.MetricsOpen, o.TopReceivers
	acfg.AccessLogLevel, acfg.OpenAPI = accessLevel, o.OpenAPI
	if env.JWTSecret != "" {
		acfg.JWT = security.NewJWTVerifier(env.JWTSecret, st, clk,
			security.WithJWTLogger(log), security.WithJWTRefusals(reg.JWTRefused))
	}
	acfg.Attestor = security.NewAttestor(env.VerifyKey, log)
	if env.RateLimit.Enabled {
		acfg.RateLimiter = security.NewRateLimiter(env.RateLimit.PerSec, env.RateLimit.Burst, clk)
	}
	srv, err := api.New(acfg)
	if err != nil {
		return fmt.Errorf("build HTTP API: %w", err)
	}
	if node != nil {
		sw.Set(node.Guard(srv.Handler())) // nothing answered once the lease may be gone
	} else {
		sw.Set(srv.Handler())
	}

	sweepCtx, stopSweep := context.WithCancel(context.Background())
	defer stopSweep()
	var sweepWG sync.WaitGroup
	if o.SweepInterval > 0 {
		sw := sweep.New(st, o.SweepInterval, log)
		sw.OnPass = reg.SweepPass
		sweepWG.Add(1)
		go func() { defer sweepWG.Done(); sw.Run(sweepCtx) }()
	}

	if o.GossipInterval > 0 {
		// Gossip runs beside the sweeper and stops with it.
		g, err := gossip.New(gossip.Config{
			Store: st, Self: genv.Self, Peers: genv.Peers, Token: genv.Token,
			Interval: o.GossipInterval, Clock: clk, Logger: log,
		})
		if err != nil {
			return fmt.Errorf("start gossip: %w", err)
		}
		sweepWG.Add(1)
		go func() { defer sweepWG.Done(); g.Run(sweepCtx) }()
		log.Info("federation gossip on", "interval", o.GossipInterval, "bootstrap_peers", len(genv.Peers),
			"scope_id", genv.Self.ScopeID, "control_url", genv.Self.ControlURL, "signed", genv.Self.SigningKey != nil,
			"bearer", genv.Token != "")
	}

	logStartup(log, &env, dbPath, url, o, acfg.Attestor != nil)

	startServing()
	if pprofLn != nil {
		ps := servePprof(pprofLn, log)
		defer ps.Close()
		log.Info("pprof serving", "url", "http://"+pprofLn.Addr().String()+"/debug/pprof/")
	}

	select {
	case <-lost:
		// Deposed, or the etcd session is gone: another process may be the
		// leader already. Answer 503 from now on and exit non-zero without
		// folding (the store's writes are fenced; etcd holds every
		// acknowledged one) for a supervisor to restart this as a standby.
		sw.Set(ha.Unavailable(node.Leader, ha.LostText))
		stopSweep()
		// Requests already in the store get their answer (a fenced write:
		// 503) for up to a second, then every connection closes.
		lctx, lcancel := context.WithTimeout(context.Background(), time.Second)
		_ = hs.Shutdown(lctx)
		lcancel()
		_ = hs.Close()
		storeClosed = true
		return errLeadershipLost
	case <-ctx.Done():
		log.Info("shutting down: draining long polls and in-flight requests (signal again to exit now)", "timeout", o.ShutdownTimeout)
	case err := <-serveErr:
		runErr = fmt.Errorf("HTTP server stopped: %w", err)
		log.Error("HTTP server stopped unexpectedly", "err", err)
	}

	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), o.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests did not finish in time; closing connections", "err", err)
		_ = hs.Close()
	}
	stopSweep()
	sweepWG.Wait()
	storeClosed = true
	if err := st.Close(); err != nil {
		log.Error("close database", "path", dbPath, "err", err)
		if runErr == nil {
			runErr = fmt.Errorf("close database %s: %w", dbPath, err)
		}
	}
	if runErr == nil {
		log.Info("stopped cleanly", "db", dbPath)
	}
	return runErr
}

// logStartup says where the data is and which auth modes are active —
// names and booleans only, never a secret value.
func logStartup(log *slog.Logger, env *ServerEnv, dbPath, url string, o serveOptions, attest bool) {
	bootstrap := "disabled"
	switch {
	case env.API.Bootstrap.Token == "":
	case env.BootstrapExpired:
		bootstrap = "expired"
	case env.API.Bootstrap.ExpiresUnixMs != 0:
		bootstrap = "enabled until " + time.UnixMilli(int64(env.API.Bootstrap.ExpiresUnixMs)).UTC().Format(time.RFC3339)
	default:
		bootstrap = "enabled (no expiry)"
	}
	rate := "off"
	if env.RateLimit.Enabled {
		rate = fmt.Sprintf("%d/s per client IP, burst %d", env.RateLimit.PerSec, env.RateLimit.Burst)
	}
	sweepDesc := "off"
	if o.SweepInterval > 0 {
		sweepDesc = o.SweepInterval.String()
	}
	log.Info("populi-db serving",
		"url", url,
		"db", dbPath,
		"auth", strings.Join(env.AuthModes(), ","),
		"scope_required", env.API.ScopeID != "",
		"bootstrap", bootstrap,
		"result_attestation", attest,
		"rate_limit", rate,
		"tls", o.TLSCert != "",
		"lease_ms", env.Store.LeaseTTL.Milliseconds(),
		"max_messages", env.Store.MaxMessages,
		"max_deliveries", env.Store.MaxDeliveries,
		"max_body_bytes", env.API.MaxBodyBytes,
		"stale_prune_ms", env.API.StalePruneMs,
		"sweep_interval", sweepDesc,
		"gossip_interval", o.GossipInterval.String(),
	)
	if env.OpenMode() {
		log.Warn("open mode: no secret configured, every request is fully privileged; set " + EnvMeshToken + " (see `populi-db init`) before exposing this server")
	}
}
