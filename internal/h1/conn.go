package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"time"
)

// conn is one client connection, served by one goroutine.
type conn struct {
	s          *Server
	nc         net.Conn
	log        *slog.Logger
	remoteAddr string
	ctx        context.Context // cancelled when the conn closes or the server shuts down
	cancel     context.CancelFunc
	state      int // guarded by s.mu

	lr          limitReader
	watch       hangupWatch // see hangup.go
	br          *bufio.Reader
	lastMethod  string
	hasDeadline bool // a read deadline is set on nc
	// hasWriteDeadline: a handler set a write deadline (through
	// http.ResponseController); it is cleared after its request.
	hasWriteDeadline bool

	// Buffers reused across the connection's requests.
	body    []byte   // the response body before it is committed
	out     []byte   // the bytes of the next write
	hdrKeys []string // header names, sorted for output
	werr    error    // the first write error; the conn closes after it
}

// limitReader caps what bufio may read from the conn while a request's
// line and header are read (net/http's connReader limit).
type limitReader struct {
	nc      net.Conn
	remain  int64
	hit     bool
	pending []byte // read by a hang-up watch; returned first
}

func (r *limitReader) Read(p []byte) (int, error) {
	if len(r.pending) > 0 && len(p) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		r.remain -= int64(n)
		return n, nil
	}
	if r.remain <= 0 {
		r.hit = true
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.nc.Read(p)
	r.remain -= int64(n)
	return n, err
}

func (c *conn) serve() {
	defer func() {
		c.cancel()
		c.nc.Close()
		c.s.removeConn(c)
	}()
	c.lr.nc = c.nc
	c.br = bufio.NewReader(&c.lr)
	headerLimit := c.s.headerLimit()
	for {
		if !c.s.setState(c, stateIdle) {
			return
		}
		c.setReadDeadline(c.s.idleTimeout(), time.Time{})
		c.lr.remain = headerLimit
		c.lr.hit = false
		if _, err := c.br.Peek(1); err != nil {
			return
		}
		if !c.s.setState(c, stateActive) {
			return
		}
		t0 := time.Now()
		if d := c.s.ReadHeaderTimeout; d > 0 {
			c.setReadDeadline(d, t0)
		} else {
			c.setReadDeadline(c.s.ReadTimeout, t0)
		}
		if c.lastMethod == "POST" {
			// Tolerate the stray CRLF some clients send after a POST body.
			peek, _ := c.br.Peek(4)
			c.br.Discard(leadingCRLF(peek))
		}
		req, err := http.ReadRequest(c.br)
		if err != nil {
			c.replyReadError(err)
			return
		}
		c.lr.remain = math.MaxInt64
		c.lastMethod = req.Method
		if msg := checkRequest(req); msg != "" {
			c.replyError(msg)
			return
		}
		if c.s.ReadHeaderTimeout > 0 {
			c.setReadDeadline(c.s.ReadTimeout, t0)
		}
		if !c.serveRequest(req) {
			return
		}
	}
}

// setReadDeadline sets the read deadline d after from (now when zero), or
// clears it for d == 0; it skips clearing a deadline that is not set.
func (c *conn) setReadDeadline(d time.Duration, from time.Time) {
	if d <= 0 {
		if c.hasDeadline {
			c.nc.SetReadDeadline(time.Time{})
			c.hasDeadline = false
		}
		return
	}
	if from.IsZero() {
		from = time.Now()
	}
	c.nc.SetReadDeadline(from.Add(d))
	c.hasDeadline = true
}

func leadingCRLF(b []byte) int {
	n := 0
	for _, x := range b {
		if x != '\r' && x != '\n' {
			break
		}
		n++
	}
	return n
}

// checkRequest applies net/http's checks after parsing; it returns the
// status text of a 4xx/5xx answer, or "".
func checkRequest(req *http.Request) string {
	if req.ProtoMajor != 1 {
		return "505 HTTP Version Not Supported: unsupported protocol version"
	}
	// http.ReadRequest moved the Host header into req.Host (or took it
	// from an absolute URL); an empty Host header reads as missing here.
	if req.ProtoAtLeast(1, 1) && req.Host == "" && req.Method != "CONNECT" {
		return "400 Bad Request: missing required Host header"
	}
	if !validHost(req.Host) {
		return "400 Bad Request: malformed Host header"
	}
	for k, vv := range req.Header {
		if !validFieldName(k) {
			return "400 Bad Request: invalid header name"
		}
		for _, v := range vv {
			if !validFieldValue(v) {
				return "400 Bad Request: invalid header value"
			}
		}
	}
	return ""
}

const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// replyError answers a request that is not served ("400 Bad Request: why")
// as net/http does; the conn closes after it.
func (c *conn) replyError(status string) {
	c.nc.Write([]byte("HTTP/1.1 " + status + errorHeaders + status))
}

// replyReadError answers a request that could not be read, as net/http
// does: nothing for a network error or timeout, 431 over the header cap,
// 501 for an unknown transfer coding, else 400.
func (c *conn) replyReadError(err error) {
	switch {
	case c.lr.hit:
		c.replyError("431 Request Header Fields Too Large")
		discardLinger(c.nc)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, net.ErrClosed):
		// The peer went away or was too slow: nobody to answer.
	case isNetError(err):
	case strings.HasPrefix(err.Error(), "unsupported transfer encoding"):
		c.nc.Write([]byte("HTTP/1.1 501 Not Implemented" + errorHeaders + "Unsupported transfer encoding"))
	default:
		c.replyError("400 Bad Request")
	}
}

func isNetError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe)
}

// serveRequest runs the handler for req and answers it; it reports whether
// the connection may serve another request.
func (c *conn) serveRequest(req *http.Request) bool {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req = req.WithContext(&reqCtx{Context: ctx, c: c})
	req.RemoteAddr = c.remoteAddr
	w := &response{
		c:             c,
		req:           req,
		header:        make(http.Header),
		contentLength: -1,
		wantsClose:    hasToken(req.Header["Connection"], "close"),
		body:          c.body[:0],
	}
	w.wants10KeepAlive = !req.ProtoAtLeast(1, 1) && hasToken(req.Header["Connection"], "keep-alive")
	if req.Body != http.NoBody && req.Body != nil {
		w.reqBody = requestBody{rc: req.Body, w: w}
		req.Body = &w.reqBody
	} else {
		w.reqBody.sawEOF = true
	}
	c.watch.reset(cancel, w.reqBody.sawEOF && c.br.Buffered() == 0)
	if expect := req.Header.Get("Expect"); expect != "" {
		if !strings.EqualFold(expect, "100-continue") {
			c.replyStatus(w, http.StatusExpectationFailed)
			return false
		}
		if req.ProtoAtLeast(1, 1) && req.ContentLength != 0 {
			w.canWriteContinue = true
			w.expectContinue = true
		}
		req.Header.Del("Expect")
	}

	p := c.runHandler(w, req)
	if c.watch.stop(c) {
		w.closeAfter = true // the client is gone: nothing more to read
	}
	if p != nil {
		if p.value != http.ErrAbortHandler {
			c.log.Error("h1: handler panicked", "method", req.Method, "path", req.URL.Path,
				"remote", c.remoteAddr, "panic", fmt.Sprint(p.value), "stack", string(p.stack))
		}
		// Whatever the handler wrote is incomplete: close without it.
		c.body = w.body[:0]
		return false
	}
	w.finish()
	// A handler that kept the body must not read the next request.
	w.reqBody.closed = true
	if c.hasWriteDeadline {
		c.nc.SetWriteDeadline(time.Time{})
		c.hasWriteDeadline = false
	}
	c.body = w.body[:0]
	if cap(c.body) > maxBufferedResponse*2 {
		c.body = nil
	}
	if w.lingerOnClose && w.closeAfter && c.werr == nil {
		discardLinger(c.nc)
	}
	return !w.closeAfter && c.werr == nil
}

// replyStatus answers a bodiless status before any handler ran (417) and
// closes the connection after it.
func (c *conn) replyStatus(w *response, code int) {
	w.closeAfter = true
	w.header.Set("Connection", "close")
	w.WriteHeader(code)
	w.finish()
}

type handlerPanic struct {
	value any
	stack []byte
}

func (c *conn) runHandler(w *response, req *http.Request) (p *handlerPanic) {
	defer func() {
		if v := recover(); v != nil {
			p = &handlerPanic{value: v}
			if v != http.ErrAbortHandler {
				p.stack = debug.Stack()
			}
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	return nil
}

// requestBody wraps the request body: it sends 100 Continue on the first
// read when the client asked for it, and tracks how much was read so the
// rest can be drained or the connection closed after the handler.
type requestBody struct {
	rc     io.ReadCloser
	w      *response
	n      int64 // bytes read by the handler
	sawEOF bool
	closed bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.sawEOF {
		return 0, io.EOF
	}
	if b.w.canWriteContinue {
		b.w.canWriteContinue = false
		if err := b.w.c.write([]byte("HTTP/1.1 100 Continue\r\n\r\n")); err != nil {
			return 0, err
		}
	}
	n, err := b.rc.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.sawEOF = true
		b.w.c.watch.allow(b.w.c.br.Buffered() == 0)
	}
	return n, err
}

// Close marks the body closed; the unread rest is dealt with when the
// response is committed (drained up to 256 KiB, else the conn closes).
func (b *requestBody) Close() error {
	b.closed = true
	return nil
}

// discardRest drains the unread body up to maxPostHandlerReadBytes and
// reports whether the connection is still in sync (the body ended).
func (b *requestBody) discardRest() bool {
	if b.sawEOF {
		return true
	}
	_, err := io.CopyN(io.Discard, b.rc, maxPostHandlerReadBytes+1)
	if err == io.EOF {
		b.sawEOF = true
		return true
	}
	return false
}

func (c *conn) write(p []byte) error {
	if c.werr != nil {
		return c.werr
	}
	if _, err := c.nc.Write(p); err != nil {
		c.werr = err
		return err
	}
	return nil
}

func (c *conn) writeBuffers(bufs net.Buffers) error {
	if c.werr != nil {
		return c.werr
	}
	if _, err := bufs.WriteTo(c.nc); err != nil {
		c.werr = err
		return err
	}
	return nil
}
