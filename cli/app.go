// Package cli is populi-db's command line (urfave/cli/v2): one file per
// subcommand. main.go wires signals and calls App().RunContext.
package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// App returns the populi-db command line. Errors are returned from Run, never
// turned into os.Exit here, so every subcommand can be called from a test.
func App() *ucli.App {
	app := &ucli.App{
		Name:  "populi-db",
		Usage: "durable Populi mesh control plane (node registry, A2A mailbox, exec leases) on bbolt",
		Description: "Start a server with `populi-db serve` (127.0.0.1:9847, db ~/.vox/populi/populi.db).\n" +
			"Run `populi-db <command> --help` for a command's flags and environment variables.",
		Commands: []*ucli.Command{
			serveCommand(),
			initCommand(),
			tokenCommand(),
			checkCommand(),
			migrateCommand(), backupCommand(), restoreCommand(), compactCommand(), statsCommand(),
			benchCommand(),
			nodesCommand(),
			leasesCommand(),
			inboxCommand(),
			queueCommand(),
			deadCommand(),
			adminCommand(),
			deliverCommand(),
			ackCommand(),
			pairCommand(),
			completionCommand(),
			probeCommand(),
			agentCommand(),
		},
		Version:              Version(),
		EnableBashCompletion: true, // for `completion`
		// Keep urfave from calling os.Exit: main decides the exit status.
		ExitErrHandler: func(*ucli.Context, error) {},
		OnUsageError:   onUsageError,
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return usagef("unknown command %q (run populi-db --help for the list)", c.Args().First())
			}
			return ucli.ShowAppHelp(c)
		},
	}
	markUsageErrors(app.Commands)
	return app
}

// onUsageError makes urfave's flag-parsing errors usage errors (exit 2)
// that name the command's --help.
func onUsageError(c *ucli.Context, err error, _ bool) error {
	return usagef("%w (run %s --help)", err, c.Command.HelpName)
}

func markUsageErrors(cmds []*ucli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		markUsageErrors(cmd.Subcommands)
	}
}

// outputFlag is the shared `-o text|json` flag.
var outputFlag = &ucli.StringFlag{
	Name:    "output",
	Aliases: []string{"o"},
	Value:   "text",
	Usage:   "output format: text or json",
}

func wantJSON(c *ucli.Context) (bool, error) {
	switch o := strings.ToLower(c.String("output")); o {
	case "", "text", "table":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, usagef("unknown --output %q (try --output table or --output json)", o)
	}
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// DefaultDBPath is the db location when neither --db nor VOX_MESH_DB_PATH is
// given, relative to the user's home directory.
const DefaultDBPath = "~/.vox/populi/populi.db"

// ResolveDBPath picks the db file: flag, else VOX_MESH_DB_PATH (trimmed),
// else ~/.vox/populi/populi.db. A leading "~/" is expanded.
func ResolveDBPath(flag string, lookup LookupFunc, home func() (string, error)) (string, error) {
	p := strings.TrimSpace(flag)
	if p == "" {
		v, _ := lookup(EnvDBPath)
		p = strings.TrimSpace(v)
	}
	if p == "" {
		p = DefaultDBPath
	}
	if p == "~" || strings.HasPrefix(p, "~/") {
		h, err := home()
		if err != nil {
			return "", fmt.Errorf("cannot find the home directory for %s (set --db or %s): %w", p, EnvDBPath, err)
		}
		p = filepath.Join(h, strings.TrimPrefix(p[1:], "/"))
	}
	return filepath.Abs(p)
}

func osLookup() LookupFunc { return os.LookupEnv }
