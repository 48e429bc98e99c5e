package store

import (
	"context"
	"os"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"populi-db/internal/etcdtest"
)

// The backend matrix: with POPULI_TEST_BACKEND=etcd every test that opens
// its store through setup() runs on one embedded etcd shared by the package
// (a prefix per store); tests about the bbolt file or its write-ahead log
// itself call bboltOnly. The etcd-only tests (etcd_test.go) use the same
// shared cluster, started on first use.
var testEtcd *etcdtest.Cluster

func TestMain(m *testing.M) {
	if etcdtest.UseEtcd() {
		c, err := etcdtest.Shared()
		if err != nil {
			panic(err)
		}
		testEtcd = c
	}
	code := m.Run()
	etcdtest.CloseShared()
	os.Exit(code)
}

// sharedEtcd is the package's embedded etcd, started if the matrix did not.
func sharedEtcd(t testing.TB) *etcdtest.Cluster {
	t.Helper()
	c, err := etcdtest.Shared()
	if err != nil {
		t.Fatalf("embedded etcd: %v", err)
	}
	return c
}

// etcdConfig gives a test store a prefix of its own on the shared cluster,
// guarded by a key it creates (the stand-in for an election key).
func etcdConfig(t testing.TB) *EtcdConfig {
	t.Helper()
	c := sharedEtcd(t)
	prefix := etcdtest.NextPrefix()
	key, rev, err := c.NewGuard(prefix)
	if err != nil {
		t.Fatal(err)
	}
	cli := c.Client()
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	return &EtcdConfig{Client: cli, Prefix: prefix, GuardKey: key, GuardRev: rev}
}

// bboltOnly skips a test about the bbolt file or its write-ahead log.
func bboltOnly(t testing.TB) {
	t.Helper()
	if testEtcd != nil {
		t.Skip("about the bbolt file or its write-ahead log (POPULI_TEST_BACKEND=etcd)")
	}
}
