package cli

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	ucli "github.com/urfave/cli/v2"
)

// Sizes of what `init` mints (SPEC 16.16d: crypto/rand, at least 192 bits).
const (
	MeshTokenBytes = 24 // 48 hex characters
	ScopeIDBytes   = 8  // scope-<16 hex>
)

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on supported platforms
	}
	return hex.EncodeToString(b)
}

func initCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "init",
		Usage: "print a fresh VOX_MESH_SCOPE_ID and VOX_MESH_TOKEN to export before `serve`",
		Description: "Mints a random scope id and a 192-bit mesh token from crypto/rand and prints them as\n" +
			"KEY=value lines, e.g.  set -a; eval \"$(populi-db init)\"; set +a\n" +
			"Nothing is saved: keep the values in your secret store or a mode-0600 env file.",
		Flags: []ucli.Flag{outputFlag},
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			scope := "scope-" + randomHex(ScopeIDBytes)
			token := randomHex(MeshTokenBytes)
			if asJSON {
				return printJSON(c.App.Writer, map[string]string{EnvScopeID: scope, EnvMeshToken: token})
			}
			_, err = fmt.Fprintf(c.App.Writer, "%s=%s\n%s=%s\n", EnvScopeID, scope, EnvMeshToken, token)
			return err
		},
	}
}
