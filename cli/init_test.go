package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// appMu serializes in-process CLI runs: urfave/cli writes to its
// package-level HelpFlag on every run, which races between parallel tests.
// (The binary runs one app per process.)
var appMu sync.Mutex

// runApp runs the CLI in process and returns its output and error.
func runApp(t *testing.T, args ...string) (string, error) {
	t.Helper()
	appMu.Lock()
	defer appMu.Unlock()
	var out bytes.Buffer
	app := App()
	app.Writer, app.ErrWriter = &out, &out
	err := app.RunContext(context.Background(), append([]string{"populi-db"}, args...))
	return out.String(), err
}

func TestInitPrintsFreshScopeAndToken(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^VOX_MESH_SCOPE_ID=scope-[0-9a-f]{16}\nVOX_MESH_TOKEN=[0-9a-f]{48}\n$`)
	first, err := runApp(t, "init")
	if err != nil {
		t.Fatal(err)
	}
	if !re.MatchString(first) {
		t.Fatalf("init printed %q", first)
	}
	second, _ := runApp(t, "init")
	if first == second {
		t.Error("two init runs printed the same values")
	}
}

func TestInitJSON(t *testing.T) {
	t.Parallel()
	out, err := runApp(t, "init", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if !strings.HasPrefix(m[EnvScopeID], "scope-") || len(m[EnvMeshToken]) != 48 {
		t.Errorf("json = %v", m)
	}
	if _, err := runApp(t, "init", "-o", "yaml"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Errorf("-o yaml: err = %v, want a usage error naming --output", err)
	}
}
