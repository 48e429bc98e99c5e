package cli

import (
	"fmt"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

func nodesCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "nodes",
		Usage: "list the registered nodes",
		Description: "Prints each node's id, state (ready, maintenance, quarantined), last heartbeat, version and\n" +
			"listen address. --stale hides nodes not seen for longer than the given duration.\n" +
			"Bearer: $" + strings.Join(client.TokenVars(client.ClassWorker), ", then $") + ".",
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.DurationFlag{Name: "stale", Usage: "hide nodes whose last heartbeat is older than this (e.g. 30s); 0 shows all"},
			tableOutputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			if c.Duration("stale") < 0 {
				return usagef("--stale must not be negative")
			}
			reg, err := r.c.ListNodes(c.Context)
			if err != nil {
				return r.explain(err, client.ClassWorker)
			}
			now := time.Now()
			if stale := c.Duration("stale"); stale > 0 {
				cutoff := uint64(now.Add(-stale).UnixMilli())
				kept := reg.Nodes[:0]
				for _, n := range reg.Nodes {
					if n.LastSeenUnixMs >= cutoff {
						kept = append(kept, n)
					}
				}
				reg.Nodes = kept
			}
			if reg.Nodes == nil {
				reg.Nodes = []wire.NodeRecord{}
			}
			if r.json {
				return printJSON(c.App.Writer, reg)
			}
			tw := newTable(c.App.Writer, "ID", "STATE", "LAST SEEN", "VERSION", "LISTEN")
			for _, n := range reg.Nodes {
				row(tw, n.ID, nodeState(n, now), ago(n.LastSeenUnixMs, now), orDash(n.Version), orDash(wire.Str(n.ListenAddr)))
			}
			return tw.Flush()
		},
	}
}

// nodeState summarizes the admin flags of a node for a table.
func nodeState(n wire.NodeRecord, now time.Time) string {
	var s []string
	if n.Quarantined != nil && *n.Quarantined {
		s = append(s, "quarantined")
	}
	if n.Maintenance != nil && *n.Maintenance {
		m := "maintenance"
		if n.MaintenanceUntilUnixMs != nil {
			m += fmt.Sprintf(" (ends %s)", ago(*n.MaintenanceUntilUnixMs, now))
		}
		s = append(s, m)
	}
	if len(s) == 0 {
		return "ready"
	}
	return strings.Join(s, ", ")
}
