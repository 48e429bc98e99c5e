package store

import (
	"os"
	"testing"

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

// etcdConfig gives a test store a prefix of its own on the shared cluster,
// guarded by a key it creates (the stand-in for an election key).
func etcdConfig(t testing.TB) *EtcdConfig {
	t.Helper()
	p := etcdtest.FreshPrefix(t)
	return &EtcdConfig{Client: p.Client, Prefix: p.Prefix, GuardKey: p.GuardKey, GuardRev: p.GuardRev}
}

// bboltOnly skips a test about the bbolt file or its write-ahead log.
func bboltOnly(t testing.TB) {
	t.Helper()
	if testEtcd != nil {
		t.Skip("about the bbolt file or its write-ahead log (POPULI_TEST_BACKEND=etcd)")
	}
}
