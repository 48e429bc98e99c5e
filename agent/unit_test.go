package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"populi-db/internal/clock"
	"populi-db/probe"
	"populi-db/wire"
)

// seq returns the values in order, then repeats the last one.
func seq(v ...float64) func() float64 {
	i := 0
	return func() float64 {
		x := v[min(i, len(v)-1)]
		i++
		return x
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 10 * time.Second, Cap: 5 * time.Minute, Floor: time.Second, Rand: seq(0.5)}
	var ceil []time.Duration
	for n := 1; n <= 7; n++ {
		ceil = append(ceil, b.Ceiling(n))
	}
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i := range want {
		if ceil[i] != want[i] {
			t.Fatalf("ceilings = %v, want %v", ceil, want)
		}
	}
	if b.Ceiling(0) != 10*time.Second || b.Ceiling(1000) != 5*time.Minute {
		t.Errorf("ceiling(0)=%v ceiling(1000)=%v", b.Ceiling(0), b.Ceiling(1000))
	}
	// Full jitter: the draw scales the ceiling.
	for _, c := range []struct {
		r    float64
		n    int
		want time.Duration
	}{
		{0.5, 1, 5 * time.Second}, {0.5, 3, 20 * time.Second}, {0.999, 2, 19980 * time.Millisecond},
		{0.25, 10, 75 * time.Second},
		{0, 1, time.Second},       // floor: never a tight loop
		{0.01, 1, time.Second},    // 100 ms raised to the floor
		{0.2, 1, 2 * time.Second}, // above the floor: kept
	} {
		b.Rand = seq(c.r)
		if got := b.Delay(c.n); got != c.want {
			t.Errorf("Delay(%d) with rand %v = %v, want %v", c.n, c.r, got, c.want)
		}
	}
	// The floor never exceeds the ceiling.
	tiny := Backoff{Base: 100 * time.Millisecond, Cap: time.Second, Floor: time.Second, Rand: seq(0)}
	if got := tiny.Delay(1); got != 100*time.Millisecond {
		t.Errorf("floor above ceiling: %v", got)
	}
	// The default random source stays inside [floor, ceiling).
	b.Rand = nil
	for i := 0; i < 200; i++ {
		if d := b.Delay(4); d < time.Second || d >= 80*time.Second {
			t.Fatalf("Delay(4) = %v out of [1s, 80s)", d)
		}
	}
}

func TestNormalizeControlURL(t *testing.T) {
	for in, want := range map[string]string{
		"populi-ctrl:9847/":          "http://populi-ctrl:9847",
		"  http://127.0.0.1:9847  ":  "http://127.0.0.1:9847",
		"HTTPS://ctrl.example//":     "HTTPS://ctrl.example",
		"http://0.0.0.0:9847":        "",
		"http://[::]:9847":           "",
		"0.0.0.0:9847":               "",
		"":                           "",
		"   ":                        "",
		"http://user:pw@[::1]:9847/": "http://user:pw@[::1]:9847",
	} {
		if got := NormalizeControlURL(in); got != want {
			t.Errorf("NormalizeControlURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseEnv(t *testing.T) {
	e := ParseEnv(envMap(nil))
	if e.ControlURL != "" || !e.JoinEnabled || e.Interval != 30*time.Second || e.Timeout != 15*time.Second ||
		e.Token != "" || e.PublishRegistry || len(e.Warnings) != 0 {
		t.Fatalf("defaults = %+v", e)
	}
	e = ParseEnv(envMap(map[string]string{
		EnvControlURL: "http://0.0.0.0:1", EnvControlAddr: "ctrl:9847", // bind-all falls through
		EnvHTTPJoin: " FALSE ", EnvHeartbeatSecs: " 7 ", EnvHTTPTimeoutMs: "2500",
		EnvMeshToken: "mesh", EnvAdminToken: "admin", EnvWorkerToken: "  ",
		EnvEnabled: "True", EnvRegistryPath: " /x/r.json", EnvNodeID: " n1 ",
	}))
	if e.ControlURL != "http://ctrl:9847" || e.JoinEnabled || e.Interval != 7*time.Second || e.Timeout != 2500*time.Millisecond ||
		e.Token != "mesh" || !e.PublishRegistry || e.RegistryPath != " /x/r.json" || e.NodeID != "n1" {
		t.Fatalf("parsed = %+v", e)
	}
	e = ParseEnv(envMap(map[string]string{EnvWorkerToken: "w", EnvMeshToken: "m", EnvHeartbeatSecs: "x", EnvHTTPTimeoutMs: "499"}))
	if e.Token != "w" || e.Interval != 30*time.Second || e.Timeout != 15*time.Second || len(e.Warnings) != 2 {
		t.Fatalf("precedence/fallbacks = %+v", e)
	}
	if e := ParseEnv(envMap(map[string]string{EnvHeartbeatSecs: "0"})); e.Interval != 0 {
		t.Errorf("0 = join only, got %v", e.Interval)
	}

	r, warn := ParseRecordEnv(envMap(map[string]string{EnvScopeID: " s ", EnvVisibility: "hybrid", EnvDonationPolicy: "{bad"}))
	if r.ScopeID != "s" || r.Visibility != "hybrid" || r.DonationPolicy != nil || len(warn) != 1 {
		t.Fatalf("record env = %+v %v", r, warn)
	}
	pol := `{"slots":[{"task_kind":"embed","max_concurrent":1,"weight_pct":100}],"nsfw_allowed":false,"max_job_duration_secs":60,"public_mesh_opt_in":true,"min_priority":0}`
	if r, warn := ParseRecordEnv(envMap(map[string]string{EnvDonationPolicy: pol})); r.DonationPolicy == nil || !r.DonationPolicy.PublicMeshOptIn || len(warn) != 0 {
		t.Fatalf("donation policy = %+v %v", r.DonationPolicy, warn)
	}
}

func TestStateNodeIDAndCredentials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	st, err := OpenState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode %v", fi.Mode().Perm())
	}
	calls := 0
	gen := func() string { calls++; return NewNodeID(time.Unix(0, 0x1234)) }
	id1, err := st.NodeID(gen)
	if err != nil || id1 != "local-1234" {
		t.Fatalf("first id = %q, %v", id1, err)
	}
	st2, _ := OpenState(dir) // a restart
	if id2, err := st2.NodeID(gen); err != nil || id2 != id1 || calls != 1 {
		t.Fatalf("restart id = %q (%v), generated %d times", id2, err, calls)
	}

	if _, ok, err := st.Credentials(); ok || err != nil {
		t.Fatalf("no credentials yet: ok=%v err=%v", ok, err)
	}
	scope := "cluster-a"
	if err := st.SaveCredentials(Credentials{MeshToken: "secret", ScopeID: &scope}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, credentialsFile)
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %v, want 0600", fi.Mode().Perm())
	}
	_ = os.Chmod(p, 0o644)
	c, ok, err := st.Credentials()
	if err != nil || !ok || c.MeshToken != "secret" || wire.Str(c.ScopeID) != "cluster-a" {
		t.Fatalf("credentials = %+v %v %v", c, ok, err)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Errorf("loose credentials not tightened: %v", fi.Mode().Perm())
	}
	_ = os.WriteFile(p, []byte("{}"), 0o600)
	if _, _, err := st.Credentials(); err == nil || !strings.Contains(err.Error(), "delete it") {
		t.Errorf("corrupt credentials: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("state dir holds %d entries (temp files left?)", len(ents))
	}
}

func TestPublishRegistry(t *testing.T) {
	for in, want := range map[string]string{
		"/a/local-registry.json": "/a/local-registry.json.tmp",
		"/a/reg.txt":             "/a/reg.json.tmp",
		"/a/reg":                 "/a/reg.json.tmp",
		"/a.d/reg":               "/a.d/reg.json.tmp",
	} {
		if got := RegistryTempPath(in); got != want {
			t.Errorf("RegistryTempPath(%q) = %q, want %q", in, got, want)
		}
	}
	path := filepath.Join(t.TempDir(), "deep", "local-registry.json")
	now := time.UnixMilli(1_767_225_600_000)
	if err := PublishRegistry(path, wire.NodeRecord{ID: "a", Version: "1"}, now); err != nil {
		t.Fatal(err)
	}
	if err := PublishRegistry(path, wire.NodeRecord{ID: "b", Version: "1"}, now); err != nil {
		t.Fatal(err)
	}
	if err := PublishRegistry(path, wire.NodeRecord{ID: "a", Version: "2"}, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "{\n  \"schema_version\": 1,\n  \"nodes\": [\n") {
		t.Errorf("not pretty-printed with 2 spaces:\n%s", b)
	}
	var reg wire.Registry
	if err := json.Unmarshal(b, &reg); err != nil {
		t.Fatal(err)
	}
	if reg.SchemaVersion != 1 || len(reg.Nodes) != 2 || reg.Nodes[0].ID != "a" || reg.Nodes[0].Version != "2" ||
		reg.Nodes[0].LastSeenUnixMs != 1_767_225_601_000 || reg.Nodes[1].ID != "b" {
		t.Fatalf("registry = %s", b)
	}
	if _, err := os.Stat(RegistryTempPath(path)); !os.IsNotExist(err) {
		t.Errorf("temp file left behind: %v", err)
	}
	_ = os.WriteFile(path, []byte("not json"), 0o644)
	if err := PublishRegistry(path, wire.NodeRecord{ID: "a"}, now); err == nil {
		t.Error("publishing over a corrupt registry file succeeded (it would drop other nodes)")
	}
}

func TestBuilder(t *testing.T) {
	clk := clock.NewFake(time.UnixMilli(1_767_225_600_000))
	fake := &probe.Fake{DriverVersion: "550.54.15", CUDAVersion: 12040, Devices: []probe.FakeDevice{{Memory: probe.Memory{Total: 80 << 30}}}}
	meminfo := filepath.Join(t.TempDir(), "meminfo")
	_ = os.WriteFile(meminfo, []byte("MemTotal:       1000 kB\nMemAvailable:    2048 kB\n"), 0o644)
	b := &Builder{
		NodeID: "n1", Version: "v9", Clock: clk, NVML: fake, ProbeTTL: 5 * time.Minute, MemInfoPath: meminfo,
		Env:    RecordEnv{ScopeID: "cluster-a", Visibility: "hybrid"},
		Getenv: envMap(map[string]string{"VOX_MESH_LABELS": "pool=train, ,region=eu", "VOX_MESH_ADVERTISE_GPU": "1", "HOSTNAME": "h1"}),
	}
	r := b.Build()
	if r.ID != "n1" || r.Version != "v9" || wire.Str(r.ScopeID) != "cluster-a" || wire.Str(r.Visibility) != "hybrid" ||
		!r.Capabilities.GPUCuda || strings.Join(r.Capabilities.Labels, ",") != "pool=train,region=eu" ||
		wire.Str(r.Capabilities.Hostname) != "h1" || r.LastSeenUnixMs != 1_767_225_600_000 ||
		r.MemoryFreeBytes == nil || *r.MemoryFreeBytes != 2048*1024 {
		t.Fatalf("record = %+v", r)
	}
	if r.CPUUsagePct != nil {
		t.Errorf("cpu_usage_pct on the first build: %v", *r.CPUUsagePct)
	}
	if r.GPUTotalCount == nil || *r.GPUTotalCount != 1 || *r.Capabilities.MinVRAMMB != 81920 || wire.Str(r.CUDADriverVersion) != "12.4" {
		t.Fatalf("gpu fields = %+v", r)
	}
	// Cached: a second device is not seen until the TTL has passed.
	fake.Devices = append(fake.Devices, probe.FakeDevice{Memory: probe.Memory{Total: 24 << 30}})
	clk.Advance(5*time.Minute - time.Millisecond) // just before the TTL
	if r := b.Build(); *r.GPUTotalCount != 1 || fake.InitCalls != 1 {
		t.Fatalf("probe not cached: total %d, init calls %d", *r.GPUTotalCount, fake.InitCalls)
	}
	clk.Advance(time.Millisecond) // at the TTL: probe again
	if r := b.Build(); *r.GPUTotalCount != 2 || *r.Capabilities.MinVRAMMB != 24576 || fake.InitCalls != 2 {
		t.Fatalf("probe not refreshed: total %d, init calls %d", *r.GPUTotalCount, fake.InitCalls)
	}

	// NVML unavailable while CUDA is advertised: no counts, a probe failure.
	b2 := &Builder{NodeID: "n2", Clock: clk, NVML: &probe.Fake{InitErr: probe.ErrFake},
		Getenv: envMap(map[string]string{"VOX_MESH_ADVERTISE_GPU": "true"}), MemInfoPath: filepath.Join(t.TempDir(), "none")}
	r = b2.Build()
	if r.GPUTotalCount != nil || r.GPUInventorySource != nil || r.ProbeFailures == nil || (*r.ProbeFailures)[0] != "nvml" ||
		wire.Str(r.GPUReadinessReason) != "nvml_unavailable" || r.MemoryFreeBytes != nil {
		t.Fatalf("unavailable record = %+v", r)
	}
}

func TestBuilderCPUUsage(t *testing.T) {
	stat := filepath.Join(t.TempDir(), "stat")
	write := func(line string) {
		if err := os.WriteFile(stat, []byte(line+"\ncpu0 1 2 3 4\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := &Builder{NodeID: "n", StatPath: stat, MemInfoPath: filepath.Join(t.TempDir(), "none"), Getenv: envMap(nil)}
	write("cpu  100 0 100 700 100 0 0 0 0 0") // busy 200 of 1000
	if r := b.Build(); r.CPUUsagePct != nil {
		t.Fatalf("first build: %v", *r.CPUUsagePct)
	}
	write("cpu  250 0 150 1000 200 0 0 0 0 0") // +200 busy of +600
	r := b.Build()
	if r.CPUUsagePct == nil || *r.CPUUsagePct < 33.3 || *r.CPUUsagePct > 33.4 {
		t.Fatalf("cpu_usage_pct = %v, want 33.3", r.CPUUsagePct)
	}
	if r := b.Build(); r.CPUUsagePct != nil { // no time passed: no figure
		t.Fatalf("unchanged counters: %v", *r.CPUUsagePct)
	}
	write("garbage")
	if r := b.Build(); r.CPUUsagePct != nil {
		t.Fatalf("unreadable stat: %v", *r.CPUUsagePct)
	}
}
