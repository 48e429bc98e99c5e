package cli

import (
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

func leasesCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "leases",
		Usage: "list the live exec leases",
		Description: "Prints each exec lease's id, scope key, holder node, expiry and fencing token.\n" +
			"Bearer (admin): $" + strings.Join(client.TokenVars(client.ClassAdmin), ", then $") + ".",
		Flags: []ucli.Flag{controlURLFlag, tableOutputFlag},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			leases, err := r.c.ListExecLeases(c.Context)
			if err != nil {
				return r.explain(err, client.ClassAdmin)
			}
			if leases == nil {
				leases = []wire.ExecLease{}
			}
			if r.json {
				return printJSON(c.App.Writer, wire.ExecLeaseList{Leases: leases})
			}
			now := time.Now()
			tw := newTable(c.App.Writer, "LEASE ID", "SCOPE KEY", "HOLDER", "EXPIRES", "TOKEN")
			for _, l := range leases {
				row(tw, l.LeaseID, clip(l.ScopeKey, 48), l.HolderNodeID, ago(l.ExpiresUnixMs, now), u64Ptr(l.LeaseToken))
			}
			return tw.Flush()
		},
	}
}

func u64Ptr(p *uint64) string {
	if p == nil {
		return "-"
	}
	return uintStr(*p)
}
