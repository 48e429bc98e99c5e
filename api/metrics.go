package api

import (
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"populi-db/metrics"
)

// newMetricsHandler wires the server's registry (cfg.Metrics, or a fresh
// one) to the store's scrape-time families and returns the scrape handler.
func newMetricsHandler(cfg *Config, log *slog.Logger) (*metrics.Metrics, http.Handler, error) {
	m := cfg.Metrics
	if m == nil {
		m = metrics.New()
	}
	stale := metrics.StaleAfterDefault
	if cfg.StalePruneMs > 0 {
		stale = time.Duration(min(cfg.StalePruneMs, math.MaxInt64/uint64(time.Millisecond))) * time.Millisecond
	}
	if err := m.WatchStore(cfg.Store, metrics.StoreOptions{TopReceivers: cfg.MetricsTopReceivers, StaleAfter: stale}); err != nil {
		return nil, nil, err
	}
	h := promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		ErrorLog:      slogPrintln{log},
		ErrorHandling: promhttp.ContinueOnError,
	})
	return m, h, nil
}

// slogPrintln adapts promhttp's error log to slog.
type slogPrintln struct{ log *slog.Logger }

func (l slogPrintln) Println(v ...any) { l.log.Error("metrics scrape", "error", fmt.Sprint(v...)) }

// metricsScrape answers GET /metrics in the Prometheus text format: mesh and
// admin bearers only (it names receivers and nodes' counts), or anyone with
// --metrics-open (New makes the row public then).
func (s *Server) metricsScrape(w http.ResponseWriter, r *http.Request) error {
	s.metricsHandler.ServeHTTP(w, r)
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
