package h1

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// waitHandler waits on its request context (as a long poll does) for up to
// 300 ms and says how the wait ended.
func waitHandler(ended chan<- string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/wait" {
			io.WriteString(w, "plain "+r.URL.Path)
			return
		}
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
			ended <- "cancelled"
		case <-time.After(300 * time.Millisecond):
			ended <- "timeout"
			io.WriteString(w, "waited")
		}
	})
}

// A client that hangs up while its handler waits on the request context
// cancels that context (a long-poll claim then stops without leasing).
func TestHangUpCancelsWaitingRequest(t *testing.T) {
	for _, req := range []string{
		"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /wait HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
	} {
		ended := make(chan string, 1)
		_, ln, _ := startH1(t, waitHandler(ended), nil)
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(nc, req); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the handler is waiting
		nc.Close()
		select {
		case how := <-ended:
			if how != "cancelled" {
				t.Fatalf("%q: wait ended by %s, want cancelled by the hang-up", req, how)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%q: handler still waiting after the client hung up", req)
		}
	}
}

// A pipelined request behind a waiting one is not a hang-up: the first
// request runs its course and the byte the watch read belongs to the
// second, which is answered intact.
func TestHangUpWatchKeepsPipelinedRequest(t *testing.T) {
	ended := make(chan string, 1)
	_, ln, _ := startH1(t, waitHandler(ended), nil)
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the watch is reading
	if _, err := io.WriteString(nc, "GET /next HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	for _, want := range []string{"waited", "plain /next"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("read answer %q: %v", want, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Fatalf("answer = %d %q, want 200 %q", resp.StatusCode, b, want)
		}
	}
	if how := <-ended; how != "timeout" {
		t.Fatalf("first request's wait ended by %s, want its own timeout", how)
	}
	// And the connection keeps serving after both.
	io.WriteString(nc, "GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(b), "/third") {
		t.Fatalf("third answer %q", b)
	}
}

// A handler that never asks for Done starts no watch: the connection is
// read by nobody while it runs (a byte sent meanwhile stays unread until
// the next request is parsed).
func TestNoWatchWithoutDone(t *testing.T) {
	var c *conn
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c = r.Context().(*reqCtx).c
		c.watch.mu.Lock()
		running := c.watch.running
		c.watch.mu.Unlock()
		if running {
			t.Error("watch running before Done was asked for")
		}
		io.WriteString(w, "ok")
	})
	_, _, url := startH1(t, h, nil)
	if code, body := get(t, newClient(), url+"/"); code != 200 || body != "ok" {
		t.Fatalf("answer %d %q", code, body)
	}
}
