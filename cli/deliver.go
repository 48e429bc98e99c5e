package cli

import (
	"fmt"
	"io"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

// deliverPayloadMax bounds what --payload-file reads (the server's body
// limit is at most 8 MiB).
const deliverPayloadMax = 8 << 20

func deliverCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "deliver",
		Usage: "put a message into a receiver's mailbox",
		Description: "Prints the message id. --privacy-class defaults to private, which nodes of default\n" +
			"visibility claim; a message without a privacy class is public and only public or hybrid\n" +
			"nodes claim it (pass --privacy-class \"\" for that).\n" +
			"Bearer: $" + strings.Join(client.TokenVars(client.ClassDeliver), ", then $") + ".",
		Flags: []ucli.Flag{
			controlURLFlag,
			&ucli.StringFlag{Name: "receiver", Usage: "receiver agent id (decimal digits)"},
			&ucli.StringFlag{Name: "sender", Value: "1", Usage: "sender agent id (decimal digits)"},
			&ucli.StringFlag{Name: "type", Usage: "message type"},
			&ucli.StringFlag{Name: "payload", Usage: "payload text"},
			&ucli.StringFlag{Name: "payload-file", Usage: "read the payload from this file (- for stdin)"},
			&ucli.StringFlag{Name: "idempotency-key", Usage: "a repeat delivery with the same key returns the first one's id"},
			&ucli.StringFlag{Name: "privacy-class", Value: "private", Usage: "privacy class (private, trusted, trusted_only, public)"},
			&ucli.UintFlag{Name: "priority", Usage: "priority 0-255 (default 128)"},
			&ucli.StringFlag{Name: "task-kind", Usage: "task kind (e.g. text_infer)"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			req := wire.DeliverRequest{SenderAgentID: strings.TrimSpace(c.String("sender"))}
			if req.ReceiverAgentID, err = requireString(c, "receiver"); err != nil {
				return err
			}
			if req.MessageType, err = requireString(c, "type"); err != nil {
				return err
			}
			if req.Payload, err = readPayload(c); err != nil {
				return err
			}
			if k := c.String("idempotency-key"); k != "" {
				req.IdempotencyKey = &k
			}
			if p := strings.TrimSpace(c.String("privacy-class")); p != "" {
				req.PrivacyClass = &p
			}
			if c.IsSet("priority") {
				if c.Uint("priority") > 255 {
					return usagef("--priority must be in [0, 255] (got %d)", c.Uint("priority"))
				}
				p := uint8(c.Uint("priority"))
				req.Priority = &p
			}
			if k := strings.TrimSpace(c.String("task-kind")); k != "" {
				req.TaskKind = &k
			}
			id, err := r.c.Deliver(c.Context, req)
			if err != nil {
				return r.explain(err, client.ClassDeliver)
			}
			if r.json {
				return printJSON(c.App.Writer, wire.DeliverResponse{Accepted: true, MessageID: id})
			}
			_, err = fmt.Fprintf(c.App.Writer, "delivered message %d to receiver %s\n", id, req.ReceiverAgentID)
			return err
		},
	}
}

// readPayload takes --payload or --payload-file (exactly one).
func readPayload(c *ucli.Context) (string, error) {
	text, file := c.IsSet("payload"), c.IsSet("payload-file")
	switch {
	case text && file:
		return "", usagef("--payload and --payload-file are mutually exclusive")
	case text:
		return c.String("payload"), nil
	case !file:
		return "", usagef("--payload or --payload-file is required")
	}
	name := c.String("payload-file")
	var rd io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return "", usagef("--payload-file: %w", err)
		}
		defer f.Close()
		rd = f
	}
	b, err := io.ReadAll(io.LimitReader(rd, deliverPayloadMax+1))
	if err != nil {
		return "", fmt.Errorf("read --payload-file %s: %w", name, err)
	}
	if len(b) > deliverPayloadMax {
		return "", usagef("--payload-file %s is larger than %d bytes", name, deliverPayloadMax)
	}
	return string(b), nil
}
