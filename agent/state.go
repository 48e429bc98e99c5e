package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Files in the agent's state directory.
const (
	nodeIDFile      = "node-id"
	credentialsFile = "credentials.json"
)

// State is the agent's state directory (mode 0700): the stable node id and
// the mesh token obtained by bootstrap exchange (mode 0600).
type State struct {
	Dir string
}

// OpenState creates dir (0700) if needed.
func OpenState(dir string) (*State, error) {
	if strings.TrimSpace(dir) == "" {
		return nil, errors.New("agent state directory not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create agent state directory %s: %w", dir, err)
	}
	return &State{Dir: dir}, nil
}

// NewNodeID is a generated node id, "local-<hex Unix ns>" (SPEC 13.2).
func NewNodeID(now time.Time) string {
	return "local-" + strconv.FormatInt(now.UnixNano(), 16)
}

// NodeID returns the id persisted in the state directory, generating and
// saving one with gen the first time, so restarts keep the same node id.
func (s *State) NodeID(gen func() string) (string, error) {
	p := filepath.Join(s.Dir, nodeIDFile)
	b, err := os.ReadFile(p)
	if err == nil {
		if id := strings.TrimSpace(string(b)); id != "" {
			return id, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	id := gen()
	if err := writeFileAtomic(p, "", []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("save node id: %w", err)
	}
	return id, nil
}

// Credentials is what a bootstrap exchange handed out.
type Credentials struct {
	MeshToken string  `json:"mesh_token"`
	ScopeID   *string `json:"scope_id"`
}

// Credentials reads the saved bootstrap result; ok is false when there is
// none. A file readable by group or others is tightened to 0600 first.
func (s *State) Credentials() (c Credentials, ok bool, err error) {
	p := filepath.Join(s.Dir, credentialsFile)
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Credentials{}, false, nil
	}
	if err != nil {
		return Credentials{}, false, fmt.Errorf("stat %s: %w", p, err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(p, 0o600); err != nil {
			return Credentials{}, false, fmt.Errorf("tighten %s to 0600: %w", p, err)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return Credentials{}, false, fmt.Errorf("read %s: %w", p, err)
	}
	if err := json.Unmarshal(b, &c); err != nil || strings.TrimSpace(c.MeshToken) == "" {
		return Credentials{}, false, fmt.Errorf("%s is not a saved bootstrap result (delete it to exchange again)", p)
	}
	return c, true, nil
}

// SaveCredentials writes c with mode 0600 (temp file, fsync, rename).
func (s *State) SaveCredentials(c Credentials) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(s.Dir, credentialsFile), "", b, 0o600); err != nil {
		return fmt.Errorf("save credentials: %w", err)
	}
	return nil
}
