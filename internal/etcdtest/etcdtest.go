// Package etcdtest runs an embedded etcd cluster (go.etcd.io/etcd/server/v3/embed)
// on loopback ports for tests: no installed etcd binary is needed. Members
// run with UnsafeNoFsync: the fixture tests populi-db's logic and fencing,
// not etcd's own durability, and CI time matters.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is a running embedded etcd cluster.
type Cluster struct {
	mu      sync.Mutex
	members []*embed.Etcd
	clients []string // client URL per member
	cli     *clientv3.Client
	closing sync.WaitGroup // members stopped by StopMember, still closing
}

// EnvBackend names the environment variable that picks the store backend
// for the test suites built on the shared helpers: "etcd" runs them on an
// embedded etcd, anything else on the bbolt file.
const EnvBackend = "POPULI_TEST_BACKEND"

// UseEtcd reports whether the test suites should run on etcd.
func UseEtcd() bool { return os.Getenv(EnvBackend) == "etcd" }

// freePorts reserves n loopback ports (closed again before etcd binds them).
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Start starts an n-member cluster with data under dir and waits until it
// serves.
func Start(dir string, n int) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, fmt.Errorf("reserve ports: %w", err)
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[2*i+1]))
	}
	c := &Cluster{}
	cfgs := make([]*embed.Config, n)
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "populi-test"
		cfg.LogLevel = "panic" // members log expected errors when stopped
		cfg.UnsafeNoFsync = true
		cfg.TickMs, cfg.ElectionMs = 50, 500
		cfgs[i] = cfg
		c.clients = append(c.clients, cu.String())
	}
	// Members of a new cluster wait for each other: start them together.
	errs := make([]error, n)
	c.members = make([]*embed.Etcd, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			e, err := embed.StartEtcd(cfgs[i])
			if err != nil {
				errs[i] = fmt.Errorf("start etcd member %d: %w", i, err)
				return
			}
			c.members[i] = e
			select {
			case <-e.Server.ReadyNotify():
			case <-time.After(30 * time.Second):
				errs[i] = fmt.Errorf("etcd member %d not ready after 30s", i)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	c.cli, err = clientv3.New(clientv3.Config{Endpoints: c.clients, DialTimeout: 5 * time.Second})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	return c, nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string { return append([]string(nil), c.clients...) }

// Client is a client on every member (shared; do not close it).
func (c *Cluster) Client() *clientv3.Client { return c.cli }

// NewClient is a client of its own (the caller closes it).
func (c *Cluster) NewClient() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: c.clients, DialTimeout: 5 * time.Second})
}

// StopMember stops member i at once, as a crash does (raft stops with no
// leadership transfer); its listeners close in the background, since a
// graceful close waits for clients' streams (Close waits for it).
func (c *Cluster) StopMember(i int) {
	c.mu.Lock()
	e := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if e == nil {
		return
	}
	e.Server.HardStop()
	c.closing.Go(e.Close)
}

// Close stops the client and every member.
func (c *Cluster) Close() {
	if c.cli != nil {
		c.cli.Close()
	}
	for i := range c.members {
		c.mu.Lock()
		e := c.members[i]
		c.members[i] = nil
		c.mu.Unlock()
		if e != nil {
			e.Close()
		}
	}
	c.closing.Wait()
}

// NewGuard creates prefix+"/leader" (no lease) as a stand-in for a won
// election key, and returns it with its create revision.
func (c *Cluster) NewGuard(prefix string) (key string, rev int64, err error) {
	key = prefix + "/leader"
	resp, err := c.cli.Put(context.Background(), key, "test")
	if err != nil {
		return "", 0, fmt.Errorf("etcd guard key: %w", err)
	}
	return key, resp.Header.Revision, nil
}

var shared struct {
	sync.Mutex
	c   *Cluster
	dir string
	n   int
}

// Shared is one single-member cluster for the whole test binary, started
// on first use; the package's TestMain calls CloseShared.
func Shared() (*Cluster, error) {
	shared.Lock()
	defer shared.Unlock()
	if shared.c != nil {
		return shared.c, nil
	}
	dir, err := os.MkdirTemp("", "populi-etcd-")
	if err != nil {
		return nil, err
	}
	c, err := Start(dir, 1)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	shared.c, shared.dir = c, dir
	return c, nil
}

// NextPrefix is a fresh key prefix on the shared cluster.
func NextPrefix() string {
	shared.Lock()
	defer shared.Unlock()
	shared.n++
	return fmt.Sprintf("/test/%d", shared.n)
}

// Prefix is a fresh prefix on the shared cluster with a guard key standing
// in for a won election: what a test store's EtcdConfig needs (built by the
// caller; this package cannot import store). The prefix is deleted when
// the test ends.
type Prefix struct {
	Client   *clientv3.Client
	Prefix   string
	GuardKey string
	GuardRev int64
}

// FreshPrefix returns a new guarded prefix on the shared cluster.
func FreshPrefix(t testing.TB) Prefix {
	t.Helper()
	c, err := Shared()
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	prefix := NextPrefix()
	key, rev, err := c.NewGuard(prefix)
	if err != nil {
		t.Fatal(err)
	}
	cli := c.Client()
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	return Prefix{Client: cli, Prefix: prefix, GuardKey: key, GuardRev: rev}
}

// CloseShared stops the shared cluster, if one was started.
func CloseShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.c != nil {
		shared.c.Close()
		os.RemoveAll(shared.dir)
		shared.c = nil
	}
}
