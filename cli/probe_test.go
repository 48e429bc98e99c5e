package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"populi-db/agent"
	"populi-db/probe"
	"populi-db/wire"
)

// With fake NVML: the record has the probed counts and the table lists each
// device's telemetry; a metric NVML could not read shows as "-".
func TestWriteProbeWithGPUs(t *testing.T) {
	t.Parallel()
	fake := &probe.Fake{DriverVersion: "550.54.15", CUDAVersion: 12040, Devices: []probe.FakeDevice{
		{Memory: probe.Memory{Total: 80 << 30, Free: 70 << 30}, Name: "NVIDIA H100 80GB HBM3", UtilizationPct: 12, TemperatureC: 40, PowerMilliwatts: 71250},
		{Memory: probe.Memory{Total: 80 << 30}, TelemetryErr: probe.ErrFake},
	}}
	b := &agent.Builder{NodeID: "n1", Version: "v", NVML: fake, Getenv: func(string) string { return "" }}
	rec := b.Build()
	var out bytes.Buffer
	if err := writeProbe(&out, rec, probe.Diagnose(fake), nil, false); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	for _, want := range []string{`"gpu_total_count": 2`, `"gpu_truth_layer": "layer_a_verified"`, "GPU: NVML driver 550.54.15, CUDA 12.4, 2 device(s)",
		"NVIDIA H100 80GB HBM3", "81920 MiB", "71680 MiB", "12%", "40 C", "71.2 W", "name: nvml: fake failure"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	out.Reset()
	if err := writeProbe(&out, rec, probe.Diagnose(fake), nil, true); err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Record wire.NodeRecord   `json:"record"`
		NVML   probe.Diagnostics `json:"nvml"`
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || *rep.Record.GPUTotalCount != 2 || len(rep.NVML.Devices) != 2 ||
		*rep.NVML.Devices[0].PowerW != 71.25 || rep.NVML.Devices[1].TemperatureC != nil {
		t.Fatalf("json = %s (%v)", out.String(), err)
	}
}

// The real binary on this machine: without a usable NVML (no driver in CI)
// it says why and the record carries no GPU counts. On a GPU host it lists
// the devices instead. The node id comes from the agent's state dir.
func TestProbeCommand(t *testing.T) {
	t.Parallel()
	state := t.TempDir()
	if err := os.WriteFile(filepath.Join(state, "node-id"), []byte("local-abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"VOX_MESH_AGENT_STATE_DIR": state, "VOX_MESH_LABELS": "pool=a", "VOX_MESH_SCOPE_ID": "s1"}
	code, out := runBinary(t, env, 30*time.Second, "probe", "-o", "json")
	var rep struct {
		Record wire.NodeRecord   `json:"record"`
		NVML   probe.Diagnostics `json:"nvml"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("probe -o json: exit %d\n%s", code, out)
	}
	if rep.Record.ID != "local-abc" || wire.Str(rep.Record.ScopeID) != "s1" || len(rep.Record.Capabilities.Labels) != 1 {
		t.Errorf("record = %+v", rep.Record)
	}
	code, text := runBinary(t, env, 30*time.Second, "probe")
	if code != 0 {
		t.Fatalf("probe: exit %d\n%s", code, text)
	}
	if !rep.NVML.NVMLAvailable {
		if rep.NVML.Reason == "" || rep.Record.GPUTotalCount != nil || rep.Record.GPUInventorySource != nil ||
			wire.Str(rep.Record.GPUReadinessReason) != "nvml_unavailable" {
			t.Errorf("no NVML: reason %q, record %+v", rep.NVML.Reason, rep.Record)
		}
		if !strings.Contains(text, "GPU: none reported. NVML init failed") || !strings.Contains(text, "nothing is invented") {
			t.Errorf("text output does not say why:\n%s", text)
		}
		t.Logf("NVML unavailable here: %s", rep.NVML.Reason)
		return
	}
	if rep.Record.GPUTotalCount == nil || int(*rep.Record.GPUTotalCount) != rep.NVML.DeviceCount || !strings.Contains(text, "INDEX") {
		t.Errorf("GPU host: record %+v, diagnostics %+v\n%s", rep.Record, rep.NVML, text)
	}
	t.Logf("probe output:\n%s", text)
}
