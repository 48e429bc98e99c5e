package wire

import (
	"encoding/json"
	"strings"
)

// NodeRecord is one registry entry (SPEC 1.1). Optional fields are pointers
// so "absent" and "present but zero" stay distinct: heartbeat merges exactly
// the fields a client sent.
type NodeRecord struct {
	ID                        string                `json:"id"`
	Capabilities              TaskCapabilityHints   `json:"capabilities"`
	ListenAddr                *string               `json:"listen_addr,omitempty"`
	Version                   string                `json:"version"`
	LastSeenUnixMs            uint64                `json:"last_seen_unix_ms"`
	ScopeID                   *string               `json:"scope_id,omitempty"`
	Visibility                *string               `json:"visibility,omitempty"`
	PoolID                    *string               `json:"pool_id,omitempty"`
	TrustTier                 *string               `json:"trust_tier,omitempty"`
	WorkloadClasses           *[]string             `json:"workload_classes,omitempty"`
	PrivacyClass              *string               `json:"privacy_class,omitempty"`
	LoadedLLMModels           *[]string             `json:"loaded_llm_models,omitempty"`
	Maintenance               *bool                 `json:"maintenance,omitempty"`
	MaintenanceUntilUnixMs    *uint64               `json:"maintenance_until_unix_ms,omitempty"`
	Provider                  *string               `json:"provider,omitempty"`
	GPUTotalCount             *uint32               `json:"gpu_total_count,omitempty"`
	GPUHealthyCount           *uint32               `json:"gpu_healthy_count,omitempty"`
	GPUAllocatableCount       *uint32               `json:"gpu_allocatable_count,omitempty"`
	GPUInventorySource        *string               `json:"gpu_inventory_source,omitempty"`
	GPUTruthLayer             *string               `json:"gpu_truth_layer,omitempty"`
	NvidiaDriverVersion       *string               `json:"nvidia_driver_version,omitempty"`
	CUDADriverVersion         *string               `json:"cuda_driver_version,omitempty"`
	GPUReadinessOK            *bool                 `json:"gpu_readiness_ok,omitempty"`
	GPUReadinessReason        *string               `json:"gpu_readiness_reason,omitempty"`
	GPUReadinessCheckedUnixMs *uint64               `json:"gpu_readiness_checked_unix_ms,omitempty"`
	Quarantined               *bool                 `json:"quarantined,omitempty"`
	HostTriple                *string               `json:"host_triple,omitempty"`
	CPUUsagePct               *float32              `json:"cpu_usage_pct,omitempty"`
	MemoryFreeBytes           *uint64               `json:"memory_free_bytes"` // always present (null when absent)
	OwnerVoxUserID            *string               `json:"owner_vox_user_id,omitempty"`
	AdvertisedModels          *[]ModelAdvertisement `json:"advertised_models,omitempty"`
	DonationPolicy            *WorkerDonationPolicy `json:"donation_policy,omitempty"`
	Ed25519PubKeyB64          *string               `json:"ed25519_pub_key_b64,omitempty"`
	ProbeFailures             *[]string             `json:"probe_failures,omitempty"`
}

// UnmarshalJSON decodes a record and enforces the required members.
// A hand-written fast path (node_fast.go) takes the common shapes; anything
// else goes through encoding/json (unmarshalSlow).
func (n *NodeRecord) UnmarshalJSON(b []byte) error {
	if ok := n.decodeFast(b); ok {
		return nil
	}
	return n.unmarshalSlow(b)
}

// unmarshalSlow is the encoding/json path, and the reference the fast path
// is tested against.
func (n *NodeRecord) unmarshalSlow(b []byte) error {
	type plain NodeRecord
	var aux struct {
		plain
		ID             *string              `json:"id"`
		Capabilities   *TaskCapabilityHints `json:"capabilities"`
		Version        *string              `json:"version"`
		LastSeenUnixMs *uint64              `json:"last_seen_unix_ms"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ID == nil:
		return missing("id")
	case aux.Capabilities == nil:
		return missing("capabilities")
	case aux.Version == nil:
		return missing("version")
	case aux.LastSeenUnixMs == nil:
		return missing("last_seen_unix_ms")
	}
	*n = NodeRecord(aux.plain)
	n.ID, n.Capabilities, n.Version, n.LastSeenUnixMs = *aux.ID, *aux.Capabilities, *aux.Version, *aux.LastSeenUnixMs
	return nil
}

// MergeFrom overwrites every client-owned field that is present in in (SPEC
// 16.7): required fields always, optional ones when non-nil. Server-owned
// fields (id, last_seen, quarantined, maintenance*) are left alone.
func (n *NodeRecord) MergeFrom(in *NodeRecord) {
	keepQ, keepM, keepMU := n.Quarantined, n.Maintenance, n.MaintenanceUntilUnixMs
	id, seen := n.ID, n.LastSeenUnixMs
	merged := *n
	merged.Capabilities = in.Capabilities
	merged.Version = in.Version
	setIf(&merged.ListenAddr, in.ListenAddr)
	setIf(&merged.ScopeID, in.ScopeID)
	setIf(&merged.Visibility, in.Visibility)
	setIf(&merged.PoolID, in.PoolID)
	setIf(&merged.TrustTier, in.TrustTier)
	setIf(&merged.WorkloadClasses, in.WorkloadClasses)
	setIf(&merged.PrivacyClass, in.PrivacyClass)
	setIf(&merged.LoadedLLMModels, in.LoadedLLMModels)
	setIf(&merged.Provider, in.Provider)
	setIf(&merged.GPUTotalCount, in.GPUTotalCount)
	setIf(&merged.GPUHealthyCount, in.GPUHealthyCount)
	setIf(&merged.GPUAllocatableCount, in.GPUAllocatableCount)
	setIf(&merged.GPUInventorySource, in.GPUInventorySource)
	setIf(&merged.GPUTruthLayer, in.GPUTruthLayer)
	setIf(&merged.NvidiaDriverVersion, in.NvidiaDriverVersion)
	setIf(&merged.CUDADriverVersion, in.CUDADriverVersion)
	setIf(&merged.GPUReadinessOK, in.GPUReadinessOK)
	setIf(&merged.GPUReadinessReason, in.GPUReadinessReason)
	setIf(&merged.GPUReadinessCheckedUnixMs, in.GPUReadinessCheckedUnixMs)
	setIf(&merged.HostTriple, in.HostTriple)
	setIf(&merged.CPUUsagePct, in.CPUUsagePct)
	setIf(&merged.MemoryFreeBytes, in.MemoryFreeBytes)
	setIf(&merged.OwnerVoxUserID, in.OwnerVoxUserID)
	setIf(&merged.AdvertisedModels, in.AdvertisedModels)
	setIf(&merged.DonationPolicy, in.DonationPolicy)
	setIf(&merged.Ed25519PubKeyB64, in.Ed25519PubKeyB64)
	setIf(&merged.ProbeFailures, in.ProbeFailures)
	merged.ID, merged.LastSeenUnixMs = id, seen
	merged.Quarantined, merged.Maintenance, merged.MaintenanceUntilUnixMs = keepQ, keepM, keepMU
	*n = merged
}

func setIf[T any](dst **T, src *T) {
	if src != nil {
		*dst = src
	}
}

// Str returns *p or "" when p is nil.
func Str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Norm is the claim-policy comparison form: trimmed, lower case.
func Norm(p *string) string { return strings.ToLower(strings.TrimSpace(Str(p))) }

// TaskCapabilityHints is NodeRecord.capabilities (SPEC 1.2).
type TaskCapabilityHints struct {
	GPUCuda                      bool     `json:"gpu_cuda"`
	GPUMetal                     bool     `json:"gpu_metal"`
	GPUVulkan                    bool     `json:"gpu_vulkan"`
	GPUWebGPU                    bool     `json:"gpu_webgpu"`
	NPU                          bool     `json:"npu"`
	VisusEligible                bool     `json:"visus_eligible"`
	MultiModal                   bool     `json:"multi_modal"`
	DeviceClass                  *string  `json:"device_class,omitempty"`
	MinVRAMMB                    *uint32  `json:"min_vram_mb,omitempty"`
	CPUCores                     *uint32  `json:"cpu_cores,omitempty"`
	Arch                         *string  `json:"arch,omitempty"`
	Hostname                     *string  `json:"hostname,omitempty"`
	Labels                       []string `json:"labels,omitempty"`
	MinCPUCores                  *uint32  `json:"min_cpu_cores,omitempty"`
	PreferGPUCompute             bool     `json:"prefer_gpu_compute"`
	RoutingTier                  *string  `json:"routing_tier,omitempty"`
	IsLowConfidenceBypassBlocked bool     `json:"is_low_confidence_bypass_blocked"`
	ForceSocratesResearch        bool     `json:"force_socrates_research"`
}

// TaskKind is a snake_case enumeration (SPEC 1.3).
type TaskKind string

// TaskKinds lists the wire names.
var TaskKinds = []TaskKind{"text_infer", "image_gen", "speech_transcribe", "train_qlora", "embed", "vox_script"}

func (k *TaskKind) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	for _, v := range TaskKinds {
		if string(v) == s {
			*k = v
			return nil
		}
	}
	return &InvalidValueError{Field: "task_kind", Value: s}
}

// Matches reports whether a message's task_kind names this kind, by wire
// name or by the original's underscore-free identifier (SPEC 16.12).
func (k TaskKind) Matches(msgKind string) bool {
	m := strings.ToLower(strings.TrimSpace(msgKind))
	return m == string(k) || m == strings.ReplaceAll(string(k), "_", "")
}

// DonationSlot is one entry of WorkerDonationPolicy.slots.
type DonationSlot struct {
	TaskKind      TaskKind `json:"task_kind"`
	MaxConcurrent uint8    `json:"max_concurrent"`
	WeightPct     uint8    `json:"weight_pct"`
}

func (d *DonationSlot) UnmarshalJSON(b []byte) error {
	var aux struct {
		TaskKind      *TaskKind `json:"task_kind"`
		MaxConcurrent *uint8    `json:"max_concurrent"`
		WeightPct     *uint8    `json:"weight_pct"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.TaskKind == nil:
		return missing("task_kind")
	case aux.MaxConcurrent == nil:
		return missing("max_concurrent")
	case aux.WeightPct == nil:
		return missing("weight_pct")
	}
	*d = DonationSlot{*aux.TaskKind, *aux.MaxConcurrent, *aux.WeightPct}
	return nil
}

// WorkerDonationPolicy is NodeRecord.donation_policy (SPEC 1.3).
type WorkerDonationPolicy struct {
	Slots                        []DonationSlot  `json:"slots"`
	NSFWAllowed                  bool            `json:"nsfw_allowed"`
	MaxJobDurationSecs           uint64          `json:"max_job_duration_secs"`
	PublicMeshOptIn              bool            `json:"public_mesh_opt_in"`
	MinPriority                  uint8           `json:"min_priority"`
	AllowedScopes                []string        `json:"allowed_scopes"`
	AllowedUsers                 []string        `json:"allowed_users"`
	DeniedUsers                  []string        `json:"denied_users"`
	AllowedMeshNetworks          []string        `json:"allowed_mesh_networks"`
	AcceptSensitiveWorkloads     bool            `json:"accept_sensitive_workloads"`
	Redundancy                   json.RawMessage `json:"redundancy,omitempty"`
	AcceptsInferenceWorkloads    bool            `json:"accepts_inference_workloads"`
	AcceptsTrainingWorkloads     bool            `json:"accepts_training_workloads"`
	CUDATier                     uint8           `json:"cuda_tier"`
	MetalTier                    uint8           `json:"metal_tier"`
	VRAMMinGB                    uint32          `json:"vram_min_gb"`
	AcceptsSensitiveTrainingData bool            `json:"accepts_sensitive_training_data"`
}

func (p *WorkerDonationPolicy) UnmarshalJSON(b []byte) error {
	type plain WorkerDonationPolicy
	var aux struct {
		plain
		Slots              *[]DonationSlot `json:"slots"`
		NSFWAllowed        *bool           `json:"nsfw_allowed"`
		MaxJobDurationSecs *uint64         `json:"max_job_duration_secs"`
		PublicMeshOptIn    *bool           `json:"public_mesh_opt_in"`
		MinPriority        *uint8          `json:"min_priority"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.Slots == nil:
		return missing("slots")
	case aux.NSFWAllowed == nil:
		return missing("nsfw_allowed")
	case aux.MaxJobDurationSecs == nil:
		return missing("max_job_duration_secs")
	case aux.PublicMeshOptIn == nil:
		return missing("public_mesh_opt_in")
	case aux.MinPriority == nil:
		return missing("min_priority")
	}
	*p = WorkerDonationPolicy(aux.plain)
	p.Slots, p.NSFWAllowed, p.MaxJobDurationSecs = *aux.Slots, *aux.NSFWAllowed, *aux.MaxJobDurationSecs
	p.PublicMeshOptIn, p.MinPriority = *aux.PublicMeshOptIn, *aux.MinPriority
	if string(p.Redundancy) == "null" {
		p.Redundancy = nil
	}
	return nil
}

// MarshalJSON writes a nil Slots as [] rather than null: slots is required on
// input, so a null would make the stored record unreadable.
func (p WorkerDonationPolicy) MarshalJSON() ([]byte, error) {
	type plain WorkerDonationPolicy
	if p.Slots == nil {
		p.Slots = []DonationSlot{}
	}
	return json.Marshal(plain(p))
}

// ModelAdvertisement is one entry of NodeRecord.advertised_models.
type ModelAdvertisement struct {
	ModelID        string     `json:"model_id"`
	TaskKinds      []TaskKind `json:"task_kinds"`
	VRAMRequiredMB uint32     `json:"vram_required_mb"`
	IsLoaded       bool       `json:"is_loaded"`
	Quantization   *string    `json:"quantization"`
}

// MarshalJSON writes a nil TaskKinds as [] rather than null (required on
// input, like WorkerDonationPolicy.Slots).
func (m ModelAdvertisement) MarshalJSON() ([]byte, error) {
	type plain ModelAdvertisement
	if m.TaskKinds == nil {
		m.TaskKinds = []TaskKind{}
	}
	return json.Marshal(plain(m))
}

func (m *ModelAdvertisement) UnmarshalJSON(b []byte) error {
	var aux struct {
		ModelID        *string     `json:"model_id"`
		TaskKinds      *[]TaskKind `json:"task_kinds"`
		VRAMRequiredMB *uint32     `json:"vram_required_mb"`
		IsLoaded       *bool       `json:"is_loaded"`
		Quantization   *string     `json:"quantization"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ModelID == nil:
		return missing("model_id")
	case aux.TaskKinds == nil:
		return missing("task_kinds")
	case aux.VRAMRequiredMB == nil:
		return missing("vram_required_mb")
	case aux.IsLoaded == nil:
		return missing("is_loaded")
	}
	*m = ModelAdvertisement{*aux.ModelID, *aux.TaskKinds, *aux.VRAMRequiredMB, *aux.IsLoaded, aux.Quantization}
	return nil
}

// Registry is the node list response and the local registry file (SPEC 1.4).
type Registry struct {
	SchemaVersion uint32       `json:"schema_version"`
	Nodes         []NodeRecord `json:"nodes"`
	QueueDepth    *uint64      `json:"queue_depth,omitempty"`
}

// LeaveRequest is the body of POST /v1/populi/leave.
type LeaveRequest struct {
	ID string `json:"id"`
}

func (r *LeaveRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		ID *string `json:"id"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.ID == nil {
		return missing("id")
	}
	r.ID = *aux.ID
	return nil
}
