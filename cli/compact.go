package cli

import (
	"fmt"
	"os"

	ucli "github.com/urfave/cli/v2"

	"populi-db/store"
)

func compactCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "compact",
		Usage: "copy a stopped database into a new, compact file (bbolt files never shrink on their own)",
		Description: "Reads the database read-only (a file a running server holds is refused) and writes every\n" +
			"bucket into --out, which must not exist, then checks the result. Serve the new file with\n" +
			"--db, or `populi-db restore --from` it over the old one.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "db", DefaultText: "$" + EnvDBPath + ", else " + DefaultDBPath, Usage: "database to compact"},
			&ucli.StringFlag{Name: "out", Required: true, Usage: "new database file"},
		},
		Action: func(c *ucli.Context) error {
			path, err := ResolveDBPath(c.String("db"), osLookup(), os.UserHomeDir)
			if err != nil {
				return err
			}
			out := c.String("out")
			st, err := openTool(path)
			if err != nil {
				return err
			}
			err = st.Compact(out)
			st.Close()
			if err != nil {
				return err
			}
			before, after := fileSize(path), fileSize(out)
			rep, err := store.CheckFile(out, CheckOpenTimeout)
			if err != nil {
				return err
			}
			if !rep.OK() {
				return fmt.Errorf("the compacted file %s fails its check: %s: %s", out, rep.Findings[0].Kind, rep.Findings[0].Message)
			}
			pct := 0.0
			if before > 0 {
				pct = 100 * float64(before-after) / float64(before)
			}
			fmt.Fprintf(c.App.Writer, "compacted %s (%d bytes) into %s (%d bytes, %.1f%% smaller); check ok\n", path, before, out, after, pct)
			return nil
		},
	}
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}
