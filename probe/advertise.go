package probe

import (
	"os"
	"strings"

	"populi-db/wire"
)

// Truthy reports whether an environment value is on: the trimmed value is
// "1" or "true", case-insensitively (SPEC 14.4).
func Truthy(v string) bool {
	v = strings.TrimSpace(v)
	return v == "1" || strings.EqualFold(v, "true")
}

// Advertise applies the Layer C operator advertisement flags of SPEC 14.4 to
// rec.Capabilities, whatever the probe found:
//
//	VOX_MESH_ADVERTISE_GPU    truthy → gpu_cuda = true
//	VOX_MESH_ADVERTISE_VULKAN truthy → gpu_vulkan = true
//	VOX_MESH_ADVERTISE_WEBGPU truthy → gpu_webgpu = true
//	VOX_MESH_ADVERTISE_NPU    truthy → npu = true
//	VOX_MESH_DEVICE_CLASS     non-blank → device_class = trimmed value
//
// Flags only switch capabilities on; a non-truthy value never clears one that
// is already set, and a blank device class leaves device_class alone. No
// gpu_* count/source/layer field is written (advertisement must not invent
// capacity).
//
// Not implemented: the Vox.toml manifest fallback ([mesh].advertise_gpu,
// legacy [mens]) that the original consults whenever VOX_MESH_ADVERTISE_GPU is
// not truthy. A caller that reads the manifest should set gpu_cuda itself.
//
// A nil getenv means os.Getenv.
func Advertise(rec *wire.NodeRecord, getenv func(string) string) {
	if rec == nil {
		return
	}
	getenv = orOSGetenv(getenv)
	c := &rec.Capabilities
	if Truthy(getenv("VOX_MESH_ADVERTISE_GPU")) {
		c.GPUCuda = true
	}
	if Truthy(getenv("VOX_MESH_ADVERTISE_VULKAN")) {
		c.GPUVulkan = true
	}
	if Truthy(getenv("VOX_MESH_ADVERTISE_WEBGPU")) {
		c.GPUWebGPU = true
	}
	if Truthy(getenv("VOX_MESH_ADVERTISE_NPU")) {
		c.NPU = true
	}
	if dc := strings.TrimSpace(getenv("VOX_MESH_DEVICE_CLASS")); dc != "" {
		c.DeviceClass = ptr(dc)
	}
}

func orOSGetenv(getenv func(string) string) func(string) string {
	if getenv == nil {
		return os.Getenv
	}
	return getenv
}
