package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"populi-db/federation"
	"populi-db/gossip"
	"populi-db/wire"
)

// Federation gossip environment (SPEC 2.20, 13.1).
const (
	EnvFederationPeers      = "VOX_MESH_FEDERATION_BOOTSTRAP_PEERS"
	EnvFederationSigningKey = "VOX_MESH_FEDERATION_SIGNING_KEY"
	EnvControlAddr          = "VOX_MESH_CONTROL_ADDR"
	EnvVisibility           = "VOX_MESH_VISIBILITY"
	EnvDonationPolicy       = "VOX_MESH_DONATION_POLICY_JSON"
)

// GossipEnv is what gossip takes from the environment: its own entry, the
// bootstrap peers and the outbound bearer.
type GossipEnv struct {
	Self     gossip.Self
	Peers    []string
	Token    string   // VOX_MESH_TOKEN
	Warnings []string // never contain a secret
}

// ParseGossipEnv resolves the gossip settings. peersFlag, when not empty,
// replaces VOX_MESH_FEDERATION_BOOTSTRAP_PEERS. Unusable values fall back
// with a warning: an invalid signing key means unsigned entries, an invalid
// donation policy means no task kinds.
func ParseGossipEnv(lookup LookupFunc, peersFlag string) GossipEnv {
	var g GossipEnv
	get := func(k string) string { v, _ := lookup(k); return strings.TrimSpace(v) }

	g.Self.ScopeID, g.Self.ControlURL = gossip.ScopeIDDefault, gossip.ControlURLDefault
	if v := get(EnvScopeID); v != "" {
		g.Self.ScopeID = v
	}
	if raw, _ := lookup(EnvControlAddr); raw != "" { // raw, as SPEC 13.1 says
		g.Self.ControlURL = raw
	}
	g.Self.Public = get(EnvVisibility) == "public"
	g.Token = get(EnvMeshToken)

	peers := peersFlag
	if peers == "" {
		peers = get(EnvFederationPeers)
	}
	for _, p := range strings.Split(peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			g.Peers = append(g.Peers, p)
		}
	}

	if v := get(EnvDonationPolicy); v != "" {
		var pol wire.WorkerDonationPolicy
		if err := json.Unmarshal([]byte(v), &pol); err != nil {
			g.Warnings = append(g.Warnings, fmt.Sprintf("%s is not a valid donation policy (%v); gossip announces no task kinds", EnvDonationPolicy, err))
		} else {
			for _, s := range pol.Slots {
				if !slices.Contains(g.Self.TaskKinds, s.TaskKind) && len(g.Self.TaskKinds) < federation.MaxTaskKinds {
					g.Self.TaskKinds = append(g.Self.TaskKinds, s.TaskKind)
				}
			}
		}
	}

	if v := get(EnvFederationSigningKey); v != "" {
		key, err := federation.ParseSigningKey(v)
		if err != nil {
			g.Warnings = append(g.Warnings, fmt.Sprintf("%s ignored: %v; gossip announces an unsigned entry", EnvFederationSigningKey, err))
		} else {
			g.Self.SigningKey = key
		}
	}
	return g
}
