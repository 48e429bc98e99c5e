package wire

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// Heartbeats (a NodeRecord body each) are the control plane's hottest write,
// and reflection-based encoding/json over UnmarshalJSON's aux struct was ~17%
// of server CPU under 64 heartbeating clients. decodeFast is a hand-written
// single-pass decoder for the common shape of a record.
//
// Fall-back rule: it succeeds only on well-formed input it handles with
// certainty and otherwise returns false without touching *n, so that the
// encoding/json path produces the exact value or error. It returns false on
// any syntax error; any member name that is not an exact known name (unknown
// members, case variants, names with escapes); any duplicate member; any
// string with a backslash escape, a control character or invalid UTF-8; an
// integer that is negative, fractional, has an exponent or is out of range;
// a value of the wrong JSON type; null for a required member;
// advertised_models and donation_policy; and trailing data. On success the
// result equals what the encoding/json path gives (nulls leave non-pointer
// members zero and pointer members nil, [] gives an empty non-nil slice,
// null array elements give "").
func (n *NodeRecord) decodeFast(b []byte) bool {
	d := fastDec{b: b}
	var r NodeRecord
	const required = 1<<0 | 1<<1 | 1<<3 | 1<<4 // id, capabilities, version, last_seen_unix_ms
	ok := d.topObject(required, func(key []byte) (f uint, ok bool) {
		switch string(key) {
		case "id":
			f = 0
			r.ID, ok = d.str()
		case "capabilities":
			f = 1
			ok = d.capabilities(&r.Capabilities)
		case "listen_addr":
			f = 2
			ok = d.optStr(&r.ListenAddr)
		case "version":
			f = 3
			r.Version, ok = d.str()
		case "last_seen_unix_ms":
			f = 4
			r.LastSeenUnixMs, ok = d.uint(64)
		case "scope_id":
			f = 5
			ok = d.optStr(&r.ScopeID)
		case "visibility":
			f = 6
			ok = d.optStr(&r.Visibility)
		case "pool_id":
			f = 7
			ok = d.optStr(&r.PoolID)
		case "trust_tier":
			f = 8
			ok = d.optStr(&r.TrustTier)
		case "workload_classes":
			f = 9
			ok = d.optStrs(&r.WorkloadClasses)
		case "privacy_class":
			f = 10
			ok = d.optStr(&r.PrivacyClass)
		case "loaded_llm_models":
			f = 11
			ok = d.optStrs(&r.LoadedLLMModels)
		case "maintenance":
			f = 12
			ok = d.optBool(&r.Maintenance)
		case "maintenance_until_unix_ms":
			f = 13
			ok = d.optUint64(&r.MaintenanceUntilUnixMs)
		case "provider":
			f = 14
			ok = d.optStr(&r.Provider)
		case "gpu_total_count":
			f = 15
			ok = d.optUint32(&r.GPUTotalCount)
		case "gpu_healthy_count":
			f = 16
			ok = d.optUint32(&r.GPUHealthyCount)
		case "gpu_allocatable_count":
			f = 17
			ok = d.optUint32(&r.GPUAllocatableCount)
		case "gpu_inventory_source":
			f = 18
			ok = d.optStr(&r.GPUInventorySource)
		case "gpu_truth_layer":
			f = 19
			ok = d.optStr(&r.GPUTruthLayer)
		case "nvidia_driver_version":
			f = 20
			ok = d.optStr(&r.NvidiaDriverVersion)
		case "cuda_driver_version":
			f = 21
			ok = d.optStr(&r.CUDADriverVersion)
		case "gpu_readiness_ok":
			f = 22
			ok = d.optBool(&r.GPUReadinessOK)
		case "gpu_readiness_reason":
			f = 23
			ok = d.optStr(&r.GPUReadinessReason)
		case "gpu_readiness_checked_unix_ms":
			f = 24
			ok = d.optUint64(&r.GPUReadinessCheckedUnixMs)
		case "quarantined":
			f = 25
			ok = d.optBool(&r.Quarantined)
		case "host_triple":
			f = 26
			ok = d.optStr(&r.HostTriple)
		case "cpu_usage_pct":
			f = 27
			ok = d.optFloat32(&r.CPUUsagePct)
		case "memory_free_bytes":
			f = 28
			ok = d.optUint64(&r.MemoryFreeBytes)
		case "owner_vox_user_id":
			f = 29
			ok = d.optStr(&r.OwnerVoxUserID)
		case "ed25519_pub_key_b64":
			f = 30
			ok = d.optStr(&r.Ed25519PubKeyB64)
		case "probe_failures":
			f = 31
			ok = d.optStrs(&r.ProbeFailures)
		default:
			// advertised_models, donation_policy, unknown or case-variant names.
			return 0, false
		}
		return f, ok
	})
	if ok {
		*n = r
	}
	return ok
}

// topObject decodes d.b as one JSON object with every member in required
// and nothing after it. member reads the value of the member named key and
// returns the member's bit, or ok false to give up (an unknown name, a
// value it does not handle). A duplicate member gives up too, and so does
// {}: it misses required members, and the fallback says which.
func (d *fastDec) topObject(required uint64, member func(key []byte) (bit uint, ok bool)) bool {
	d.ws()
	if !d.byte('{') {
		return false
	}
	d.ws()
	if d.byte('}') {
		return false
	}
	if len(d.b) <= srcShareMax {
		d.src = string(d.b)
	}
	var seen uint64
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		f, ok := member(key)
		if !ok || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		if !d.next('}') {
			return false
		}
		if d.done {
			break
		}
	}
	d.ws()
	return d.i == len(d.b) && seen&required == required
}

// capabilities decodes a TaskCapabilityHints object; null is left to the
// fallback (a missing required member).
func (d *fastDec) capabilities(c *TaskCapabilityHints) bool {
	if !d.byte('{') {
		return false
	}
	d.ws()
	if d.byte('}') {
		return true
	}
	var seen uint32
	for {
		key, ok := d.key()
		if !ok {
			return false
		}
		var f uint
		switch string(key) {
		case "gpu_cuda":
			f = 0
			ok = d.plainBool(&c.GPUCuda)
		case "gpu_metal":
			f = 1
			ok = d.plainBool(&c.GPUMetal)
		case "gpu_vulkan":
			f = 2
			ok = d.plainBool(&c.GPUVulkan)
		case "gpu_webgpu":
			f = 3
			ok = d.plainBool(&c.GPUWebGPU)
		case "npu":
			f = 4
			ok = d.plainBool(&c.NPU)
		case "visus_eligible":
			f = 5
			ok = d.plainBool(&c.VisusEligible)
		case "multi_modal":
			f = 6
			ok = d.plainBool(&c.MultiModal)
		case "device_class":
			f = 7
			ok = d.optStr(&c.DeviceClass)
		case "min_vram_mb":
			f = 8
			ok = d.optUint32(&c.MinVRAMMB)
		case "cpu_cores":
			f = 9
			ok = d.optUint32(&c.CPUCores)
		case "arch":
			f = 10
			ok = d.optStr(&c.Arch)
		case "hostname":
			f = 11
			ok = d.optStr(&c.Hostname)
		case "labels":
			f = 12
			if d.null() {
				break
			}
			c.Labels, ok = d.strs()
		case "min_cpu_cores":
			f = 13
			ok = d.optUint32(&c.MinCPUCores)
		case "prefer_gpu_compute":
			f = 14
			ok = d.plainBool(&c.PreferGPUCompute)
		case "routing_tier":
			f = 15
			ok = d.optStr(&c.RoutingTier)
		case "is_low_confidence_bypass_blocked":
			f = 16
			ok = d.plainBool(&c.IsLowConfidenceBypassBlocked)
		case "force_socrates_research":
			f = 17
			ok = d.plainBool(&c.ForceSocratesResearch)
		default:
			return false
		}
		if !ok || seen&(1<<f) != 0 {
			return false
		}
		seen |= 1 << f
		if !d.next('}') {
			return false
		}
		if d.done {
			return true
		}
	}
}

// fastDec is a cursor over one JSON text. Every method reports false (or
// leaves the cursor where the caller's next check fails) on anything it does
// not handle exactly like encoding/json.
type fastDec struct {
	b    []byte
	i    int
	done bool // set by next when it consumed the closing bracket

	// Allocation batching (values equal either way, strings are immutable):
	// a small body is copied to src once and the decoded strings are slices
	// of it; the pointer members' targets share one fastSlots. A decoded
	// record so keeps at most its body and ~450 bytes alive.
	src   string
	slots *fastSlots
	used  fastSlotsUsed
}

// srcShareMax bounds the body that decoded strings may share: a larger one
// (whitespace padding, say) gets one copy per string instead.
const srcShareMax = 2048

// fastSlots holds the targets of a NodeRecord's pointer members: one slot
// per member (19 *string, 6 *uint32, 3 *uint64, 3 *bool, 3 *[]string, 1
// *float32). A duplicate member, rejected after its value is read, may
// find its kind full; it then gets a fresh allocation.
type fastSlots struct {
	strs  [19]string
	u32s  [6]uint32
	u64s  [3]uint64
	bools [3]bool
	lists [3][]string
	f32s  [1]float32
}

type fastSlotsUsed struct{ strs, u32s, u64s, bools, lists, f32 uint8 }

func (d *fastDec) slot() *fastSlots {
	if d.slots == nil {
		d.slots = new(fastSlots)
	}
	return d.slots
}

// slotFor returns the next free element of arr, counting in *used, or a
// fresh T when arr is full.
func slotFor[T any](arr []T, used *uint8) *T {
	if int(*used) < len(arr) {
		*used++
		return &arr[*used-1]
	}
	return new(T)
}

// ws skips JSON whitespace.
func (d *fastDec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// byte consumes c if it is the next byte.
func (d *fastDec) byte(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// next consumes the whitespace, then ',' (and the whitespace after it) or
// the closing bracket (setting done). It reports false on anything else.
func (d *fastDec) next(closing byte) bool {
	d.ws()
	d.done = false
	if d.byte(',') {
		d.ws()
		return true
	}
	if d.byte(closing) {
		d.done = true
		return true
	}
	return false
}

// key reads a member name and the colon after it. Names with escapes fall
// back: "\u0069d" is "id" to encoding/json.
func (d *fastDec) key() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	d.skipPlain()
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			k := d.b[start:d.i]
			d.i++
			d.ws()
			if !d.byte(':') {
				return nil, false
			}
			d.ws()
			return k, true
		}
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// str reads a string without escapes, control characters or invalid UTF-8
// (encoding/json would unescape or substitute U+FFFD: the fallback does).
func (d *fastDec) str() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start, ascii := d.i, true
	d.skipPlain()
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c == '"' {
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			if d.src != "" {
				return d.src[start : d.i-1], true
			}
			return string(s), true
		}
		if c < 0x20 || c == '\\' {
			return "", false
		}
		if c >= utf8.RuneSelf {
			ascii = false
		}
		d.i++
	}
	return "", false
}

// plainASCII marks the bytes a string holds as they are: printable ASCII
// other than '"' and '\\'. A read-only table.
var plainASCII = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipPlain advances over plainASCII bytes, eight at a time while none of
// the eight is a control character, '"', '\\' or non-ASCII (a long payload
// is mostly such bytes), then one at a time.
func (d *fastDec) skipPlain() {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for d.i+8 <= len(d.b) {
		w := binary.LittleEndian.Uint64(d.b[d.i:])
		q, bs := w^(ones*'"'), w^(ones*'\\')
		// A byte's high bit is set where it is < 0x20, is zero after the
		// xor (so '"' or '\\'), or is >= 0x80; borrows may mark more bytes
		// of a word that has one, never a word that has none.
		if ((w-ones*0x20)&^w|(q-ones)&^q|(bs-ones)&^bs|w)&highs != 0 {
			break
		}
		d.i += 8
	}
	for d.i < len(d.b) && plainASCII[d.b[d.i]] {
		d.i++
	}
}

// null consumes a null literal. The caller's delimiter check rejects "nullx".
func (d *fastDec) null() bool {
	if len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// boolean reads true or false.
func (d *fastDec) boolean() (v, ok bool) {
	rest := d.b[d.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		d.i += 4
		return true, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		d.i += 5
		return false, true
	}
	return false, false
}

// plainBool decodes into a bool; null leaves it as it is (zero).
func (d *fastDec) plainBool(dst *bool) bool {
	if d.null() {
		return true
	}
	v, ok := d.boolean()
	*dst = v
	return ok
}

func (d *fastDec) optBool(dst **bool) bool {
	if d.null() {
		return true
	}
	v, ok := d.boolean()
	if ok {
		p := slotFor(d.slot().bools[:], &d.used.bools)
		*p, *dst = v, p
	}
	return ok
}

func (d *fastDec) optStr(dst **string) bool {
	if d.null() {
		return true
	}
	s, ok := d.str()
	if ok {
		p := slotFor(d.slot().strs[:], &d.used.strs)
		*p, *dst = s, p
	}
	return ok
}

// uint reads a JSON integer without sign, fraction or exponent that fits in
// bits bits. "01" stops after the 0 and the caller's delimiter check fails.
func (d *fastDec) uint(bits int) (uint64, bool) {
	start := d.i
	var v uint64
	for d.i < len(d.b) {
		c := d.b[d.i]
		if c < '0' || c > '9' {
			break
		}
		if d.i > start && d.b[start] == '0' {
			return 0, false // leading zero: not JSON
		}
		if v > (math.MaxUint64-9)/10 {
			// Close to overflow: let strconv decide exactly.
			end := d.i
			for end < len(d.b) && d.b[end] >= '0' && d.b[end] <= '9' {
				end++
			}
			u, err := strconv.ParseUint(string(d.b[start:end]), 10, 64)
			if err != nil {
				return 0, false
			}
			d.i, v = end, u
			break
		}
		v = v*10 + uint64(c-'0')
		d.i++
	}
	if d.i == start || (bits < 64 && v >= 1<<bits) {
		return 0, false
	}
	if d.i < len(d.b) {
		if c := d.b[d.i]; c == '.' || c == 'e' || c == 'E' {
			return 0, false
		}
	}
	return v, true
}

func (d *fastDec) optUint32(dst **uint32) bool {
	if d.null() {
		return true
	}
	v, ok := d.uint(32)
	if ok {
		p := slotFor(d.slot().u32s[:], &d.used.u32s)
		*p, *dst = uint32(v), p
	}
	return ok
}

// optUint8 has no slot: only a delivery's priority is a *uint8.
func (d *fastDec) optUint8(dst **uint8) bool {
	if d.null() {
		return true
	}
	v, ok := d.uint(8)
	if ok {
		p := new(uint8)
		*p, *dst = uint8(v), p
	}
	return ok
}

func (d *fastDec) optUint64(dst **uint64) bool {
	if d.null() {
		return true
	}
	v, ok := d.uint(64)
	if ok {
		p := slotFor(d.slot().u64s[:], &d.used.u64s)
		*p, *dst = v, p
	}
	return ok
}

// optFloat32 checks the JSON number grammar (strconv accepts more: "0x1p3",
// "Inf", "1_0") and then parses as encoding/json does for a float32.
func (d *fastDec) optFloat32(dst **float32) bool {
	if d.null() {
		return true
	}
	start := d.i
	d.byte('-')
	switch {
	case d.byte('0'):
	case d.i < len(d.b) && d.b[d.i] >= '1' && d.b[d.i] <= '9':
		d.digits()
	default:
		return false
	}
	if d.byte('.') && !d.digits() {
		return false
	}
	if d.byte('e') || d.byte('E') {
		if !d.byte('+') {
			d.byte('-')
		}
		if !d.digits() {
			return false
		}
	}
	f, err := strconv.ParseFloat(string(d.b[start:d.i]), 32)
	if err != nil || math.Abs(f) > math.MaxFloat32 {
		return false
	}
	p := slotFor(d.slot().f32s[:], &d.used.f32)
	*p, *dst = float32(f), p
	return true
}

// digits consumes one or more decimal digits.
func (d *fastDec) digits() bool {
	start := d.i
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	return d.i > start
}

func (d *fastDec) optStrs(dst **[]string) bool {
	if d.null() {
		return true
	}
	v, ok := d.strs()
	if ok {
		p := slotFor(d.slot().lists[:], &d.used.lists)
		*p, *dst = v, p
	}
	return ok
}

// strs reads an array of strings; [] is an empty non-nil slice and a null
// element is "", as encoding/json gives for a fresh slice.
func (d *fastDec) strs() ([]string, bool) {
	if !d.byte('[') {
		return nil, false
	}
	d.ws()
	if d.byte(']') {
		return []string{}, true
	}
	out := make([]string, 0, 4)
	for {
		var s string
		if !d.null() {
			var ok bool
			if s, ok = d.str(); !ok {
				return nil, false
			}
		}
		out = append(out, s)
		if !d.next(']') {
			return nil, false
		}
		if d.done {
			return out, true
		}
	}
}
