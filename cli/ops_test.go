package cli

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"populi-db/store"
	"populi-db/wire"
)

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// seedDB writes a stopped db with n pending rows for receiver 2 and a node.
func seedDB(t *testing.T, path string, n int) {
	t.Helper()
	st, err := store.Open(store.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Join(wire.NodeRecord{ID: "seed-node", Version: "1"}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if _, err := st.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "2", MessageType: "t", Payload: fmt.Sprintf("row %d %s", i, strings.Repeat("x", 300))}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestBackupDuringWritesThenRestoreAndServe takes a backup from a running
// server while four writers deliver, and shows the backup passes check,
// holds every write acknowledged before it began, restores over a stopped
// db (not a held one) and serves.
func TestBackupDuringWritesThenRestoreAndServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{EnvAdminToken: "adm-secret", EnvWorkerToken: "wrk-secret", EnvSubmitterToken: "sub-secret"}
	srv := startServer(t, filepath.Join(dir, "live.db"), env)
	if st, body := call(t, "POST", srv.URL+"/v1/populi/join", "wrk-secret", nodeRecord("gpu-1"), nil); st != 200 {
		t.Fatalf("join: %d %s", st, body)
	}
	if st, _ := call(t, "GET", srv.URL+"/v1/populi/admin/backup", "wrk-secret", nil, nil); st != 403 {
		t.Errorf("backup with a worker token = %d, want 403", st)
	}

	var mu sync.Mutex
	acked := map[uint64]string{} // id → payload, acknowledged (200) deliveries
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				payload := fmt.Sprintf("w%d-%d", g, i)
				var resp wire.DeliverResponse
				st, _, err := tryCall("POST", srv.URL+"/v1/populi/a2a/deliver", "sub-secret", deliverBody("7", payload, ""), &resp)
				if err != nil || st != 200 {
					continue
				}
				mu.Lock()
				acked[resp.MessageID] = payload
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond) // a bounded poll for progress, not a wait for expiry
	}
	mu.Lock()
	before := make(map[uint64]string, len(acked))
	for id, p := range acked {
		before[id] = p
	}
	mu.Unlock()
	bk := filepath.Join(dir, "backup.db")
	out, err := runApp(t, "backup", "--url", srv.URL, "--token", "adm-secret", "--out", bk)
	close(stop)
	wg.Wait()
	if err != nil || !strings.Contains(out, "backup written to "+bk) || !strings.Contains(out, "nodes 1") {
		t.Fatalf("backup --url: %q, %v", out, err)
	}
	if out, err := runApp(t, "check", "--db", bk); err != nil || out != "ok "+bk+"\n" {
		t.Fatalf("check of the backup: %q, %v", out, err)
	}
	srv.signal(syscall.SIGTERM)
	srv.wait(15 * time.Second)

	// Restore over a db a server holds: refused, nothing changed.
	target := filepath.Join(dir, "target.db")
	seedDB(t, target, 1)
	held := startServer(t, target, nil)
	if out, err := runApp(t, "restore", "--from", bk, "--db", target); err == nil || !strings.Contains(err.Error(), "held by a running populi-db") {
		t.Errorf("restore over a held db: %q, %v", out, err)
	}
	held.signal(syscall.SIGTERM)
	held.wait(15 * time.Second)
	old := fileSum(t, target)
	out, err = runApp(t, "restore", "--from", bk, "--db", target)
	if err != nil || !strings.Contains(out, "kept as "+target+".bak") {
		t.Fatalf("restore: %q, %v", out, err)
	}
	if fileSum(t, target+".bak") != old {
		t.Error("the replaced db was not kept as .bak")
	}

	// Serve the restored db: every write acknowledged before the backup began is there.
	restored := startServer(t, target, nil)
	got := map[uint64]string{}
	for _, m := range listAll(t, restored.URL, "", "7") {
		got[m.ID] = m.Payload
	}
	missing := 0
	for id, p := range before {
		if got[id] != p {
			missing++
		}
	}
	if missing > 0 || len(before) < 200 {
		t.Errorf("%d of %d writes acknowledged before the backup are missing from it", missing, len(before))
	}
	if ids := listNodeIDs(t, restored.URL, ""); !ids["gpu-1"] {
		t.Errorf("restored nodes: %v", ids)
	}
	out, err = runApp(t, "stats", "--url", restored.URL, "-o", "json")
	var st wire.DBStats
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.Buckets["a2a_rows"] < len(before) || st.Path != target {
		t.Errorf("stats --url: %q, %v", out, err)
	}
	t.Logf("backup during writes: %d writes acknowledged before it began, %d rows in it", len(before), len(got))
}

func TestCompactKeepsEverything(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, out := filepath.Join(dir, "p.db"), filepath.Join(dir, "compact.db")
	seedDB(t, db, 3000)
	stats := func(p string) wire.DBStats {
		t.Helper()
		o, err := runApp(t, "stats", "--db", p, "-o", "json")
		var st wire.DBStats
		if err != nil || json.Unmarshal([]byte(o), &st) != nil {
			t.Fatalf("stats %s: %q, %v", p, o, err)
		}
		return st
	}
	before := stats(db)
	msg, err := runApp(t, "compact", "--db", db, "--out", out)
	if err != nil || !strings.Contains(msg, "compacted "+db) || !strings.Contains(msg, "check ok") {
		t.Fatalf("compact: %q, %v", msg, err)
	}
	after := stats(out)
	if fmt.Sprint(before.Buckets, before.States, before.OldestPending) != fmt.Sprint(after.Buckets, after.States, after.OldestPending) {
		t.Errorf("compacted file holds %v %v, the source %v %v", after.Buckets, after.States, before.Buckets, before.States)
	}
	if _, err := runApp(t, "compact", "--db", db, "--out", out); err == nil {
		t.Error("compact over an existing file succeeded")
	}
	srv := startServer(t, out, nil)
	if n := len(listAll(t, srv.URL, "", "2")); n != 3000 {
		t.Errorf("serving the compacted file lists %d rows, want 3000", n)
	}
	t.Log(msg)
}

func TestCheckReportsDamageAndServeRefusesIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	seedDB(t, db, 2000)
	b, _ := os.ReadFile(db)
	for p := 4; p <= 6; p++ { // the report: 16 bytes at the start of pages 4-6
		copy(b[p*4096:], []byte("0123456789abcdef"))
	}
	if err := os.WriteFile(db, b, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := fileSum(t, db)
	out, err := runApp(t, "check", "--db", db)
	if err == nil || !strings.Contains(out, "file: page ") || !strings.Contains(out, "the page header is damaged") {
		t.Errorf("check of a damaged db: %q, %v", out, err)
	}
	out, _ = runApp(t, "check", "--db", db, "-o", "json")
	var rep struct {
		OK       bool            `json:"ok"`
		Findings []store.Finding `json:"findings"`
	}
	if json.Unmarshal([]byte(out), &rep) != nil || rep.OK || len(rep.Findings) == 0 || rep.Findings[0].Kind != "file" {
		t.Errorf("check -o json: %s", out)
	}
	if fileSum(t, db) != sum {
		t.Error("check changed the damaged file")
	}
	code, out := runBinary(t, nil, 30*time.Second, "serve", "--db", db, "--bind", "127.0.0.1:0")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if code != 1 || !strings.HasPrefix(last, "populi-db: ") || !strings.Contains(last, db+" is damaged") ||
		!strings.Contains(last, "populi-db check") || !strings.Contains(last, "restore") || strings.Contains(out, "goroutine") || strings.Contains(out, "panic") {
		t.Errorf("serve of a damaged db: exit %d\n%s", code, out)
	}
	if fileSum(t, db) != sum {
		t.Error("serve changed the damaged file")
	}
}

func TestMigrateCommand(t *testing.T) {
	t.Parallel()
	fx := filepath.Join("..", "migrate", "testdata", "basic")
	db := filepath.Join(t.TempDir(), "p.db")
	args := []string{"migrate", "--db", db,
		"--registry", filepath.Join(fx, "local-registry.json"), "--a2a-store", filepath.Join(fx, "a2a-store.json"),
		"--exec-lease-store", filepath.Join(fx, "exec-lease-store.json"), "--replay-state", filepath.Join(fx, "mesh-replay-state.json")}
	st, err := store.Open(store.Config{Path: db})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := runApp(t, args...); err == nil || !strings.Contains(err.Error(), "held by a running populi-db server") {
		t.Errorf("migrate into a held db: %v", err)
	}
	st.Close()
	out, err := runApp(t, args...)
	if err != nil || !strings.Contains(out, "migrated into "+db) || !strings.Contains(out, "a2a rows          4") || !strings.Contains(out, "committed 10 record(s)") {
		t.Errorf("migrate:\n%s\n%v", out, err)
	}
	out, err = runApp(t, append(args, "-o", "json")...)
	var rep struct {
		Result store.ImportResult `json:"result"`
	}
	if err != nil || json.Unmarshal([]byte(out), &rep) != nil || rep.Result.Committed || rep.Result.Rows.Present != 4 {
		t.Errorf("second migrate -o json: %s %v", out, err)
	}
	if out, err := runApp(t, "check", "--db", db); err != nil {
		t.Errorf("check after migrate: %q %v", out, err)
	}
}

func TestBackupAndStatsFromStoppedDB(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db, bk := filepath.Join(dir, "p.db"), filepath.Join(dir, "b.db")
	seedDB(t, db, 25)
	sum := fileSum(t, db)
	out, err := runApp(t, "backup", "--db", db, "--out", bk)
	if err != nil || !strings.Contains(out, "backup written to "+bk) || !strings.Contains(out, "nodes 1, a2a rows 25 (ready 25)") {
		t.Errorf("backup --db: %q, %v", out, err)
	}
	if fileSum(t, db) != sum {
		t.Error("backup --db changed the source file")
	}
	out, err = runApp(t, "stats", "--db", bk)
	if err != nil || !strings.Contains(out, "ready 25, leased 0") || !strings.Contains(out, "message 1 for receiver 2 (ready)") || !strings.Contains(out, "bucket a2a_rows") {
		t.Errorf("stats --db:\n%s%v", out, err)
	}
	if _, err := runApp(t, "stats", "--db", filepath.Join(dir, "missing.db")); err == nil {
		t.Error("stats of a missing file: no error")
	}
}
