package cli

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
)

// Exit statuses of every populi-db command (main passes ExitCode(err) to
// os.Exit).
const (
	ExitOK          = 0
	ExitRefused     = 1 // the server said no (or the command failed)
	ExitUsage       = 2 // bad flags or arguments
	ExitUnreachable = 3 // no answer from the server
)

// usageError is a command line the command cannot run.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// ExitCode maps a command's error to the process exit status.
func ExitCode(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		return ExitUsage
	case client.IsTransport(err):
		return ExitUnreachable
	}
	return ExitRefused
}

// controlURLFlag is the shared --control-url flag of the client commands.
var controlURLFlag = &ucli.StringFlag{
	Name:        "control-url",
	Usage:       "server base URL",
	DefaultText: "$" + client.EnvControlURL + ", else $" + client.EnvControlAddr,
}

// tableOutputFlag is `-o table|json` for commands that print listings.
var tableOutputFlag = &ucli.StringFlag{
	Name:    "output",
	Aliases: []string{"o"},
	Value:   "table",
	Usage:   "output format: table or json",
}

// remote is what a client command needs: the client, its URL and the
// environment it was built from (for hints).
type remote struct {
	c      *client.Client
	url    string
	tokens client.Tokens
	json   bool
}

// newRemote resolves --control-url and the tokens from the environment and
// builds a client; it also parses -o.
func newRemote(c *ucli.Context) (*remote, error) {
	asJSON, err := wantJSON(c)
	if err != nil {
		return nil, &usageError{err}
	}
	lookup := osLookup()
	url, err := client.ControlURLFromEnv(c.String("control-url"), client.LookupFunc(lookup))
	if err != nil {
		return nil, &usageError{err}
	}
	cl, err := client.New(url, client.WithEnv(client.LookupFunc(lookup)))
	if err != nil {
		return nil, &usageError{err}
	}
	return &remote{c: cl, url: url, tokens: client.TokensFromEnv(client.LookupFunc(lookup)), json: asJSON}, nil
}

// explain adds what to do to a client error: which variables carry the
// bearer for this class of call, or how to point at a running server. The
// error's type (and so the exit status) is kept.
func (r *remote) explain(err error, class client.Class) error {
	if err == nil {
		return nil
	}
	vars := strings.Join(client.TokenVars(class), ", ")
	switch {
	case client.IsTransport(err):
		return fmt.Errorf("cannot reach the server at %s (is `populi-db serve` running? set --control-url or %s): %w",
			r.url, client.EnvControlURL, err)
	case class == client.ClassPublic: // no bearer involved: the server's text says it all
		return err
	case client.IsHTTPStatus(err, 401) && r.tokens.For(class) == "":
		return fmt.Errorf("%w\nhint: no token is set; export one of %s (first set wins)", err, vars)
	case client.IsHTTPStatus(err, 401):
		return fmt.Errorf("%w\nhint: the server does not accept the token from %s", err, vars)
	case client.IsHTTPStatus(err, 403) && class == client.ClassAdmin:
		return fmt.Errorf("%w\nhint: admin commands need the mesh or admin token in %s", err, vars)
	case client.IsHTTPStatus(err, 403):
		return fmt.Errorf("%w\nhint: check the token role in %s", err, vars)
	case client.IsHTTPStatus(err, 404) && strings.HasSuffix(err.Error(), ")"): // empty body
		return fmt.Errorf("%w: not found (check the id)", err)
	}
	return err
}

// newTable is an aligned-column writer; call Flush when done.
func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw *tabwriter.Writer, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

// ago renders a server timestamp relative to now: "12s ago", "in 5m",
// "-" for none.
func ago(unixMs uint64, now time.Time) string {
	if unixMs == 0 {
		return "-"
	}
	d := now.Sub(time.UnixMilli(int64(unixMs)))
	if d < 0 {
		return "in " + human(-d)
	}
	return human(d) + " ago"
}

func agoPtr(p *uint64, now time.Time) string {
	if p == nil {
		return "-"
	}
	return ago(*p, now)
}

// human is a duration in its largest sensible unit: 12s, 5m, 3h, 2d.
func human(d time.Duration) string {
	switch {
	case d < 90*time.Second:
		return fmt.Sprintf("%ds", int(d.Round(time.Second)/time.Second))
	case d < 90*time.Minute:
		return fmt.Sprintf("%dm", int(d.Round(time.Minute)/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Round(time.Hour)/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// clip shortens s to n runes for a table cell, marking the cut, and keeps
// it on one line.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printOK is the output of a command that only succeeds: ok, or {"ok":true}.
func printOK(c *ucli.Context, asJSON bool) error {
	if asJSON {
		return printJSON(c.App.Writer, map[string]bool{"ok": true})
	}
	_, err := fmt.Fprintln(c.App.Writer, "ok")
	return err
}

// requireString returns the trimmed value of a flag that must be non-blank.
func requireString(c *ucli.Context, name string) (string, error) {
	v := strings.TrimSpace(c.String(name))
	if v == "" {
		return "", usagef("--%s is required", name)
	}
	return v, nil
}

// requireUint returns a flag that must be given.
func requireUint(c *ucli.Context, name string) (uint64, error) {
	if !c.IsSet(name) {
		return 0, usagef("--%s is required", name)
	}
	return c.Uint64(name), nil
}
