package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"populi-db/client"
	"populi-db/internal/testserver"
	"populi-db/wire"
)

func TestNodes(t *testing.T) {
	t.Parallel()
	// The server's clock starts 2 minutes back, so moving it to now makes
	// the first joins 2 minutes old for the CLI, which reads the real clock.
	e := newCLIEnv(t, testserver.Options{Start: time.Now().Add(-2 * time.Minute)}, map[string]string{client.EnvWorkerToken: testserver.Tokens.Worker})
	e.join("gpu-1")
	e.join("gpu-2")
	if err := e.adm.SetQuarantine(context.Background(), "gpu-2", true); err != nil {
		t.Fatal(err)
	}
	r := e.run("nodes")
	r.want(t, 0, "ID", "")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "gpu-1  ") || !strings.Contains(lines[1], "ready") ||
		!strings.Contains(lines[2], "quarantined") || !strings.Contains(lines[1], "1.2.3") {
		t.Fatalf("table:\n%s", r.stdout)
	}
	// Aligned columns: STATE starts at the same offset on every line.
	col := strings.Index(lines[0], "STATE")
	for _, l := range lines[1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Fatalf("STATE column not aligned at %d:\n%s", col, r.stdout)
		}
	}

	r = e.run("nodes", "-o", "json")
	r.want(t, 0, `"schema_version"`, "")
	var reg wire.Registry
	roundTrip(t, r.stdout, &reg)
	if len(reg.Nodes) != 2 {
		t.Fatalf("json nodes: %+v", reg.Nodes)
	}

	// --stale hides nodes not seen within the window: gpu-1 heartbeats now.
	e.srv.Clk.Advance(2 * time.Minute)
	if _, err := e.adm.Heartbeat(context.Background(), wire.NodeRecord{ID: "gpu-1", Version: "1.2.3"}); err != nil {
		t.Fatal(err)
	}
	r = e.run("nodes", "--stale", "1m", "-o", "json")
	roundTrip(t, r.stdout, &reg)
	if len(reg.Nodes) != 1 || reg.Nodes[0].ID != "gpu-1" {
		t.Fatalf("--stale 1m kept %+v", reg.Nodes)
	}
	e.run("nodes", "--stale", "-1s").want(t, 2, "", "--stale must not be negative")
}
