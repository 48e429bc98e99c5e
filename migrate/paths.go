// Package migrate imports the JSON files of the original control plane
// (registry, A2A relay store, exec lease store, replay state: SPEC 1.4, 1.8)
// into a populi-db database, in one transaction, through store.Import.
package migrate

import (
	"path/filepath"
	"strings"
)

// Legacy path environment variables (SPEC 1.4, 1.8, 13).
const (
	EnvRegistryPath   = "VOX_MESH_REGISTRY_PATH"
	EnvA2AStorePath   = "VOX_MESH_A2A_STORE_PATH"
	EnvExecLeasePath  = "VOX_MESH_EXEC_LEASE_STORE_PATH"
	EnvReplayPersist  = "VOX_MESH_REPLAY_PERSIST"
	EnvReplayStateDir = "VOX_MESH_REPLAY_STATE_PATH"
)

// Source is one legacy file: where it is, and whether the operator named it
// (a named file must exist; a default one may be absent).
type Source struct {
	Path     string `json:"path"`
	Explicit bool   `json:"explicit"`
	Disabled string `json:"disabled,omitempty"` // why the file is not read
}

// Sources are the four legacy files.
type Sources struct {
	Registry, A2A, ExecLeases, Replay Source
}

// Flags are the operator's --registry, --a2a-store, --exec-lease-store and
// --replay-state values ("" = use the default rule).
type Flags struct {
	Registry, A2A, ExecLeases, Replay string
}

// ResolveSources applies the original's path rules: the registry is
// VOX_MESH_REGISTRY_PATH (verbatim) else $HOME/.vox/cache/populi/
// local-registry.json (home: HOME, then USERPROFILE, then "."); the A2A
// store is VOX_MESH_A2A_STORE_PATH (trimmed) else next to the registry; the
// exec lease store and replay state are their variables (trimmed) else next
// to the A2A store; VOX_MESH_REPLAY_PERSIST=0/false turns the replay file
// off. A flag overrides its rule.
func ResolveSources(f Flags, lookup func(string) (string, bool)) Sources {
	env := func(k string) string { v, _ := lookup(k); return v }
	var s Sources
	s.Registry = pick(f.Registry, func() string {
		if v := env(EnvRegistryPath); v != "" {
			return v
		}
		home := env("HOME")
		if home == "" {
			home = env("USERPROFILE")
		}
		if home == "" {
			home = "."
		}
		return filepath.Join(home, ".vox", "cache", "populi", "local-registry.json")
	})
	s.A2A = pick(f.A2A, func() string {
		if v := strings.TrimSpace(env(EnvA2AStorePath)); v != "" {
			return v
		}
		return filepath.Join(filepath.Dir(s.Registry.Path), "a2a-store.json")
	})
	s.ExecLeases = pick(f.ExecLeases, func() string {
		if v := strings.TrimSpace(env(EnvExecLeasePath)); v != "" {
			return v
		}
		return filepath.Join(filepath.Dir(s.A2A.Path), "exec-lease-store.json")
	})
	s.Replay = pick(f.Replay, func() string {
		if v := strings.TrimSpace(env(EnvReplayStateDir)); v != "" {
			return v
		}
		return filepath.Join(filepath.Dir(s.A2A.Path), "mesh-replay-state.json")
	})
	if !s.Replay.Explicit {
		switch strings.ToLower(strings.TrimSpace(env(EnvReplayPersist))) {
		case "0", "false":
			s.Replay.Disabled = EnvReplayPersist + " turns replay persistence off"
		}
	}
	return s
}

func pick(flag string, rule func() string) Source {
	if flag != "" {
		return Source{Path: flag, Explicit: true}
	}
	return Source{Path: rule()}
}
