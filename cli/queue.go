package cli

import (
	"fmt"
	"slices"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

func queueCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "queue",
		Usage: "show queue depth: rows by state and ready rows per receiver",
		Description: "Prints how many mailbox rows are ready, leased, delayed, dead and acked, then each receiver\n" +
			"with ready rows and the age of its oldest ready row.\n" +
			"Bearer: $" + strings.Join(client.TokenVars(client.ClassWorker), ", then $") + ".",
		Flags: []ucli.Flag{controlURLFlag, tableOutputFlag},
		Action: func(c *ucli.Context) error {
			r, err := newRemote(c)
			if err != nil {
				return err
			}
			st, err := r.c.QueueStats(c.Context)
			if err != nil {
				return r.explain(err, client.ClassWorker)
			}
			if r.json {
				return printJSON(c.App.Writer, st)
			}
			return writeQueue(c, st)
		},
	}
}

func writeQueue(c *ucli.Context, st wire.QueueStats) error {
	w := c.App.Writer
	tw := newTable(w, "STATE", "ROWS")
	b := st.ByState
	for _, s := range []struct {
		name string
		n    uint64
	}{{wire.StateReady, b.Ready}, {wire.StateLeased, b.Leased}, {wire.StateDelayed, b.Delayed}, {wire.StateDead, b.Dead}, {wire.StateAcked, b.Acked}} {
		row(tw, s.name, s.n)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	recv := slices.Clone(st.Receivers)
	slices.SortFunc(recv, func(a, b wire.ReceiverStats) int { return strings.Compare(a.ReceiverAgentID, b.ReceiverAgentID) })
	if len(recv) == 0 {
		_, err := fmt.Fprintln(w, "no receiver has ready rows")
		return err
	}
	tw = newTable(w, "RECEIVER", "READY", "OLDEST READY")
	for _, r := range recv {
		row(tw, r.ReceiverAgentID, r.Ready, human(time.Duration(r.OldestReadyAgeMs)*time.Millisecond))
	}
	return tw.Flush()
}
