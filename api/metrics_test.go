package api_test

import (
	"strings"
	"testing"
	"time"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t, opts{tokens: testTokens})
	b.join("w")
	b.deliver("1", "42")
	b.deliver("1", "42")
	b.deliver("1", "43")
	b.claim("43", "w")
	b.get("/nope")
	b.clock.Advance(5 * time.Second)

	b.get("/metrics", as(testTokens.Submitter)).expect(t, 403, "populi: worker/mesh/admin token required for metrics")
	r := b.get("/metrics", as(testTokens.Worker))
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %d %q", r.status, r.header.Get("Content-Type"))
	}
	for _, line := range []string{
		`populi_a2a_messages{state="ready"} 2`,
		`populi_a2a_messages{state="leased"} 1`,
		`populi_a2a_messages{state="dead"} 0`,
		`populi_a2a_pending_messages 2`,
		`populi_a2a_receiver_ready_messages{receiver_agent_id="42"} 2`,
		`populi_a2a_receiver_oldest_ready_age_seconds{receiver_agent_id="42"} 5`,
		`populi_http_requests_total{code="200",method="POST",route="/v1/populi/a2a/deliver"} 3`,
		`populi_http_requests_total{code="403",method="GET",route="/metrics"} 1`,
		`populi_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
	} {
		if !strings.Contains(r.body, line+"\n") {
			t.Errorf("scrape lacks %q", line)
		}
	}
	if t.Failed() {
		t.Log(r.body)
	}
}
