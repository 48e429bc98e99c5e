package cli

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"
	"golang.org/x/term"

	"populi-db/client"
)

// pairTokenMax bounds the bootstrap token read from stdin.
const pairTokenMax = 4096

func pairCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "pair",
		Usage: "trade a one-time bootstrap token for the mesh token and print the export lines",
		Description: "Calls the server's bootstrap exchange (no bearer is sent). The bootstrap token is read from\n" +
			"$" + EnvBootstrapToken + ", else from stdin (one line; not echoed on a terminal) — never from a\n" +
			"flag. Prints once, for eval \"$(populi-db pair --control-url URL)\":\n" +
			"  export " + client.EnvControlURL + "=URL\n  export " + EnvMeshToken + "=...\n  export " + EnvScopeID + "=...  (when the server has a scope)\n" +
			"Each bootstrap token works once: a second exchange answers 410.",
		Flags: []ucli.Flag{controlURLFlag, outputFlag},
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return &usageError{err}
			}
			url, err := client.ControlURLFromEnv(c.String("control-url"), client.LookupFunc(osLookup()))
			if err != nil {
				return &usageError{err}
			}
			tok, err := bootstrapToken(c)
			if err != nil {
				return err
			}
			cl, err := client.New(url) // no tokens: the exchange is unauthenticated
			if err != nil {
				return &usageError{err}
			}
			r := &remote{c: cl, url: url}
			res, err := cl.BootstrapExchange(c.Context, tok)
			if err != nil {
				return r.explain(err, client.ClassPublic)
			}
			scope := ""
			if res.ScopeID != nil {
				scope = *res.ScopeID
			}
			if asJSON {
				out := map[string]string{client.EnvControlURL: url, EnvMeshToken: res.MeshToken}
				if scope != "" {
					out[EnvScopeID] = scope
				}
				return printJSON(c.App.Writer, out)
			}
			fmt.Fprintf(c.App.Writer, "export %s=%s\n", client.EnvControlURL, shellQuote(url))
			fmt.Fprintf(c.App.Writer, "export %s=%s\n", EnvMeshToken, shellQuote(res.MeshToken))
			if scope != "" {
				fmt.Fprintf(c.App.Writer, "export %s=%s\n", EnvScopeID, shellQuote(scope))
			}
			return nil
		},
	}
}

// bootstrapToken reads the token from the environment, else stdin.
func bootstrapToken(c *ucli.Context) (string, error) {
	if v, _ := osLookup()(EnvBootstrapToken); strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v), nil
	}
	in := c.App.Reader
	if in == nil {
		in = os.Stdin
	}
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(c.App.ErrWriter, "bootstrap token: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.App.ErrWriter)
		if err != nil {
			return "", fmt.Errorf("read the bootstrap token: %w", err)
		}
		return nonBlankToken(string(b))
	}
	line, err := bufio.NewReader(io.LimitReader(in, pairTokenMax)).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("read the bootstrap token from stdin: %w", err)
	}
	return nonBlankToken(line)
}

func nonBlankToken(s string) (string, error) {
	if s = strings.TrimSpace(s); s == "" {
		return "", usagef("no bootstrap token: set %s or pipe the token on stdin", EnvBootstrapToken)
	}
	return s, nil
}

// shellQuote single-quotes s when it holds anything a POSIX shell would
// interpret.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@%+=,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
