package store

import (
	"strings"
	"testing"

	"populi-db/wire"
)

func fedEntry(scope, url string) wire.MeshDirectoryEntry {
	return wire.MeshDirectoryEntry{ScopeID: scope, ControlURL: url, TaskKinds: []wire.TaskKind{}}
}

func fedScopes(t *testing.T, s *Store) string {
	t.Helper()
	es, err := s.FederationEntries()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.ScopeID+"@"+e.ControlURL)
	}
	return strings.Join(out, " ")
}

// A merge replaces by scope_id in place, appends new scopes, skips our own
// scope, counts unchanged entries, and refuses new scopes past the cap.
func TestMergeFederation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	if err := b.s.AnnounceFederation(fedEntry("a", "u1"), 3); err != nil {
		t.Fatal(err)
	}
	m, err := b.s.MergeFederation([]wire.MeshDirectoryEntry{
		fedEntry("a", "u2"), fedEntry("me", "u3"), fedEntry("b", "u4"), fedEntry("c", "u5"), fedEntry("d", "u6"),
	}, "me", 3)
	if err != nil {
		t.Fatal(err)
	}
	if m != (FederationMerge{Added: 2, Replaced: 1, Own: 1, Refused: 1}) || !m.Changed() {
		t.Fatalf("merge %+v", m)
	}
	if got := fedScopes(t, b.s); got != "a@u2 b@u4 c@u5" {
		t.Fatalf("directory %q", got)
	}
	m, err = b.s.MergeFederation([]wire.MeshDirectoryEntry{fedEntry("b", "u4"), fedEntry("c", "u5")}, "me", 3)
	if err != nil || m != (FederationMerge{Unchanged: 2}) || m.Changed() {
		t.Fatalf("repeat merge %+v %v", m, err)
	}
	if err := b.s.AnnounceFederation(fedEntry("e", "u7"), 3); err != wire.ErrFedDirectoryFull {
		t.Fatalf("announce past the cap: %v", err)
	}
	if err := b.s.AnnounceFederation(fedEntry("c", "u8"), 3); err != nil {
		t.Fatalf("replace at the cap: %v", err)
	}
	raw, err := b.s.FederationDirectoryJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(raw), `{"entries":[{"scope_id":"a","control_url":"u2","region_label":null,`) {
		t.Fatalf("directory JSON %s", raw)
	}
}
