package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"populi-db/ha"
	"populi-db/internal/etcdtest"
)

// Active/standby on etcd with real `populi-db serve` processes and an
// embedded etcd cluster in the test process.

const haTTL = 2 * time.Second

func startEtcd(t *testing.T, members int) *etcdtest.Cluster {
	t.Helper()
	c, err := etcdtest.Start(t.TempDir(), members)
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func startHA(t *testing.T, c *etcdtest.Cluster, prefix, name string) *server {
	t.Helper()
	return startServer(t, filepath.Join(t.TempDir(), name+".db"), nil,
		"--etcd-endpoints", strings.Join(c.Endpoints(), ","), "--etcd-prefix", prefix,
		"--etcd-lease-ttl", haTTL.String(), "--gossip-interval", "0", "--commit-interval", "50ms")
}

func ready(s *server) bool {
	st, _, err := tryCall("GET", s.URL+"/readyz", "", nil, nil)
	return err == nil && st == 200
}

// leaderOf waits until exactly one of servers is ready and returns it and
// the others.
func leaderOf(t *testing.T, servers ...*server) (*server, []*server) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var l *server
		var rest []*server
		n := 0
		for _, s := range servers {
			if ready(s) {
				l, n = s, n+1
			} else {
				rest = append(rest, s)
			}
		}
		if n == 1 {
			return l, rest
		}
		time.Sleep(20 * time.Millisecond)
	}
	var logs strings.Builder
	for _, s := range servers {
		fmt.Fprintf(&logs, "--- %s:\n%s\n", s.URL, s.stderr)
	}
	t.Fatalf("no single leader within 20s\n%s", logs.String())
	return nil, nil
}

// writer delivers with retries, following a standby's X-Populi-Leader or
// trying the other servers when one is unreachable: what a client does.
type writer struct {
	urls []string
	mu   sync.Mutex
	cur  string
}

func (w *writer) deliver(body map[string]any, within time.Duration) (uint64, error) {
	deadline := time.Now().Add(within)
	w.mu.Lock()
	target := w.cur
	w.mu.Unlock()
	i := 0
	for {
		var resp struct {
			MessageID uint64 `json:"message_id"`
		}
		ans, _, err := tryCallHeader("POST", target+"/v1/populi/a2a/deliver", body, &resp)
		leader, st := ans.leader, ans.status
		if err == nil && st == 200 {
			w.mu.Lock()
			w.cur = target
			w.mu.Unlock()
			return resp.MessageID, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no 200 within %s (last: %d %v)", within, st, err)
		}
		if leader != "" {
			target = leader
		} else {
			i++
			target = w.urls[i%len(w.urls)]
			time.Sleep(10 * time.Millisecond)
		}
	}
}

type answer struct {
	status int
	leader string
}

// tryCallHeader is tryCall that also returns a standby's leader header.
func tryCallHeader(method, url string, in, out any) (answer, string, error) {
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return answer{}, "", err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return answer{}, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := testHTTP.Do(req)
	if err != nil {
		return answer{}, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	got := answer{status: resp.StatusCode, leader: resp.Header.Get(ha.HeaderLeader)}
	if err != nil {
		return got, "", err
	}
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			return got, string(b), err
		}
	}
	return got, string(b), nil
}

func TestHAStandbyFailoverAndMemberLoss(t *testing.T) {
	start := time.Now()
	step := func(what string) { t.Logf("%-28s at %s", what, time.Since(start).Round(time.Millisecond)) }
	c := startEtcd(t, 3)
	step("etcd up")
	a := startHA(t, c, "/populi/failover", "a")
	b := startHA(t, c, "/populi/failover", "b")
	leader, rest := leaderOf(t, a, b)
	standby := rest[0]
	step("leader elected")

	// A standby: alive, not ready, every other route 503 naming the leader.
	if st, _ := call(t, "GET", standby.URL+"/health", "", nil, nil); st != 200 {
		t.Fatalf("standby /health = %d", st)
	}
	// The standby learns the leader's name from its election watch, which
	// may lag the leader's own win by a moment.
	var (
		ans  answer
		body string
		err  error
	)
	waitFor(t, "the standby to name the leader", func() bool {
		ans, body, err = tryCallHeader("GET", standby.URL+"/v1/populi/nodes", nil, nil)
		return err != nil || ans.leader != ""
	})
	if err != nil || ans.status != 503 || ans.leader != leader.URL || body != ha.StandbyText {
		t.Fatalf("standby node list = %+v %q %v; want 503 naming %s", ans, body, err, leader.URL)
	}

	if st, body := call(t, "POST", leader.URL+"/v1/populi/join", "", nodeRecord("w1"), nil); st != 200 {
		t.Fatalf("join: %d %s", st, body)
	}
	w := &writer{urls: []string{a.URL, b.URL}, cur: leader.URL}
	acked := map[string]uint64{}
	var mu sync.Mutex
	write := func(key string) {
		id, err := w.deliver(deliverBody("7", key, key), 20*time.Second)
		if err != nil {
			t.Errorf("deliver %s: %v", key, err)
			return
		}
		mu.Lock()
		acked[key] = id
		mu.Unlock()
	}
	// A lease token before the failover.
	write("pre")
	var claimed struct {
		Messages []listedMessage `json:"messages"`
	}
	if st, body := call(t, "POST", leader.URL+"/v1/populi/a2a/inbox", "", map[string]any{"receiver_agent_id": "7", "claimer_node_id": "w1", "max_messages": 1}, &claimed); st != 200 || len(claimed.Messages) != 1 || claimed.Messages[0].LeaseToken == nil {
		t.Fatalf("claim: %d %s", st, body)
	}
	token1 := *claimed.Messages[0].LeaseToken

	// One etcd member of three lost: writes go on.
	c.StopMember(2)
	step("etcd member stopped")
	for i := range 20 {
		write(fmt.Sprintf("member-loss-%d", i))
	}
	step("writes after member loss")

	// Load from four clients; SIGKILL the leader in the middle of it.
	var killed time.Time
	var firstAfter time.Time
	var wg sync.WaitGroup
	perWriter := 60
	if testing.Short() {
		perWriter = 25
	}
	for g := range 4 {
		wg.Go(func() {
			for i := range perWriter {
				key := fmt.Sprintf("load-%d-%d", g, i)
				write(key)
				w.mu.Lock()
				cur := w.cur
				w.mu.Unlock()
				mu.Lock()
				if !killed.IsZero() && firstAfter.IsZero() && cur == standby.URL {
					firstAfter = time.Now()
				}
				mu.Unlock()
				if g == 0 && i == perWriter/3 {
					leader.signal(syscall.SIGKILL)
					mu.Lock()
					killed = time.Now()
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	step("load done")
	if t.Failed() {
		t.FailNow()
	}
	if firstAfter.IsZero() {
		t.Fatal("no write landed on the standby after the kill")
	}
	took := firstAfter.Sub(killed)
	t.Logf("failover: kill to first acknowledged write on the new leader %s (lease TTL %s)", took.Round(time.Millisecond), haTTL)
	if took > haTTL+8*time.Second {
		t.Errorf("failover took %s, lease TTL is %s", took, haTTL)
	}
	if !ready(standby) {
		t.Fatal("the standby did not become ready")
	}

	// Every acknowledged write is there, and no id was issued twice.
	byID := map[uint64]string{}
	for k, id := range acked {
		if other, dup := byID[id]; dup {
			t.Fatalf("message id %d acknowledged for %q and %q", id, other, k)
		}
		byID[id] = k
	}
	listed := map[uint64]string{}
	for _, m := range listAll(t, standby.URL, "", "7") {
		listed[m.ID] = m.Payload
	}
	for k, id := range acked {
		if listed[id] != k {
			t.Errorf("acknowledged %q (id %d) missing after failover: found %q", k, id, listed[id])
		}
	}
	// A new lease token is never a reused one.
	if st, body := call(t, "POST", standby.URL+"/v1/populi/a2a/inbox", "", map[string]any{"receiver_agent_id": "7", "claimer_node_id": "w1", "max_messages": 1}, &claimed); st != 200 || len(claimed.Messages) != 1 || claimed.Messages[0].LeaseToken == nil {
		t.Fatalf("claim after failover: %d %s", st, body)
	}
	if token2 := *claimed.Messages[0].LeaseToken; token2 <= token1 {
		t.Fatalf("lease token after failover %d, before %d: reused or went back", token2, token1)
	}
}

func TestHAFencingSIGSTOP(t *testing.T) {
	c := startEtcd(t, 1)
	a := startHA(t, c, "/populi/fence", "a")
	b := startHA(t, c, "/populi/fence", "b")
	old, rest := leaderOf(t, a, b)
	standby := rest[0]
	if st, body := call(t, "POST", old.URL+"/v1/populi/a2a/deliver", "", deliverBody("7", "before", "before"), nil); st != 200 {
		t.Fatalf("deliver: %d %s", st, body)
	}

	// Writers keep the old leader busy, so batches are in flight when it
	// freezes; each write's outcome is kept.
	var omu sync.Mutex
	outcome := map[string]int{} // payload → HTTP status (0: no answer)
	stopWriters := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopWriters:
					return
				default:
				}
				p := fmt.Sprintf("busy-%d-%d", g, i)
				st, _, err := tryCall("POST", old.URL+"/v1/populi/a2a/deliver", "", deliverBody("7", p, ""), nil)
				if err != nil {
					st = 0
				}
				omu.Lock()
				outcome[p] = st
				omu.Unlock()
				if err != nil {
					return // the old leader is gone
				}
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let the writers get going

	// Freeze the leader: its lease expires and the standby takes over.
	old.signal(syscall.SIGSTOP)
	deadline := time.Now().Add(haTTL + 10*time.Second)
	for !ready(standby) {
		if time.Now().After(deadline) {
			old.signal(syscall.SIGCONT)
			t.Fatalf("standby did not take over; stderr:\n%s", standby.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st, body := call(t, "POST", standby.URL+"/v1/populi/a2a/deliver", "", deliverBody("7", "after", "after"), nil); st != 200 {
		t.Fatalf("deliver on the new leader: %d %s", st, body)
	}

	// A write sent to the frozen leader waits in its socket; thaw it.
	type result struct {
		st   int
		body string
		err  error
	}
	res := make(chan result, 1)
	read := make(chan result, 1)
	go func() {
		st, body, err := tryCall("POST", old.URL+"/v1/populi/a2a/deliver", "", deliverBody("7", "ghost", "ghost"), nil)
		res <- result{st, body, err}
	}()
	go func() { // a read must not be answered from the old state either
		st, body, err := tryCall("GET", old.URL+"/v1/populi/queue/stats", "", nil, nil)
		read <- result{st, body, err}
	}()
	time.Sleep(100 * time.Millisecond) // let the requests reach the frozen process's socket
	old.signal(syscall.SIGCONT)
	r := <-res
	if r.err == nil && r.st/100 == 2 {
		t.Fatalf("the deposed leader acknowledged a write: %d %s", r.st, r.body)
	}
	if r := <-read; r.err == nil && r.st/100 == 2 {
		t.Fatalf("the deposed leader answered a read from its old state: %d %s", r.st, r.body)
	}
	if code := old.wait(15 * time.Second); code == 0 {
		t.Fatal("the deposed leader exited 0; want non-zero (a supervisor restarts it as a standby)")
	}
	if !strings.Contains(old.stderr.String(), "lost etcd leadership") {
		t.Errorf("deposed leader's log does not say why it stopped:\n%s", old.stderr)
	}

	close(stopWriters)
	wg.Wait()

	// Every write the old leader acknowledged is on the new one (it
	// committed before the takeover); none it refused is.
	visible := map[string]bool{}
	for _, m := range listAll(t, standby.URL, "", "7") {
		visible[m.Payload] = true
	}
	if visible["ghost"] || !visible["before"] || !visible["after"] {
		t.Fatalf("after the takeover: ghost %v before %v after %v", visible["ghost"], visible["before"], visible["after"])
	}
	acked, refused := 0, 0
	for p, st := range outcome {
		switch {
		case st == 200:
			acked++
			if !visible[p] {
				t.Errorf("%s was acknowledged by the old leader and is lost", p)
			}
		case st != 0:
			refused++
			if visible[p] {
				t.Errorf("%s was refused (%d) by the old leader, yet it is visible", p, st)
			}
		}
	}
	t.Logf("old leader under load: %d writes acknowledged, %d refused, %d unanswered; its etcd writes fenced: %v",
		acked, refused, len(outcome)-acked-refused, strings.Contains(old.stderr.String(), "deposed"))
	resp, err := c.Client().Get(context.Background(), "/populi/fence/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if bytes.Contains(kv.Value, []byte("ghost")) {
			t.Fatalf("the deposed leader's write reached etcd under %s", kv.Key)
		}
	}
}

// migrate --to-etcd then --from-etcd: a bbolt db moves into an etcd prefix,
// is served from it, and comes back into a bbolt file.
func TestMigrateToEtcdAndBack(t *testing.T) {
	c := startEtcd(t, 1)
	ep := strings.Join(c.Endpoints(), ",")
	dir := t.TempDir()
	db := filepath.Join(dir, "populi.db")
	s := startServer(t, db, nil, "--gossip-interval", "0")
	var d struct {
		MessageID uint64 `json:"message_id"`
	}
	if st, body := call(t, "POST", s.URL+"/v1/populi/a2a/deliver", "", deliverBody("7", "from-file", "k1"), &d); st != 200 {
		t.Fatalf("deliver: %d %s", st, body)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("serve exit %d", code)
	}

	if code, out := runBinary(t, nil, 30*time.Second, "migrate", "--to-etcd", "--db", db, "--etcd-endpoints", ep, "--etcd-prefix", "/populi/mig"); code != 0 {
		t.Fatalf("migrate --to-etcd: %d %s", code, out)
	}
	if code, out := runBinary(t, nil, 30*time.Second, "migrate", "--to-etcd", "--db", db, "--etcd-endpoints", ep, "--etcd-prefix", "/populi/mig"); code == 0 || !strings.Contains(out, "already holds") {
		t.Fatalf("second migrate --to-etcd into the same prefix: %d %s", code, out)
	}
	h := startHA(t, c, "/populi/mig", "h")
	leaderOf(t, h)
	msgs := listAll(t, h.URL, "", "7")
	if len(msgs) != 1 || msgs[0].ID != d.MessageID || msgs[0].Payload != "from-file" {
		t.Fatalf("served from etcd after migration: %+v", msgs)
	}
	if st, body := call(t, "POST", h.URL+"/v1/populi/a2a/deliver", "", deliverBody("7", "on-etcd", "k2"), nil); st != 200 {
		t.Fatalf("deliver on etcd: %d %s", st, body)
	}
	h.signal(syscall.SIGTERM)
	if code := h.wait(15 * time.Second); code != 0 {
		t.Fatalf("etcd serve exit %d:\n%s", code, h.stderr)
	}

	back := filepath.Join(dir, "back.db")
	if code, out := runBinary(t, nil, 30*time.Second, "migrate", "--from-etcd", "--db", back, "--etcd-endpoints", ep, "--etcd-prefix", "/populi/mig"); code != 0 {
		t.Fatalf("migrate --from-etcd: %d %s", code, out)
	}
	f := startServer(t, back, nil, "--gossip-interval", "0")
	got := map[string]bool{}
	for _, m := range listAll(t, f.URL, "", "7") {
		got[m.Payload] = true
	}
	if !got["from-file"] || !got["on-etcd"] || len(got) != 2 {
		t.Fatalf("bbolt file from etcd holds %v", got)
	}
}

// TestHAFailoverTimes measures failover (SIGKILL of the leader to the first
// acknowledged write on the new leader) over POPULI_HA_FAILOVERS rounds;
// skipped unless that is set (the README's figures come from it).
func TestHAFailoverTimes(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("POPULI_HA_FAILOVERS"))
	if rounds <= 0 {
		t.Skip("set POPULI_HA_FAILOVERS=N to measure N failovers")
	}
	c := startEtcd(t, 3)
	const prefix = "/populi/times"
	servers := []*server{startHA(t, c, prefix, "s0"), startHA(t, c, prefix, "s1")}
	var times []time.Duration
	for r := range rounds {
		leader, _ := leaderOf(t, servers...)
		w := &writer{urls: []string{servers[0].URL, servers[1].URL}, cur: leader.URL}
		if _, err := w.deliver(deliverBody("7", "x", ""), 10*time.Second); err != nil {
			t.Fatal(err)
		}
		leader.signal(syscall.SIGKILL)
		killed := time.Now()
		<-leader.done
		if _, err := w.deliver(deliverBody("7", "x", ""), 30*time.Second); err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		times = append(times, time.Since(killed))
		for i, s := range servers {
			if s == leader {
				servers[i] = startHA(t, c, prefix, fmt.Sprintf("s%d-%d", i, r))
			}
		}
	}
	slices.Sort(times)
	t.Logf("%d failovers, lease TTL %s: p50 %s, max %s, min %s", rounds, haTTL,
		times[len(times)/2].Round(time.Millisecond), times[len(times)-1].Round(time.Millisecond), times[0].Round(time.Millisecond))
}
