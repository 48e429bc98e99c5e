package cli

import (
	"context"
	"strings"
	"testing"

	"populi-db/client"
	"populi-db/internal/testserver"
	"populi-db/wire"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, testserver.Options{}, map[string]string{client.EnvWorkerToken: testserver.Tokens.Worker})
	e.run("queue").want(t, 0, "no receiver has ready rows", "")
	e.join("n1")
	e.deliver("7", "a")
	e.deliver("7", "b")
	e.deliver("12", "c")
	if m, err := e.adm.Claim(context.Background(), "12", "n1", 0); err != nil || m == nil {
		t.Fatalf("claim %v %v", m, err)
	}
	r := e.run("queue")
	r.want(t, 0, "RECEIVER", "")
	for _, want := range []string{"ready    2", "leased   1", "dead     0", "7         2"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("queue table lacks %q:\n%s", want, r.stdout)
		}
	}
	var st wire.QueueStats
	roundTrip(t, e.run("queue", "-o", "json").stdout, &st)
	if st.ByState.Ready != 2 || st.ByState.Leased != 1 || len(st.Receivers) != 1 || st.Receivers[0].ReceiverAgentID != "7" {
		t.Fatalf("queue json %+v", st)
	}
}
