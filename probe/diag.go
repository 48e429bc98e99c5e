package probe

import "fmt"

// Diagnostics is what one NVML pass saw, for people (`populi-db probe`):
// per-device telemetry that is not part of the NodeRecord (SPEC 14.2), and,
// when NVML is unavailable, why.
type Diagnostics struct {
	// NVMLAvailable is false when NVML could not be used at all (no driver,
	// Init or DeviceGetCount failed); Reason then says why.
	NVMLAvailable bool   `json:"nvml_available"`
	Reason        string `json:"reason,omitempty"`
	DriverVersion string `json:"driver_version,omitempty"`
	CUDAVersion   string `json:"cuda_version,omitempty"`
	DeviceCount   int    `json:"device_count"`
	// Devices has one entry per index in [0, DeviceCount).
	Devices []DeviceDiag `json:"devices"`
}

// DeviceDiag is one GPU's telemetry. A metric NVML could not read is absent
// and its error is listed in Errors; nothing is guessed.
type DeviceDiag struct {
	Index int `json:"index"`
	// Healthy: the handle opened (the v1 health definition of SPEC 14.2).
	Healthy        bool     `json:"healthy"`
	Name           string   `json:"name,omitempty"`
	VRAMTotalMiB   *uint64  `json:"vram_total_mib,omitempty"`
	VRAMFreeMiB    *uint64  `json:"vram_free_mib,omitempty"`
	VRAMUsedMiB    *uint64  `json:"vram_used_mib,omitempty"`
	UtilizationPct *uint32  `json:"utilization_pct,omitempty"`
	TemperatureC   *uint32  `json:"temperature_c,omitempty"`
	PowerW         *float64 `json:"power_w,omitempty"`
	Errors         []string `json:"errors,omitempty"`
}

// Diagnose runs one NVML pass (Init … Shutdown) and reports per-device
// telemetry. A nil n is reported as unavailable.
func Diagnose(n NVML) Diagnostics {
	d := Diagnostics{Devices: []DeviceDiag{}}
	if n == nil {
		d.Reason = "no NVML binding"
		return d
	}
	if err := n.Init(); err != nil {
		d.Reason = fmt.Sprintf("NVML init failed (no NVIDIA driver or libnvidia-ml.so.1?): %v", err)
		return d
	}
	defer func() { _ = n.Shutdown() }()
	count, err := n.DeviceGetCount()
	if err != nil || count < 0 {
		d.Reason = fmt.Sprintf("NVML device count failed: %v", err)
		return d
	}
	d.NVMLAvailable, d.DeviceCount = true, count
	if v, err := n.SystemGetDriverVersion(); err == nil {
		d.DriverVersion = v
	}
	if v, err := n.SystemGetCudaDriverVersion(); err == nil && v > 0 {
		d.CUDAVersion = FormatCUDAVersion(v)
	}
	for i := 0; i < count; i++ {
		d.Devices = append(d.Devices, diagnoseDevice(n, i))
	}
	return d
}

func diagnoseDevice(n NVML, i int) DeviceDiag {
	dd := DeviceDiag{Index: i}
	dev, err := n.DeviceGetHandleByIndex(i)
	if err != nil || dev == nil {
		dd.Errors = append(dd.Errors, fmt.Sprintf("open handle: %v", err))
		return dd
	}
	dd.Healthy = true
	fail := func(what string, err error) { dd.Errors = append(dd.Errors, fmt.Sprintf("%s: %v", what, err)) }
	if v, err := dev.GetName(); err == nil {
		dd.Name = v
	} else {
		fail("name", err)
	}
	if m, err := dev.GetMemoryInfo(); err == nil {
		dd.VRAMTotalMiB, dd.VRAMFreeMiB, dd.VRAMUsedMiB = ptr(m.Total>>20), ptr(m.Free>>20), ptr(m.Used>>20)
	} else {
		fail("memory", err)
	}
	if v, err := dev.GetUtilization(); err == nil {
		dd.UtilizationPct = ptr(v)
	} else {
		fail("utilization", err)
	}
	if v, err := dev.GetTemperature(); err == nil {
		dd.TemperatureC = ptr(v)
	} else {
		fail("temperature", err)
	}
	if v, err := dev.GetPowerUsage(); err == nil {
		dd.PowerW = ptr(float64(v) / 1000)
	} else {
		fail("power", err)
	}
	return dd
}
