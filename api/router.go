package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"populi-db/metrics"
	"populi-db/store"
	"populi-db/wire"
)

// roleClass is a route's access class (SPEC 3.5).
type roleClass int

const (
	classPublic  roleClass = iota // unauthenticated: /health, bootstrap exchange
	classWorker                   // worker-plane: open, mesh, admin, worker
	classDeliver                  // deliver: open, mesh, admin, submitter
	classAdmin                    // admin: open, mesh, admin
)

// route is one row of the route table: where it lives, who may call it, the
// 403 text for everyone else (SPEC Appendix B), and the handler.
type route struct {
	method, path string
	class        roleClass
	denied       *wire.Error
	handle       func(s *Server, w http.ResponseWriter, r *http.Request, rt *route) error
}

func deny(text string) *wire.Error { return &wire.Error{Code: wire.EFORBIDDEN, Message: text} }

// Paths of the unauthenticated routes (SPEC 3.5, plus issue 18's readiness
// and OpenAPI routes) and of /metrics (open with --metrics-open).
const (
	pathHealth    = "/health"
	pathReady     = "/readyz"
	pathOpenAPI   = "/openapi.yaml"
	pathBootstrap = "/v1/populi/bootstrap/exchange"
	pathMetrics   = "/metrics"
)

// routes is every route the server answers (SPEC 2.2 rows 1-18, issue 9's
// nack, dead-letter and requeue routes, /metrics, and issue 18's /readyz
// and /openapi.yaml).
var routes = []route{
	{"GET", pathHealth, classPublic, nil, (*Server).health},
	{"GET", pathReady, classPublic, nil, (*Server).ready},
	{"GET", pathOpenAPI, classPublic, nil, (*Server).openAPI},
	{"GET", "/v1/populi/nodes", classWorker, deny("populi: worker/mesh/admin token required for node list"), (*Server).listNodes},
	{"POST", "/v1/populi/join", classWorker, deny("populi: worker/mesh/admin token required for join"), (*Server).join},
	{"POST", "/v1/populi/heartbeat", classWorker, deny("populi: worker/mesh/admin token required for heartbeat"), (*Server).heartbeat},
	{"POST", "/v1/populi/leave", classWorker, deny("populi: worker/mesh/admin token required for leave"), (*Server).leave},
	{"POST", pathBootstrap, classPublic, nil, (*Server).bootstrapExchange},
	{"POST", "/v1/populi/a2a/deliver", classDeliver, deny("populi: submitter/mesh/admin token required for a2a/deliver"), (*Server).deliver},
	{"POST", "/v1/populi/a2a/inbox", classWorker, deny("populi: worker/mesh/admin token required for a2a/inbox"), (*Server).inbox},
	{"POST", "/v1/populi/a2a/ack", classWorker, deny("populi: worker/mesh/admin token required for a2a/ack"), (*Server).ack},
	{"POST", "/v1/populi/a2a/lease-renew", classWorker, deny("populi: worker/mesh/admin token required for lease renew"), (*Server).leaseRenew},
	{"POST", "/v1/populi/a2a/nack", classWorker, deny("populi: worker/mesh/admin token required for a2a/nack"), (*Server).nack},
	{"POST", "/v1/populi/exec/lease/grant", classWorker, deny("populi: worker/mesh/admin token required for exec lease grant"), (*Server).execGrant},
	{"GET", "/v1/populi/exec/leases", classAdmin, deny("populi: mesh/admin bearer required for exec lease list"), (*Server).execList},
	{"POST", "/v1/populi/exec/lease/renew", classWorker, deny("populi: worker/mesh/admin token required for exec lease renew"), (*Server).execRenew},
	{"POST", "/v1/populi/exec/lease/release", classWorker, deny("populi: worker/mesh/admin token required for exec lease release"), (*Server).execRelease},
	{"POST", "/v1/populi/admin/quarantine", classAdmin, deny("populi: mesh/admin bearer required for quarantine"), (*Server).quarantine},
	{"POST", "/v1/populi/admin/maintenance", classAdmin, deny("populi: mesh/admin bearer required for maintenance"), (*Server).maintenance},
	{"POST", "/v1/populi/admin/exec-lease/revoke", classAdmin, deny("populi: mesh/admin bearer required for exec lease revoke"), (*Server).execRevoke},
	{"POST", "/v1/populi/admin/a2a/dead", classAdmin, deny("populi: mesh/admin bearer required for dead letters"), (*Server).deadList},
	{"POST", "/v1/populi/admin/a2a/requeue", classAdmin, deny("populi: mesh/admin bearer required for requeue"), (*Server).requeue},
	{"GET", "/v1/populi/queue/stats", classWorker, deny("populi: worker/mesh/admin token required for queue stats"), (*Server).queueStats},
	{"GET", pathMetrics, classAdmin, deny("populi: mesh/admin bearer required for metrics"), (*Server).metricsScrape},
}

// Server is the HTTP layer of one populi-db process.
type Server struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	open    bool // SPEC 3.2: no secret configured
	maxBody int64
	maxWait time.Duration

	knownPaths     map[string]bool // route paths, for metric labels
	handler        http.Handler
	metrics        *metrics.Metrics
	metricsHandler http.Handler

	drainCtx context.Context // cancelled by Drain: long polls return
	drain    context.CancelFunc
}

// New builds a server from cfg, filling defaults.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("api: Config.Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = MaxBodyBytesDefault
	}
	if cfg.MaxWait <= 0 || cfg.MaxWait > store.MaxWait {
		cfg.MaxWait = store.MaxWait
	}
	s := &Server{
		cfg:        cfg,
		store:      cfg.Store,
		log:        cfg.Logger,
		open:       cfg.Tokens == (Tokens{}) && !cfg.JWTEnabled && cfg.JWT == nil,
		maxBody:    cfg.MaxBodyBytes,
		maxWait:    cfg.MaxWait,
		knownPaths: map[string]bool{},
	}
	s.drainCtx, s.drain = context.WithCancel(context.Background())
	var err error
	if s.metrics, s.metricsHandler, err = newMetricsHandler(&cfg, s.log); err != nil {
		return nil, err
	}

	r := httprouter.New()
	r.RedirectTrailingSlash = false // unknown paths are 404, never redirects
	r.RedirectFixedPath = false
	r.HandleOPTIONS = false
	r.HandleMethodNotAllowed = true
	r.NotFound = http.HandlerFunc(notFound)
	r.MethodNotAllowed = http.HandlerFunc(methodNotAllowed)
	for i := range routes {
		rt := &routes[i]
		s.knownPaths[rt.path] = true
		r.Handler(rt.method, rt.path, s.adapt(rt))
	}
	s.handler = s.withCommon(s.withRateLimit(s.withAuth(r)))
	return s, nil
}

// Handler is the server's root handler: middleware, then the router.
func (s *Server) Handler() http.Handler { return s.handler }

// Drain makes every waiting long-poll claim return now with an empty answer,
// and later ones return without waiting. Call it before http.Server.Shutdown
// so shutdown does not wait out the polls.
func (s *Server) Drain() { s.drain() }

// adapt turns a table row into an http.Handler: the handler's error, if any,
// is written through the one status table (errors.go).
func (s *Server) adapt(rt *route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := rt.handle(s, w, r, rt); err != nil {
			s.writeError(w, r, err)
		}
	})
}

func notFound(w http.ResponseWriter, _ *http.Request) { writeEmpty(w, http.StatusNotFound) }

// methodNotAllowed answers 405. httprouter lists OPTIONS in Allow even though
// this server does not answer it; drop it so Allow names real methods.
func methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	allow := slices.DeleteFunc(splitComma(w.Header().Get("Allow")), func(m string) bool { return m == http.MethodOptions })
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeEmpty(w, http.StatusMethodNotAllowed)
}
