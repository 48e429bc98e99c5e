// Package probe fills the worker agent's NodeRecord from the local host
// (SPEC 14): the NVML GPU inventory (14.2), the operator advertisement flags
// (14.4) and the host capability baseline (14.5, host_triple from 1.1).
//
// The server never probes hardware; only the worker agent calls this package.
package probe

import "errors"

// NVML is the slice of the NVIDIA Management Library that SPEC 14.2 needs.
// NewNVML returns the real implementation (github.com/NVIDIA/go-nvml, which
// loads libnvidia-ml.so.1 at run time); Fake is an in-memory stand-in.
//
// Contract: DeviceGetCount, DeviceGetHandleByIndex, the driver-version calls
// and Device.GetMemoryInfo are only meaningful between a successful Init and
// the matching Shutdown; implementations return an error (never crash) when
// called outside that window.
type NVML interface {
	Init() error
	Shutdown() error
	DeviceGetCount() (int, error)
	DeviceGetHandleByIndex(index int) (Device, error)
	// SystemGetDriverVersion is the kernel driver version, e.g. "550.54.15".
	SystemGetDriverVersion() (string, error)
	// SystemGetCudaDriverVersion is the CUDA driver API version as NVML
	// encodes it: 1000*major + 10*minor (12040 = CUDA 12.4).
	SystemGetCudaDriverVersion() (int, error)
}

// Device is an opened GPU handle. Only GetMemoryInfo feeds the NodeRecord;
// the others are per-device telemetry for diagnostics (SPEC 14.2, shown by
// `populi-db probe`), each of which may fail on its own.
type Device interface {
	GetMemoryInfo() (Memory, error)
	// GetName is the product name, e.g. "NVIDIA H100 80GB HBM3".
	GetName() (string, error)
	// GetUtilization is the GPU utilisation in percent over the last sample
	// period.
	GetUtilization() (uint32, error)
	// GetTemperature is the GPU core temperature in °C.
	GetTemperature() (uint32, error)
	// GetPowerUsage is the board power draw in milliwatts.
	GetPowerUsage() (uint32, error)
}

// Memory is a device's framebuffer memory in bytes.
type Memory struct {
	Total, Free, Used uint64
}

// ErrNotInitialized is returned by NVML calls made before a successful Init
// or after Shutdown.
var ErrNotInitialized = errors.New("nvml: not initialized")

// ErrUnsupported is returned by Init in builds without NVML support (the real
// binding needs linux and cgo).
var ErrUnsupported = errors.New("nvml: not supported in this build (requires linux and cgo)")
