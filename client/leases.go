package client

import (
	"context"
	"net/http"

	"populi-db/wire"
)

// GrantExecLease calls POST /v1/populi/exec/lease/grant (worker-plane): the
// lease on scopeKey for claimer, with its fencing token.
func (c *Client) GrantExecLease(ctx context.Context, claimer, scopeKey string) (wire.ExecLease, error) {
	var out wire.ExecLease
	_, err := c.do(ctx, call{name: "exec_lease_grant", method: http.MethodPost, path: "/v1/populi/exec/lease/grant", class: ClassWorker,
		in: wire.ExecGrantRequest{ClaimerNodeID: claimer, ScopeKey: scopeKey}, out: &out})
	return out, err
}

// ListExecLeases calls GET /v1/populi/exec/leases (admin).
func (c *Client) ListExecLeases(ctx context.Context) ([]wire.ExecLease, error) {
	var out wire.ExecLeaseList
	_, err := c.do(ctx, call{name: "exec_lease_list", method: http.MethodGet, path: "/v1/populi/exec/leases", class: ClassAdmin, out: &out})
	return out.Leases, err
}

// RenewExecLease calls POST /v1/populi/exec/lease/renew (worker-plane).
func (c *Client) RenewExecLease(ctx context.Context, req wire.ExecLeaseRequest) error {
	_, err := c.do(ctx, call{name: "exec_lease_renew", method: http.MethodPost, path: "/v1/populi/exec/lease/renew", class: ClassWorker, in: req})
	return err
}

// ReleaseExecLease calls POST /v1/populi/exec/lease/release (worker-plane).
func (c *Client) ReleaseExecLease(ctx context.Context, req wire.ExecLeaseRequest) error {
	_, err := c.do(ctx, call{name: "exec_lease_release", method: http.MethodPost, path: "/v1/populi/exec/lease/release", class: ClassWorker, in: req})
	return err
}

// RevokeExecLease calls POST /v1/populi/admin/exec-lease/revoke (admin).
func (c *Client) RevokeExecLease(ctx context.Context, leaseID string) error {
	_, err := c.do(ctx, call{name: "admin_exec_lease_revoke", method: http.MethodPost, path: "/v1/populi/admin/exec-lease/revoke", class: ClassAdmin,
		in: wire.RevokeRequest{LeaseID: leaseID}})
	return err
}

// SetQuarantine calls POST /v1/populi/admin/quarantine (admin).
func (c *Client) SetQuarantine(ctx context.Context, nodeID string, quarantined bool) error {
	_, err := c.do(ctx, call{name: "admin_quarantine", method: http.MethodPost, path: "/v1/populi/admin/quarantine", class: ClassAdmin,
		in: wire.QuarantineRequest{NodeID: nodeID, Quarantined: quarantined}})
	return err
}

// SetMaintenance calls POST /v1/populi/admin/maintenance (admin).
func (c *Client) SetMaintenance(ctx context.Context, req wire.MaintenanceRequest) error {
	_, err := c.do(ctx, call{name: "admin_maintenance", method: http.MethodPost, path: "/v1/populi/admin/maintenance", class: ClassAdmin, in: req})
	return err
}
