package wire

import "encoding/json"

// ExecLease is an exec lease row (SPEC 1.7) plus issue 9's fencing token.
type ExecLease struct {
	LeaseID       string  `json:"lease_id"`
	ScopeKey      string  `json:"scope_key"`
	HolderNodeID  string  `json:"holder_node_id"`
	ExpiresUnixMs uint64  `json:"expires_unix_ms"`
	LeaseToken    *uint64 `json:"lease_token,omitempty"`
}

func (l *ExecLease) UnmarshalJSON(b []byte) error {
	var aux struct {
		LeaseID       *string `json:"lease_id"`
		ScopeKey      *string `json:"scope_key"`
		HolderNodeID  *string `json:"holder_node_id"`
		ExpiresUnixMs *uint64 `json:"expires_unix_ms"`
		LeaseToken    *uint64 `json:"lease_token"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.LeaseID == nil:
		return missing("lease_id")
	case aux.ScopeKey == nil:
		return missing("scope_key")
	case aux.HolderNodeID == nil:
		return missing("holder_node_id")
	case aux.ExpiresUnixMs == nil:
		return missing("expires_unix_ms")
	}
	*l = ExecLease{*aux.LeaseID, *aux.ScopeKey, *aux.HolderNodeID, *aux.ExpiresUnixMs, aux.LeaseToken}
	return nil
}

// ExecLeaseList answers GET /v1/populi/exec/leases.
type ExecLeaseList struct {
	Leases []ExecLease `json:"leases"`
}

// ExecGrantRequest is the body of POST /v1/populi/exec/lease/grant.
type ExecGrantRequest struct {
	ClaimerNodeID string `json:"claimer_node_id"`
	ScopeKey      string `json:"scope_key"`
}

func (r *ExecGrantRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		ClaimerNodeID *string `json:"claimer_node_id"`
		ScopeKey      *string `json:"scope_key"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.ClaimerNodeID == nil:
		return missing("claimer_node_id")
	case aux.ScopeKey == nil:
		return missing("scope_key")
	}
	*r = ExecGrantRequest{*aux.ClaimerNodeID, *aux.ScopeKey}
	return nil
}

// ExecLeaseRequest is the body of exec lease renew and release.
type ExecLeaseRequest struct {
	LeaseID       string  `json:"lease_id"`
	ClaimerNodeID string  `json:"claimer_node_id"`
	LeaseToken    *uint64 `json:"lease_token,omitempty"`
}

func (r *ExecLeaseRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		LeaseID       *string `json:"lease_id"`
		ClaimerNodeID *string `json:"claimer_node_id"`
		LeaseToken    *uint64 `json:"lease_token"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.LeaseID == nil:
		return missing("lease_id")
	case aux.ClaimerNodeID == nil:
		return missing("claimer_node_id")
	}
	*r = ExecLeaseRequest{*aux.LeaseID, *aux.ClaimerNodeID, aux.LeaseToken}
	return nil
}

// RevokeRequest is the body of POST /v1/populi/admin/exec-lease/revoke.
type RevokeRequest struct {
	LeaseID string `json:"lease_id"`
}

func (r *RevokeRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		LeaseID *string `json:"lease_id"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.LeaseID == nil {
		return missing("lease_id")
	}
	r.LeaseID = *aux.LeaseID
	return nil
}

// QuarantineRequest is the body of POST /v1/populi/admin/quarantine.
type QuarantineRequest struct {
	NodeID      string `json:"node_id"`
	Quarantined bool   `json:"quarantined"`
}

func (r *QuarantineRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		NodeID      *string `json:"node_id"`
		Quarantined *bool   `json:"quarantined"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.NodeID == nil:
		return missing("node_id")
	case aux.Quarantined == nil:
		return missing("quarantined")
	}
	*r = QuarantineRequest{*aux.NodeID, *aux.Quarantined}
	return nil
}

// MaintenanceRequest is the body of POST /v1/populi/admin/maintenance.
type MaintenanceRequest struct {
	NodeID                 string  `json:"node_id"`
	Maintenance            bool    `json:"maintenance"`
	MaintenanceUntilUnixMs *uint64 `json:"maintenance_until_unix_ms,omitempty"`
	MaintenanceForMs       *uint64 `json:"maintenance_for_ms,omitempty"`
}

func (r *MaintenanceRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		NodeID                 *string `json:"node_id"`
		Maintenance            *bool   `json:"maintenance"`
		MaintenanceUntilUnixMs *uint64 `json:"maintenance_until_unix_ms"`
		MaintenanceForMs       *uint64 `json:"maintenance_for_ms"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	switch {
	case aux.NodeID == nil:
		return missing("node_id")
	case aux.Maintenance == nil:
		return missing("maintenance")
	}
	*r = MaintenanceRequest{*aux.NodeID, *aux.Maintenance, aux.MaintenanceUntilUnixMs, aux.MaintenanceForMs}
	return nil
}

// BootstrapExchangeRequest is the body of POST /v1/populi/bootstrap/exchange.
type BootstrapExchangeRequest struct {
	BootstrapToken string `json:"bootstrap_token"`
}

func (r *BootstrapExchangeRequest) UnmarshalJSON(b []byte) error {
	var aux struct {
		BootstrapToken *string `json:"bootstrap_token"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.BootstrapToken == nil {
		return missing("bootstrap_token")
	}
	r.BootstrapToken = *aux.BootstrapToken
	return nil
}

// BootstrapExchangeResponse carries the mesh token; scope_id is always present.
type BootstrapExchangeResponse struct {
	MeshToken string  `json:"mesh_token"`
	ScopeID   *string `json:"scope_id"`
}
