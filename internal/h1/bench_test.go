package h1

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkServe measures a serial POST round trip of 200 bytes with a
// keep-alive Go client against h1 and against net/http serving the same
// handler in this process.
func BenchmarkServe(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	payload := bytes.Repeat([]byte("p"), 200)
	run := func(b *testing.B, url string) {
		c := newClient()
		b.ReportAllocs()
		for b.Loop() {
			resp, err := c.Post(url, "application/json", bytes.NewReader(payload))
			if err != nil {
				b.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || n != int64(len(payload)) {
				b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
			}
		}
	}
	b.Run("h1", func(b *testing.B) {
		_, _, url := startH1(b, h, nil)
		run(b, url)
	})
	b.Run("net-http", func(b *testing.B) {
		run(b, startStd(b, h, nil))
	})
}

// BenchmarkServeRaw is BenchmarkServe with a minimal client on one raw
// keep-alive conn, so the server's own cost per request shows.
func BenchmarkServeRaw(b *testing.B) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	req := []byte("POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n" +
		string(bytes.Repeat([]byte("p"), 200)))
	run := func(b *testing.B, url string) {
		nc, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := nc.Write(req); err != nil {
				b.Fatal(err)
			}
			for {
				line, err := br.ReadSlice('\n')
				if err != nil {
					b.Fatal(err)
				}
				if len(line) == 2 {
					break
				}
			}
			if _, err := br.Discard(200); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("h1", func(b *testing.B) {
		_, _, url := startH1(b, h, nil)
		run(b, url)
	})
	b.Run("net-http", func(b *testing.B) {
		run(b, startStd(b, h, nil))
	})
}
