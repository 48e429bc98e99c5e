package wire

import (
	"strings"
	"testing"
)

// typicalHeartbeat is what the load generator sends as a heartbeat.
const typicalHeartbeat = `{"id":"node-000001","capabilities":{"gpu_cuda":true,"gpu_metal":false,"gpu_vulkan":true,"gpu_webgpu":false,"npu":false,"device_class":"server","cpu_cores":64,"arch":"x86_64","hostname":"host-000001","labels":["pool=train","region=us-east-1","zone=us-east-1b","hb=000000"]},"version":"0.9.0","last_seen_unix_ms":1796078331829,"gpu_total_count":8,"gpu_healthy_count":7,"gpu_allocatable_count":7,"cpu_usage_pct":1.75}`

// everyFastField sets every member the fast path decodes itself.
const everyFastField = `{"id":"n1","capabilities":{"gpu_cuda":true,"gpu_metal":true,"gpu_vulkan":true,"gpu_webgpu":true,"npu":true,"visus_eligible":true,"multi_modal":true,"device_class":"dc","min_vram_mb":4294967295,"cpu_cores":0,"arch":"a","hostname":"h","labels":["l1","l2"],"min_cpu_cores":3,"prefer_gpu_compute":true,"routing_tier":"rt","is_low_confidence_bypass_blocked":true,"force_socrates_research":true},"listen_addr":"127.0.0.1:1","version":"v","last_seen_unix_ms":18446744073709551615,"scope_id":"s","visibility":"vis","pool_id":"p","trust_tier":"t","workload_classes":["w1","w2","w3","w4","w5"],"privacy_class":"pc","loaded_llm_models":[],"maintenance":true,"maintenance_until_unix_ms":5,"provider":"pr","gpu_total_count":1,"gpu_healthy_count":2,"gpu_allocatable_count":3,"gpu_inventory_source":"gis","gpu_truth_layer":"gtl","nvidia_driver_version":"nv","cuda_driver_version":"cu","gpu_readiness_ok":false,"gpu_readiness_reason":"r","gpu_readiness_checked_unix_ms":9,"quarantined":false,"host_triple":"x86_64-linux","cpu_usage_pct":-0.5e-3,"memory_free_bytes":123456789012,"owner_vox_user_id":"o","ed25519_pub_key_b64":"AAAA","probe_failures":["f",null,"g"]}`

// prefilled is a non-zero starting value: both paths must replace it
// wholesale on success and leave it alone on failure.
func prefilled() NodeRecord {
	s, u32, u64, f, bl := "old", uint32(9), uint64(9), float32(9), true
	return NodeRecord{
		ID: "old", Version: "old", LastSeenUnixMs: 9, ListenAddr: &s, Maintenance: &bl,
		GPUTotalCount: &u32, MemoryFreeBytes: &u64, CPUUsagePct: &f,
		Capabilities: TaskCapabilityHints{GPUCuda: true, Labels: []string{"old"}, Arch: &s},
	}
}

// nodeSubject is NodeRecord for the shared fast-path checks.
var nodeSubject = fastSubject[NodeRecord]{prefilled: prefilled}

func checkSame(t *testing.T, b []byte) bool {
	t.Helper()
	return checkSameAs(t, nodeSubject, b)
}

// nodeDecodeCases lists inputs and whether the fast path must take them
// (fast) or must leave them to encoding/json (!fast).
func nodeDecodeCases() []struct {
	in   string
	fast bool
} {
	typ := typicalHeartbeat
	rep := func(old, new string) string {
		if !strings.Contains(typ, old) {
			panic("case does not apply: " + old)
		}
		return strings.Replace(typ, old, new, 1)
	}
	const minimal = `{"id":"n","capabilities":{},"version":"1","last_seen_unix_ms":0}`
	min := func(extra string) string { return strings.TrimSuffix(minimal, "}") + "," + extra + "}" }
	type c = struct {
		in   string
		fast bool
	}
	return []c{
		{typ, true},
		{everyFastField, true},
		{minimal, true},
		{" \t\r\n" + typ + " \n\t\r", true},
		{strings.NewReplacer(",", " , ", ":", "\n:\t", "{", "{ ", "}", " }", "[", "[ ", "]", " ]").Replace(typ), true},
		{`{"capabilities":{},"last_seen_unix_ms":0,"version":"1","id":"n"}`, true},
		// Bodies over srcShareMax: strings are copied one by one.
		{strings.Replace(typ, `,"version"`, strings.Repeat(" ", srcShareMax)+`,"version"`, 1), true},
		{rep(`"hb=000000"]`, `"hb=000000"`+strings.Repeat(`,"x-label"`, 300)+`]`), true},
		// Every slot used, then a duplicate: rejected after a fresh allocation.
		{strings.TrimSuffix(everyFastField, "}") + `,"listen_addr":"again"}`, false},
		{strings.TrimSuffix(everyFastField, "}") + `,"gpu_total_count":1}`, false},
		{strings.TrimSuffix(everyFastField, "}") + `,"maintenance":true}`, false},
		{strings.TrimSuffix(everyFastField, "}") + `,"cpu_usage_pct":1}`, false},
		{strings.TrimSuffix(everyFastField, "}") + `,"probe_failures":[]}`, false},
		{strings.TrimSuffix(everyFastField, "}") + `,"memory_free_bytes":1}`, false},
		// Nulls: pointers nil, plain members zero; required members fall back.
		{min(`"listen_addr":null,"workload_classes":null,"maintenance":null,"gpu_total_count":null,"cpu_usage_pct":null,"memory_free_bytes":null,"probe_failures":null`), true},
		{`{"id":"n","capabilities":{"gpu_cuda":null,"labels":null,"cpu_cores":null,"arch":null},"version":"1","last_seen_unix_ms":0}`, true},
		{`{"id":"n","capabilities":{"labels":[]},"version":"1","last_seen_unix_ms":0}`, true},
		{`{"id":"n","capabilities":{"labels":[null,"a",null]},"version":"1","last_seen_unix_ms":0}`, true},
		{min(`"probe_failures":[]`), true},
		{min(`"probe_failures":[null]`), true},
		{rep(`"id":"node-000001"`, `"id":null`), false},
		{rep(`"version":"0.9.0"`, `"version":null`), false},
		{rep(`"last_seen_unix_ms":1796078331829`, `"last_seen_unix_ms":null`), false},
		{`{"id":"n","capabilities":null,"version":"1","last_seen_unix_ms":0}`, false},
		// Missing required members.
		{`{}`, false},
		{`{"capabilities":{},"version":"1","last_seen_unix_ms":0}`, false},
		{`{"id":"n","version":"1","last_seen_unix_ms":0}`, false},
		{`{"id":"n","capabilities":{},"last_seen_unix_ms":0}`, false},
		{`{"id":"n","capabilities":{},"version":"1"}`, false},
		// Unknown, case-variant, escaped and duplicate names.
		{min(`"extra":1`), false},
		{min(`"extra":{"a":[1,2,{}]}`), false},
		{`{"ID":"x","capabilities":{},"version":"1","last_seen_unix_ms":0}`, false},
		{`{"id":"n","Id":"x","capabilities":{},"version":"1","last_seen_unix_ms":0}`, false},
		{min(`"GPU_total_count":3`), false},
		{min(`"gpu_total_ſount":3`), false},
		{`{"id":"n","capabilities":{"GPU_CUDA":true},"version":"1","last_seen_unix_ms":0}`, false},
		{`{"id":"n","capabilities":{"nope":true},"version":"1","last_seen_unix_ms":0}`, false},
		{`{"\u0069d":"n","capabilities":{},"version":"1","last_seen_unix_ms":0}`, false},
		{min(`"id":"m"`), false},
		{min(`"pool_id":"a","pool_id":null`), false},
		{min(`"capabilities":{"npu":true}`), false},
		{`{"id":"n","capabilities":{"npu":true,"npu":null},"version":"1","last_seen_unix_ms":0}`, false},
		// Members the fast path leaves to encoding/json.
		{min(`"advertised_models":[{"model_id":"m","task_kinds":["embed"],"vram_required_mb":1,"is_loaded":true,"quantization":null}]`), false},
		{min(`"advertised_models":null`), false},
		{min(`"donation_policy":{"slots":[],"nsfw_allowed":false,"max_job_duration_secs":1,"public_mesh_opt_in":false,"min_priority":0}`), false},
		// Strings: escapes, unicode, invalid UTF-8, control characters.
		{rep(`"host-000001"`, `"host-\u00e9\n\"\\\/"`), false},
		{rep(`"host-000001"`, `"hôst-日本-😀"`), true},
		{rep(`"host-000001"`, "\"h\xffst\""), false},
		{rep(`"host-000001"`, "\"h\xed\xa0\x80st\""), false},
		{rep(`"host-000001"`, "\"h\x01st\""), false},
		{rep(`"host-000001"`, "\"h\x7fst\""), true},
		{rep(`"pool=train"`, `"\ud800"`), false},
		{rep(`"id":"node-000001"`, `"id":""`), true},
		// Numbers.
		{rep(`:1796078331829`, `:18446744073709551615`), true},
		{rep(`:1796078331829`, `:18446744073709551616`), false},
		{rep(`:1796078331829`, `:99999999999999999999999`), false},
		{rep(`:1796078331829`, `:-1`), false},
		{rep(`:1796078331829`, `:-0`), false},
		{rep(`:1796078331829`, `:1.0`), false},
		{rep(`:1796078331829`, `:1e3`), false},
		{rep(`:1796078331829`, `:1E3`), false},
		{rep(`:1796078331829`, `:01`), false},
		{rep(`:1796078331829`, `:0`), true},
		{rep(`:1796078331829`, `:"1"`), false},
		{rep(`"cpu_cores":64`, `"cpu_cores":4294967295`), true},
		{rep(`"cpu_cores":64`, `"cpu_cores":4294967296`), false},
		{rep(`"gpu_total_count":8`, `"gpu_total_count":4294967296`), false},
		{rep(`"gpu_total_count":8`, `"gpu_total_count":8.5`), false},
		{rep(`"gpu_total_count":8`, `"gpu_total_count":true`), false},
		{rep(`:1.75`, `:0`), true},
		{rep(`:1.75`, `:-0`), true},
		{rep(`:1.75`, `:-0.0`), true},
		{rep(`:1.75`, `:1e3`), true},
		{rep(`:1.75`, `:1E+3`), true},
		{rep(`:1.75`, `:1e-46`), true},
		{rep(`:1.75`, `:0.1`), true},
		{rep(`:1.75`, `:3.4028235e38`), true},
		{rep(`:1.75`, `:3.4028236e38`), false},
		{rep(`:1.75`, `:3.40282356e38`), true},
		{rep(`:1.75`, `:3.5e38`), false},
		{rep(`:1.75`, `:1e400`), false},
		{rep(`:1.75`, `:16777217`), true},
		{rep(`:1.75`, `:1.`), false},
		{rep(`:1.75`, `:.5`), false},
		{rep(`:1.75`, `:+1`), false},
		{rep(`:1.75`, `:01.5`), false},
		{rep(`:1.75`, `:1e`), false},
		{rep(`:1.75`, `:0x10`), false},
		{rep(`:1.75`, `:Infinity`), false},
		{rep(`:1.75`, `:NaN`), false},
		{rep(`:1.75`, `:"1.75"`), false},
		// Wrong types and broken syntax.
		{rep(`"gpu_cuda":true`, `"gpu_cuda":1`), false},
		{rep(`"gpu_cuda":true`, `"gpu_cuda":"true"`), false},
		{rep(`"gpu_cuda":true`, `"gpu_cuda":tru`), false},
		{rep(`"gpu_cuda":true`, `"gpu_cuda":truex`), false},
		{rep(`"gpu_cuda":true`, `"gpu_cuda":nul`), false},
		{rep(`"labels":[`, `"labels":{`), false},
		{rep(`"labels":["pool=train"`, `"labels":[1`), false},
		{rep(`"hb=000000"]`, `"hb=000000",]`), false},
		{rep(`"cpu_usage_pct":1.75}`, `"cpu_usage_pct":1.75,}`), false},
		{rep(`"id":`, `"id" `), false},
		{typ + `x`, false},
		{typ + `{}`, false},
		{typ + `}`, false},
		{typ[:len(typ)-1], false},
		{typ[:len(typ)/2], false},
		{``, false},
		{` `, false},
		{`null`, false},
		{`[]`, false},
		{`"x"`, false},
		{`{"id":"n","capabilities":[],"version":"1","last_seen_unix_ms":0}`, false},
		{"\xef\xbb\xbf" + typ, false},
	}
}

func TestNodeRecordFastDecodeMatchesEncodingJSON(t *testing.T) {
	for _, tc := range nodeDecodeCases() {
		if took := checkSame(t, []byte(tc.in)); took != tc.fast {
			t.Errorf("%q: fast path took it: %v, want %v", tc.in, took, tc.fast)
		}
	}
}

// What a Go client sends (json.Marshal of a record: every bool of
// capabilities, "memory_free_bytes":null) takes the fast path.
func TestNodeRecordFastDecodeTakesGoEncoding(t *testing.T) {
	checkTakesGoEncoding(t, nodeSubject, typicalHeartbeat, everyFastField, `{"id":"n","capabilities":{},"version":"1","last_seen_unix_ms":0}`)
}

func TestNodeRecordFastDecodeCopiesStrings(t *testing.T) {
	long := strings.Replace(everyFastField, `,"version"`, strings.Repeat(" ", srcShareMax)+`,"version"`, 1)
	checkCopiesStrings(t, nodeSubject, typicalHeartbeat, everyFastField, long)
}

func FuzzNodeRecordDecode(f *testing.F) {
	for _, tc := range nodeDecodeCases() {
		f.Add([]byte(tc.in))
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkSame(t, b) })
}

// FuzzNodeRecordDecodeFields keeps the record's skeleton valid and fuzzes
// the raw text of its values, so that far more inputs reach the fast path's
// string, integer and float decoding than byte-level mutation of whole
// bodies does.
func FuzzNodeRecordDecodeFields(f *testing.F) {
	f.Add("host-000001", "pool=train", "64", "1796078331829", "1.75", " ")
	f.Add("h\\u00e9", "", "4294967296", "18446744073709551616", "1e-46", "\n")
	f.Add("日本", "\xff", "01", "-0", "3.4028236e38", "x")
	f.Fuzz(func(t *testing.T, str, label, u32, u64, float, space string) {
		in := `{"id":"` + str + `","capabilities":{"cpu_cores":` + u32 + `,"hostname":"` + str +
			`","labels":["` + label + `",null]},"version":"v","last_seen_unix_ms":` + u64 +
			`,"gpu_total_count":` + u32 + `,"memory_free_bytes":` + u64 + `,"cpu_usage_pct":` + float + space + `}`
		checkSame(t, []byte(in))
	})
}

func BenchmarkNodeRecordDecode(b *testing.B) {
	body := []byte(typicalHeartbeat)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var n NodeRecord
			if err := n.UnmarshalJSON(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fallback", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var n NodeRecord
			if err := n.unmarshalSlow(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
