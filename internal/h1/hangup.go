package h1

import (
	"context"
	"errors"
	"os"
	"sync"
	"time"
)

// Hang-up detection, only for handlers that wait.
//
// net/http reads the connection in the background during every request so
// that a client hang-up cancels the request's context; that read (a
// goroutine, its abort and a wake-up per request) is most of what h1 saves.
// Most handlers here never wait on their context, but a long-poll claim
// does: without the watch, a claim whose client went away would still
// lease a row to nobody until the lease expires. So the watch starts
// lazily, the first time the request context's Done is asked for (the
// context package asks when a handler derives a cancelable context or
// selects on Done), and only once the request body has been read to its
// end with nothing buffered behind it (a background read must not take a
// byte of this request or of a pipelined next one; net/http has the same
// rule).

// aLongTimeAgo is a deadline in the past: it interrupts a pending Read.
var aLongTimeAgo = time.Unix(1, 0)

// reqCtx is a request's context: Done starts the connection's watch.
type reqCtx struct {
	context.Context // the request's cancelable context
	c               *conn
}

func (r *reqCtx) Done() <-chan struct{} {
	r.c.watch.start(r.c)
	return r.Context.Done()
}

// hangupWatch is the state of one request's background read.
type hangupWatch struct {
	mu      sync.Mutex
	allowed bool // the body is read and nothing is buffered: a watch may start
	running bool
	done    chan struct{}
	cancel  context.CancelFunc // the request's
	b       [1]byte
	got     bool  // the read took one byte: the next request's first
	err     error // the read failed other than by the abort: the client is gone
}

// reset prepares the watch for a new request (conn goroutine, no watch
// running).
func (h *hangupWatch) reset(cancel context.CancelFunc, allowed bool) {
	h.mu.Lock()
	h.allowed, h.running, h.cancel = allowed, false, cancel
	h.got, h.err = false, nil
	h.mu.Unlock()
}

// allow marks the body read; a watch may start if nothing is buffered.
func (h *hangupWatch) allow(ok bool) {
	h.mu.Lock()
	h.allowed = ok
	h.mu.Unlock()
}

func (h *hangupWatch) start(c *conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.allowed || h.running {
		return
	}
	h.running, h.allowed = true, false
	h.done = make(chan struct{})
	go h.read(c)
}

func (h *hangupWatch) read(c *conn) {
	defer close(h.done)
	n, err := c.nc.Read(h.b[:])
	h.mu.Lock()
	defer h.mu.Unlock()
	if n == 1 {
		h.got = true // a pipelined request: the client is there
		return
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		h.err = err
		h.cancel()
	}
}

// stop ends the request's watch (conn goroutine, after the handler). It
// reports whether the client hung up; a byte the watch read is handed back
// to the connection's reader.
func (h *hangupWatch) stop(c *conn) (hungUp bool) {
	h.mu.Lock()
	running := h.running
	h.allowed = false
	h.mu.Unlock()
	if !running {
		return false
	}
	c.nc.SetReadDeadline(aLongTimeAgo)
	<-h.done
	c.hasDeadline = true // the loop sets or clears it before the next read
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running = false
	if h.got {
		c.lr.pending = h.b[:1]
	}
	return h.err != nil
}
