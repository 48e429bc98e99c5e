package cli

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestServeHealthAndStartupLog(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "sub", "dir", "populi.db")
	s := startServer(t, db, nil)
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL %q, want http://127.0.0.1:<port>", s.URL)
	}
	st, body := call(t, "GET", s.URL+"/health", "", nil, nil)
	if st != 200 || body != "ok\n" {
		t.Errorf("GET /health = %d %q, want 200 \"ok\\n\"", st, body)
	}
	fi, err := os.Stat(filepath.Dir(db))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("db directory mode %v, want 0700", fi.Mode().Perm())
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, s.stderr)
	}
	logs := s.stderr.String()
	for _, want := range []string{"auth=open", "db=" + db, "open mode"} {
		if !strings.Contains(logs, want) {
			t.Errorf("startup log lacks %q:\n%s", want, logs)
		}
	}
}

func TestServeRefusesOpenModeOnNonLoopback(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "p.db")
	code, out := runBinary(t, nil, 15*time.Second, "serve", "--db", db, "--bind", "0.0.0.0:0")
	if code == 0 {
		t.Fatalf("open mode on 0.0.0.0 exited 0; output:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 1 {
		t.Errorf("want one line, got %d:\n%s", len(lines), out)
	}
	for _, want := range []string{"0.0.0.0:0", EnvMeshToken, EnvJWTSecret, "--allow-open"} {
		if !strings.Contains(out, want) {
			t.Errorf("refusal does not mention %s: %s", want, out)
		}
	}
	if _, err := os.Stat(db); err == nil {
		t.Error("the refused server created its db file")
	}
}

func TestServeNonLoopbackAllowedWithSecretOrAllowOpen(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env  map[string]string
		args []string
	}{
		"mesh token": {map[string]string{EnvMeshToken: "tok-nonloop"}, nil},
		"allow-open": {nil, []string{"--allow-open"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--bind", "0.0.0.0:0"}, tc.args...)
			s := startServer(t, filepath.Join(t.TempDir(), "p.db"), tc.env, args...)
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.URL, "http://"))
			if st, _ := call(t, "GET", "http://127.0.0.1:"+port+"/health", "", nil, nil); st != 200 {
				t.Errorf("health = %d", st)
			}
			s.signal(syscall.SIGTERM)
			if code := s.wait(15 * time.Second); code != 0 {
				t.Errorf("exit %d; stderr:\n%s", code, s.stderr)
			}
		})
	}
}

func TestServeSecondServerOnSameDBExits(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "p.db")
	first := startServer(t, db, nil)
	start := time.Now()
	code, out := runBinary(t, nil, 20*time.Second, "serve", "--db", db, "--bind", "127.0.0.1:0")
	if code == 0 {
		t.Fatalf("second server exited 0; output:\n%s", out)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("second server took %s to give up", d)
	}
	if !strings.Contains(out, db) || !strings.Contains(out, "locked") {
		t.Errorf("message does not name the locked file %s:\n%s", db, out)
	}
	if strings.Contains(out, "listening on") {
		t.Errorf("second server claimed to listen:\n%s", out)
	}
	if st, _ := call(t, "GET", first.URL+"/health", "", nil, nil); st != 200 {
		t.Errorf("first server unhealthy after the second one's attempt: %d", st)
	}
}

func TestServeSIGTERMGracefulAndReopen(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "p.db")
	env := map[string]string{EnvMeshToken: "graceful-token"}
	s := startServer(t, db, env)
	if st, body := call(t, "POST", s.URL+"/v1/populi/join", "graceful-token", nodeRecord("survivor"), nil); st != 200 {
		t.Fatalf("join: %d %s", st, body)
	}
	var dr struct {
		MessageID uint64 `json:"message_id"`
	}
	if st, body := call(t, "POST", s.URL+"/v1/populi/a2a/deliver", "graceful-token", deliverBody("5", "kept", "k1"), &dr); st != 200 {
		t.Fatalf("deliver: %d %s", st, body)
	}

	// A long-poll claim in flight must not hold shutdown up (api Drain).
	var wg sync.WaitGroup
	wg.Add(1)
	pollStatus := make(chan int, 1)
	go func() {
		defer wg.Done()
		st, _, _ := tryCall("POST", s.URL+"/v1/populi/a2a/inbox", "graceful-token",
			map[string]any{"receiver_agent_id": "6", "claimer_node_id": "survivor", "wait_ms": 25000}, nil)
		pollStatus <- st
	}()
	time.Sleep(200 * time.Millisecond) // let the poll reach the server; a late poll returns at once anyway

	t0 := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("SIGTERM exit %d; stderr:\n%s", code, s.stderr)
	}
	if d := time.Since(t0); d > 8*time.Second {
		t.Errorf("graceful shutdown took %s (long poll not drained?)", d)
	}
	wg.Wait()
	if st := <-pollStatus; st != 200 && st != 0 {
		t.Errorf("drained long poll answered %d, want 200 (empty)", st)
	}
	if !strings.Contains(s.stderr.String(), "stopped cleanly") {
		t.Errorf("no clean-stop log line:\n%s", s.stderr)
	}

	if code, out := runBinary(t, nil, 15*time.Second, "check", "--db", db); code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("check after shutdown: %d %s", code, out)
	}

	s2 := startServer(t, db, env)
	if !listNodeIDs(t, s2.URL, "graceful-token")["survivor"] {
		t.Error("node joined before shutdown is gone after reopen")
	}
	rows := listAll(t, s2.URL, "graceful-token", "5")
	if len(rows) != 1 || rows[0].ID != dr.MessageID || rows[0].Payload != "kept" {
		t.Errorf("rows after reopen = %+v, want message %d", rows, dr.MessageID)
	}
	s2.signal(syscall.SIGINT)
	if code := s2.wait(15 * time.Second); code != 0 {
		t.Errorf("SIGINT exit %d; stderr:\n%s", code, s2.stderr)
	}
}

// TestServeKill9 is issue 2's crash test: every write the server confirmed
// before a SIGKILL is present after a restart on the same file.
func TestServeKill9(t *testing.T) {
	t.Parallel()
	const nJoins, nDeliveries = 100, 100
	const token = "kill9-token"
	env := map[string]string{EnvMeshToken: token}
	db := filepath.Join(t.TempDir(), "p.db")
	s := startServer(t, db, env)

	var mu sync.Mutex
	joined := map[string]bool{}
	delivered := map[uint64]string{} // message id → payload
	keyToID := map[string]uint64{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range nJoins + nDeliveries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if i < nJoins {
				id := fmt.Sprintf("k9-node-%03d", i)
				st, _, err := tryCall("POST", s.URL+"/v1/populi/join", token, nodeRecord(id), nil)
				if err == nil && st == 200 {
					mu.Lock()
					joined[id] = true
					mu.Unlock()
				}
				return
			}
			key := fmt.Sprintf("k9-key-%03d", i)
			payload := fmt.Sprintf("k9-payload-%03d", i)
			var dr struct {
				MessageID uint64 `json:"message_id"`
			}
			st, _, err := tryCall("POST", s.URL+"/v1/populi/a2a/deliver", token, deliverBody("77", payload, key), &dr)
			if err == nil && st == 200 {
				mu.Lock()
				delivered[dr.MessageID] = payload
				keyToID[key] = dr.MessageID
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(joined) != nJoins || len(delivered) != nDeliveries {
		t.Fatalf("confirmed %d joins, %d deliveries before the kill; want %d, %d", len(joined), len(delivered), nJoins, nDeliveries)
	}
	s.signal(syscall.SIGKILL)
	s.wait(10 * time.Second)

	s2 := startServer(t, db, env)
	nodes := listNodeIDs(t, s2.URL, token)
	for id := range joined {
		if !nodes[id] {
			t.Errorf("confirmed join %s lost after kill -9", id)
		}
	}
	rows := listAll(t, s2.URL, token, "77")
	got := map[uint64]string{}
	var maxID uint64
	for _, r := range rows {
		got[r.ID] = r.Payload
		maxID = max(maxID, r.ID)
	}
	for id, payload := range delivered {
		if got[id] != payload {
			t.Errorf("confirmed delivery %d (%q) lost or changed after kill -9: %q", id, payload, got[id])
		}
	}
	if len(rows) != nDeliveries {
		t.Errorf("listing has %d rows, want %d", len(rows), nDeliveries)
	}
	// Idempotency keys of pending rows survive the crash.
	var dup struct {
		MessageID uint64 `json:"message_id"`
	}
	if st, body := call(t, "POST", s2.URL+"/v1/populi/a2a/deliver", token, deliverBody("77", "again", "k9-key-150"), &dup); st != 200 || dup.MessageID != keyToID["k9-key-150"] {
		t.Errorf("redeliver of k9-key-150 = %d %s id %d, want id %d", st, body, dup.MessageID, keyToID["k9-key-150"])
	}
	// Ids are never reused.
	var fresh struct {
		MessageID uint64 `json:"message_id"`
	}
	if st, body := call(t, "POST", s2.URL+"/v1/populi/a2a/deliver", token, deliverBody("77", "new", ""), &fresh); st != 200 || fresh.MessageID <= maxID {
		t.Errorf("new delivery = %d %s id %d, want an id above %d", st, body, fresh.MessageID, maxID)
	}
	s2.signal(syscall.SIGTERM)
	if code := s2.wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, s2.stderr)
	}
	if code, out := runBinary(t, nil, 15*time.Second, "check", "--db", db); code != 0 {
		t.Errorf("check after kill -9 and restart: %d %s", code, out)
	}
}

// TestServeNeverLogsSecrets runs a server with every secret configured,
// exercises auth paths (right and wrong bearers, bootstrap), and greps all of
// its output for each secret value.
func TestServeNeverLogsSecrets(t *testing.T) {
	t.Parallel()
	secrets := map[string]string{
		EnvMeshToken:      "mesh-5ecret-aaaaaaaaaaaa",
		EnvWorkerToken:    "worker-5ecret-bbbbbbbbbb",
		EnvSubmitterToken: "submitter-5ecret-cccccc",
		EnvAdminToken:     "admin-5ecret-dddddddddd",
		EnvJWTSecret:      "jwt-5ecret-eeeeeeeeeeee",
		EnvBootstrapToken: "boot-5ecret-ffffffffff",
	}
	env := map[string]string{EnvScopeID: "scope-log-test"}
	for k, v := range secrets {
		env[k] = v
	}
	db := filepath.Join(t.TempDir(), "p.db")
	s := startServer(t, db, env, "--log-level", "debug")
	for _, tok := range []string{secrets[EnvMeshToken], secrets[EnvWorkerToken], secrets[EnvSubmitterToken], secrets[EnvAdminToken], "wrong-" + secrets[EnvMeshToken], "a.b.c"} {
		tryCall("GET", s.URL+"/v1/populi/nodes", tok, nil, nil)
		tryCall("POST", s.URL+"/v1/populi/join", tok, nodeRecord("n1"), nil)
	}
	tryCall("POST", s.URL+"/v1/populi/bootstrap/exchange", "", map[string]string{"bootstrap_token": "wrong"}, nil)
	st, body, _ := tryCall("POST", s.URL+"/v1/populi/bootstrap/exchange", "", map[string]string{"bootstrap_token": secrets[EnvBootstrapToken]}, nil)
	if st != 200 || !strings.Contains(body, secrets[EnvMeshToken]) {
		t.Errorf("bootstrap exchange = %d (want 200 with the mesh token)", st)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
	out := s.stdout.String() + s.stderr.String()
	for name, v := range secrets {
		if strings.Contains(out, v) {
			t.Errorf("output contains the value of %s", name)
		}
	}
	for _, mode := range []string{"mesh-token", "worker-token", "submitter-token", "admin-token", "jwt-hs256"} {
		if !strings.Contains(out, mode) {
			t.Errorf("startup log does not name auth mode %s", mode)
		}
	}
}

func TestServeTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	s := startServer(t, filepath.Join(dir, "p.db"), nil, "--tls-cert", cert, "--tls-key", key)
	if !strings.HasPrefix(s.URL, "https://") {
		t.Fatalf("URL %q, want https://", s.URL)
	}
	if st, body := call(t, "GET", s.URL+"/health", "", nil, nil); st != 200 || body != "ok\n" {
		t.Errorf("GET /health over TLS = %d %q", st, body)
	}
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
	if code, out := runBinary(t, nil, 10*time.Second, "serve", "--db", filepath.Join(dir, "q.db"), "--bind", "127.0.0.1:0", "--tls-cert", cert); code == 0 || !strings.Contains(out, "--tls-key") {
		t.Errorf("--tls-cert alone = %d %s", code, out)
	}
}

func writeSelfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// TestServeHelpNamesEveryFlagAndVariable runs `serve --help` in process.
func TestServeHelpNamesEveryFlagAndVariable(t *testing.T) {
	t.Parallel()
	help, err := runApp(t, "serve", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range serveCommand().Flags {
		if !strings.Contains(help, "--"+f.Names()[0]) {
			t.Errorf("serve --help does not mention --%s", f.Names()[0])
		}
	}
	for _, d := range serveEnvDocs {
		if !strings.Contains(help, d.name) {
			t.Errorf("serve --help does not mention %s", d.name)
		}
	}
}

// TestServeSecondSignalExitsNow holds a request in flight (its body never
// completes), so graceful shutdown waits; a second SIGTERM must end the
// process at once with a non-zero status.
func TestServeSecondSignalExitsNow(t *testing.T) {
	t.Parallel()
	s := startServer(t, filepath.Join(t.TempDir(), "p.db"), nil, "--shutdown-timeout", "1m")
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/populi/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
	time.Sleep(200 * time.Millisecond) // let the handler start reading the body

	s.signal(syscall.SIGTERM)
	select {
	case <-s.done:
		t.Fatalf("server exited while a request was in flight; stderr:\n%s", s.stderr)
	case <-time.After(500 * time.Millisecond): // still draining, as it should
	}
	t0 := time.Now()
	s.signal(syscall.SIGTERM)
	if code := s.wait(5 * time.Second); code == 0 {
		t.Errorf("second signal: exit status 0, want non-zero")
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("second signal took %s to end the process", d)
	}
	if !strings.Contains(s.stderr.String(), "exiting now") {
		t.Errorf("no exit-now message:\n%s", s.stderr)
	}
}

// TestServeWarnsAboutSelfDefeatingSecrets: bootstrap without a mesh token
// (every exchange would answer 503) and a short JWT secret are named at
// startup.
func TestServeWarnsAboutSelfDefeatingSecrets(t *testing.T) {
	t.Parallel()
	s := startServer(t, filepath.Join(t.TempDir(), "populi.db"), map[string]string{
		EnvBootstrapToken: "boot-tok-value", EnvJWTSecret: "tiny-secret",
	})
	s.signal(syscall.SIGTERM)
	if code := s.wait(15 * time.Second); code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, s.stderr)
	}
	logs := s.stderr.String()
	for _, want := range []string{"VOX_MESH_TOKEN is not set", "VOX_MESH_JWT_HMAC_SECRET is 11 bytes"} {
		if !strings.Contains(logs, want) {
			t.Errorf("startup log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "boot-tok-value") || strings.Contains(logs, "tiny-secret") {
		t.Errorf("startup log leaks a secret:\n%s", logs)
	}
}
