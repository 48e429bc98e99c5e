package probe

import (
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"populi-db/wire"
)

// TestRealNVML runs the real binding on this host. Without the NVIDIA driver
// (libnvidia-ml.so.1) Init must fail cleanly and the record must carry no
// gpu count/source/layer/driver field. With PROBE_REQUIRE_GPU=1 the test
// instead requires at least one healthy GPU (run it on a GPU machine with -v
// to see the probed record).
func TestRealNVML(t *testing.T) {
	n := NewNVML()
	rec := wire.NodeRecord{ID: "real", Capabilities: wire.TaskCapabilityHints{}}
	GPU(n, &rec, time.Now(), Options{ExpectGPU: true})
	b, _ := json.Marshal(&rec)
	t.Logf("probed record: %s", b)

	if rec.GPUTotalCount == nil {
		if os.Getenv("PROBE_REQUIRE_GPU") == "1" {
			t.Fatalf("PROBE_REQUIRE_GPU=1 but NVML is unavailable: %v", n.Init())
		}
		t.Log("NVML unavailable on this host")
		assertNoGPUKeys(t, &rec, true)
		if !isFalse(rec.GPUReadinessOK) || wire.Str(rec.GPUReadinessReason) != ReasonNVMLUnavailable {
			t.Errorf("readiness = %v/%q, want false/nvml_unavailable", rec.GPUReadinessOK, wire.Str(rec.GPUReadinessReason))
		}
		if rec.ProbeFailures == nil || !slices.Equal(*rec.ProbeFailures, []string{"nvml"}) {
			t.Errorf("probe_failures = %v, want [nvml]", rec.ProbeFailures)
		}

		// Readiness off: nothing gpu_* at all.
		rec2 := wire.NodeRecord{ID: "real"}
		GPU(NewNVML(), &rec2, time.Now(), Options{ReadinessProbeOff: true})
		assertNoGPUKeys(t, &rec2, false)

		// Direct calls: Init errors, and nothing reaches the unloaded library.
		err := n.Init()
		if err == nil {
			t.Fatal("Init succeeded on the second try after failing")
		}
		t.Logf("Init error: %v", err)
		if _, err := n.DeviceGetCount(); err == nil {
			t.Error("DeviceGetCount succeeded without Init")
		}
		if _, err := n.DeviceGetHandleByIndex(0); err == nil {
			t.Error("DeviceGetHandleByIndex succeeded without Init")
		}
		if _, err := n.SystemGetDriverVersion(); err == nil {
			t.Error("SystemGetDriverVersion succeeded without Init")
		}
		if _, err := n.SystemGetCudaDriverVersion(); err == nil {
			t.Error("SystemGetCudaDriverVersion succeeded without Init")
		}
		if err := n.Shutdown(); err == nil {
			t.Error("Shutdown succeeded without Init")
		}
		return
	}

	// NVML available: the record must be self-consistent.
	total, healthy := *rec.GPUTotalCount, *rec.GPUHealthyCount
	if healthy > total || rec.GPUAllocatableCount == nil || *rec.GPUAllocatableCount != healthy {
		t.Errorf("counts total=%d healthy=%d allocatable=%v", total, healthy, rec.GPUAllocatableCount)
	}
	if wire.Str(rec.GPUInventorySource) != InventorySourceProbed || wire.Str(rec.GPUTruthLayer) != TruthLayerAVerified {
		t.Errorf("source/layer = %q/%q", wire.Str(rec.GPUInventorySource), wire.Str(rec.GPUTruthLayer))
	}
	if rec.GPUReadinessOK == nil || *rec.GPUReadinessOK != (healthy > 0) {
		t.Errorf("readiness = %v with %d healthy", rec.GPUReadinessOK, healthy)
	}
	if rec.ProbeFailures != nil {
		t.Errorf("probe_failures = %v", *rec.ProbeFailures)
	}
	if os.Getenv("PROBE_REQUIRE_GPU") == "1" {
		if healthy == 0 || rec.Capabilities.MinVRAMMB == nil || *rec.Capabilities.MinVRAMMB == 0 ||
			rec.NvidiaDriverVersion == nil || rec.CUDADriverVersion == nil {
			t.Errorf("PROBE_REQUIRE_GPU=1: want healthy>0, min_vram_mb, driver and cuda versions; got %s", b)
		}
	}
	// A second probe on the same binding works (Init after Shutdown).
	rec2 := wire.NodeRecord{}
	GPU(n, &rec2, time.Now(), Options{})
	if rec2.GPUTotalCount == nil || *rec2.GPUTotalCount != total {
		t.Errorf("second probe total = %v, want %d", rec2.GPUTotalCount, total)
	}
}

func isFalse(p *bool) bool { return p != nil && !*p }
