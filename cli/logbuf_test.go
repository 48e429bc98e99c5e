package cli

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBufferedLogFlushes: info lines reach the output within the flush
// period, warn lines at once, and close flushes the rest.
func TestBufferedLogFlushes(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	log, closeLog, err := newLogger(&out, "debug", "text")
	if err != nil {
		t.Fatal(err)
	}
	log.Warn("urgent")
	if !strings.Contains(out.String(), "urgent") {
		t.Fatal("a warn line was held in the buffer")
	}
	log.Info("routine")
	eventuallyCLI(t, "the info line to be flushed", func() bool { return strings.Contains(out.String(), "routine") })
	log.Debug("last")
	closeLog()
	if !strings.Contains(out.String(), "last") {
		t.Fatal("close did not flush")
	}
}

// BenchmarkAccessLogLine is one access-log-shaped JSON line written to a
// real file by 16 goroutines per core, as serve's requests do: straight to
// the file (a write syscall per line, under the handler's lock) or through
// bufferedLog.
func BenchmarkAccessLogLine(b *testing.B) {
	for _, mode := range []string{"unbuffered", "buffered"} {
		b.Run(mode, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "log"))
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			var log *slog.Logger
			if mode == "buffered" {
				buf := newBufferedLog(f)
				defer buf.Close()
				log = slog.New(flushOnWarn{slog.NewJSONHandler(buf, nil), buf})
			} else {
				log = slog.New(slog.NewJSONHandler(f, nil))
			}
			b.SetParallelism(16)
			cpu0 := processCPU()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					log.LogAttrs(b.Context(), slog.LevelInfo, "http request",
						slog.String("request_id", "6592b6c3-9b82-47f0-a8d3-62e033c7116e"), slog.String("method", "POST"),
						slog.String("route", "/v1/populi/a2a/deliver"), slog.Int("status", 200),
						slog.Float64("duration_ms", 1.234), slog.Int64("bytes", 42))
				}
			})
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the process's user+system CPU time so far: what an op costs
// on a shared machine, where wall time mostly measures the neighbours.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
