package probe

import (
	"reflect"
	"testing"

	"populi-db/wire"
)

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestTruthy(t *testing.T) {
	for v, want := range map[string]bool{
		"1": true, "true": true, "TRUE": true, "True": true, " true\n": true, "\t1 ": true,
		"": false, "0": false, "false": false, "yes": false, "on": false, "t": false, "11": false, "tru e": false,
	} {
		if got := Truthy(v); got != want {
			t.Errorf("Truthy(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestAdvertise(t *testing.T) {
	cases := []struct {
		name   string
		env    map[string]string
		before wire.TaskCapabilityHints
		want   wire.TaskCapabilityHints
	}{
		{name: "no env", want: wire.TaskCapabilityHints{}},
		{name: "all flags", env: map[string]string{
			"VOX_MESH_ADVERTISE_GPU": "1", "VOX_MESH_ADVERTISE_VULKAN": "true",
			"VOX_MESH_ADVERTISE_WEBGPU": " TRUE ", "VOX_MESH_ADVERTISE_NPU": "True",
			"VOX_MESH_DEVICE_CLASS": "  server \n"},
			want: wire.TaskCapabilityHints{GPUCuda: true, GPUVulkan: true, GPUWebGPU: true, NPU: true, DeviceClass: str("server")}},
		{name: "non-truthy values", env: map[string]string{
			"VOX_MESH_ADVERTISE_GPU": "yes", "VOX_MESH_ADVERTISE_VULKAN": "0",
			"VOX_MESH_ADVERTISE_WEBGPU": "on", "VOX_MESH_ADVERTISE_NPU": "",
			"VOX_MESH_DEVICE_CLASS": "   "},
			want: wire.TaskCapabilityHints{}},
		{name: "flags never clear and blank class keeps existing",
			env:    map[string]string{"VOX_MESH_ADVERTISE_GPU": "0", "VOX_MESH_DEVICE_CLASS": ""},
			before: wire.TaskCapabilityHints{GPUCuda: true, GPUMetal: true, DeviceClass: str("desktop")},
			want:   wire.TaskCapabilityHints{GPUCuda: true, GPUMetal: true, DeviceClass: str("desktop")}},
		{name: "device class replaces existing",
			env:    map[string]string{"VOX_MESH_DEVICE_CLASS": "mobile"},
			before: wire.TaskCapabilityHints{DeviceClass: str("desktop")},
			want:   wire.TaskCapabilityHints{DeviceClass: str("mobile")}},
		{name: "only the gpu flag", env: map[string]string{"VOX_MESH_ADVERTISE_GPU": "true"},
			want: wire.TaskCapabilityHints{GPUCuda: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := wire.NodeRecord{ID: "n", Capabilities: tc.before}
			Advertise(&rec, envOf(tc.env))
			want := wire.NodeRecord{ID: "n", Capabilities: tc.want}
			if !reflect.DeepEqual(rec, want) {
				t.Fatalf("got %+v\nwant %+v", rec.Capabilities, tc.want)
			}
		})
	}
	Advertise(nil, envOf(nil)) // no panic
}
