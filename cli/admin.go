package cli

import (
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

var adminBearerNote = "Bearer (admin): $" + strings.Join(client.TokenVars(client.ClassAdmin), ", then $") + "."

func adminCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "admin",
		Usage: "operator actions: maintenance, quarantine, exec lease revoke, dead-letter requeue",
		Subcommands: []*ucli.Command{
			adminMaintenanceCommand(),
			adminQuarantineCommand(),
			adminRevokeCommand(),
			adminRequeueCommand(),
		},
	}
}

// parseOnOff reads --state on|off.
func parseOnOff(c *ucli.Context) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(c.String("state"))) {
	case "on":
		return true, nil
	case "off":
		return false, nil
	case "":
		return false, usagef("--state is required (on or off)")
	default:
		return false, usagef("--state must be on or off (got %q)", c.String("state"))
	}
}

var stateFlag = &ucli.StringFlag{Name: "state", Usage: "on or off"}

func adminMaintenanceCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "maintenance",
		Usage: "drain a node (on: it claims nothing new) or return it to service (off)",
		Description: "--state on puts the node in maintenance: it may finish and ack what it holds but claims no\n" +
			"new rows. --for or --until-unix-ms makes it end by itself. Prints ok.\n" + adminBearerNote,
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "node", Usage: "node id"},
			stateFlag,
			&ucli.DurationFlag{Name: "for", Usage: "with --state on: end maintenance after this long (e.g. 30m)"},
			&ucli.Uint64Flag{Name: "until-unix-ms", Usage: "with --state on: end maintenance at this Unix time in ms"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			req := wire.MaintenanceRequest{}
			if req.NodeID, err = requireString(c, "node"); err != nil {
				return err
			}
			if req.Maintenance, err = parseOnOff(c); err != nil {
				return err
			}
			forSet, untilSet := c.IsSet("for"), c.IsSet("until-unix-ms")
			switch {
			case (forSet || untilSet) && !req.Maintenance:
				return usagef("--for and --until-unix-ms need --state on")
			case forSet && untilSet:
				return usagef("--for and --until-unix-ms are mutually exclusive")
			case forSet && c.Duration("for") < time.Millisecond:
				return usagef("--for must be at least 1ms (got %s)", c.Duration("for"))
			case forSet:
				ms := uint64(c.Duration("for") / time.Millisecond)
				req.MaintenanceForMs = &ms
			case untilSet:
				ms := c.Uint64("until-unix-ms")
				req.MaintenanceUntilUnixMs = &ms
			}
			if err := r.c.SetMaintenance(c.Context, req); err != nil {
				return r.explain(err, client.ClassAdmin)
			}
			return printOK(c, r.json)
		},
	}
}

func adminQuarantineCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "quarantine",
		Usage:       "quarantine a node (on: it claims nothing) or lift it (off)",
		Description: "Prints ok.\n" + adminBearerNote,
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "node", Usage: "node id"},
			stateFlag,
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			node, err := requireString(c, "node")
			if err != nil {
				return err
			}
			on, err := parseOnOff(c)
			if err != nil {
				return err
			}
			if err := r.c.SetQuarantine(c.Context, node, on); err != nil {
				return r.explain(err, client.ClassAdmin)
			}
			return printOK(c, r.json)
		},
	}
}

func adminRevokeCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "exec-lease-revoke",
		Usage:       "revoke an exec lease (its holder's renew and release then fail)",
		Description: "Lease ids are listed by `populi-db leases`. Prints ok.\n" + adminBearerNote,
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "lease-id", Usage: "exec lease id"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			id, err := requireString(c, "lease-id")
			if err != nil {
				return err
			}
			if err := r.c.RevokeExecLease(c.Context, id); err != nil {
				return r.explain(err, client.ClassAdmin)
			}
			return printOK(c, r.json)
		},
	}
}

func adminRequeueCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "requeue",
		Usage:       "make a dead letter claimable again (delivery count reset)",
		Description: "Dead letters are listed by `populi-db dead --receiver ID`. Prints ok.\n" + adminBearerNote,
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "receiver", Usage: "receiver agent id"},
			&ucli.Uint64Flag{Name: "message-id", Usage: "message id"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			recv, err := requireString(c, "receiver")
			if err != nil {
				return err
			}
			id, err := requireUint(c, "message-id")
			if err != nil {
				return err
			}
			if err := r.c.Requeue(c.Context, recv, id); err != nil {
				return r.explain(err, client.ClassAdmin)
			}
			return printOK(c, r.json)
		},
	}
}
