package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"populi-db/store"
	"populi-db/wire"
)

// metrics is one server's Prometheus registry (not the global one, so
// several servers in one process, as in tests, do not collide).
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	handler  http.Handler
}

func newMetrics(st *store.Store, log *slog.Logger) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "populi_http_requests_total",
			Help: "HTTP requests answered, by route path (\"unmatched\" for unknown paths), method and status code.",
		}, []string{"route", "method", "code"}),
	}
	m.reg.MustRegister(m.requests, &queueCollector{store: st})
	m.handler = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrintln{log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	return m
}

func (m *metrics) observe(route, method string, status int) {
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
}

// Queue metrics, computed from store.QueueStats at scrape time.
var (
	descDepth = prometheus.NewDesc("populi_a2a_messages",
		"A2A mailbox rows by state (ready, leased, delayed, dead, acked).", []string{"state"}, nil)
	descPending = prometheus.NewDesc("populi_a2a_pending_messages",
		"A2A rows waiting to be claimed (ready or delayed).", nil, nil)
	descRecvReady = prometheus.NewDesc("populi_a2a_receiver_ready_messages",
		"Ready (claimable) A2A rows per receiver agent.", []string{"receiver_agent_id"}, nil)
	descRecvAge = prometheus.NewDesc("populi_a2a_receiver_oldest_ready_age_seconds",
		"Age of the oldest ready A2A row per receiver agent.", []string{"receiver_agent_id"}, nil)
)

// queueCollector reads queue depth when scraped: the store keeps the
// counters in the same transactions as the rows, so this is cheap.
type queueCollector struct{ store *store.Store }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descDepth
	ch <- descPending
	ch <- descRecvReady
	ch <- descRecvAge
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.store.QueueStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDepth, fmt.Errorf("queue stats: %w", err))
		return
	}
	for _, s := range []struct {
		state string
		n     uint64
	}{
		{wire.StateReady, st.ByState.Ready},
		{wire.StateLeased, st.ByState.Leased},
		{wire.StateDelayed, st.ByState.Delayed},
		{wire.StateDead, st.ByState.Dead},
		{wire.StateAcked, st.ByState.Acked},
	} {
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(s.n), s.state)
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(st.PendingCount))
	for _, r := range st.Receivers {
		ch <- prometheus.MustNewConstMetric(descRecvReady, prometheus.GaugeValue, float64(r.Ready), r.ReceiverAgentID)
		ch <- prometheus.MustNewConstMetric(descRecvAge, prometheus.GaugeValue, float64(r.OldestReadyAgeMs)/1000, r.ReceiverAgentID)
	}
}

// slogPrintln adapts promhttp's error log to slog.
type slogPrintln struct{ log *slog.Logger }

func (l slogPrintln) Println(v ...any) { l.log.Error("metrics scrape", "error", fmt.Sprint(v...)) }

// metricsScrape answers GET /metrics (worker-plane, like queue stats) in the
// Prometheus text format.
func (s *Server) metricsScrape(w http.ResponseWriter, r *http.Request) error {
	s.metrics.handler.ServeHTTP(w, r)
	return nil
}

// queueStats answers GET /v1/populi/queue/stats (SPEC 2.20 plus issue 9's
// per-state counts and per-receiver oldest-ready age).
func (s *Server) queueStats(w http.ResponseWriter, r *http.Request) error {
	st, err := s.store.QueueStats()
	if err != nil {
		return err
	}
	return writeJSON(w, st)
}
