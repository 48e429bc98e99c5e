package probe

import (
	"runtime"
	"slices"
	"testing"
	"time"

	"populi-db/wire"
)

func TestHostTriple(t *testing.T) {
	for _, c := range []struct{ goos, goarch, want string }{
		{"linux", "amd64", "x86_64-unknown-linux-gnu"},
		{"linux", "arm64", "aarch64-unknown-linux-gnu"},
		{"darwin", "arm64", "aarch64-apple-darwin"},
		{"darwin", "amd64", "x86_64-apple-darwin"},
		{"windows", "amd64", "x86_64-pc-windows-msvc"},
		{"windows", "arm64", "aarch64-pc-windows-msvc"},
		{"linux", "386", "unknown-unknown-unknown"},
		{"linux", "riscv64", "unknown-unknown-unknown"},
		{"freebsd", "amd64", "unknown-unknown-unknown"},
		{"android", "arm64", "unknown-unknown-unknown"},
		{"", "", "unknown-unknown-unknown"},
	} {
		if got := HostTriple(c.goos, c.goarch); got != c.want {
			t.Errorf("HostTriple(%s, %s) = %q, want %q", c.goos, c.goarch, got, c.want)
		}
	}
}

func TestArchName(t *testing.T) {
	for in, want := range map[string]string{
		"amd64": "x86_64", "arm64": "aarch64", "386": "x86", "riscv64": "riscv64",
		"ppc64le": "powerpc64", "s390x": "s390x", "loong64": "loongarch64",
	} {
		if got := ArchName(in); got != want {
			t.Errorf("ArchName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHost(t *testing.T) {
	cases := []struct {
		name         string
		env          map[string]string
		beforeHost   *string
		beforeLabels []string
		wantHost     *string
		wantLabels   []string
	}{
		{name: "HOSTNAME wins", env: map[string]string{"HOSTNAME": "gpu-01", "COMPUTERNAME": "WIN"}, wantHost: str("gpu-01")},
		{name: "COMPUTERNAME fallback", env: map[string]string{"COMPUTERNAME": "WIN-7"}, wantHost: str("WIN-7")},
		{name: "blank HOSTNAME falls back", env: map[string]string{"HOSTNAME": "  ", "COMPUTERNAME": " WIN "}, wantHost: str("WIN")},
		{name: "neither: absent even if preset", beforeHost: str("old"), wantHost: nil},
		{name: "labels appended and deduplicated",
			env:          map[string]string{"VOX_MESH_LABELS": " pool=train, ,region=us-west,pool=train,gpu,,"},
			beforeLabels: []string{"gpu"},
			wantLabels:   []string{"gpu", "pool=train", "region=us-west"}},
		{name: "no labels stays nil"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := wire.NodeRecord{ID: "n"}
			rec.Capabilities.Hostname = tc.beforeHost
			rec.Capabilities.Labels = tc.beforeLabels
			before := uint64(time.Now().UnixMilli())
			Host(&rec, envOf(tc.env), "1.2.3")
			after := uint64(time.Now().UnixMilli())

			c := rec.Capabilities
			if wire.Str(rec.HostTriple) != HostTriple(runtime.GOOS, runtime.GOARCH) {
				t.Errorf("host_triple = %v", rec.HostTriple)
			}
			if runtime.GOOS == "linux" && runtime.GOARCH == "amd64" && wire.Str(rec.HostTriple) != "x86_64-unknown-linux-gnu" {
				t.Errorf("host_triple = %q on linux/amd64", wire.Str(rec.HostTriple))
			}
			if c.CPUCores == nil || int(*c.CPUCores) != runtime.NumCPU() {
				t.Errorf("cpu_cores = %v, want %d", c.CPUCores, runtime.NumCPU())
			}
			if wire.Str(c.Arch) != ArchName(runtime.GOARCH) {
				t.Errorf("arch = %v", c.Arch)
			}
			if (c.Hostname == nil) != (tc.wantHost == nil) || wire.Str(c.Hostname) != wire.Str(tc.wantHost) {
				t.Errorf("hostname = %v, want %v", c.Hostname, tc.wantHost)
			}
			if !slices.Equal(c.Labels, tc.wantLabels) || (tc.wantLabels == nil) != (c.Labels == nil) {
				t.Errorf("labels = %#v, want %#v", c.Labels, tc.wantLabels)
			}
			if rec.Version != "1.2.3" {
				t.Errorf("version = %q", rec.Version)
			}
			if rec.LastSeenUnixMs < before || rec.LastSeenUnixMs > after {
				t.Errorf("last_seen = %d, want in [%d, %d]", rec.LastSeenUnixMs, before, after)
			}
		})
	}
	Host(nil, envOf(nil), "v") // no panic
}
