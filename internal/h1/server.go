package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits that mirror net/http's server.
const (
	// headerSlack is added to MaxHeaderBytes for the request line and
	// framing, as net/http does.
	headerSlack = 4096
	// maxPostHandlerReadBytes is how much unread request body is drained
	// after the handler to keep the connection; beyond it the conn closes.
	maxPostHandlerReadBytes = 256 << 10
	// maxBufferedResponse is the largest response sent with one write;
	// beyond it the response is streamed.
	maxBufferedResponse = 64 << 10
	// closeLingerTimeout bounds how long a connection closed with unread
	// input waits for the peer to read the answer (net/http: 500 ms), so
	// the kernel's reset does not destroy the response in flight.
	closeLingerTimeout = 500 * time.Millisecond
)

// Server serves HTTP/1.1 over plaintext listeners; see the package comment.
type Server struct {
	Handler           http.Handler
	ReadHeaderTimeout time.Duration // 0 = none
	ReadTimeout       time.Duration // whole request incl. body; 0 = none
	IdleTimeout       time.Duration // keep-alive wait for the next request; 0 = ReadTimeout
	MaxHeaderBytes    int           // 0 = http.DefaultMaxHeaderBytes
	Logger            *slog.Logger  // nil = discard

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*conn]struct{}
	baseCtx    context.Context
	cancelBase context.CancelFunc
	inShutdown atomic.Bool
	date       dateCache
}

// connection states, guarded by Server.mu.
const (
	stateIdle   = iota // waiting for the first byte of a request
	stateActive        // reading a request, running its handler or answering
)

func (s *Server) initLocked() {
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
		s.listeners = make(map[*net.Listener]struct{})
		s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout != 0 {
		return s.IdleTimeout
	}
	return s.ReadTimeout
}

func (s *Server) headerLimit() int64 {
	n := s.MaxHeaderBytes
	if n <= 0 {
		n = http.DefaultMaxHeaderBytes
	}
	return int64(n) + headerSlack
}

// Serve accepts connections on ln and serves each on its own goroutine
// until Shutdown or Close, when it returns http.ErrServerClosed. It closes
// ln when it returns.
func (s *Server) Serve(ln net.Listener) error {
	if s.Handler == nil {
		return errors.New("h1: Serve: Server.Handler is nil")
	}
	s.mu.Lock()
	if s.inShutdown.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.initLocked()
	key := &ln
	s.listeners[key] = struct{}{}
	log := s.logger()
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, key)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				if backoff == 0 {
					backoff = 5 * time.Millisecond
				} else if backoff *= 2; backoff > time.Second {
					backoff = time.Second
				}
				log.Error("h1: accept failed; retrying", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("h1: accept: %w", err)
		}
		backoff = 0
		c := s.newConn(nc, log)
		if c == nil {
			nc.Close()
			continue
		}
		go c.serve()
	}
}

// newConn registers a connection, or returns nil when shutting down.
func (s *Server) newConn(nc net.Conn, log *slog.Logger) *conn {
	c := &conn{s: s, nc: nc, log: log, remoteAddr: nc.RemoteAddr().String()}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return nil
	}
	c.ctx, c.cancel = context.WithCancel(s.baseCtx)
	c.state = stateIdle
	s.conns[c] = struct{}{}
	return c
}

// setState moves c to state; it reports false when the server is shutting
// down and c should close instead (a conn never becomes active then, and
// an idle one is closed by Shutdown).
func (s *Server) setState(c *conn, state int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inShutdown.Load() {
		return false
	}
	c.state = state
	return true
}

func (s *Server) removeConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeListenersLocked closes every listener; Serve then returns.
func (s *Server) closeListenersLocked() error {
	var err error
	for ln := range s.listeners {
		if cerr := (*ln).Close(); cerr != nil && err == nil && !errors.Is(cerr, net.ErrClosed) {
			err = cerr
		}
	}
	return err
}

// Shutdown stops accepting, closes idle connections, cancels the contexts
// of requests in flight (long polls end early) and waits until every
// active request has been answered and its connection closed, or ctx ends
// (then it returns ctx's error and leaves the rest running).
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.inShutdown.Store(true)
	s.initLocked()
	err := s.closeListenersLocked()
	s.cancelBase()
	s.mu.Unlock()

	wait := time.Millisecond
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		if s.closeIdle() {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			if wait *= 2; wait > 100*time.Millisecond {
				wait = 100 * time.Millisecond
			}
			timer.Reset(wait)
		}
	}
}

// closeIdle closes idle connections and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state == stateIdle {
			c.nc.Close()
			delete(s.conns, c)
		}
	}
	return len(s.conns) == 0
}

// Close closes every listener and connection now, answered or not.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inShutdown.Store(true)
	s.initLocked()
	err := s.closeListenersLocked()
	s.cancelBase()
	for c := range s.conns {
		c.nc.Close()
		delete(s.conns, c)
	}
	return err
}

// discardLinger half-closes nc and reads what the peer still sends for a
// short while, so a close with unread input does not reset the connection
// before the peer has read the answer.
func discardLinger(nc net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := nc.(closeWriter); ok {
		cw.CloseWrite()
	}
	nc.SetReadDeadline(time.Now().Add(closeLingerTimeout))
	io.Copy(io.Discard, io.LimitReader(nc, 1<<20))
}
