package sweep

import (
	"os"
	"testing"

	"populi-db/internal/etcdtest"
)

// With POPULI_TEST_BACKEND=etcd every test server (internal/testserver)
// stores its state on an embedded etcd shared by the package: the backend
// matrix. CloseShared stops it when one was started.
func TestMain(m *testing.M) {
	code := m.Run()
	etcdtest.CloseShared()
	os.Exit(code)
}
