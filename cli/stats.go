package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/wire"
)

func statsCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "stats",
		Usage: "row counts per bucket and per state, file size, free pages, oldest pending row",
		Description: "From a stopped database (--db, read-only) or a running server (--url, mesh/admin bearer,\n" +
			"GET /v1/populi/admin/stats).",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "db", DefaultText: "$" + EnvDBPath + ", else " + DefaultDBPath, Usage: "stopped database to read"},
			&ucli.StringFlag{Name: "url", Usage: "running server's base URL"},
			tokenFlag,
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			var st wire.DBStats
			if u := strings.TrimSpace(c.String("url")); u != "" {
				resp, err := adminGet(c.Context, u, strings.TrimSpace(c.String("token")), "/v1/populi/admin/stats")
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
					return fmt.Errorf("decode stats: %w", err)
				}
			} else {
				path, err := ResolveDBPath(c.String("db"), osLookup(), os.UserHomeDir)
				if err != nil {
					return err
				}
				if st, err = fileStats(path); err != nil {
					return err
				}
			}
			if asJSON {
				return printJSON(c.App.Writer, st)
			}
			writeStats(c.App.Writer, st)
			return nil
		},
	}
}

func writeStats(w io.Writer, st wire.DBStats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "db\t%s\n", st.Path)
	pages := int64(0)
	if st.PageSize > 0 {
		pages = st.FileBytes / int64(st.PageSize)
	}
	fmt.Fprintf(tw, "file\t%d bytes (%d pages of %d bytes, %d free)\n", st.FileBytes, pages, st.PageSize, st.FreePages)
	fmt.Fprintf(tw, "schema\t%d\n", st.SchemaVersion)
	states := make([]string, 0, 5)
	for _, k := range []string{wire.StateReady, wire.StateLeased, wire.StateDelayed, wire.StateDead, wire.StateAcked} {
		states = append(states, fmt.Sprintf("%s %d", k, st.States[k]))
	}
	fmt.Fprintf(tw, "a2a rows\t%s\n", strings.Join(states, ", "))
	if o := st.OldestPending; o != nil {
		fmt.Fprintf(tw, "oldest pending\tmessage %d for receiver %s (%s), created %s\n", o.MessageID, o.ReceiverAgentID, o.State, time.UnixMilli(int64(o.CreatedUnixMs)).UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(tw, "oldest pending\tnone\n")
	}
	names := make([]string, 0, len(st.Buckets))
	for k := range st.Buckets {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		fmt.Fprintf(tw, "bucket %s\t%d keys\n", k, st.Buckets[k])
	}
	tw.Flush()
}
