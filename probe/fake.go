package probe

import (
	"errors"
	"fmt"
)

// Fake is an in-memory NVML for tests (of this package and of callers such as
// the worker agent). The zero value is a healthy host with no GPUs.
//
// DeviceGetCount reports len(Devices) (or CountErr). Every call made outside
// an Init/Shutdown window fails with ErrNotInitialized and bumps Misuse, so a
// test can assert the probe respected the NVML call order.
type Fake struct {
	InitErr       error
	ShutdownErr   error
	CountErr      error
	Devices       []FakeDevice
	DriverVersion string
	DriverErr     error
	CUDAVersion   int
	CUDAErr       error

	// Recorded by the fake.
	InitCalls, ShutdownCalls, Misuse int
	initialized                      bool
}

// FakeDevice is one GPU slot of a Fake.
type FakeDevice struct {
	HandleErr error // DeviceGetHandleByIndex fails with this
	Memory    Memory
	MemErr    error // GetMemoryInfo fails with this

	// Telemetry for diagnostics; TelemetryErr makes every telemetry call
	// (name, utilisation, temperature, power) fail.
	Name            string
	UtilizationPct  uint32
	TemperatureC    uint32
	PowerMilliwatts uint32
	TelemetryErr    error
}

// ErrFake is a convenient error value for configuring a Fake.
var ErrFake = errors.New("nvml: fake failure")

var _ NVML = (*Fake)(nil)

func (f *Fake) Init() error {
	f.InitCalls++
	if f.InitErr != nil {
		return f.InitErr
	}
	f.initialized = true
	return nil
}

func (f *Fake) Shutdown() error {
	f.ShutdownCalls++
	if !f.initialized {
		f.Misuse++
		return ErrNotInitialized
	}
	f.initialized = false
	return f.ShutdownErr
}

func (f *Fake) check() error {
	if !f.initialized {
		f.Misuse++
		return ErrNotInitialized
	}
	return nil
}

func (f *Fake) DeviceGetCount() (int, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	if f.CountErr != nil {
		return 0, f.CountErr
	}
	return len(f.Devices), nil
}

func (f *Fake) DeviceGetHandleByIndex(i int) (Device, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if i < 0 || i >= len(f.Devices) {
		return nil, fmt.Errorf("nvml: fake: no device at index %d", i)
	}
	if err := f.Devices[i].HandleErr; err != nil {
		return nil, err
	}
	return fakeHandle{f: f, i: i}, nil
}

func (f *Fake) SystemGetDriverVersion() (string, error) {
	if err := f.check(); err != nil {
		return "", err
	}
	return f.DriverVersion, f.DriverErr
}

func (f *Fake) SystemGetCudaDriverVersion() (int, error) {
	if err := f.check(); err != nil {
		return 0, err
	}
	return f.CUDAVersion, f.CUDAErr
}

type fakeHandle struct {
	f *Fake
	i int
}

func (h fakeHandle) GetMemoryInfo() (Memory, error) {
	if err := h.f.check(); err != nil {
		return Memory{}, err
	}
	d := h.f.Devices[h.i]
	if d.MemErr != nil {
		return Memory{}, d.MemErr
	}
	return d.Memory, nil
}

func (h fakeHandle) telemetry() (FakeDevice, error) {
	if err := h.f.check(); err != nil {
		return FakeDevice{}, err
	}
	d := h.f.Devices[h.i]
	return d, d.TelemetryErr
}

func (h fakeHandle) GetName() (string, error) {
	d, err := h.telemetry()
	return d.Name, err
}

func (h fakeHandle) GetUtilization() (uint32, error) {
	d, err := h.telemetry()
	return d.UtilizationPct, err
}

func (h fakeHandle) GetTemperature() (uint32, error) {
	d, err := h.telemetry()
	return d.TemperatureC, err
}

func (h fakeHandle) GetPowerUsage() (uint32, error) {
	d, err := h.telemetry()
	return d.PowerMilliwatts, err
}
