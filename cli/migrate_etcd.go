package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/store"
)

// migrate --to-etcd / --from-etcd move a stopped db between the bbolt file
// and an etcd prefix (README "High availability (etcd)"). Both first win
// the prefix's election, so no server writes meanwhile.
func etcdMigrateFlags() []ucli.Flag {
	return append([]ucli.Flag{
		&ucli.BoolFlag{Name: "to-etcd", Usage: "copy the stopped --db file into the empty etcd prefix --etcd-prefix (then serve with --etcd-endpoints)"},
		&ucli.BoolFlag{Name: "from-etcd", Usage: "write the state of --etcd-prefix into a new bbolt file --db (every serve on the prefix stopped)"},
	}, etcdFlags("with --to-etcd/--from-etcd: the etcd cluster to move the db to or from")...)
}

func runEtcdMigrate(c *ucli.Context, dbPath string) error {
	to, from := c.Bool("to-etcd"), c.Bool("from-etcd")
	if to == from {
		return errors.New("give one of --to-etcd and --from-etcd")
	}
	ho := haOptionsFrom(c)
	if !ho.enabled() {
		return errors.New("--to-etcd/--from-etcd need --etcd-endpoints (or " + EnvEtcdEndpoints + ")")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if from {
		if _, err := os.Stat(dbPath); err == nil {
			return fmt.Errorf("%s exists: --from-etcd writes a new file (move it away, or pick another --db)", dbPath)
		}
	}
	node, err := ho.connect("populi-db migrate", log)
	if err != nil {
		return err
	}
	defer node.Close()
	ctx, cancel := context.WithTimeout(c.Context, ho.LeaseTTL+5*time.Second)
	defer cancel()
	if err := node.Campaign(ctx); err != nil {
		return fmt.Errorf("etcd prefix %s is held by a running server (stop every serve on it first): %w", ho.Prefix, err)
	}
	ec := node.StoreConfig()
	if to {
		if err := store.SeedEtcd(dbPath, ec, log); err != nil {
			return err
		}
		fmt.Fprintf(c.App.Writer, "copied %s into etcd prefix %s\n", dbPath, ho.Prefix)
		return nil
	}
	ok, err := store.EtcdHasState(ec)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("etcd prefix %s holds no populi-db state", ho.Prefix)
	}
	if err := os.MkdirAll(filepath.Dir(dbPath), 0o700); err != nil {
		return fmt.Errorf("create db directory: %w", err)
	}
	st, err := store.Open(store.Config{Path: dbPath + ".etcd-cache", Logger: log, Etcd: ec, OpenMode: store.OpenMode{NoIndexRebuild: true}})
	if err != nil {
		return err
	}
	n, err := st.BackupFile(dbPath)
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(dbPath)
		return fmt.Errorf("write %s from etcd prefix %s: %w", dbPath, ho.Prefix, err)
	}
	fmt.Fprintf(c.App.Writer, "wrote etcd prefix %s into %s (%d bytes)\n", ho.Prefix, dbPath, n)
	return nil
}
