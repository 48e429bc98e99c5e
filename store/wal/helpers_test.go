package wal_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"populi-db/store/wal"
)

type rec struct {
	seq     uint64
	payload []byte
}

// logBuf captures log output (tests check that a cut names file and offset).
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger(buf *logBuf) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openLog opens the log and returns it with the records replayed (copied).
func openLog(t testing.TB, opts wal.Options, after uint64) (*wal.Log, []rec, error) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = newLogger(&logBuf{})
	}
	var got []rec
	l, err := wal.Open(opts, after, func(seq uint64, p []byte) error {
		got = append(got, rec{seq, append([]byte(nil), p...)})
		return nil
	})
	if err == nil {
		t.Cleanup(func() { l.Close() })
	}
	return l, got, err
}

func mustOpen(t testing.TB, opts wal.Options, after uint64) (*wal.Log, []rec) {
	t.Helper()
	l, got, err := openLog(t, opts, after)
	if err != nil {
		t.Fatalf("Open(after=%d): %v", after, err)
	}
	return l, got
}

// payload returns a recognisable payload of random size up to maxLen.
func payload(rng *rand.Rand, seq uint64, maxLen int) []byte {
	n := rng.IntN(maxLen + 1)
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	copy(p, fmt.Sprintf("seq %d ", seq))
	return p[:n]
}

// appendN appends n records after l.LastSeq() and returns them.
func appendN(t testing.TB, l *wal.Log, rng *rand.Rand, n, maxLen int) []rec {
	t.Helper()
	var out []rec
	for range n {
		seq := l.LastSeq() + 1
		p := payload(rng, seq, maxLen)
		if err := l.Append(seq, p); err != nil {
			t.Fatalf("Append(%d): %v", seq, err)
		}
		out = append(out, rec{seq, p})
	}
	return out
}

func after(recs []rec, after uint64) []rec {
	var out []rec
	for _, r := range recs {
		if r.seq > after {
			out = append(out, r)
		}
	}
	return out
}

func sameRecs(t testing.TB, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("replayed %d records %s, want %d %s", len(got), seqs(got), len(want), seqs(want))
	}
	for i := range got {
		if got[i].seq != want[i].seq || !bytes.Equal(got[i].payload, want[i].payload) {
			t.Fatalf("record %d: got seq %d (%d bytes), want seq %d (%d bytes)", i, got[i].seq, len(got[i].payload), want[i].seq, len(want[i].payload))
		}
	}
}

func seqs(rs []rec) string {
	if len(rs) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%d..%d]", rs[0].seq, rs[len(rs)-1].seq)
}

// files returns the names in dir, sorted.
func files(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func countSuffix(names []string, suffix string) int {
	n := 0
	for _, name := range names {
		if strings.HasSuffix(name, suffix) {
			n++
		}
	}
	return n
}

// snapshot reads every file in dir.
func snapshot(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return m
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		m[e.Name()] = b
	}
	return m
}
