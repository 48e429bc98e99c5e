package probe

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"populi-db/wire"
)

const gib = 1 << 30

var testNow = time.UnixMilli(1_700_000_000_123)

func u32(v uint32) *uint32 { return &v }
func u64(v uint64) *uint64 { return &v }
func str(v string) *string { return &v }
func bl(v bool) *bool      { return &v }
func strs(v ...string) *[]string {
	return &v
}

func dev(totalBytes uint64) FakeDevice { return FakeDevice{Memory: Memory{Total: totalBytes}} }

// probed sets the fields a successful probe writes, with readiness.
func probed(total, healthy uint32) func(*wire.NodeRecord) {
	return func(r *wire.NodeRecord) {
		r.GPUTotalCount, r.GPUHealthyCount, r.GPUAllocatableCount = u32(total), u32(healthy), u32(healthy)
		r.GPUInventorySource, r.GPUTruthLayer = str("probed"), str("layer_a_verified")
		r.GPUReadinessOK, r.GPUReadinessReason = bl(healthy > 0), nil
		if healthy == 0 {
			r.GPUReadinessReason = str("no_healthy_gpu")
		}
		r.GPUReadinessCheckedUnixMs = u64(1_700_000_000_123)
	}
}

func unavailable(r *wire.NodeRecord) {
	r.GPUReadinessOK = bl(false)
	r.GPUReadinessReason = str("nvml_unavailable")
	r.GPUReadinessCheckedUnixMs = u64(1_700_000_000_123)
}

func drivers(driver, cuda string) func(*wire.NodeRecord) {
	return func(r *wire.NodeRecord) {
		if driver != "" {
			r.NvidiaDriverVersion = str(driver)
		}
		if cuda != "" {
			r.CUDADriverVersion = str(cuda)
		}
	}
}

func minVRAM(v uint32) func(*wire.NodeRecord) {
	return func(r *wire.NodeRecord) { r.Capabilities.MinVRAMMB = u32(v) }
}

func failures(f ...string) func(*wire.NodeRecord) {
	return func(r *wire.NodeRecord) { r.ProbeFailures = strs(f...) }
}

func noReadiness(r *wire.NodeRecord) {
	r.GPUReadinessOK, r.GPUReadinessReason, r.GPUReadinessCheckedUnixMs = nil, nil, nil
}

func TestGPU(t *testing.T) {
	healthyHost := func() *Fake {
		return &Fake{DriverVersion: "550.54.15", CUDAVersion: 12040,
			Devices: []FakeDevice{dev(80 * gib), dev(24 * gib)}}
	}
	stale := func(r *wire.NodeRecord) {
		r.GPUTotalCount, r.GPUHealthyCount, r.GPUAllocatableCount = u32(8), u32(8), u32(8)
		r.GPUInventorySource, r.GPUTruthLayer = str("advertised"), str("layer_c_advertised")
		r.NvidiaDriverVersion, r.CUDADriverVersion = str("1.0"), str("9.9")
		r.GPUReadinessOK, r.GPUReadinessReason, r.GPUReadinessCheckedUnixMs = bl(true), str("x"), u64(1)
	}

	cases := []struct {
		name   string
		nvml   NVML // nil means use fake
		fake   *Fake
		opts   Options
		before []func(*wire.NodeRecord) // applied to the input record
		want   []func(*wire.NodeRecord) // applied to a copy of the input
	}{
		{name: "init fails", fake: &Fake{InitErr: ErrFake},
			want: []func(*wire.NodeRecord){unavailable}},
		{name: "init fails, expected", fake: &Fake{InitErr: ErrFake}, opts: Options{ExpectGPU: true},
			want: []func(*wire.NodeRecord){unavailable, failures("nvml")}},
		{name: "init fails, expected, other failures kept, no duplicate",
			fake: &Fake{InitErr: ErrFake}, opts: Options{ExpectGPU: true},
			before: []func(*wire.NodeRecord){failures("disk", "nvml")},
			want:   []func(*wire.NodeRecord){unavailable}},
		{name: "init fails, expected, appended after others",
			fake: &Fake{InitErr: ErrFake}, opts: Options{ExpectGPU: true},
			before: []func(*wire.NodeRecord){failures("disk")},
			want:   []func(*wire.NodeRecord){unavailable, failures("disk", "nvml")}},
		{name: "init fails, readiness off", fake: &Fake{InitErr: ErrFake}, opts: Options{ReadinessProbeOff: true}},
		{name: "init fails, readiness off keeps caller readiness",
			fake: &Fake{InitErr: ErrFake}, opts: Options{ReadinessProbeOff: true},
			before: []func(*wire.NodeRecord){func(r *wire.NodeRecord) { r.GPUReadinessOK = bl(true) }}},
		{name: "init fails clears stale layer A fields", fake: &Fake{InitErr: ErrFake},
			before: []func(*wire.NodeRecord){stale, minVRAM(4096)},
			want: []func(*wire.NodeRecord){func(r *wire.NodeRecord) {
				r.GPUTotalCount, r.GPUHealthyCount, r.GPUAllocatableCount = nil, nil, nil
				r.GPUInventorySource, r.GPUTruthLayer = nil, nil
				r.NvidiaDriverVersion, r.CUDADriverVersion = nil, nil
			}, unavailable}},
		{name: "nil NVML is unavailable", nvml: NVML(nil), opts: Options{ExpectGPU: true},
			want: []func(*wire.NodeRecord){unavailable, failures("nvml")}},
		{name: "count fails is unavailable", opts: Options{ExpectGPU: true},
			fake: &Fake{CountErr: ErrFake, DriverVersion: "550.54.15", CUDAVersion: 12040, Devices: []FakeDevice{dev(gib)}},
			want: []func(*wire.NodeRecord){unavailable, failures("nvml")}},
		{name: "two healthy devices", fake: healthyHost(),
			want: []func(*wire.NodeRecord){probed(2, 2), minVRAM(24576), drivers("550.54.15", "12.4")}},
		{name: "success removes stale nvml failure, keeps others", fake: healthyHost(), opts: Options{ExpectGPU: true},
			before: []func(*wire.NodeRecord){failures("nvml", "disk")},
			want:   []func(*wire.NodeRecord){probed(2, 2), minVRAM(24576), drivers("550.54.15", "12.4"), failures("disk")}},
		{name: "success removes sole nvml failure", fake: healthyHost(),
			before: []func(*wire.NodeRecord){failures("nvml")},
			want: []func(*wire.NodeRecord){probed(2, 2), minVRAM(24576), drivers("550.54.15", "12.4"),
				func(r *wire.NodeRecord) { r.ProbeFailures = nil }}},
		{name: "success overwrites stale fields", fake: healthyHost(),
			before: []func(*wire.NodeRecord){stale},
			want:   []func(*wire.NodeRecord){probed(2, 2), minVRAM(24576), drivers("550.54.15", "12.4")}},
		{name: "MiB is floored", fake: &Fake{Devices: []FakeDevice{dev(24*gib - 1), dev(80 * gib)}},
			want: []func(*wire.NodeRecord){probed(2, 2), minVRAM(24575)}},
		{name: "some handles fail", fake: &Fake{DriverVersion: "535.1", CUDAVersion: 12020,
			Devices: []FakeDevice{dev(40 * gib), {HandleErr: ErrFake, Memory: Memory{Total: gib}}, dev(16 * gib)}},
			want: []func(*wire.NodeRecord){probed(3, 2), minVRAM(16384), drivers("535.1", "12.2")}},
		{name: "all handles fail", fake: &Fake{DriverVersion: "535.1", CUDAVersion: 12020,
			Devices: []FakeDevice{{HandleErr: ErrFake}, {HandleErr: ErrFake}}},
			want: []func(*wire.NodeRecord){probed(2, 0), drivers("535.1", "12.2")}},
		{name: "memory info fails on one device", fake: &Fake{
			Devices: []FakeDevice{{MemErr: ErrFake, Memory: Memory{Total: gib}}, dev(48 * gib)}},
			want: []func(*wire.NodeRecord){probed(2, 2), minVRAM(49152)}},
		{name: "memory info fails everywhere", fake: &Fake{
			Devices: []FakeDevice{{MemErr: ErrFake}, {MemErr: ErrFake}}},
			want: []func(*wire.NodeRecord){probed(2, 2)}},
		{name: "zero devices", fake: &Fake{DriverVersion: "550.54.15", CUDAVersion: 12040},
			want: []func(*wire.NodeRecord){probed(0, 0), drivers("550.54.15", "12.4")}},
		{name: "zero devices leaves preset min_vram_mb", fake: &Fake{},
			before: []func(*wire.NodeRecord){minVRAM(8192)},
			want:   []func(*wire.NodeRecord){probed(0, 0)}},
		{name: "min_vram_mb already set is kept", fake: healthyHost(),
			before: []func(*wire.NodeRecord){minVRAM(1000)},
			want:   []func(*wire.NodeRecord){probed(2, 2), drivers("550.54.15", "12.4")}},
		{name: "min_vram_mb already set to zero is kept", fake: healthyHost(),
			before: []func(*wire.NodeRecord){minVRAM(0)},
			want:   []func(*wire.NodeRecord){probed(2, 2), drivers("550.54.15", "12.4")}},
		{name: "readiness off", fake: healthyHost(), opts: Options{ReadinessProbeOff: true},
			want: []func(*wire.NodeRecord){probed(2, 2), noReadiness, minVRAM(24576), drivers("550.54.15", "12.4")}},
		{name: "readiness off, no healthy gpu", opts: Options{ReadinessProbeOff: true},
			fake: &Fake{Devices: []FakeDevice{{HandleErr: ErrFake}}},
			want: []func(*wire.NodeRecord){probed(1, 0), noReadiness}},
		{name: "driver version calls fail", fake: &Fake{DriverErr: ErrFake, CUDAErr: ErrFake, Devices: []FakeDevice{dev(gib)}},
			want: []func(*wire.NodeRecord){probed(1, 1), minVRAM(1024)}},
		{name: "empty driver string and cuda 0 are not reported", fake: &Fake{Devices: []FakeDevice{dev(gib)}},
			want: []func(*wire.NodeRecord){probed(1, 1), minVRAM(1024)}},
		{name: "shutdown failure is ignored", fake: &Fake{ShutdownErr: ErrFake, CUDAVersion: 11080, Devices: []FakeDevice{dev(gib)}},
			want: []func(*wire.NodeRecord){probed(1, 1), minVRAM(1024), drivers("", "11.8")}},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := func() *wire.NodeRecord {
				r := &wire.NodeRecord{ID: "n1", Version: "v", LastSeenUnixMs: 5}
				for _, f := range tc.before {
					f(r)
				}
				return r
			}
			got, want := in(), in()
			for _, f := range tc.want {
				f(want)
			}
			var n NVML = tc.fake
			if tc.fake == nil {
				n = tc.nvml
			}
			GPU(n, got, testNow, tc.opts)
			if !reflect.DeepEqual(got, want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				t.Fatalf("record mismatch\n got: %s\nwant: %s", gj, wj)
			}
			if f := tc.fake; f != nil {
				wantShutdown := 0
				if f.InitErr == nil {
					wantShutdown = 1
				}
				if f.InitCalls != 1 || f.ShutdownCalls != wantShutdown || f.Misuse != 0 {
					t.Fatalf("nvml calls: init=%d shutdown=%d (want %d) misuse=%d",
						f.InitCalls, f.ShutdownCalls, wantShutdown, f.Misuse)
				}
			}
		})
	}
}

// With NVML unavailable and readiness off, the wire form carries no gpu_*,
// driver-version or probe_failures member at all.
func TestGPUUnavailableWireForm(t *testing.T) {
	rec := wire.NodeRecord{ID: "n1"}
	GPU(&Fake{InitErr: ErrFake}, &rec, testNow, Options{ReadinessProbeOff: true})
	assertNoGPUKeys(t, &rec, false)
}

// assertNoGPUKeys fails if rec's JSON has any gpu_* count/source/layer or
// driver-version member (and, unless readinessAllowed, any readiness one).
func assertNoGPUKeys(t *testing.T, rec *wire.NodeRecord, readinessAllowed bool) {
	t.Helper()
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for k := range m {
		if readinessAllowed && strings.HasPrefix(k, "gpu_readiness_") {
			continue
		}
		if strings.HasPrefix(k, "gpu_") || strings.HasSuffix(k, "_driver_version") {
			t.Errorf("unexpected member %s in %s", k, b)
		}
	}
	var caps map[string]json.RawMessage
	if err := json.Unmarshal(m["capabilities"], &caps); err != nil {
		t.Fatal(err)
	}
	if _, ok := caps["min_vram_mb"]; ok {
		t.Errorf("unexpected capabilities.min_vram_mb in %s", b)
	}
}

func TestGPUNilRecord(t *testing.T) {
	f := &Fake{}
	GPU(f, nil, testNow, Options{})
	if f.InitCalls != 0 {
		t.Fatalf("probe ran for a nil record")
	}
}

func TestGPUNegativeClock(t *testing.T) {
	rec := wire.NodeRecord{}
	GPU(&Fake{InitErr: ErrFake}, &rec, time.UnixMilli(-5), Options{})
	if rec.GPUReadinessCheckedUnixMs == nil || *rec.GPUReadinessCheckedUnixMs != 0 {
		t.Fatalf("checked = %v, want 0", rec.GPUReadinessCheckedUnixMs)
	}
}

func TestFormatCUDAVersion(t *testing.T) {
	for v, want := range map[int]string{
		12040: "12.4", 11080: "11.8", 12000: "12.0", 13000: "13.0",
		12090: "12.9", 10010: "10.1", 9020: "9.2", 12045: "12.4",
	} {
		if got := FormatCUDAVersion(v); got != want {
			t.Errorf("FormatCUDAVersion(%d) = %q, want %q", v, got, want)
		}
	}
}

func TestOptionsFromEnv(t *testing.T) {
	for v, want := range map[string]bool{"": false, "1": true, " TRUE ": true, "0": false, "yes": false} {
		got := OptionsFromEnv(func(k string) string {
			if k == "VOX_MESH_GPU_READINESS_PROBE_OFF" {
				return v
			}
			return ""
		})
		if got != (Options{ReadinessProbeOff: want}) {
			t.Errorf("%q: got %+v", v, got)
		}
	}
}
