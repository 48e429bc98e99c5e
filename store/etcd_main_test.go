package store

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"populi-db/internal/etcdtest"
)

// The backend matrix: with POPULI_TEST_BACKEND=etcd every test that opens
// its store through setup() runs on one embedded etcd shared by the package
// (a prefix per store); tests about the bbolt file or its write-ahead log
// itself call bboltOnly.
var (
	testEtcd    *etcdtest.Cluster
	etcdPrefixN atomic.Int64
)

func TestMain(m *testing.M) {
	if !etcdtest.UseEtcd() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "populi-store-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c, err := etcdtest.Start(dir, 1)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testEtcd = c
	code := m.Run()
	c.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// etcdConfig gives a test store a prefix of its own on the shared cluster,
// guarded by a key it creates (the stand-in for an election key).
func etcdConfig(t testing.TB) *EtcdConfig {
	t.Helper()
	n := etcdPrefixN.Add(1)
	prefix := fmt.Sprintf("/test/%d", n)
	guard := prefix + "/leader"
	cli := testEtcd.Client()
	resp, err := cli.Put(context.Background(), guard, "test")
	if err != nil {
		t.Fatalf("etcd guard key: %v", err)
	}
	t.Cleanup(func() { _, _ = cli.Delete(context.Background(), prefix+"/", clientv3.WithPrefix()) })
	return &EtcdConfig{Client: cli, Prefix: prefix, GuardKey: guard, GuardRev: resp.Header.Revision}
}

// bboltOnly skips a test about the bbolt file or its write-ahead log.
func bboltOnly(t testing.TB) {
	t.Helper()
	if testEtcd != nil {
		t.Skip("about the bbolt file or its write-ahead log (POPULI_TEST_BACKEND=etcd)")
	}
}
