package probe

import (
	"strings"
	"testing"
)

func TestDiagnose(t *testing.T) {
	f := &Fake{DriverVersion: "550.54.15", CUDAVersion: 12040, Devices: []FakeDevice{
		{Memory: Memory{Total: 80 * gib, Free: 60 * gib, Used: 20 * gib}, Name: "NVIDIA H100", UtilizationPct: 37, TemperatureC: 61, PowerMilliwatts: 312500},
		{HandleErr: ErrFake},
		{Memory: Memory{Total: 24 * gib}, MemErr: ErrFake, TelemetryErr: ErrFake},
	}}
	d := Diagnose(f)
	if !d.NVMLAvailable || d.Reason != "" || d.DeviceCount != 3 || len(d.Devices) != 3 ||
		d.DriverVersion != "550.54.15" || d.CUDAVersion != "12.4" {
		t.Fatalf("diagnostics = %+v", d)
	}
	d0 := d.Devices[0]
	if !d0.Healthy || d0.Name != "NVIDIA H100" || *d0.VRAMTotalMiB != 81920 || *d0.VRAMFreeMiB != 61440 ||
		*d0.VRAMUsedMiB != 20480 || *d0.UtilizationPct != 37 || *d0.TemperatureC != 61 || *d0.PowerW != 312.5 || d0.Errors != nil {
		t.Errorf("device 0 = %+v", d0)
	}
	if d1 := d.Devices[1]; d1.Healthy || len(d1.Errors) != 1 || d1.VRAMTotalMiB != nil {
		t.Errorf("device 1 = %+v", d1)
	}
	// Every failing metric is absent and named, never zero.
	d2 := d.Devices[2]
	if !d2.Healthy || d2.VRAMTotalMiB != nil || d2.UtilizationPct != nil || d2.TemperatureC != nil || d2.PowerW != nil || len(d2.Errors) != 5 {
		t.Errorf("device 2 = %+v", d2)
	}
	if f.InitCalls != 1 || f.ShutdownCalls != 1 || f.Misuse != 0 {
		t.Errorf("nvml calls init=%d shutdown=%d misuse=%d", f.InitCalls, f.ShutdownCalls, f.Misuse)
	}

	for name, n := range map[string]NVML{"init": &Fake{InitErr: ErrFake}, "count": &Fake{CountErr: ErrFake}, "nil": nil} {
		d := Diagnose(n)
		if d.NVMLAvailable || d.Reason == "" || len(d.Devices) != 0 || d.DeviceCount != 0 {
			t.Errorf("%s failure: %+v", name, d)
		}
	}
	if d := Diagnose(&Fake{InitErr: ErrFake}); !strings.Contains(d.Reason, "init failed") || !strings.Contains(d.Reason, ErrFake.Error()) {
		t.Errorf("reason = %q", d.Reason)
	}
}
