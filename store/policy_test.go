package store

import (
	"fmt"
	"testing"

	"populi-db/wire"
)

func policy(edit func(*wire.WorkerDonationPolicy)) *wire.WorkerDonationPolicy {
	// Slots is required on the wire: a nil slice would be stored as null,
	// which the record's own decoder then refuses.
	p := &wire.WorkerDonationPolicy{PublicMeshOptIn: true, Slots: []wire.DonationSlot{}}
	if edit != nil {
		edit(p)
	}
	return p
}

func slots(kinds ...wire.TaskKind) func(*wire.WorkerDonationPolicy) {
	return func(p *wire.WorkerDonationPolicy) {
		for _, k := range kinds {
			p.Slots = append(p.Slots, wire.DonationSlot{TaskKind: k, MaxConcurrent: 1, WeightPct: 100})
		}
	}
}

// TestClaimPolicy walks SPEC 6.6's rules R1-R9 (with 16.12's task-kind
// spellings). Each case gets its own receiver and claimer in one store.
func TestClaimPolicy(t *testing.T) {
	t.Parallel()
	type msg struct {
		privacy  *string
		prio     uint8
		kind     *string
		owner    *string // owner_vox_user_id of the sending node; nil = no sender node
		noSender bool    // the sender node id names no registered node
	}
	type node struct {
		vis, tier *string
		pol       *wire.WorkerDonationPolicy
	}
	pub, priv, hyb := ptr("public"), ptr("private"), ptr("hybrid")
	cases := []struct {
		name string
		m    msg
		n    node
		want bool
	}{
		// R1: public rows (absent, empty or "public" privacy) need a non-private node.
		{"R1 defaults deny", msg{}, node{}, false},
		{"R1 empty privacy, private node", msg{privacy: ptr("")}, node{vis: priv}, false},
		{"R1 public row, public node", msg{privacy: pub}, node{vis: pub}, true},
		{"R1 public row, hybrid node", msg{}, node{vis: hyb}, true},
		{"R1 normalization", msg{privacy: ptr(" PUBLIC ")}, node{vis: ptr(" Private ")}, false},
		{"R1 normalization allow", msg{privacy: ptr(" PUBLIC ")}, node{vis: ptr("Public")}, true},
		// R2: a donation policy must opt in to the public mesh.
		{"R2 no opt-in", msg{}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.PublicMeshOptIn = false })}, false},
		{"R2 opt-in", msg{}, node{vis: pub, pol: policy(nil)}, true},
		{"R2 private rows ignore the policy", msg{privacy: priv}, node{vis: hyb, pol: policy(func(p *wire.WorkerDonationPolicy) { p.PublicMeshOptIn = false })}, true},
		// R3: min_priority.
		{"R3 below min", msg{prio: 99}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.MinPriority = 100 })}, false},
		{"R3 at min", msg{prio: 100}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.MinPriority = 100 })}, true},
		// R4: task kinds, by wire name or underscore-free identifier (16.12).
		{"R4 wire name", msg{kind: ptr("text_infer")}, node{vis: pub, pol: policy(slots("text_infer"))}, true},
		{"R4 identifier", msg{kind: ptr("textinfer")}, node{vis: pub, pol: policy(slots("text_infer"))}, true},
		{"R4 case and space", msg{kind: ptr(" TEXT_INFER ")}, node{vis: pub, pol: policy(slots("text_infer"))}, true},
		{"R4 identifier, another slot", msg{kind: ptr("speechtranscribe")}, node{vis: pub, pol: policy(slots("embed", "speech_transcribe"))}, true},
		{"R4 embed", msg{kind: ptr("embed")}, node{vis: pub, pol: policy(slots("embed"))}, true},
		{"R4 no matching slot", msg{kind: ptr("image_gen")}, node{vis: pub, pol: policy(slots("text_infer"))}, false},
		{"R4 no slots", msg{kind: ptr("embed")}, node{vis: pub, pol: policy(nil)}, false},
		{"R4 half spelling", msg{kind: ptr("text_in_fer")}, node{vis: pub, pol: policy(slots("text_infer"))}, false},
		{"R4 row without kind", msg{}, node{vis: pub, pol: policy(slots("text_infer"))}, true},
		// R5: denied owners.
		{"R5 denied owner", msg{owner: ptr(" Alice ")}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.DeniedUsers = []string{"alice"} })}, false},
		{"R5 other owner", msg{owner: ptr("bob")}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.DeniedUsers = []string{"alice"} })}, true},
		{"R5 unknown owner", msg{}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.DeniedUsers = []string{"alice"} })}, true},
		{"R5 unregistered sender node", msg{noSender: true}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.DeniedUsers = []string{"alice"} })}, true},
		// R6: allowed owners.
		{"R6 allowed owner", msg{owner: ptr("BOB")}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.AllowedUsers = []string{" bob "} })}, true},
		{"R6 other owner", msg{owner: ptr("alice")}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.AllowedUsers = []string{"bob"} })}, false},
		{"R6 unknown owner", msg{}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.AllowedUsers = []string{"bob"} })}, false},
		{"R6 empty allow-list", msg{owner: ptr("bob")}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) { p.AllowedUsers = []string{} })}, false},
		{"R5 before R6", msg{owner: ptr("bob")}, node{vis: pub, pol: policy(func(p *wire.WorkerDonationPolicy) {
			p.AllowedUsers, p.DeniedUsers = []string{"bob"}, []string{"bob"}
		})}, false},
		// R7: private and trusted rows stay off public nodes.
		{"R7 private, default node", msg{privacy: priv}, node{}, true},
		{"R7 private, public node", msg{privacy: priv}, node{vis: pub}, false},
		{"R7 trusted, hybrid node", msg{privacy: ptr("Trusted")}, node{vis: hyb}, true},
		{"R7 trusted, public node", msg{privacy: ptr("trusted")}, node{vis: ptr(" PUBLIC")}, false},
		// R8: trusted_only also needs a tier other than new.
		{"R8 default tier", msg{privacy: ptr("trusted_only")}, node{}, true},
		{"R8 new tier", msg{privacy: ptr("trusted_only")}, node{tier: ptr(" New ")}, false},
		{"R8 probation tier", msg{privacy: ptr("trusted_only")}, node{tier: ptr("probation")}, true},
		{"R8 public node", msg{privacy: ptr("trusted_only")}, node{vis: pub}, false},
		// R9: anything else is claimable by everyone.
		{"R9 unknown class, public node", msg{privacy: ptr("public_ok")}, node{vis: pub}, true},
		{"R9 unknown class, private node", msg{privacy: ptr("public_ok")}, node{vis: priv, tier: ptr("new")}, true},
	}
	b := setup(t)
	for i, tc := range cases {
		claimer, recv := fmt.Sprintf("n%d", i), fmt.Sprintf("%d", 100+i)
		b.join(claimer, func(r *wire.NodeRecord) {
			r.Visibility, r.TrustTier, r.DonationPolicy = tc.n.vis, tc.n.tier, tc.n.pol
		})
		senderNode := ""
		if tc.m.owner != nil || tc.m.noSender {
			senderNode = fmt.Sprintf("sender%d", i)
		}
		if tc.m.owner != nil {
			b.join(senderNode, func(r *wire.NodeRecord) { r.OwnerVoxUserID = tc.m.owner })
		}
		prio := tc.m.prio
		if prio == 0 {
			prio = wire.DefaultPriority
		}
		id, err := b.s.Deliver(wire.DeliverRequest{
			SenderAgentID: "1", ReceiverAgentID: recv, PrivacyClass: tc.m.privacy,
			Priority: ptr(prio), TaskKind: tc.m.kind,
		}, senderNode)
		wantErr(t, err, nil)
		got := b.claim(recv, claimer)
		if (got != nil) != tc.want {
			t.Errorf("%s: claimed=%v, want %v", tc.name, got != nil, tc.want)
		}
		if got != nil && got.ID != id {
			t.Errorf("%s: claimed row %d, want %d", tc.name, got.ID, id)
		}
	}
}

// A denied row is skipped, not a dead end: the claim takes the best row the
// policy allows, and the skipped row stays for a node that may take it.
func TestClaimPolicySkipsDeniedRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.join("private-node")
	b.join("public-node", func(r *wire.NodeRecord) { r.Visibility = ptr("public") })
	public := b.deliver("2", withPrio(255), func(r *wire.DeliverRequest) { r.PrivacyClass = nil })
	private := b.deliver("2", withPrio(1))
	b.mustClaim("2", "private-node", private)
	b.mustClaim("2", "public-node", public)
	b.join("other-public", func(r *wire.NodeRecord) { r.Visibility = ptr("public") })
	b.mustClaimNone("2", "other-public")
}
