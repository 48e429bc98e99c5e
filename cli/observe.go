package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// MetadataOpenAPI is the App.Metadata key under which main puts the
// embedded openapi.yaml, for serve's GET /openapi.yaml.
const MetadataOpenAPI = "openapi.yaml"

func embeddedOpenAPI(app *ucli.App) []byte {
	doc, _ := app.Metadata[MetadataOpenAPI].([]byte)
	return doc
}

// newLogger builds serve's logger: text or JSON lines on w at level,
// through a buffer (logbuf.go) that close flushes and stops.
func newLogger(w io.Writer, level, format string) (log *slog.Logger, close func(), err error) {
	l, err := parseLevel(level)
	if err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: l}
	buf := newBufferedLog(w)
	var h slog.Handler
	switch strings.ToLower(strings.TrimSpace(format)) {
	case "", "text":
		h = slog.NewTextHandler(buf, opts)
	case "json":
		h = slog.NewJSONHandler(buf, opts)
	default:
		buf.Close()
		return nil, nil, fmt.Errorf("unknown --log-format %q (try text or json)", format)
	}
	return slog.New(flushOnWarn{h, buf}), func() { buf.Close(); buf.Flush() }, nil
}

// parseAccessLevel accepts the two levels an access-log line may have.
func parseAccessLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	}
	return 0, fmt.Errorf("unknown --access-log-level %q (try info or debug)", s)
}

// listenPprof binds the profiling listener, loopback only: pprof exposes
// heap contents and can stall the process, so it never faces a network.
func listenPprof(addr string) (net.Listener, error) {
	loopback, err := isLoopbackBind(addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof: %w", err)
	}
	if !loopback {
		return nil, fmt.Errorf("refusing --pprof on %s: the profiler binds loopback only (e.g. 127.0.0.1:6060)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--pprof listen on %s: %w", addr, err)
	}
	// "localhost" could resolve anywhere: check what was actually bound.
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return nil, fmt.Errorf("refusing --pprof: %s bound %s, which is not loopback", addr, ln.Addr())
	}
	return ln, nil
}

// servePprof serves net/http/pprof's handlers on ln (its own mux, not
// http.DefaultServeMux) until the returned server is closed.
func servePprof(ln net.Listener, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: ReadHeaderTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof listener stopped", "err", err)
		}
	}()
	return hs
}
