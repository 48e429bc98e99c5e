package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
)

// deadPageSize is the page size `dead` lists with.
const deadPageSize = 256

func deadCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "dead",
		Usage: "list dead letters (rows that ran out of deliveries)",
		Description: "With --receiver: every dead letter of that mailbox, newest first; requeue one with\n" +
			"`populi-db admin requeue`. Without: the number of dead letters across all mailboxes.\n" +
			"Bearer (admin): $" + strings.Join(client.TokenVars(client.ClassAdmin), ", then $") + ".",
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "receiver", Usage: "receiver agent id (decimal digits)"},
			tableOutputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			recv := strings.TrimSpace(c.String("receiver"))
			if recv == "" {
				st, err := r.c.QueueStats(c.Context)
				if err != nil {
					return r.explain(err, client.ClassWorker)
				}
				if r.json {
					return printJSON(c.App.Writer, map[string]uint64{"dead": st.ByState.Dead})
				}
				_, err = fmt.Fprintf(c.App.Writer, "%d dead letter(s) in all mailboxes; list a mailbox's with --receiver ID\n", st.ByState.Dead)
				return err
			}
			msgs, err := r.c.DeadAllPaged(c.Context, recv, deadPageSize)
			if err != nil {
				return r.explain(err, client.ClassAdmin)
			}
			return printMessages(c, r.json, msgs)
		},
	}
}
