package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/security"
)

// JWT minting defaults.
const (
	JWTTTLDefault = 10 * time.Minute
	JTIBytes      = 16
)

var jwtRoles = []string{"mesh", "worker", "submitter", "admin"}

func tokenCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "token",
		Usage: "mint bearer credentials",
		Subcommands: []*ucli.Command{{
			Name:  "jwt",
			Usage: "mint single-use HS256 JWTs signed with $" + EnvJWTSecret,
			Description: "Each JWT carries role, a random jti and exp = now + --ttl. The server accepts a jti once\n" +
				"(durable replay guard), so a client needs a fresh JWT per request: use --count to mint\n" +
				"several, one per line. The secret is read from $" + EnvJWTSecret + " only (never a flag).",
			Flags: []ucli.Flag{
				&ucli.StringFlag{Name: "role", Value: "worker", Usage: "role claim: " + strings.Join(jwtRoles, ", ")},
				&ucli.DurationFlag{Name: "ttl", Value: JWTTTLDefault, Usage: "lifetime (exp = now + ttl; the server allows 60 s of leeway)"},
				&ucli.IntFlag{Name: "count", Value: 1, Usage: "how many JWTs to print, one per line"},
			},
			Action: func(c *ucli.Context) error {
				secret, _ := osLookup()(EnvJWTSecret)
				return mintJWTs(c, strings.TrimSpace(secret), time.Now())
			},
		}},
	}
}

func mintJWTs(c *ucli.Context, secret string, now time.Time) error {
	if secret == "" {
		return errors.New(EnvJWTSecret + " is not set: export the server's JWT secret before minting")
	}
	role := strings.ToLower(strings.TrimSpace(c.String("role")))
	ok := false
	for _, r := range jwtRoles {
		ok = ok || r == role
	}
	if !ok {
		return fmt.Errorf("unknown --role %q (try one of %s)", c.String("role"), strings.Join(jwtRoles, ", "))
	}
	ttl := c.Duration("ttl")
	if ttl <= 0 {
		return fmt.Errorf("--ttl must be positive (got %s)", ttl)
	}
	n := c.Int("count")
	if n < 1 {
		return fmt.Errorf("--count must be at least 1 (got %d)", n)
	}
	for range n {
		tok, err := security.MintJWT(secret, role, randomHex(JTIBytes), now.Add(ttl))
		if err != nil {
			return fmt.Errorf("mint JWT: %w", err)
		}
		if _, err := fmt.Fprintln(c.App.Writer, tok); err != nil {
			return err
		}
	}
	return nil
}
