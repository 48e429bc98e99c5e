package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/store"
	"populi-db/wire"
)

// BackupHTTPTimeout bounds a whole `backup --url` download.
const BackupHTTPTimeout = time.Hour

// tokenFlag is the admin bearer for --url commands (SPEC 15.2: admin calls).
var tokenFlag = &ucli.StringFlag{Name: "token", EnvVars: []string{EnvMeshToken, EnvAdminToken}, Usage: "mesh or admin bearer for --url (blank for an open-mode server)"}

func backupCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "backup",
		Usage: "write a consistent snapshot of a database to a file",
		Description: "From a running server (--url, mesh/admin bearer): streams GET /v1/populi/admin/backup, a\n" +
			"snapshot holding every write acknowledged before it began, while the server keeps serving.\n" +
			"From a stopped database (--db). The file is written to a temp file, fsync'd and renamed, then\n" +
			"opened read-only to print its size and counts.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "out", Required: true, Usage: "backup file to write"},
			&ucli.StringFlag{Name: "url", Usage: "running server's base URL (e.g. http://127.0.0.1:9847)"},
			tokenFlag,
			&ucli.StringFlag{Name: "db", DefaultText: "$" + EnvDBPath + ", else " + DefaultDBPath, Usage: "stopped database to copy (when --url is not given)"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			out := c.String("out")
			var n int64
			if u := strings.TrimSpace(c.String("url")); u != "" {
				n, err = backupFromURL(c.Context, u, strings.TrimSpace(c.String("token")), out)
			} else {
				var path string
				if path, err = ResolveDBPath(c.String("db"), osLookup(), os.UserHomeDir); err != nil {
					return err
				}
				n, err = backupFromDB(path, out)
			}
			if err != nil {
				return err
			}
			st, err := fileStats(out)
			if err != nil {
				return fmt.Errorf("the backup %s was written but does not open: %w", out, err)
			}
			if asJSON {
				return printJSON(c.App.Writer, struct {
					Out   string       `json:"out"`
					Bytes int64        `json:"bytes"`
					Stats wire.DBStats `json:"stats"`
				}{out, n, st})
			}
			fmt.Fprintf(c.App.Writer, "backup written to %s: %d bytes, schema %d\n", out, n, st.SchemaVersion)
			fmt.Fprintf(c.App.Writer, "  %s\n", countsLine(st))
			return nil
		},
	}
}

func backupFromDB(path, out string) (int64, error) {
	st, err := openTool(path)
	if err != nil {
		return 0, err
	}
	defer st.Close()
	return st.BackupFile(out)
}

// openTool opens an existing db read-only for a tool; a held db is refused.
func openTool(path string) (*store.Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("no database at %s (pass --db or set %s)", path, EnvDBPath)
	}
	st, err := store.Open(store.Config{Path: path, OpenTimeout: CheckOpenTimeout, OpenMode: store.OpenMode{ReadOnly: true, NoIndexRebuild: true, NoCommitLoop: true}})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("database %s is held by a running populi-db: use --url to ask the server, or stop it", path)
	}
	return st, err
}

func fileStats(path string) (wire.DBStats, error) {
	st, err := openTool(path)
	if err != nil {
		return wire.DBStats{}, err
	}
	defer st.Close()
	return st.DBStats()
}

// adminGet sends an authenticated GET to a running server.
func adminGet(ctx context.Context, base, token, path string) (*http.Response, error) {
	url := strings.TrimRight(base, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bad --url: %w", err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Timeout: BackupHTTPTimeout}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return resp, nil
}

func backupFromURL(ctx context.Context, base, token, out string) (int64, error) {
	resp, err := adminGet(ctx, base, token, "/v1/populi/admin/backup")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	return store.WriteFileAtomic(out, func(w io.Writer) (int64, error) {
		n, err := io.Copy(w, resp.Body)
		if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
			err = fmt.Errorf("the server sent %d of %d bytes", n, resp.ContentLength)
		}
		if err != nil {
			return n, fmt.Errorf("download backup: %w", err)
		}
		return n, nil
	})
}

// countsLine is a one-line summary of what a db holds.
func countsLine(st wire.DBStats) string {
	b := st.Buckets
	states := make([]string, 0, len(st.States))
	for _, k := range []string{wire.StateReady, wire.StateLeased, wire.StateDelayed, wire.StateDead, wire.StateAcked} {
		if st.States[k] > 0 {
			states = append(states, fmt.Sprintf("%s %d", k, st.States[k]))
		}
	}
	sort.Strings(states)
	rows := fmt.Sprintf("a2a rows %d", b["a2a_rows"])
	if len(states) > 0 {
		rows += " (" + strings.Join(states, ", ") + ")"
	}
	return fmt.Sprintf("nodes %d, %s, exec leases %d, jwt ids %d", b["nodes"], rows, b["exec_leases"], b["jwt_jti"])
}
