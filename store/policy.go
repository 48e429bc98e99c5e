package store

import (
	"strings"

	"populi-db/wire"
)

// claimAllowed is SPEC 6.6's claim policy.
func (t *txn) claimAllowed(m *wire.StoredMessage, node *wire.NodeRecord) bool {
	p := wire.Norm(m.PrivacyClass)
	v := wire.Norm(node.Visibility)
	if v == "" {
		v = "private"
	}
	tier := wire.Norm(node.TrustTier)
	if tier == "" {
		tier = "trusted"
	}
	if p == "" || p == "public" {
		if v == "private" {
			return false // R1
		}
		if pol := node.DonationPolicy; pol != nil {
			if !pol.PublicMeshOptIn || m.Priority < pol.MinPriority { // R2, R3
				return false
			}
			if m.TaskKind != nil {
				match := false
				for _, sl := range pol.Slots {
					if sl.TaskKind.Matches(*m.TaskKind) {
						match = true
						break
					}
				}
				if !match {
					return false // R4
				}
			}
			if pol.DeniedUsers != nil || pol.AllowedUsers != nil {
				owner := t.senderOwner(m)
				if pol.DeniedUsers != nil && owner != "" && containsNorm(pol.DeniedUsers, owner) {
					return false // R5
				}
				if pol.AllowedUsers != nil && (owner == "" || !containsNorm(pol.AllowedUsers, owner)) {
					return false // R6
				}
			}
		}
	}
	switch p {
	case "private", "trusted":
		return v != "public" // R7
	case "trusted_only":
		return v != "public" && tier != "new" // R8
	}
	return true // R9
}

func (t *txn) senderOwner(m *wire.StoredMessage) string {
	if m.SenderNodeID == nil {
		return ""
	}
	n, err := t.getNode(*m.SenderNodeID)
	if err != nil || n == nil {
		return ""
	}
	return wire.Norm(n.rec.OwnerVoxUserID)
}

func containsNorm(list []string, v string) bool {
	for _, x := range list {
		if strings.ToLower(strings.TrimSpace(x)) == v {
			return true
		}
	}
	return false
}
