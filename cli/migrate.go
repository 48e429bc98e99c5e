package cli

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	ucli "github.com/urfave/cli/v2"

	"populi-db/migrate"
	"populi-db/store"
)

func migrateCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "migrate",
		Usage: "import the original control plane's JSON files into a database (one transaction)",
		Description: "Reads the registry, A2A relay store, exec lease store and replay state files (each from its\n" +
			"flag, else the original's default path rule) and imports them all or nothing. Records already\n" +
			"in the database are left alone, so a second run changes nothing. An unparsable file is refused\n" +
			"with its file:line:column and nothing is written. Source files are never modified; --rename\n" +
			"renames them to *.migrated after the commit. The database must not be held by a running server.",
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "registry", Usage: "registry file (default: $" + migrate.EnvRegistryPath + ", else ~/.vox/cache/populi/local-registry.json)"},
			&ucli.StringFlag{Name: "a2a-store", Usage: "A2A relay store (default: $" + migrate.EnvA2AStorePath + ", else a2a-store.json next to the registry)"},
			&ucli.StringFlag{Name: "exec-lease-store", Usage: "exec lease store (default: $" + migrate.EnvExecLeasePath + ", else exec-lease-store.json next to the A2A store)"},
			&ucli.StringFlag{Name: "replay-state", Usage: "replay state (default: $" + migrate.EnvReplayStateDir + ", else mesh-replay-state.json next to the A2A store)"},
			&ucli.StringFlag{Name: "db", DefaultText: "$" + EnvDBPath + ", else " + DefaultDBPath, Usage: "database to import into (created if missing)"},
			&ucli.BoolFlag{Name: "dry-run", Usage: "read and import, report, then roll back"},
			&ucli.BoolFlag{Name: "rename", Usage: "rename each imported file to <name>.migrated after the commit"},
			outputFlag,
		}, etcdMigrateFlags()...),
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			path, err := ResolveDBPath(c.String("db"), osLookup(), os.UserHomeDir)
			if err != nil {
				return err
			}
			if c.Bool("to-etcd") || c.Bool("from-etcd") {
				return runEtcdMigrate(c, path) // migrate_etcd.go
			}
			w := c.App.ErrWriter
			if w == nil {
				w = os.Stderr
			}
			rep, err := migrate.Run(migrate.Options{
				DBPath: path,
				Sources: migrate.ResolveSources(migrate.Flags{
					Registry: c.String("registry"), A2A: c.String("a2a-store"),
					ExecLeases: c.String("exec-lease-store"), Replay: c.String("replay-state"),
				}, os.LookupEnv),
				DryRun: c.Bool("dry-run"), Rename: c.Bool("rename"),
				Progress: w, Terminal: isTerminal(w),
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.App.Writer, rep)
			}
			writeMigrateReport(c.App.Writer, rep)
			return nil
		},
	}
}

func writeMigrateReport(out io.Writer, rep *migrate.Report) {
	verb := "migrated into"
	if rep.DryRun {
		verb = "dry run (nothing written) for"
	}
	fmt.Fprintf(out, "%s %s\n", verb, rep.DB)
	for _, f := range rep.Files {
		switch f.Status {
		case "read":
			fmt.Fprintf(out, "  %-17s %s (%d records)\n", f.Kind, f.Path, f.Records)
		default:
			fmt.Fprintf(out, "  %-17s %s (%s)\n", f.Kind, f.Path, f.Status)
		}
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "kind\timported\tskipped\talready present")
	r := rep.Result
	for _, row := range []struct {
		name string
		c    store.ImportCounts
	}{{"nodes", r.Nodes}, {"a2a rows", r.Rows}, {"idempotency keys", r.Idem}, {"exec leases", r.Leases}, {"jwt ids", r.JTIs}} {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", row.name, row.c.Imported, row.c.Skipped, row.c.Present)
	}
	tw.Flush()
	if len(rep.Findings) > 0 {
		fmt.Fprintln(out, "findings:")
		for _, f := range rep.Findings {
			fmt.Fprintf(out, "  %s\n", f)
		}
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	switch {
	case rep.DryRun:
		fmt.Fprintf(out, "dry run: %d record(s) would be written; nothing was\n", r.Changed())
	case !r.Committed:
		fmt.Fprintln(out, "nothing to do: every record is already in the database")
	default:
		fmt.Fprintf(out, "committed %d record(s) in %.2fs; new message ids continue after %d, exec lease ids after %d\n", r.Changed(), rep.Seconds, r.LastMessageID, r.LastLeaseID)
	}
	for _, p := range rep.Renamed {
		fmt.Fprintf(out, "renamed to %s\n", p)
	}
}

// isTerminal reports whether w is a character device (a progress bar can
// be redrawn there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
