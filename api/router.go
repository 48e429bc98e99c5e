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

	"populi-db/federation"
	"populi-db/metrics"
	"populi-db/store"
	"populi-db/wire"
)

// roleClass is a route's access class (SPEC 3.5).
type roleClass int

const (
	classPublic  roleClass = iota // unauthenticated: /health, /readyz, /openapi.yaml, bootstrap exchange
	classWorker                   // worker-plane: open, mesh, admin, worker
	classDeliver                  // deliver: open, mesh, admin, submitter
	classAdmin                    // admin: open, mesh, admin
)

// route is one row of the route table: where it lives, who may call it, the
// 403 text for everyone else (SPEC Appendix B), and the handler. The
// adapter (serveRoute) enforces the class, so a handler holds no role
// check and a new route cannot forget one.
type route struct {
	method, path string
	class        roleClass
	denied       *wire.Error
	handle       endpoint
}

// endpoint is a route's handler with the type of its JSON body, if any.
// The adapter decodes the body, then checks the role class, then calls
// serve (SPEC 2.1: decoding errors win over 403).
type endpoint struct {
	newBody func() any // nil: the route reads no body
	maxBody int64      // 0: the server's limit
	serve   func(s *Server, w http.ResponseWriter, r *http.Request, body any) error
}

// withBody makes an endpoint whose handler gets the decoded *T.
func withBody[T any](f func(*Server, http.ResponseWriter, *http.Request, *T) error) endpoint {
	return endpoint{
		newBody: func() any { return new(T) },
		serve: func(s *Server, w http.ResponseWriter, r *http.Request, body any) error {
			return f(s, w, r, body.(*T))
		},
	}
}

// noBody makes an endpoint for a route without a body (GET).
func noBody(f func(*Server, http.ResponseWriter, *http.Request) error) endpoint {
	return endpoint{serve: func(s *Server, w http.ResponseWriter, r *http.Request, _ any) error { return f(s, w, r) }}
}

// limit lowers the body limit of one route below the server's.
func (e endpoint) limit(n int64) endpoint {
	e.maxBody = n
	return e
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

// routes is every route the server answers (SPEC 2.2 rows 1-19 and 23,
// issue 9's nack, dead-letter and requeue routes, /metrics, and issue 18's
// /readyz and /openapi.yaml).
var routes = []route{
	{"GET", pathHealth, classPublic, nil, noBody((*Server).health)},
	{"GET", pathReady, classPublic, nil, noBody((*Server).ready)},
	{"GET", pathOpenAPI, classPublic, nil, noBody((*Server).openAPI)},
	{"GET", "/v1/populi/nodes", classWorker, deny("populi: worker/mesh/admin token required for node list"), noBody((*Server).listNodes)},
	{"POST", "/v1/populi/join", classWorker, deny("populi: worker/mesh/admin token required for join"), withBody((*Server).join)},
	{"POST", "/v1/populi/heartbeat", classWorker, deny("populi: worker/mesh/admin token required for heartbeat"), withBody((*Server).heartbeat)},
	{"POST", "/v1/populi/leave", classWorker, deny("populi: worker/mesh/admin token required for leave"), withBody((*Server).leave)},
	{"POST", pathBootstrap, classPublic, nil, withBody((*Server).bootstrapExchange)},
	{"POST", "/v1/populi/a2a/deliver", classDeliver, deny("populi: submitter/mesh/admin token required for a2a/deliver"), withBody((*Server).deliver)},
	{"POST", "/v1/populi/a2a/inbox", classWorker, deny("populi: worker/mesh/admin token required for a2a/inbox"), withBody((*Server).inbox)},
	{"POST", "/v1/populi/a2a/ack", classWorker, deny("populi: worker/mesh/admin token required for a2a/ack"), withBody((*Server).ack)},
	{"POST", "/v1/populi/a2a/lease-renew", classWorker, deny("populi: worker/mesh/admin token required for lease renew"), withBody((*Server).leaseRenew)},
	{"POST", "/v1/populi/a2a/nack", classWorker, deny("populi: worker/mesh/admin token required for a2a/nack"), withBody((*Server).nack)},
	{"POST", "/v1/populi/exec/lease/grant", classWorker, deny("populi: worker/mesh/admin token required for exec lease grant"), withBody((*Server).execGrant)},
	{"GET", "/v1/populi/exec/leases", classAdmin, deny("populi: mesh/admin bearer required for exec lease list"), noBody((*Server).execList)},
	{"POST", "/v1/populi/exec/lease/renew", classWorker, deny("populi: worker/mesh/admin token required for exec lease renew"), withBody((*Server).execRenew)},
	{"POST", "/v1/populi/exec/lease/release", classWorker, deny("populi: worker/mesh/admin token required for exec lease release"), withBody((*Server).execRelease)},
	{"POST", "/v1/populi/admin/quarantine", classAdmin, deny("populi: mesh/admin bearer required for quarantine"), withBody((*Server).quarantine)},
	{"POST", "/v1/populi/admin/maintenance", classAdmin, deny("populi: mesh/admin bearer required for maintenance"), withBody((*Server).maintenance)},
	{"POST", "/v1/populi/admin/exec-lease/revoke", classAdmin, deny("populi: mesh/admin bearer required for exec lease revoke"), withBody((*Server).execRevoke)},
	{"POST", "/v1/populi/admin/a2a/dead", classAdmin, deny("populi: mesh/admin bearer required for dead letters"), withBody((*Server).deadList)},
	{"POST", "/v1/populi/admin/a2a/requeue", classAdmin, deny("populi: mesh/admin bearer required for requeue"), withBody((*Server).requeue)},
	{"GET", "/v1/populi/admin/backup", classAdmin, deny("populi: mesh/admin bearer required for backup"), noBody((*Server).backup)},
	{"GET", "/v1/populi/admin/stats", classAdmin, deny("populi: mesh/admin bearer required for db stats"), noBody((*Server).dbStats)},
	{"GET", "/v1/populi/queue/stats", classWorker, deny("populi: worker/mesh/admin token required for queue stats"), noBody((*Server).queueStats)},
	{"GET", pathMetrics, classAdmin, deny("populi: mesh/admin bearer required for metrics"), noBody((*Server).metricsScrape)},
	{"GET", "/v1/populi/federation/directory", classWorker, deny("populi: token required for federation/directory"), noBody((*Server).federationDirectory)},
	{"POST", "/v1/populi/federation/announce", classWorker, deny("populi: token required for federation/announce"), withBody((*Server).federationAnnounce).limit(federation.MaxAnnounceBodySize)},
}

// Server is the HTTP layer of one populi-db process.
type Server struct {
	cfg     Config
	store   *store.Store
	log     *slog.Logger
	open    bool // SPEC 3.2: no secret configured
	maxBody int64
	maxWait time.Duration

	fedMaxEntries int // federation directory cap

	knownPaths     map[string]bool // route paths, for metric labels
	public         map[string]bool // paths of classPublic routes: no authentication
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
	if cfg.FederationMaxEntries <= 0 {
		cfg.FederationMaxEntries = federation.MaxEntries
	}
	if cfg.MaxWait <= 0 || cfg.MaxWait > store.MaxWait {
		cfg.MaxWait = store.MaxWait
	}
	s := &Server{
		cfg:           cfg,
		store:         cfg.Store,
		log:           cfg.Logger,
		open:          cfg.Tokens == (Tokens{}) && !cfg.JWTEnabled && cfg.JWT == nil,
		maxBody:       cfg.MaxBodyBytes,
		maxWait:       cfg.MaxWait,
		fedMaxEntries: cfg.FederationMaxEntries,
		knownPaths:    map[string]bool{},
		public:        map[string]bool{},
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
		if rt.path == pathMetrics && cfg.MetricsOpen {
			open := *rt // --metrics-open: this server's /metrics row is public
			open.class, open.denied = classPublic, nil
			rt = &open
		}
		s.knownPaths[rt.path] = true
		if rt.class == classPublic {
			s.public[rt.path] = true
		}
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
		if err := s.serveRoute(w, r, rt); err != nil {
			s.writeError(w, r, err)
		}
	})
}

// serveRoute is SPEC 2.1 steps 4-5 for every route: decode the body (415,
// 413, 400, 422), then the route's role check (403 with its text), and only
// then the handler.
func (s *Server) serveRoute(w http.ResponseWriter, r *http.Request, rt *route) error {
	var body any
	if rt.handle.newBody != nil {
		limit := s.maxBody
		if rt.handle.maxBody > 0 {
			limit = min(limit, rt.handle.maxBody)
		}
		body = rt.handle.newBody()
		if err := s.decode(w, r, body, limit); err != nil {
			return err
		}
	}
	if err := authorize(r, rt); err != nil {
		return err
	}
	return rt.handle.serve(s, w, r, body)
}

func notFound(w http.ResponseWriter, _ *http.Request) { writeEmpty(w, http.StatusNotFound) }

// methodNotAllowed answers 405. httprouter lists OPTIONS in Allow even though
// this server does not answer it; drop it so Allow names real methods.
func methodNotAllowed(w http.ResponseWriter, _ *http.Request) {
	allow := slices.DeleteFunc(splitComma(w.Header().Get("Allow")), func(m string) bool { return m == http.MethodOptions })
	w.Header().Set("Allow", strings.Join(allow, ", "))
	writeEmpty(w, http.StatusMethodNotAllowed)
}
