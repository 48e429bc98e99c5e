package agent

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"populi-db/internal/clock"
	"populi-db/probe"
	"populi-db/wire"
)

// Builder builds this machine's NodeRecord (SPEC 13.2, 14): host baseline
// and labels, Layer C advertisement flags, scope/visibility/donation policy,
// and the NVML probe (Layer A/B), which is cached for ProbeTTL so a record
// rebuilt on every heartbeat does not open NVML every time (14.3).
// Safe for concurrent use.
type Builder struct {
	NodeID     string
	Version    string
	ListenAddr string
	Env        RecordEnv
	// Getenv feeds probe.Host and probe.Advertise; nil means os.Getenv.
	Getenv func(string) string
	// NVML is the GPU binding; nil means no NVML (reported unavailable).
	NVML     probe.NVML
	ProbeTTL time.Duration
	Clock    clock.Clock
	// MemInfoPath is the meminfo file for memory_free_bytes; "" means
	// /proc/meminfo (absent elsewhere).
	MemInfoPath string
	// StatPath is the kernel stat file for cpu_usage_pct; "" means
	// /proc/stat (absent elsewhere).
	StatPath string

	mu       sync.Mutex
	gpu      *wire.NodeRecord // the last probe's fields
	probedAt time.Time
	cpu      cpuSample // the previous build's CPU counters
}

// Build returns a fresh record. The GPU fields come from a probe no older
// than ProbeTTL (0 = probe every time).
func (b *Builder) Build() wire.NodeRecord {
	clk := b.Clock
	if clk == nil {
		clk = clock.Real{}
	}
	now := clk.Now()
	getenv := b.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	rec := wire.NodeRecord{ID: b.NodeID}
	probe.Host(&rec, getenv, b.Version)
	probe.Advertise(&rec, getenv)
	rec.LastSeenUnixMs = clock.UnixMs(now)
	if b.ListenAddr != "" {
		rec.ListenAddr = ptr(b.ListenAddr)
	}
	if b.Env.ScopeID != "" {
		rec.ScopeID = ptr(b.Env.ScopeID)
	}
	if b.Env.Visibility != "" {
		rec.Visibility = ptr(b.Env.Visibility)
	}
	if b.Env.DonationPolicy != nil {
		p := *b.Env.DonationPolicy
		rec.DonationPolicy = &p
	}
	if m, ok := memAvailable(b.MemInfoPath); ok {
		rec.MemoryFreeBytes = ptr(m)
	}
	if pct, ok := b.cpuUsage(); ok {
		rec.CPUUsagePct = ptr(pct)
	}
	b.copyGPU(&rec, now)
	return rec
}

// copyGPU copies the cached probe result into rec, probing first when the
// cache is empty or older than ProbeTTL.
func (b *Builder) copyGPU(rec *wire.NodeRecord, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gpu == nil || now.Sub(b.probedAt) >= b.ProbeTTL || now.Before(b.probedAt) {
		g := wire.NodeRecord{}
		opts := b.Env.Probe
		// An operator who advertises CUDA expects NVML: say so when it fails.
		opts.ExpectGPU = opts.ExpectGPU || rec.Capabilities.GPUCuda
		probe.GPU(b.NVML, &g, now, opts)
		b.gpu, b.probedAt = &g, now
	}
	g := b.gpu
	rec.GPUTotalCount, rec.GPUHealthyCount, rec.GPUAllocatableCount = g.GPUTotalCount, g.GPUHealthyCount, g.GPUAllocatableCount
	rec.GPUInventorySource, rec.GPUTruthLayer = g.GPUInventorySource, g.GPUTruthLayer
	rec.NvidiaDriverVersion, rec.CUDADriverVersion = g.NvidiaDriverVersion, g.CUDADriverVersion
	rec.GPUReadinessOK, rec.GPUReadinessReason, rec.GPUReadinessCheckedUnixMs = g.GPUReadinessOK, g.GPUReadinessReason, g.GPUReadinessCheckedUnixMs
	rec.ProbeFailures = g.ProbeFailures
	if g.Capabilities.MinVRAMMB != nil && rec.Capabilities.MinVRAMMB == nil {
		rec.Capabilities.MinVRAMMB = g.Capabilities.MinVRAMMB
	}
}

// memAvailable reads MemAvailable from a Linux meminfo file, in bytes.
func memAvailable(path string) (uint64, bool) {
	if path == "" {
		path = "/proc/meminfo"
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
		if err != nil {
			return 0, false
		}
		return kb * 1024, true
	}
	return 0, false
}

// cpuSample is the aggregate "cpu" line of /proc/stat: busy and total
// jiffies.
type cpuSample struct {
	busy, total uint64
	ok          bool
}

// cpuUsage is the CPU load in percent since the previous build (absent on
// the first build and where /proc/stat is missing).
func (b *Builder) cpuUsage() (float32, bool) {
	cur := readCPUSample(b.StatPath)
	b.mu.Lock()
	prev := b.cpu
	b.cpu = cur
	b.mu.Unlock()
	if !cur.ok || !prev.ok || cur.total <= prev.total || cur.busy < prev.busy {
		return 0, false
	}
	pct := 100 * float64(cur.busy-prev.busy) / float64(cur.total-prev.total)
	return float32(min(max(pct, 0), 100)), true
}

func readCPUSample(path string) cpuSample {
	if path == "" {
		path = "/proc/stat"
	}
	f, err := os.Open(path)
	if err != nil {
		return cpuSample{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuSample{}
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return cpuSample{}
	}
	var s cpuSample
	// user nice system idle iowait irq softirq steal (guest is counted in user)
	for i, v := range fields[1:min(len(fields), 9)] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuSample{}
		}
		s.total += n
		if i != 3 && i != 4 { // idle, iowait
			s.busy += n
		}
	}
	s.ok = s.total > 0
	return s
}

func ptr[T any](v T) *T { return &v }
