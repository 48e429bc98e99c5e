package cli

import (
	"strings"
	"testing"
)

func TestCompletionAndVersion(t *testing.T) {
	t.Parallel()
	for shell, want := range map[string]string{"bash": "complete -o bashdefault", "zsh": "#compdef populi-db", "fish": "complete -c populi-db"} {
		runCLI(t, nil, "", "completion", shell).want(t, 0, want, "")
	}
	runCLI(t, nil, "", "completion", "tcsh").want(t, 2, "", `unknown shell "tcsh"`)
	runCLI(t, nil, "", "completion").want(t, 2, "", "name one shell")
	// The completion scripts ask the binary for candidates.
	r := runCLI(t, nil, "", "admin", "--generate-bash-completion")
	for _, sub := range []string{"maintenance", "quarantine", "exec-lease-revoke", "requeue"} {
		if !strings.Contains(r.stdout, sub) {
			t.Fatalf("completion candidates lack %s:\n%s", sub, r.stdout)
		}
	}
	runCLI(t, nil, "", "--version").want(t, 0, "populi-db version ", "")
}
