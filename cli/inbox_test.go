package cli

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"populi-db/client"
	"populi-db/internal/testserver"
	"populi-db/wire"
)

// TestDeliverInboxAck: deliver with the CLI, list, page, ack.
func TestDeliverInboxAck(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t, testserver.Options{}, map[string]string{
		client.EnvSubmitterToken: testserver.Tokens.Submitter, client.EnvWorkerToken: testserver.Tokens.Worker,
	})
	e.run("deliver", "--receiver", "5", "--type", "job", "--payload", "hello").want(t, 0, "delivered message 1 to receiver 5", "")
	file := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(file, []byte(`{"task":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run("deliver", "--receiver", "5", "--type", "job", "--payload-file", file, "--idempotency-key", "k1", "-o", "json")
	var dr wire.DeliverResponse
	roundTrip(t, r.stdout, &dr)
	if !dr.Accepted || dr.MessageID != 2 {
		t.Fatalf("deliver answer %+v", dr)
	}
	e.run("deliver", "--receiver", "5", "--type", "job", "--payload-file", file, "--idempotency-key", "k1").want(t, 0, "delivered message 2", "")
	e.runWith(nil, "from stdin", "deliver", "--receiver", "5", "--type", "job", "--payload-file", "-").want(t, 0, "delivered message 3", "")
	e.run("deliver", "--receiver", "5", "--type", "job").want(t, 2, "", "--payload or --payload-file is required")
	e.run("deliver", "--receiver", "5", "--type", "job", "--payload", "x", "--payload-file", file).want(t, 2, "", "mutually exclusive")
	e.run("deliver", "--receiver", "x5", "--type", "job", "--payload", "x").
		want(t, 1, "", "populi HTTP 400 (a2a_deliver): "+wire.ErrReceiverDigits.Message)

	for i := range 3 {
		e.deliver("5", "more "+strconv.Itoa(i))
	}
	r = e.run("inbox", "--receiver", "5")
	r.want(t, 0, "PAYLOAD", "")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 7 || !strings.HasPrefix(lines[1], "6 ") || !strings.HasPrefix(lines[6], "1 ") || !strings.Contains(lines[6], "hello") {
		t.Fatalf("inbox table:\n%s", r.stdout)
	}
	r = e.run("inbox", "--receiver", "5", "--limit", "2", "-o", "json")
	var page wire.InboxResponse
	roundTrip(t, r.stdout, &page)
	if len(page.Messages) != 2 || page.Messages[0].ID != 6 {
		t.Fatalf("one page of 2: %+v", page.Messages)
	}
	r = e.run("inbox", "--receiver", "5", "--limit", "2", "--all", "-o", "json")
	roundTrip(t, r.stdout, &page)
	if len(page.Messages) != 6 || page.Messages[5].ID != 1 || page.Messages[5].Payload != "hello" {
		t.Fatalf("--all: %+v", page.Messages)
	}
	e.run("inbox", "--receiver", "5", "--limit", "0").want(t, 2, "", "--limit must be in [1, 256]")
	e.run("inbox").want(t, 2, "", "--receiver is required")

	e.run("ack", "--receiver", "5", "--message-id", "1").want(t, 0, "ok", "")
	e.run("ack", "--receiver", "5", "--message-id", "1").want(t, 0, "ok", "") // re-ack: a no-op
	e.run("ack", "--receiver", "5", "--message-id", "99").want(t, 1, "", "message 99 not found for receiver 5")
	e.run("ack", "--receiver", "5", "--message-id", "2", "--lease-token", "99").
		want(t, 1, "", "populi HTTP 409 (a2a_ack): "+wire.ErrStaleLeaseToken.Message)
	e.run("ack", "--message-id", "2").want(t, 2, "", "--receiver is required")
}
