package cli

import (
	"errors"
	"fmt"
	"os"

	ucli "github.com/urfave/cli/v2"

	"populi-db/store"
)

func restoreCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "restore",
		Usage: "replace a database file with a backup (the server must be stopped)",
		Description: "Checks the backup first (as `populi-db check` does) and refuses a damaged one. Refuses a\n" +
			"database a running server holds. The replaced file is kept as <db>.bak (never overwriting an\n" +
			"older .bak); the backup is copied through a temp file and fsync'd.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "from", Required: true, Usage: "backup file"},
			&ucli.StringFlag{Name: "db", DefaultText: "$" + EnvDBPath + ", else " + DefaultDBPath, Usage: "database file to replace"},
		},
		Action: func(c *ucli.Context) error {
			from := c.String("from")
			path, err := ResolveDBPath(c.String("db"), osLookup(), os.UserHomeDir)
			if err != nil {
				return err
			}
			if _, err := os.Stat(from); err != nil {
				return fmt.Errorf("backup %s: %w", from, err)
			}
			rep, err := store.CheckFile(from, CheckOpenTimeout)
			if err != nil {
				return fmt.Errorf("check backup %s: %w", from, err)
			}
			for _, f := range rep.Findings {
				if f.Kind != "schema" { // an older schema is upgraded by serve
					return fmt.Errorf("backup %s fails its check (%s: %s); nothing was changed", from, f.Kind, f.Message)
				}
			}
			bak, n, err := store.Restore(from, path)
			if errors.Is(err, store.ErrTargetHeld) {
				return fmt.Errorf("database %s is held by a running populi-db: stop it first; nothing was changed", path)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "restored %s (%d bytes) into %s\n", from, n, path)
			if bak != "" {
				fmt.Fprintf(c.App.Writer, "the replaced database is kept as %s\n", bak)
			}
			return nil
		},
	}
}
