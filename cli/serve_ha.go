package cli

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/ha"
)

// Environment variables of the etcd backend (serve's --etcd-* flags).
const (
	EnvEtcdEndpoints = "VOX_MESH_ETCD_ENDPOINTS"
	EnvEtcdPrefix    = "VOX_MESH_ETCD_PREFIX"
)

// haFlags are serve's high-availability flags: with --etcd-endpoints the
// state lives in etcd, and every serve on the same prefix is the leader or
// a standby (README "High availability (etcd)").
func haFlags() []ucli.Flag {
	return append(etcdFlags("store the state in etcd and serve active/standby (--db is then a local cache rebuilt at each takeover)"),
		&ucli.DurationFlag{Name: "etcd-lease-ttl", Value: ha.LeaseTTLDefault, Usage: "etcd session TTL (whole seconds): a dead leader is replaced by a standby within about this long"},
		&ucli.StringFlag{Name: "advertise-url", Usage: "this server's URL as clients reach it, named in standbys' X-Populi-Leader header (default: the bound URL)"},
	)
}

// etcdFlags say how to reach etcd (serve, migrate).
func etcdFlags(what string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "etcd-endpoints", EnvVars: []string{EnvEtcdEndpoints}, Usage: "comma-separated etcd client URLs: " + what},
		&ucli.StringFlag{Name: "etcd-prefix", EnvVars: []string{EnvEtcdPrefix}, Value: "/populi/default", Usage: "etcd key prefix of this control plane; every serve on the same prefix shares one state and one election"},
		&ucli.StringFlag{Name: "etcd-cacert", Usage: "CA bundle verifying etcd's server certificates (like etcdctl --cacert)"},
		&ucli.StringFlag{Name: "etcd-cert", Usage: "client certificate for etcd (like etcdctl --cert)"},
		&ucli.StringFlag{Name: "etcd-key", Usage: "client key for --etcd-cert (like etcdctl --key)"},
	}
}

type haOptions struct {
	Endpoints, Prefix, CACert, Cert, Key, Advertise string
	LeaseTTL                                        time.Duration
}

func haOptionsFrom(c *ucli.Context) haOptions {
	o := haOptions{
		Endpoints: c.String("etcd-endpoints"), Prefix: c.String("etcd-prefix"),
		CACert: c.String("etcd-cacert"), Cert: c.String("etcd-cert"), Key: c.String("etcd-key"),
		Advertise: c.String("advertise-url"), LeaseTTL: c.Duration("etcd-lease-ttl"),
	}
	if !c.IsSet("etcd-lease-ttl") {
		o.LeaseTTL = ha.LeaseTTLDefault // commands without the flag
	}
	return o
}

func (o haOptions) enabled() bool { return strings.TrimSpace(o.Endpoints) != "" }

func (o haOptions) config(url string, log *slog.Logger) ha.Config {
	var eps []string
	for _, e := range strings.Split(o.Endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	adv := o.Advertise
	if adv == "" {
		adv = url
	}
	return ha.Config{
		Endpoints: eps, Prefix: strings.TrimSpace(o.Prefix), CACert: o.CACert, Cert: o.Cert, Key: o.Key,
		LeaseTTL: o.LeaseTTL, Advertise: adv, Logger: log,
	}
}

func (o haOptions) connect(advertise string, log *slog.Logger) (*ha.Node, error) {
	return ha.Connect(o.config(advertise, log))
}

// campaign joins the election and serves the standby answers through sw
// (startServing starts the listener) until this process is the leader.
func (o haOptions) campaign(ctx context.Context, url string, log *slog.Logger, sw *ha.Switch, startServing func()) (*ha.Node, error) {
	if o.LeaseTTL < time.Second {
		return nil, fmt.Errorf("--etcd-lease-ttl must be at least 1s (got %s)", o.LeaseTTL)
	}
	cfg := o.config(url, log)
	node, err := o.connect(url, log)
	if err != nil {
		return nil, err
	}
	sw.Set(node.Standby())
	startServing()
	log.Info("standby: campaigning for leadership", "etcd", strings.Join(cfg.Endpoints, ","), "prefix", cfg.Prefix, "advertise", cfg.Advertise, "lease_ttl", o.LeaseTTL)
	start := time.Now()
	if err := node.Campaign(ctx); err != nil {
		node.Close()
		return nil, err
	}
	log.Info("elected leader: loading state from etcd", "prefix", cfg.Prefix, "waited", time.Since(start).Round(time.Millisecond))
	return node, nil
}
