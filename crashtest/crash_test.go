package crashtest

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"populi-db/store"
	"populi-db/wire"
)

var (
	cycles     = flag.Int("crash.cycles", 20, "kill cycles of TestCrashRestart (5 with -short unless set)")
	seedFlag   = flag.Uint64("crash.seed", 0, "RNG seed of TestCrashRestart; 0 = from the clock")
	raceServer = flag.Bool("crash.race", false, "build the server under test with -race")
	workers    = flag.Int("crash.workers", 8, "concurrent traffic streams")
)

// maxMessages is the relay cap given to the server: high enough that no row
// is ever evicted, so every answered delivery must stay until acked.
const maxMessages = store.MaxMessagesMax

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// TestCrashRestart is issue 4's durability proof: cycles of (start the
// server on the same file → check it over HTTP → concurrent mixed traffic →
// SIGKILL → check the db file directly, including bbolt's consistency
// check) against a ledger of every 2xx answer.
//
// The kill comes in one of the write-ahead log's windows (issue 13), chosen
// per cycle: at a random moment (mostly between a batch's log fsync and the
// background bbolt commit that takes it), inside a background bbolt commit,
// inside log segment recycling, or inside the fold at a clean shutdown.
// Small segments and short commit intervals make the last three frequent.
func TestCrashRestart(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	n := *cycles
	if testing.Short() && !flagSet("crash.cycles") {
		n = 5
	}
	t.Logf("seed %d (replay with -crash.seed=%d), %d cycles", seed, seed, n)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("FAILED with -crash.seed=%d", seed)
		}
	})
	bin := serverBinary(t)
	dbPath := filepath.Join(t.TempDir(), "populi.db")
	env := map[string]string{
		"VOX_MESH_TOKEN":            meshToken,
		"VOX_MESH_A2A_LEASE_MS":     strconv.FormatInt(leaseTTL.Milliseconds(), 10),
		"VOX_MESH_A2A_MAX_MESSAGES": strconv.Itoa(maxMessages),
	}
	led := newLedger(leaseTTL)
	rng := rand.New(rand.NewPCG(seed, 1))
	start := time.Now()
	var srv *server
	windows := map[string]int{}
	fail := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if srv != nil {
			msg += "\n--- server log tail ---\n" + srv.stderr.tail(30)
			srv.kill() // a failed run must not leave its server running
		}
		t.Fatal(msg + led.report())
	}

	for c := 1; c <= n; c++ {
		led.newCycle(c)
		sweepEvery := []time.Duration{5 * time.Millisecond, 50 * time.Millisecond, 300 * time.Millisecond}[rng.IntN(3)]
		w := killWindows[rng.IntN(len(killWindows))]
		windows[w.name]++
		cenv := maps.Clone(env)
		armFile := filepath.Join(filepath.Dir(dbPath), "crashpoints-armed")
		_ = os.Remove(armFile)
		if w.crashPoints != "" {
			cenv["POPULI_TEST_CRASHPOINTS"] = w.crashPoints
			cenv["POPULI_TEST_CRASHPOINTS_ARMED_BY"] = armFile // armed once the restart check passed
		}
		commitEvery := []string{"2ms", "20ms", "100ms"}[rng.IntN(3)]
		args := []string{"--wal-segment-size", "65536", "--commit-interval", commitEvery}
		if rng.IntN(2) == 0 {
			args = append(args, "--commit-pipeline") // batches also go through the syncer goroutine
			windows["pipelined"]++
		}
		var err error
		if srv, err = startServer(bin, dbPath, cenv, sweepEvery, args...); err != nil {
			fail("cycle %d: %v", c, err)
		}
		if rng.IntN(20) == 0 {
			// Now and then a kill right after start, before any traffic.
			srv.kill()
		} else {
			runCycle(t, srv, led, rng, seed, c, w, armFile, fail)
		}
		if logs := srv.stderr.String(); strings.Contains(logs, "level=ERROR") || strings.Contains(logs, "panic") ||
			strings.Contains(logs, "DATA RACE") {
			fail("cycle %d: the server logged an error, panicked or raced", c)
		}
		checkFile(t, dbPath, led, fail)
		if len(led.problems) > 0 {
			fail("cycle %d: %d violations", c, len(led.problems))
		}
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	answered := 0
	var kinds []string
	for k, v := range led.ops {
		answered += v
		kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(kinds)
	t.Logf("%d kill cycles in %v: %d answered operations, %d unanswered (killed in flight), %d invariant checks; %d messages, %d exec leases known",
		n, time.Since(start).Round(time.Millisecond), answered, led.unanswered, led.checks, len(led.rows), len(led.leases))
	t.Logf("answers by kind: %s", strings.Join(kinds, " "))
	t.Logf("kill windows: %v", windows)
	if total := led.curMsg; total >= maxMessages {
		t.Fatalf("%d messages delivered: over the relay cap, eviction would void the presence checks; use fewer cycles", total)
	}
}

// runCycle checks a fresh server over HTTP, then runs traffic and kills the
// server while requests are in flight.
func runCycle(t *testing.T, srv *server, led *ledger, rng *rand.Rand, seed uint64, c int, w killWindow, armFile string, fail func(string, ...any)) {
	t.Helper()
	cl := newClient(t, srv.url, *workers*2)
	defer cl.Close()
	if err := led.fullCheck(httpView{cl}, receivers, "after restart"); err != nil {
		fail("cycle %d: %v", c, err)
	}
	probe := &worker{c: cl, l: led, rng: rand.New(rand.NewPCG(seed, uint64(c)<<32)), stop: make(chan struct{})}
	// Every node joined in an earlier cycle is still registered.
	reg, err := cl.ListNodes(context.Background())
	if err != nil {
		fail("cycle %d: list nodes after restart: %v", c, err)
	}
	present := map[string]bool{}
	for _, n := range reg.Nodes {
		present[n.ID] = true
	}
	led.mu.Lock()
	for id := range led.joined {
		if !present[id] {
			led.fail("after restart: joined node %s is missing from the registry", id)
		}
	}
	led.mu.Unlock()
	// The nodes join in the first cycle that runs traffic (cycle 1 may have
	// been killed right after start) and must survive every restart after it.
	for _, id := range nodes {
		led.mu.Lock()
		joined := led.joined[id]
		led.mu.Unlock()
		if joined {
			continue
		}
		if _, err := cl.Join(context.Background(), wire.NodeRecord{ID: id, Version: "crash"}); err != nil {
			fail("join %s: %v", id, err)
		}
		led.mu.Lock()
		led.joined[id] = true
		led.mu.Unlock()
	}
	// Idempotency of pending rows survives the restart: re-delivering an
	// answered key whose row was never acked answers the same id.
	for _, k := range led.pendingKeys(rng, 24) {
		id, ok := probe.deliver(k[0], k[1])
		if !ok {
			fail("cycle %d: re-deliver %v got no answer", c, k)
		}
		if strconv.FormatUint(id, 10) != k[2] {
			led.mu.Lock()
			led.fail("after restart: re-deliver of pending key %q (receiver %s) answered %d, want %s", k[1], k[0], id, k[2])
			led.mu.Unlock()
		}
	}

	if err := os.WriteFile(armFile, nil, 0o600); err != nil { // crash points may fire from now on
		fail("arm crash points: %v", err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < *workers; i++ {
		w := &worker{c: cl, l: led, rng: rand.New(rand.NewPCG(seed, uint64(c)<<32|uint64(i+1))), stop: stop}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !w.stopped() {
				w.step()
			}
		}()
	}
	// The kill moment: random, while the workers have requests in flight
	// (a crash point may have killed the server already).
	time.Sleep(time.Duration(20+rng.IntN(700)) * time.Millisecond)
	if !srv.alive() && w.crashPoints == "" {
		close(stop)
		wg.Wait()
		fail("cycle %d: the server exited on its own: %v", c, srv.err)
	}
	close(stop)
	if w.sigterm {
		srv.stop() // the crash point kills it inside the final fold
	}
	srv.kill()
	wg.Wait()
}

// killWindow is how a cycle's server dies.
type killWindow struct {
	name        string
	crashPoints string // POPULI_TEST_CRASHPOINTS for the server
	sigterm     bool   // end with SIGTERM (the clean-shutdown fold) instead of SIGKILL
}

var killWindows = []killWindow{
	{name: "random"},
	{name: "random"},
	{name: "bbolt-commit", crashPoints: "fold-commit=0.05"},
	{name: "segment-recycle", crashPoints: "log-release=0.1"},
	{name: "shutdown-fold", crashPoints: "close-fold=1", sigterm: true},
}

// checkFile opens the killed server's file directly: bbolt's consistency
// check, then the full ledger check through the store's own reads.
func checkFile(t *testing.T, dbPath string, led *ledger, fail func(string, ...any)) {
	t.Helper()
	st, err := store.Open(store.Config{
		Path: dbPath, LeaseTTL: leaseTTL, MaxMessages: maxMessages, OpenTimeout: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fail("reopen the db file after the kill: %v", err)
	}
	defer st.Close()
	if errs := st.Check(); len(errs) > 0 {
		fail("bbolt consistency check after the kill: %v", errs)
	}
	if err := led.fullCheck(storeView{st}, receivers, "db file after kill"); err != nil {
		fail("%v", err)
	}
}

// report is the violations and the tail of the journal, for a failure.
func (l *ledger) report() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	probs := l.problems
	if len(probs) > 40 {
		probs = probs[:40]
	}
	fmt.Fprintf(&b, "\n--- %d violations (first %d) ---\n%s", len(l.problems), len(probs), strings.Join(probs, "\n"))
	j := l.journal
	if len(j) > 120 {
		j = j[len(j)-120:]
	}
	fmt.Fprintf(&b, "\n--- last %d answers ---\n%s", len(j), strings.Join(j, "\n"))
	return b.String()
}

// httpView reads through a running server.
type httpView struct{ c *client }

func (v httpView) inbox(recv string, before *uint64) ([]wire.StoredMessage, error) {
	return v.c.Inbox(context.Background(), wire.InboxRequest{ReceiverAgentID: recv, MaxMessages: ptr(uint64(pageMax)), BeforeMessageID: before})
}

func (v httpView) dead(recv string, before *uint64) ([]wire.StoredMessage, error) {
	return v.c.DeadLetters(context.Background(), wire.DeadListRequest{ReceiverAgentID: recv, MaxMessages: ptr(uint64(pageMax)), BeforeMessageID: before})
}

func (v httpView) leases() ([]wire.ExecLease, error) {
	return v.c.ListExecLeases(context.Background())
}

// storeView reads the db file through the store package.
type storeView struct{ st *store.Store }

func (v storeView) inbox(recv string, before *uint64) ([]wire.StoredMessage, error) {
	return v.st.ListInbox(recv, ptr(uint64(pageMax)), before)
}

func (v storeView) dead(recv string, before *uint64) ([]wire.StoredMessage, error) {
	return v.st.ListDead(recv, ptr(uint64(pageMax)), before)
}

func (v storeView) leases() ([]wire.ExecLease, error) { return v.st.ListExecLeases() }
