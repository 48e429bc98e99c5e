package cli

import (
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

// InboxLimitDefault is how many rows `inbox` prints without --all.
const InboxLimitDefault = 50

func inboxCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "inbox",
		Usage: "list a receiver's mailbox, newest first (read-only: claims nothing)",
		Description: "Prints the newest --limit rows of a mailbox (id, state, sender, type, priority, deliveries,\n" +
			"age, lease holder and the start of the payload), or every row with --all, fetched page by page.\n" +
			"Bearer: $" + strings.Join(client.TokenVars(client.ClassWorker), ", then $") + ".",
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "receiver", Usage: "receiver agent id (decimal digits)"},
			&ucli.BoolFlag{Name: "all", Usage: "list every row, paging through the mailbox"},
			&ucli.IntFlag{Name: "limit", Value: InboxLimitDefault, Usage: "rows to list without --all (1-256); the page size with --all"},
			tableOutputFlag,
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
			limit := c.Int("limit")
			if limit < client.PageSizeMin || limit > client.PageSizeMax {
				return usagef("--limit must be in [%d, %d] (got %d)", client.PageSizeMin, client.PageSizeMax, limit)
			}
			var msgs []wire.StoredMessage
			if c.Bool("all") {
				msgs, err = r.c.InboxAllPaged(c.Context, recv, limit)
			} else {
				msgs, err = r.c.NewInboxPager(recv, limit).NextPage(c.Context)
			}
			if err != nil {
				return r.explain(err, client.ClassWorker)
			}
			return printMessages(c, r.json, msgs)
		},
	}
}

// printMessages prints mailbox rows as {"messages":[...]} or a table.
func printMessages(c *ucli.Context, asJSON bool, msgs []wire.StoredMessage) error {
	if msgs == nil {
		msgs = []wire.StoredMessage{}
	}
	if asJSON {
		return printJSON(c.App.Writer, wire.InboxResponse{Messages: msgs})
	}
	now := time.Now()
	tw := newTable(c.App.Writer, "ID", "STATE", "SENDER", "TYPE", "PRIO", "DELIVERIES", "CREATED", "HOLDER", "PAYLOAD")
	for _, m := range msgs {
		state := m.State
		if state == "" {
			state = wire.StateReady
			if m.Acknowledged {
				state = wire.StateAcked
			}
		}
		row(tw, m.ID, state, m.SenderAgentID, clip(m.MessageType, 24), m.Priority, m.DeliveryCount,
			ago(m.CreatedUnixMs, now), orDash(wire.Str(m.LeaseHolderNodeID)), clip(m.Payload, 32))
	}
	return tw.Flush()
}

func uintStr(v uint64) string { return strconv.FormatUint(v, 10) }
