package probe

import (
	"fmt"
	"math"
	"slices"
	"time"

	"populi-db/wire"
)

// Wire values written by GPU (SPEC 14.1, 14.2, 16.21).
const (
	InventorySourceProbed = "probed"
	TruthLayerAVerified   = "layer_a_verified"

	ReasonNVMLUnavailable = "nvml_unavailable"
	ReasonNoHealthyGPU    = "no_healthy_gpu"

	// ProbeNVML is the probe_failures entry for a failed NVML probe.
	ProbeNVML = "nvml"
)

// Options tunes GPU.
type Options struct {
	// ReadinessProbeOff leaves gpu_readiness_ok/_reason/_checked_unix_ms
	// untouched (VOX_MESH_GPU_READINESS_PROBE_OFF, SPEC 13.2).
	ReadinessProbeOff bool
	// ExpectGPU records "nvml" in probe_failures when NVML is unavailable.
	// The spec names no variable for it; the caller decides (for example
	// when the operator advertises CUDA).
	ExpectGPU bool
}

// OptionsFromEnv reads VOX_MESH_GPU_READINESS_PROBE_OFF (truthy, see Truthy).
// ExpectGPU has no environment variable and stays false. A nil getenv means
// os.Getenv.
func OptionsFromEnv(getenv func(string) string) Options {
	getenv = orOSGetenv(getenv)
	return Options{ReadinessProbeOff: Truthy(getenv("VOX_MESH_GPU_READINESS_PROBE_OFF"))}
}

// inventory is what one NVML pass found.
type inventory struct {
	total, healthy uint32
	minVRAMMB      uint32
	haveMinVRAM    bool
	driver         string
	cuda           string
}

// GPU runs the NVML probe of SPEC 14.2 and writes the Layer A/B fields of
// rec. It owns gpu_total_count, gpu_healthy_count, gpu_allocatable_count,
// gpu_inventory_source, gpu_truth_layer, nvidia_driver_version and
// cuda_driver_version: they are cleared first, so a record rebuilt on every
// heartbeat (14.3) never keeps stale values. It also owns the readiness
// fields unless opts.ReadinessProbeOff, and the "nvml" entry of
// probe_failures (added or removed; other entries are kept).
//
//   - NVML unavailable (n is nil, Init fails, or DeviceGetCount fails): every
//     count/source/layer/driver field stays absent; readiness (unless off) is
//     false with reason "nvml_unavailable"; probe_failures gets "nvml" when
//     opts.ExpectGPU.
//   - Otherwise: total = device count; a device is healthy when its handle
//     opens; allocatable = healthy; capabilities.min_vram_mb = smallest
//     healthy device's total memory in MiB (devices whose GetMemoryInfo fails
//     are skipped), only if min_vram_mb is absent and at least one device
//     reported memory; driver versions when NVML reports them (CUDA 12040 →
//     "12.4", 0 is treated as not reported); source "probed", layer
//     "layer_a_verified"; readiness ok = healthy > 0, else reason
//     "no_healthy_gpu". Zero devices gives counts of 0.
//
// Readiness is stamped with now (worker clock). Shutdown is called once for
// every successful Init. GPU never touches the capabilities gpu_* flags:
// those are Layer C (see Advertise).
func GPU(n NVML, rec *wire.NodeRecord, now time.Time, opts Options) {
	if rec == nil {
		return
	}
	rec.GPUTotalCount, rec.GPUHealthyCount, rec.GPUAllocatableCount = nil, nil, nil
	rec.GPUInventorySource, rec.GPUTruthLayer = nil, nil
	rec.NvidiaDriverVersion, rec.CUDADriverVersion = nil, nil

	inv, ok := probeNVML(n)
	setProbeFailure(rec, ProbeNVML, !ok && opts.ExpectGPU)
	if !ok {
		if !opts.ReadinessProbeOff {
			setReadiness(rec, false, ReasonNVMLUnavailable, now)
		}
		return
	}

	rec.GPUTotalCount = ptr(inv.total)
	rec.GPUHealthyCount = ptr(inv.healthy)
	rec.GPUAllocatableCount = ptr(inv.healthy)
	if inv.haveMinVRAM && rec.Capabilities.MinVRAMMB == nil {
		rec.Capabilities.MinVRAMMB = ptr(inv.minVRAMMB)
	}
	if inv.driver != "" {
		rec.NvidiaDriverVersion = ptr(inv.driver)
	}
	if inv.cuda != "" {
		rec.CUDADriverVersion = ptr(inv.cuda)
	}
	rec.GPUInventorySource = ptr(InventorySourceProbed)
	rec.GPUTruthLayer = ptr(TruthLayerAVerified)
	if !opts.ReadinessProbeOff {
		setReadiness(rec, inv.healthy > 0, ReasonNoHealthyGPU, now)
	}
}

// probeNVML performs steps 1-4, 6, 7 and 11; ok is false when NVML is
// unavailable (steps 1 and 2).
func probeNVML(n NVML) (inv inventory, ok bool) {
	if n == nil || n.Init() != nil {
		return inventory{}, false
	}
	defer func() { _ = n.Shutdown() }()
	count, err := n.DeviceGetCount()
	if err != nil || count < 0 {
		return inventory{}, false
	}
	inv.total = clampU32(uint64(count))
	for i := 0; i < count; i++ {
		dev, err := n.DeviceGetHandleByIndex(i)
		if err != nil || dev == nil {
			continue
		}
		inv.healthy++
		mem, err := dev.GetMemoryInfo()
		if err != nil {
			continue
		}
		mib := clampU32(mem.Total / (1 << 20))
		if !inv.haveMinVRAM || mib < inv.minVRAMMB {
			inv.minVRAMMB, inv.haveMinVRAM = mib, true
		}
	}
	if v, err := n.SystemGetDriverVersion(); err == nil {
		inv.driver = v
	}
	if v, err := n.SystemGetCudaDriverVersion(); err == nil && v > 0 {
		inv.cuda = FormatCUDAVersion(v)
	}
	return inv, true
}

// FormatCUDAVersion renders NVML's CUDA driver version as major.minor:
// v/1000 "." (v%1000)/10, so 12040 → "12.4" and 11080 → "11.8".
func FormatCUDAVersion(v int) string {
	return fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
}

func setReadiness(rec *wire.NodeRecord, ok bool, reason string, now time.Time) {
	rec.GPUReadinessOK = ptr(ok)
	rec.GPUReadinessReason = nil
	if !ok {
		rec.GPUReadinessReason = ptr(reason)
	}
	ms := now.UnixMilli()
	if ms < 0 {
		ms = 0
	}
	rec.GPUReadinessCheckedUnixMs = ptr(uint64(ms))
}

// setProbeFailure adds (failed) or removes (!failed) name in probe_failures,
// keeping other entries in order; a list emptied by the removal becomes
// absent. The list is left as is when it already says the right thing.
func setProbeFailure(rec *wire.NodeRecord, name string, failed bool) {
	var cur []string
	if rec.ProbeFailures != nil {
		cur = *rec.ProbeFailures
	}
	has := slices.Contains(cur, name)
	switch {
	case failed && !has:
		out := append(slices.Clone(cur), name)
		rec.ProbeFailures = &out
	case !failed && has:
		out := slices.DeleteFunc(slices.Clone(cur), func(f string) bool { return f == name })
		if len(out) == 0 {
			rec.ProbeFailures = nil
			return
		}
		rec.ProbeFailures = &out
	}
}

func clampU32(v uint64) uint32 {
	if v > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(v)
}

func ptr[T any](v T) *T { return &v }
