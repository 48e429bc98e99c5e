package probe

import (
	"runtime"
	"slices"
	"strings"
	"time"

	"populi-db/wire"
)

// Host fills the host capability baseline of SPEC 14.5 and host_triple (1.1):
//
//   - host_triple from runtime.GOOS/GOARCH (see HostTriple);
//   - capabilities.cpu_cores = runtime.NumCPU() (logical CPUs);
//   - capabilities.arch = ArchName(runtime.GOARCH) (x86_64, aarch64, …);
//   - capabilities.hostname = env HOSTNAME, else COMPUTERNAME (first
//     non-blank, trimmed), else absent — the OS hostname API is deliberately
//     not consulted, as in the original;
//   - capabilities.labels += VOX_MESH_LABELS split on ",", trimmed, empties
//     dropped, appended without duplicates (13.2; manifest labels are not
//     read, see Advertise);
//   - version = version; last_seen_unix_ms = now (the server overwrites it).
//
// A nil getenv means os.Getenv.
func Host(rec *wire.NodeRecord, getenv func(string) string, version string) {
	if rec == nil {
		return
	}
	getenv = orOSGetenv(getenv)
	rec.HostTriple = ptr(HostTriple(runtime.GOOS, runtime.GOARCH))
	c := &rec.Capabilities
	c.CPUCores = ptr(clampU32(uint64(max(runtime.NumCPU(), 0))))
	c.Arch = ptr(ArchName(runtime.GOARCH))
	c.Hostname = nil
	for _, k := range []string{"HOSTNAME", "COMPUTERNAME"} {
		if h := strings.TrimSpace(getenv(k)); h != "" {
			c.Hostname = ptr(h)
			break
		}
	}
	for _, l := range strings.Split(getenv("VOX_MESH_LABELS"), ",") {
		if l = strings.TrimSpace(l); l != "" && !slices.Contains(c.Labels, l) {
			c.Labels = append(c.Labels, l)
		}
	}
	rec.Version = version
	if ms := time.Now().UnixMilli(); ms > 0 {
		rec.LastSeenUnixMs = uint64(ms)
	}
}

// ArchName maps a Go GOARCH to the architecture name the wire uses (Rust's
// target_arch spelling): amd64 → x86_64, arm64 → aarch64, 386 → x86, …;
// unknown values pass through unchanged.
func ArchName(goarch string) string {
	switch goarch {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	case "386":
		return "x86"
	case "loong64":
		return "loongarch64"
	case "mipsle":
		return "mips"
	case "mips64le":
		return "mips64"
	case "ppc64", "ppc64le":
		return "powerpc64"
	case "wasm":
		return "wasm32"
	}
	return goarch
}

// HostTriple is NodeRecord.host_triple for a GOOS/GOARCH pair:
// x86_64/aarch64 on linux → "<arch>-unknown-linux-gnu", on darwin →
// "<arch>-apple-darwin", on windows → "<arch>-pc-windows-msvc"; anything else
// → "unknown-unknown-unknown". (SPEC 1.1 lists x86_64/aarch64 linux,
// aarch64-apple-darwin and x86_64-pc-windows-msvc; x86_64-apple-darwin and
// aarch64-pc-windows-msvc are the same rule applied to the other arch.)
func HostTriple(goos, goarch string) string {
	arch := ""
	switch goarch {
	case "amd64":
		arch = "x86_64"
	case "arm64":
		arch = "aarch64"
	default:
		return "unknown-unknown-unknown"
	}
	switch goos {
	case "linux":
		return arch + "-unknown-linux-gnu"
	case "darwin":
		return arch + "-apple-darwin"
	case "windows":
		return arch + "-pc-windows-msvc"
	}
	return "unknown-unknown-unknown"
}
