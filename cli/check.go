package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/store"
)

// CheckOpenTimeout is how long `check` waits for the db file lock.
const CheckOpenTimeout = time.Second

func checkCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "check",
		Usage: "verify a database file (read-only): page structure, bbolt's page check, populi-db's invariants",
		Description: "Never writes to the file it checks (it must exist; one held by a running server is refused:\n" +
			"stop the server, or back it up with `populi-db backup --url` and check the backup). A damaged,\n" +
			"truncated, empty or foreign file is reported as findings, never a crash. Invariants: every index\n" +
			"entry has its record and every record its entries, idempotency keys <-> pending rows, one exec\n" +
			"lease per scope_key, counters above every stored id, no dedupe_violation.\n" +
			"Exit status 0 when clean, 1 with one line per finding.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "db", DefaultText: "$" + EnvDBPath + ", else " + DefaultDBPath, Usage: "database file to check"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			path, err := ResolveDBPath(c.String("db"), osLookup(), os.UserHomeDir)
			if err != nil {
				return err
			}
			rep, err := checkDB(path)
			if err != nil {
				return err
			}
			if asJSON {
				out := struct {
					store.CheckReport
					OK bool `json:"ok"`
				}{rep, rep.OK()}
				if err := printJSON(c.App.Writer, out); err != nil {
					return err
				}
			} else if rep.OK() {
				fmt.Fprintf(c.App.Writer, "ok %s\n", path)
			} else {
				for _, f := range rep.Findings {
					fmt.Fprintf(c.App.Writer, "%s: %s\n", f.Kind, f.Message)
				}
			}
			if !rep.OK() {
				return fmt.Errorf("%s: %d problem(s) found", path, len(rep.Findings))
			}
			return nil
		},
	}
}

// checkDB checks an existing db file without writing to it.
func checkDB(path string) (store.CheckReport, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return store.CheckReport{}, fmt.Errorf("no database at %s (pass --db or set %s)", path, EnvDBPath)
		}
		return store.CheckReport{}, err
	}
	rep, err := store.CheckFile(path, CheckOpenTimeout)
	if errors.Is(err, store.ErrLocked) {
		return rep, fmt.Errorf("database %s is locked by a running populi-db: stop it, or take `populi-db backup --url` and check the backup", path)
	}
	return rep, err
}
