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
		Usage: "verify a database file's consistency (bbolt page check)",
		Description: "Opens the file (it must exist; a file held by a running server is refused: stop the\n" +
			"server or check a copy), runs bbolt's consistency check over every page and prints ok or\n" +
			"each problem. Exit status 1 when problems are found.",
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
			problems, err := checkDB(path)
			if err != nil {
				return err
			}
			if asJSON {
				out := struct {
					DB       string   `json:"db"`
					OK       bool     `json:"ok"`
					Problems []string `json:"problems"`
				}{DB: path, OK: len(problems) == 0, Problems: problems}
				if err := printJSON(c.App.Writer, out); err != nil {
					return err
				}
			} else if len(problems) == 0 {
				fmt.Fprintf(c.App.Writer, "ok %s\n", path)
			} else {
				for _, p := range problems {
					fmt.Fprintf(c.App.Writer, "problem: %s\n", p)
				}
			}
			if len(problems) > 0 {
				return fmt.Errorf("%s: %d consistency problem(s) found", path, len(problems))
			}
			return nil
		},
	}
}

// checkDB opens an existing db file and returns bbolt's consistency problems.
func checkDB(path string) ([]string, error) {
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no database at %s (pass --db or set %s)", path, EnvDBPath)
		}
		return nil, err
	}
	st, err := store.Open(store.Config{Path: path, OpenTimeout: CheckOpenTimeout})
	if err != nil {
		if errors.Is(err, store.ErrLocked) {
			return nil, fmt.Errorf("database %s is locked by a running populi-db: stop it, or copy the file and check the copy", path)
		}
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	defer st.Close()
	var out []string
	for _, e := range st.Check() {
		out = append(out, e.Error())
	}
	return out, nil
}
