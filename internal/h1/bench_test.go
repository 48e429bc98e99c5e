package h1

import (
	"bytes"
	"io"
	"net/http"
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
