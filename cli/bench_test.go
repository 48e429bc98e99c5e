package cli

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestBenchOptionsValidate(t *testing.T) {
	t.Parallel()
	ok := benchOptions{URL: "http://x", N: 1, Producers: 1, Consumers: 1, Receivers: 1, Payload: 64, Timeout: time.Minute}
	if err := ok.validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, mut := range map[string]func(*benchOptions){
		"no url":                   func(o *benchOptions) { o.URL = "" },
		"n zero":                   func(o *benchOptions) { o.N = 0 },
		"no producers":             func(o *benchOptions) { o.Producers = 0 },
		"fewer consumers than rcv": func(o *benchOptions) { o.Receivers = 2 },
		"tiny payload":             func(o *benchOptions) { o.Payload = 8 },
		"negative wait":            func(o *benchOptions) { o.WaitMs = -1 },
	} {
		o := ok
		mut(&o)
		if err := o.validate(); err == nil {
			t.Errorf("%s: validate accepted %+v", name, o)
		}
	}
}

func TestOpStats(t *testing.T) {
	t.Parallel()
	var per [][]time.Duration
	var a []time.Duration
	for i := 1; i <= 100; i++ {
		a = append(a, time.Duration(i)*time.Millisecond)
	}
	per = append(per, a[:50], a[50:])
	s := opStats(per)
	if s.Count != 100 || s.P50Ms < 50 || s.P50Ms > 51 || s.P99Ms < 98 || s.P99Ms > 100 {
		t.Errorf("opStats = %+v", s)
	}
	if (opStats(nil) != OpStats{}) {
		t.Error("opStats(nil) not zero")
	}
}

// TestBenchSmoke runs both bench shapes (concurrent and phased) with a small
// N against a real server.
func TestBenchSmoke(t *testing.T) {
	t.Parallel()
	const token = "bench-smoke-token"
	s := startServer(t, filepath.Join(t.TempDir(), "p.db"), map[string]string{EnvMeshToken: token})
	for name, o := range map[string]benchOptions{
		"concurrent": {N: 300, Producers: 4, Consumers: 4, Receivers: 2},
		"phased":     {N: 200, Producers: 4, Consumers: 3, Receivers: 1, Phased: true},
	} {
		o.URL, o.Token, o.Payload, o.WaitMs, o.Timeout = s.URL, token, 64, 200, time.Minute
		res, err := runBench(context.Background(), o)
		if err != nil {
			t.Fatalf("%s: %v (%+v)", name, err, res)
		}
		if res.Status != "ok" || res.Acked != o.N || res.Delivered != o.N || res.LeftPending != 0 {
			t.Errorf("%s: result %+v", name, res)
		}
		if res.E2EPerSec <= 0 || res.Deliver.Count != o.N || res.Claim.Count != o.N || res.Ack.Count != o.N {
			t.Errorf("%s: figures %+v", name, res)
		}
		var sb strings.Builder
		res.writeText(&sb)
		for _, want := range []string{"deliver", "claim+ack", "e2e", "p99"} {
			if !strings.Contains(sb.String(), want) {
				t.Errorf("%s: text report lacks %q:\n%s", name, want, sb.String())
			}
		}
	}
	if _, err := runBench(context.Background(), benchOptions{URL: s.URL, Token: "wrong", N: 1, Producers: 1, Consumers: 1, Receivers: 1, Payload: 64, Timeout: time.Minute}); err == nil {
		t.Error("bench with a wrong token succeeded")
	}
	s.signal(syscall.SIGTERM)
	s.wait(15 * time.Second)
}
