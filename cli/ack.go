package cli

import (
	"fmt"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

func ackCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "ack",
		Usage: "acknowledge a message (it leaves the mailbox for good)",
		Description: "With --lease-token the ack is fenced: it fails (409) unless that claim still holds the row.\n" +
			"Acking an acked message is a no-op; a message that does not exist is an error (exit 1). Prints ok.\n" +
			"Bearer: $" + strings.Join(client.TokenVars(client.ClassWorker), ", then $") + ".",
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "receiver", Usage: "receiver agent id"},
			&ucli.Uint64Flag{Name: "message-id", Usage: "message id"},
			&ucli.Uint64Flag{Name: "lease-token", Usage: "the claim's lease_token (fencing)"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			req := wire.AckRequest{}
			if req.ReceiverAgentID, err = requireString(c, "receiver"); err != nil {
				return err
			}
			if req.MessageID, err = requireUint(c, "message-id"); err != nil {
				return err
			}
			if c.IsSet("lease-token") {
				tok := c.Uint64("lease-token")
				req.LeaseToken = &tok
			}
			found, err := r.c.Ack(c.Context, req)
			if err != nil {
				return r.explain(err, client.ClassWorker)
			}
			if !found {
				return fmt.Errorf("message %d not found for receiver %s (never delivered, or evicted)", req.MessageID, req.ReceiverAgentID)
			}
			return printOK(c, r.json)
		},
	}
}
