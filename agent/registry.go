package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"populi-db/internal/clock"
	"populi-db/wire"
)

// RegistryTempPath is the sibling temp file of a registry path (SPEC 1.4):
// the final extension is replaced by "json.tmp" (local-registry.json →
// local-registry.json.tmp); a name without an extension gets ".json.tmp".
func RegistryTempPath(path string) string {
	base := filepath.Base(path)
	ext := filepath.Ext(base)
	if ext == base { // ".hidden": a name, not an extension
		ext = ""
	}
	return strings.TrimSuffix(path, ext) + ".json.tmp"
}

// LoadRegistry reads a local registry file; a missing file is an empty
// registry (SPEC 1.4).
func LoadRegistry(path string) (wire.Registry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return wire.Registry{SchemaVersion: 1, Nodes: []wire.NodeRecord{}}, nil
	}
	if err != nil {
		return wire.Registry{}, fmt.Errorf("read registry %s: %w", path, err)
	}
	var r wire.Registry
	if err := json.Unmarshal(b, &r); err != nil {
		return wire.Registry{}, fmt.Errorf("parse registry %s: %w", path, err)
	}
	if r.Nodes == nil {
		r.Nodes = []wire.NodeRecord{}
	}
	return r, nil
}

// PublishRegistry upserts rec into the local registry file at path (SPEC
// 1.4): load, schema_version = 1, last_seen_unix_ms = now, replace the node
// with the same id in place or append, then write pretty-printed JSON to the
// sibling temp file, fsync, and rename it over path. Single writer assumed.
func PublishRegistry(path string, rec wire.NodeRecord, now time.Time) error {
	reg, err := LoadRegistry(path)
	if err != nil {
		return err
	}
	reg.SchemaVersion = 1
	rec.LastSeenUnixMs = clock.UnixMs(now)
	replaced := false
	for i := range reg.Nodes {
		if reg.Nodes[i].ID == rec.ID {
			reg.Nodes[i], replaced = rec, true
			break
		}
	}
	if !replaced {
		reg.Nodes = append(reg.Nodes, rec)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(reg); err != nil {
		return fmt.Errorf("encode registry: %w", err)
	}
	// A shared artefact for file-based consumers: world-readable, like the
	// original's default-mode file.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create registry directory: %w", err)
	}
	return writeFileAtomic(path, RegistryTempPath(path), buf.Bytes(), 0o644)
}
