//go:build linux && cgo

package probe

import (
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// realNVML adapts go-nvml. go-nvml resolves every NVML symbol lazily from
// libnvidia-ml.so.1, so calling into it before a successful Init would jump
// to an unresolved symbol; the initialized flag keeps that from happening.
type realNVML struct {
	mu          sync.Mutex
	lib         nvml.Interface
	initialized bool
}

// NewNVML returns the NVML binding backed by github.com/NVIDIA/go-nvml. On a
// host without the NVIDIA driver Init fails with an error (no panic).
func NewNVML() NVML { return &realNVML{lib: nvml.New()} }

func retErr(op string, ret nvml.Return) error {
	return fmt.Errorf("nvml: %s: %s (code %d)", op, ret.Error(), int32(ret))
}

func (r *realNVML) Init() (err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.initialized {
		return nil
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("nvml: init panicked: %v", p)
		}
	}()
	if ret := r.lib.Init(); ret != nvml.SUCCESS {
		return retErr("init", ret)
	}
	r.initialized = true
	return nil
}

func (r *realNVML) Shutdown() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.initialized {
		return ErrNotInitialized
	}
	r.initialized = false
	if ret := r.lib.Shutdown(); ret != nvml.SUCCESS {
		return retErr("shutdown", ret)
	}
	return nil
}

func (r *realNVML) ready() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.initialized
}

func (r *realNVML) DeviceGetCount() (int, error) {
	if !r.ready() {
		return 0, ErrNotInitialized
	}
	n, ret := r.lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		return 0, retErr("device get count", ret)
	}
	return n, nil
}

func (r *realNVML) DeviceGetHandleByIndex(index int) (Device, error) {
	if !r.ready() {
		return nil, ErrNotInitialized
	}
	d, ret := r.lib.DeviceGetHandleByIndex(index)
	if ret != nvml.SUCCESS {
		return nil, retErr(fmt.Sprintf("device get handle by index %d", index), ret)
	}
	return realDevice{r: r, d: d}, nil
}

func (r *realNVML) SystemGetDriverVersion() (string, error) {
	if !r.ready() {
		return "", ErrNotInitialized
	}
	v, ret := r.lib.SystemGetDriverVersion()
	if ret != nvml.SUCCESS {
		return "", retErr("system get driver version", ret)
	}
	return v, nil
}

func (r *realNVML) SystemGetCudaDriverVersion() (int, error) {
	if !r.ready() {
		return 0, ErrNotInitialized
	}
	v, ret := r.lib.SystemGetCudaDriverVersion()
	if ret != nvml.SUCCESS {
		return 0, retErr("system get cuda driver version", ret)
	}
	return v, nil
}

type realDevice struct {
	r *realNVML
	d nvml.Device
}

func (d realDevice) GetMemoryInfo() (Memory, error) {
	if !d.r.ready() {
		return Memory{}, ErrNotInitialized
	}
	m, ret := d.d.GetMemoryInfo()
	if ret != nvml.SUCCESS {
		return Memory{}, retErr("device get memory info", ret)
	}
	return Memory{Total: m.Total, Free: m.Free, Used: m.Used}, nil
}

func (d realDevice) GetName() (string, error) {
	if !d.r.ready() {
		return "", ErrNotInitialized
	}
	v, ret := d.d.GetName()
	if ret != nvml.SUCCESS {
		return "", retErr("device get name", ret)
	}
	return v, nil
}

func (d realDevice) GetUtilization() (uint32, error) {
	if !d.r.ready() {
		return 0, ErrNotInitialized
	}
	u, ret := d.d.GetUtilizationRates()
	if ret != nvml.SUCCESS {
		return 0, retErr("device get utilization rates", ret)
	}
	return u.Gpu, nil
}

func (d realDevice) GetTemperature() (uint32, error) {
	if !d.r.ready() {
		return 0, ErrNotInitialized
	}
	v, ret := d.d.GetTemperature(nvml.TEMPERATURE_GPU)
	if ret != nvml.SUCCESS {
		return 0, retErr("device get temperature", ret)
	}
	return v, nil
}

func (d realDevice) GetPowerUsage() (uint32, error) {
	if !d.r.ready() {
		return 0, ErrNotInitialized
	}
	v, ret := d.d.GetPowerUsage()
	if ret != nvml.SUCCESS {
		return 0, retErr("device get power usage", ret)
	}
	return v, nil
}
