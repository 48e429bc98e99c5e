package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func echoHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(b)
	})
}

// TestClientKeepAlive: Go's client reuses one connection for serial
// requests and at most one per worker for concurrent ones.
func TestClientKeepAlive(t *testing.T) {
	_, ln, url := startH1(t, echoHandler(), nil)
	c := newClient()
	for i := range 200 {
		body := fmt.Sprintf("request %d %s", i, strings.Repeat("x", i))
		resp, err := c.Post(url+"/echo", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(got) != body || resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d body %q err %v", i, resp.StatusCode, got, err)
		}
	}
	if n := ln.accepted.Load(); n != 1 {
		t.Fatalf("serial requests used %d connections, want 1", n)
	}

	// With MaxConnsPerHost the client dials a new conn only when the
	// server closed one: the total stays at most workers+1 (the client
	// keeps the serial phase's conn aside; net/http gets the same 9).
	const workers, each = 8, 50
	c.Transport.(*http.Transport).MaxConnsPerHost = workers
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				body := fmt.Sprintf("worker %d request %d", w, i)
				resp, err := c.Post(url+"/echo", "text/plain", strings.NewReader(body))
				if err != nil {
					errs <- err
					return
				}
				got, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || string(got) != body {
					errs <- fmt.Errorf("worker %d request %d: body %q err %v", w, i, got, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := ln.accepted.Load(); n > workers+1 {
		t.Fatalf("%d workers used %d connections, want at most %d", workers, n, workers+1)
	}
}

// rawRequest dials addr, sends one GET and reads its answer.
func rawRequest(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	return nc, br
}

// waitClosed reads until the server closes nc (EOF or reset) and returns
// how long that took; it fails if nothing happens within limit.
func waitClosed(t *testing.T, nc net.Conn, br *bufio.Reader, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	nc.SetReadDeadline(start.Add(limit))
	_, err := br.ReadByte()
	if err == nil {
		t.Fatal("server sent unexpected bytes")
	}
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("server did not close the connection within %v", limit)
	}
	return time.Since(start)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

// TestIdleTimeout: a keep-alive conn idle past IdleTimeout is closed.
func TestIdleTimeout(t *testing.T) {
	_, ln, _ := startH1(t, okHandler(), func(s *Server) { s.IdleTimeout = 100 * time.Millisecond })
	nc, br := rawRequest(t, ln.Addr().String())
	if d := waitClosed(t, nc, br, 5*time.Second); d < 50*time.Millisecond {
		t.Fatalf("idle conn closed after %v, before the 100ms idle timeout", d)
	}
}

// TestReadHeaderTimeout: a client that sends half a header is dropped
// without an answer after ReadHeaderTimeout, though IdleTimeout is long.
func TestReadHeaderTimeout(t *testing.T) {
	_, ln, _ := startH1(t, okHandler(), func(s *Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = time.Minute
	})
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n")
	br := bufio.NewReader(nc)
	if d := waitClosed(t, nc, br, 5*time.Second); d < 50*time.Millisecond {
		t.Fatalf("slow client dropped after %v, before the 100ms header timeout", d)
	}
}

// TestReadTimeoutBody: ReadTimeout covers the body; a stalled body makes
// the handler's read fail.
func TestReadTimeoutBody(t *testing.T) {
	readErr := make(chan error, 1)
	_, ln, _ := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		readErr <- err
	}), func(s *Server) { s.ReadTimeout = 150 * time.Millisecond })
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
	select {
	case err := <-readErr:
		if !isTimeout(err) {
			t.Fatalf("body read error %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler's body read did not time out")
	}
}

// TestShutdown: Shutdown closes idle conns at once, waits for the active
// request (whose context it cancels), which is answered with
// Connection: close, then Serve returns ErrServerClosed.
func TestShutdown(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	var ctxErrAfterShutdown error
	mux := http.NewServeMux()
	mux.Handle("/", okHandler())
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		ctxErrAfterShutdown = r.Context().Err()
		io.WriteString(w, "finished")
	})
	s := &Server{Handler: mux, Logger: slog.New(slog.DiscardHandler)}
	ln := listen(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()

	idle, idleBR := rawRequest(t, addr)
	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	io.WriteString(slow, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	waitClosed(t, idle, idleBR, 5*time.Second)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v while a request was active", err)
	default:
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("listener still accepts after Shutdown")
	}

	close(release)
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("active request not answered: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "finished" || !resp.Close {
		t.Fatalf("answer %q close=%v, want \"finished\" with Connection: close", body, resp.Close)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return after the last request")
	}
	if !errors.Is(ctxErrAfterShutdown, context.Canceled) {
		t.Fatalf("request context after Shutdown: %v, want canceled", ctxErrAfterShutdown)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	if err := s.Serve(listen(t)); !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve after Shutdown returned %v", err)
	}
}

// heldRequest starts a server and sends it one request whose handler
// blocks until the test ends; it returns once the handler runs.
func heldRequest(t *testing.T) (*Server, net.Conn) {
	t.Helper()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	started := make(chan struct{})
	s, ln, _ := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
	}), nil)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-started
	return s, nc
}

// TestShutdownContext: Shutdown gives up when its context ends.
func TestShutdownContext(t *testing.T) {
	s, _ := heldRequest(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown returned %v, want deadline exceeded", err)
	}
}

// TestClose: Close drops active connections at once.
func TestClose(t *testing.T) {
	s, nc := heldRequest(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, nc, bufio.NewReader(nc), 5*time.Second)
}

// logBuffer is a concurrency-safe log sink.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestPanic: a panicking handler's conn is closed without an answer and
// the panic logged with its stack (not for ErrAbortHandler); a panic after
// streaming closes the conn mid-body; the server keeps serving.
func TestPanic(t *testing.T) {
	var logs logBuffer
	mux := http.NewServeMux()
	mux.Handle("/ok", okHandler())
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		panic("boom")
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	mux.HandleFunc("/panic-streamed", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic("late boom")
	})
	_, ln, url := startH1(t, mux, func(s *Server) { s.Logger = slog.New(slog.NewTextHandler(&logs, nil)) })
	addr := ln.Addr().String()

	for _, path := range []string{"/panic", "/abort"} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n")
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(nc)
		nc.Close()
		if err != nil || len(got) != 0 {
			t.Fatalf("%s: got %q, %v; want the conn closed without an answer", path, got, err)
		}
	}
	resp, err := newClient().Get(url + "/panic-streamed")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil {
		t.Fatal("streamed response cut by a panic read as complete")
	}
	if code, body := get(t, newClient(), url+"/ok"); code != 200 || body != "ok" {
		t.Fatalf("after panics: %d %q", code, body)
	}
	out := logs.String()
	if strings.Count(out, "handler panicked") != 2 || !strings.Contains(out, "boom") || !strings.Contains(out, "goroutine") {
		t.Fatalf("want two logged panics with stacks, got:\n%s", out)
	}
}

// TestStreamLarge: a 20 MB response streams to the Go client intact while
// the server's buffer stays within 64 KiB (plus chunk framing).
func TestStreamLarge(t *testing.T) {
	const total = 20 << 20
	var maxBuf atomic.Int64
	_, _, url := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := w.(*response)
		piece := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz012345"), 1024) // 32 KiB
		sent := 0
		for i := 0; sent < total; i++ {
			p := piece
			if i%7 == 3 {
				p = bytes.Repeat(piece, 5)[:100<<10] // a write over 64 KiB
			}
			if sent+len(p) > total {
				p = p[:total-sent]
			}
			if _, err := w.Write(p); err != nil {
				return
			}
			sent += len(p)
			if m := int64(max(cap(rw.body), cap(rw.c.out))); m > maxBuf.Load() {
				maxBuf.Store(m)
			}
		}
	}), nil)
	resp, err := newClient().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil || n != total {
		t.Fatalf("read %d bytes, %v; want %d", n, err, total)
	}
	if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("transfer encoding %q, want chunked", resp.TransferEncoding)
	}
	if m := maxBuf.Load(); m > 2*maxBufferedResponse {
		t.Fatalf("server buffer grew to %d bytes", m)
	}
}

// TestContextCancelled: the request context ends when the handler returns.
func TestContextCancelled(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	_, _, url := startH1(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RemoteAddr == "" {
			http.Error(w, "no RemoteAddr", 500)
		}
		ctxs <- r.Context()
	}), nil)
	if code, _ := get(t, newClient(), url); code != 200 {
		t.Fatalf("status %d", code)
	}
	ctx := <-ctxs
	eventually(t, "request context cancelled", func() bool { return ctx.Err() != nil })
}

// countingConn counts the Read and Write calls the server makes.
type countingConn struct {
	net.Conn
	reads, writes *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

type countingConnListener struct {
	net.Listener
	reads, writes atomic.Int64
}

func (l *countingConnListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, reads: &l.reads, writes: &l.writes}, nil
}

// TestOneReadOneWrite: a small request that arrives in one segment costs
// the server one Read (the kernel's EAGAIN before parking happens inside
// it) and its answer one Write.
func TestOneReadOneWrite(t *testing.T) {
	s := &Server{Handler: echoHandler(), Logger: slog.New(slog.DiscardHandler)}
	ln := &countingConnListener{Listener: listen(t)}
	go s.Serve(ln)
	defer s.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	const n = 100
	body := strings.Repeat("p", 200)
	for range n {
		io.WriteString(nc, "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n"+body)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// The server's next Read (waiting for request n+1) may have started.
	if r, w := ln.reads.Load(), ln.writes.Load(); w != n || r > n+1 {
		t.Fatalf("%d requests cost %d reads and %d writes, want %d and %d", n, r, w, n, n)
	}
}

// TestExpectContinueClient: Go's client waits for 100 Continue before
// sending the body; h1 sends it when the handler reads, and a handler that
// does not read is answered without the body ever being sent.
func TestExpectContinueClient(t *testing.T) {
	_, _, url := startH1(t, diffHandler(), nil)
	c := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 10 * time.Second}}
	post := func(path string) (string, time.Duration) {
		req, err := http.NewRequest("POST", url+path, strings.NewReader(strings.Repeat("c", 5000)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Expect", "100-continue")
		start := time.Now()
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b), time.Since(start)
	}
	if body, d := post("/readbody"); body != "read 5000 bytes" || d > 5*time.Second {
		t.Fatalf("reading handler: %q after %v (no 100 Continue?)", body, d)
	}
	if body, d := post("/noread"); body != "ignored the body" || d > 5*time.Second {
		t.Fatalf("non-reading handler: %q after %v", body, d)
	}
}
