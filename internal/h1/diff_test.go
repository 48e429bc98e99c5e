package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// diffHandler is the set of behaviours the differential test compares.
func diffHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/204", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusNoContent)
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
			panic(fmt.Sprintf("Write on 204: %v", err))
		}
	})
	mux.HandleFunc("/304", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Etag", `"x"`)
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("/404", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such thing", http.StatusNotFound)
	})
	mux.HandleFunc("/twice", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "made")
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>hello</body></html>")
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 1024)
		for range 64 { // 1 MiB
			w.Write(chunk)
		}
	})
	mux.HandleFunc("/flush", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "second")
	})
	mux.HandleFunc("/cl", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello")
	})
	mux.HandleFunc("/cl-big", func(w http.ResponseWriter, r *http.Request) {
		body := bytes.Repeat([]byte("z"), 200<<10)
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.Write(body[:100<<10])
		w.Write(body[100<<10:])
	})
	mux.HandleFunc("/hints", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "after hints")
	})
	mux.HandleFunc("/unknown-status", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(599)
	})
	mux.HandleFunc("/flush-empty", func(w http.ResponseWriter, r *http.Request) {
		w.(http.Flusher).Flush()
	})
	mux.HandleFunc("/late-header", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Early", "sent")
		io.WriteString(w, "body")
		w.Header().Set("X-Late", "ignored")
		w.Header().Set("Content-Type", "application/x-ignored")
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/readbody", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "read %d bytes", len(b))
	})
	mux.HandleFunc("/noread", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ignored the body")
	})
	mux.HandleFunc("/limit", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 10)
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		io.WriteString(w, "fits")
	})
	return mux
}

// rawCase is one connection's worth of raw request bytes and the methods
// of the requests in it, in order (for reading the answers).
type rawCase struct {
	name    string
	raw     string
	methods []string
}

func rawCases() []rawCase {
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: example\r\n\r\n" }
	post := func(path, body string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: example\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
	}
	big := strings.Repeat("b", 300<<10)
	return []rawCase{
		{"json keep-alive pair", get("/json") + get("/json"), []string{"GET", "GET"}},
		{"empty 200", get("/empty"), []string{"GET"}},
		{"204", get("/204"), []string{"GET"}},
		{"304", get("/304"), []string{"GET"}},
		{"404 with body", get("/404"), []string{"GET"}},
		{"second WriteHeader ignored", get("/twice"), []string{"GET"}},
		{"HEAD", "HEAD /json HTTP/1.1\r\nHost: example\r\n\r\n" + get("/json"), []string{"HEAD", "GET"}},
		{"HEAD of empty", "HEAD /empty HTTP/1.1\r\nHost: example\r\n\r\n", []string{"HEAD"}},
		{"sniffed content type", get("/sniff"), []string{"GET"}},
		{"HEAD of 1 MiB", "HEAD /big HTTP/1.1\r\nHost: example\r\n\r\n" + get("/json"), []string{"HEAD", "GET"}},
		{"HEAD with flush", "HEAD /flush HTTP/1.1\r\nHost: example\r\n\r\n" + get("/json"), []string{"HEAD", "GET"}},
		{"103 early hints", get("/hints") + get("/json"), []string{"GET", "GET"}},
		{"header changed after Write", get("/late-header"), []string{"GET"}},
		{"unknown status", get("/unknown-status"), []string{"GET"}},
		{"flush without body", get("/flush-empty") + get("/json"), []string{"GET", "GET"}},
		{"HTTP/1.0 flush", "GET /flush HTTP/1.0\r\n\r\n", []string{"GET"}},
		{"HTTP/1.0 post", "POST /readbody HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc", []string{"POST"}},
		{"unread chunked body drained", "POST /noread HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + get("/json"), []string{"POST", "GET"}},
		{"unread body with streamed answer", post("/big", strings.Repeat("q", 1000)) + get("/json"), []string{"POST", "GET"}},
		{"invalid header value", "GET /json HTTP/1.1\r\nHost: example\r\nX-A: a\x01b\r\n\r\n", []string{"GET"}},
		{"bad Host", "GET /json HTTP/1.1\r\nHost: exa mple\r\n\r\n", []string{"GET"}},
		{"absolute URL", "GET http://example/json HTTP/1.1\r\nHost: example\r\n\r\n", []string{"GET"}},
		{"1 MiB body then next", get("/big") + get("/json"), []string{"GET", "GET"}},
		{"flush midway", get("/flush") + get("/json"), []string{"GET", "GET"}},
		{"handler Content-Length", get("/cl") + get("/cl"), []string{"GET", "GET"}},
		{"handler Content-Length streamed", get("/cl-big") + get("/json"), []string{"GET", "GET"}},
		{"Connection: close from handler", get("/close") + get("/json"), []string{"GET"}},
		{"Connection: close from client", "GET /json HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n", []string{"GET"}},
		{"pipelined posts", post("/readbody", "abc") + post("/noread", "defgh") + get("/json"), []string{"POST", "POST", "GET"}},
		{"HTTP/1.0", "GET /json HTTP/1.0\r\n\r\n", []string{"GET"}},
		{"HTTP/1.0 keep-alive", "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + "GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", []string{"GET", "GET"}},
		{"HTTP/1.0 keep-alive, streamed", "GET /big HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", []string{"GET"}},
		{"HTTP/1.0 keep-alive, 204", "GET /204 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", []string{"GET"}},
		{"chunked request body", "POST /readbody HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + get("/json"), []string{"POST", "GET"}},
		{"expect 100-continue, read", "POST /readbody HTTP/1.1\r\nHost: example\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd" + get("/json"), []string{"POST", "GET"}},
		{"expect 100-continue, not read", "POST /noread HTTP/1.1\r\nHost: example\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nabcd", []string{"POST"}},
		{"expect other", "POST /readbody HTTP/1.1\r\nHost: example\r\nExpect: something\r\nContent-Length: 4\r\n\r\nabcd", []string{"POST"}},
		{"missing Host", "GET /json HTTP/1.1\r\n\r\n", []string{"GET"}},
		{"malformed request line", "GARBAGE\r\n\r\n", []string{"GET"}},
		{"malformed header", "GET /json HTTP/1.1\r\nHost: example\r\nno colon here\r\n\r\n", []string{"GET"}},
		{"unsupported protocol", "GET /json HTTP/2.0\r\nHost: example\r\n\r\n", []string{"GET"}},
		{"unknown transfer encoding", "POST /readbody HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: gzip\r\n\r\n", []string{"POST"}},
		{"oversized header", "GET /json HTTP/1.1\r\nHost: example\r\nX-Big: " + strings.Repeat("h", 8<<10) + "\r\n\r\n", []string{"GET"}},
		{"body over MaxBytesReader", post("/limit", strings.Repeat("x", 100)) + get("/json"), []string{"POST"}},
		{"body within MaxBytesReader", post("/limit", "tiny") + get("/json"), []string{"POST", "GET"}},
		{"unread body over 256 KiB", post("/noread", big) + get("/json"), []string{"POST"}},
		{"unread small body drained", post("/noread", strings.Repeat("s", 100<<10)) + get("/json"), []string{"POST", "GET"}},
	}
}

// exchange writes raw on a fresh connection to addr, reads one answer per
// method (plus any 1xx), and reports whether the server then closed.
func exchange(t *testing.T, addr string, c rawCase) (answers []string, closed bool) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	go func() { io.WriteString(nc, c.raw) }()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(nc)
	for _, m := range c.methods {
		for {
			resp, err := http.ReadResponse(br, &http.Request{Method: m})
			if err != nil {
				answers = append(answers, "read error")
				return answers, true
			}
			answers = append(answers, describe(t, resp))
			if resp.StatusCode >= 200 {
				break
			}
		}
	}
	nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = br.ReadByte()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return answers, false
	}
	return answers, true
}

// describe renders what a client sees of a response, Date excepted.
func describe(t *testing.T, resp *http.Response) string {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", resp.Proto, resp.Status)
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		if k != "Date" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %q\n", k, resp.Header[k])
	}
	if len(resp.Header["Date"]) != 1 && resp.StatusCode >= 200 {
		fmt.Fprintf(&b, "Date header: %q\n", resp.Header["Date"])
	}
	fmt.Fprintf(&b, "ContentLength=%d TransferEncoding=%q Close=%v\n", resp.ContentLength, resp.TransferEncoding, resp.Close)
	if err != nil {
		fmt.Fprintf(&b, "body error: %v\n", err)
	}
	if len(body) > 200 {
		fmt.Fprintf(&b, "body: %d bytes, sum %x\n", len(body), sum(body))
	} else {
		fmt.Fprintf(&b, "body: %q\n", body)
	}
	return b.String()
}

func sum(b []byte) uint32 {
	var h uint32 = 2166136261
	for _, x := range b {
		h = (h ^ uint32(x)) * 16777619
	}
	return h
}

// TestDifferential sends the same raw requests to net/http and to h1
// serving the same handler and compares what a client sees.
func TestDifferential(t *testing.T) {
	h := diffHandler()
	stdURL := startStd(t, h, func(s *http.Server) { s.MaxHeaderBytes = 1024 })
	_, _, h1URL := startH1(t, h, func(s *Server) { s.MaxHeaderBytes = 1024 })
	stdAddr := strings.TrimPrefix(stdURL, "http://")
	h1Addr := strings.TrimPrefix(h1URL, "http://")
	for _, c := range rawCases() {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			want, wantClosed := exchange(t, stdAddr, c)
			got, gotClosed := exchange(t, h1Addr, c)
			if !slices.Equal(got, want) {
				t.Errorf("answers differ\n--- net/http:\n%s\n--- h1:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
			}
			if gotClosed != wantClosed {
				t.Errorf("h1 closed=%v, net/http closed=%v", gotClosed, wantClosed)
			}
		})
	}
}
