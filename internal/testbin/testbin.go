// Package testbin builds the populi-db binary once per test process, for
// the tests that run it as a child (cli, crashtest).
package testbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// MainPackage is the import path of the populi-db command.
const MainPackage = "populi-db"

var (
	mu     sync.Mutex
	dir    string
	builds = map[bool]*build{} // by race
)

type build struct {
	once sync.Once
	path string
	err  error
}

// Path returns the binary, building it on first use (with -race when race
// is set). A failed build fails every test that asks for it.
func Path(t testing.TB, race bool) string {
	t.Helper()
	b, err := get(race)
	if err != nil {
		t.Fatalf("build populi-db: %v", err)
	}
	b.once.Do(func() {
		name := "populi-db"
		args := []string{"build", "-o"}
		if race {
			name += "-race"
		}
		b.path = filepath.Join(dir, name)
		args = append(args, b.path)
		if race {
			args = append(args, "-race")
		}
		args = append(args, MainPackage)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if b.err != nil {
		t.Fatalf("build populi-db: %v", b.err)
	}
	return b.path
}

func get(race bool) (*build, error) {
	mu.Lock()
	defer mu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "populi-db-testbin-")
		if err != nil {
			return nil, err
		}
		dir = d
	}
	if builds[race] == nil {
		builds[race] = &build{}
	}
	return builds[race], nil
}

// Cleanup removes the built binaries; call it from TestMain after m.Run.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		_ = os.RemoveAll(dir)
		dir = ""
	}
}
