// Package metrics holds populi-db's Prometheus families (all named
// populi_*): one registry per server, fed by the HTTP layer (requests,
// refusals, long-poll waiters), the store's commit observer, the sweeper's
// pass hook, and a collector that reads the store when scraped.
package metrics

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"populi-db/store"
	"populi-db/sweep"
)

// Defaults for the scrape-time store collector.
const (
	// TopReceiversDefault bounds the per-receiver series: only this many
	// receivers (by ready depth) get their own receiver_agent_id label.
	TopReceiversDefault = 20
	// StaleAfterDefault is when a node counts as stale for
	// populi_nodes{state="stale"} if no stale-prune window is configured.
	StaleAfterDefault = time.Minute
)

// Metrics is one server's registry and the families pushed into it.
type Metrics struct {
	Registry *prometheus.Registry

	requests     *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	rateLimited  prometheus.Counter
	bootstrapRef *prometheus.CounterVec
	jwtRef       *prometheus.CounterVec
	waiters      prometheus.Gauge

	commitLatency prometheus.Histogram
	commitBatch   prometheus.Histogram
	syncLatency   *prometheus.HistogramVec

	sweepActions *prometheus.CounterVec
	sweepErrors  *prometheus.CounterVec
	sweepPass    prometheus.Histogram

	storeMu sync.Mutex
	store   *storeCollector // registered by WatchStore
}

// New returns a registry with every pushed family registered, plus the Go
// runtime and process collectors. Call WatchStore to add the store's
// scrape-time families.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "populi_http_requests_total",
			Help: "HTTP requests answered, by route path (\"unmatched\" for unknown paths), method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "populi_http_request_duration_seconds",
			Help: "Time from the request's arrival to the handler's return, by route path, method and status class (2xx, 4xx, 5xx).",
			// Long-poll claims run up to 30 s, so the top buckets reach it.
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"route", "method", "status_class"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "populi_http_rate_limited_total",
			Help: "Requests refused with 429 by the per-client-IP rate limit.",
		}),
		bootstrapRef: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "populi_bootstrap_refusals_total",
			Help: "Bootstrap exchanges refused, by reason (disabled, invalid, expired, consumed, no_mesh_token, other).",
		}, []string{"reason"}),
		jwtRef: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "populi_jwt_refusals_total",
			Help: "JWT bearers refused, by reason (malformed, signature, claims, replayed, role, guard_error).",
		}, []string{"reason"}),
		waiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "populi_a2a_long_poll_waiters",
			Help: "Claims currently parked in a long poll (wait_ms > 0).",
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "populi_store_commit_duration_seconds",
			Help:    "Duration of one group commit: from the batch reaching the log syncer until its write-ahead-log record is fsync'd (every write request waits for it).",
			Buckets: durationBuckets,
		}),
		commitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "populi_store_commit_batch_writes",
			Help:    "Write operations folded into one group commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512},
		}),
		syncLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "populi_store_fsync_duration_seconds",
			Help:    "Duration of one durability flush, by file (wal: a log append and its fdatasync, before writes are acknowledged; db: a background bbolt commit).",
			Buckets: durationBuckets,
		}, []string{"file"}),
		sweepActions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "populi_sweep_actions_total",
			Help: "Items the background sweeper changed, by kind.",
		}, []string{"kind"}),
		sweepErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "populi_sweep_errors_total",
			Help: "Sweeper passes in which a kind of work failed, by kind.",
		}, []string{"kind"}),
		sweepPass: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "populi_sweep_pass_duration_seconds",
			Help:    "Wall time of one sweeper pass over every kind.",
			Buckets: durationBuckets,
		}),
	}
	m.Registry.MustRegister(m.requests, m.latency, m.rateLimited, m.bootstrapRef, m.jwtRef, m.waiters,
		m.commitLatency, m.commitBatch, m.syncLatency, m.sweepActions, m.sweepErrors, m.sweepPass,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every kind is present from the first scrape, so rate() and alerts see
	// zeros rather than absent series.
	for _, k := range sweep.Kinds {
		m.sweepActions.WithLabelValues(string(k))
		m.sweepErrors.WithLabelValues(string(k))
	}
	m.syncLatency.WithLabelValues("db")
	m.rateLimited.Add(0)
	return m
}

// durationBuckets span a page-cache commit (tens of µs) to a stalled disk.
var durationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// Request counts one answered request. route must already be bounded (a
// route pattern or "unmatched").
func (m *Metrics) Request(route, method string, status int, d time.Duration) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route, method, statusClass(status)).Observe(d.Seconds())
}

func statusClass(status int) string {
	switch {
	case status < 200:
		return "1xx"
	case status < 300:
		return "2xx"
	case status < 400:
		return "3xx"
	case status < 500:
		return "4xx"
	}
	return "5xx"
}

// RateLimited counts one 429 from the rate limiter.
func (m *Metrics) RateLimited() { m.rateLimited.Inc() }

// BootstrapRefused counts one refused bootstrap exchange.
func (m *Metrics) BootstrapRefused(reason string) { m.bootstrapRef.WithLabelValues(reason).Inc() }

// JWTRefused counts one refused JWT bearer; reason is one of the fixed
// values package security reports.
func (m *Metrics) JWTRefused(reason string) { m.jwtRef.WithLabelValues(reason).Inc() }

// WaiterStarted and WaiterDone bracket one long-poll claim.
func (m *Metrics) WaiterStarted() { m.waiters.Inc() }

// WaiterDone ends what WaiterStarted began.
func (m *Metrics) WaiterDone() { m.waiters.Dec() }

// CommitDone implements store.Observer.
func (m *Metrics) CommitDone(batchSize int, d time.Duration) {
	m.commitLatency.Observe(d.Seconds())
	m.commitBatch.Observe(float64(batchSize))
}

// SyncDone implements store.Observer.
func (m *Metrics) SyncDone(file string, d time.Duration) {
	m.syncLatency.WithLabelValues(file).Observe(d.Seconds())
}

var _ store.Observer = (*Metrics)(nil)

// SweepPass records one sweeper pass; use it as sweep.Sweeper.OnPass.
func (m *Metrics) SweepPass(sum sweep.Summary, _ error) {
	m.sweepPass.Observe(sum.Elapsed.Seconds())
	for k, c := range sum.Counts {
		m.sweepActions.WithLabelValues(string(k)).Add(float64(c.Items))
		if c.Failed {
			m.sweepErrors.WithLabelValues(string(k)).Inc()
		}
	}
}
