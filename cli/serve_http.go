package cli

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"time"

	"populi-db/internal/h1"
)

// httpServer is what serve needs of its HTTP server: net/http's, or the
// HTTP/1.1 connection loop of internal/h1.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// newHTTPServer serves plain HTTP with internal/h1 (one goroutine per
// connection, no per-request background read: about a fifth less latency
// per round trip and fewer wake-ups per request than net/http) unless
// netHTTP asks for net/http; TLS always uses net/http.
func newHTTPServer(h http.Handler, tlsCfg *tls.Config, netHTTP bool, log *slog.Logger) httpServer {
	if tlsCfg == nil && !netHTTP {
		return &h1.Server{
			Handler:           h,
			ReadHeaderTimeout: ReadHeaderTimeout,
			ReadTimeout:       ReadTimeout,
			IdleTimeout:       IdleTimeout,
			Logger:            log,
		}
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		TLSConfig:         tlsCfg,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if tlsCfg == nil {
		return hs
	}
	return tlsServer{hs}
}

// tlsServer serves HTTPS with the certificate in its TLSConfig.
type tlsServer struct{ *http.Server }

func (s tlsServer) Serve(ln net.Listener) error { return s.ServeTLS(ln, "", "") }

// IdleTimeout is how long a keep-alive connection may wait for its next
// request.
const IdleTimeout = 2 * time.Minute
