package metrics_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"populi-db/metrics"
	"populi-db/store"
	"populi-db/sweep"
	"populi-db/wire"
)

// gathered returns every family of a registry watching a real store, with
// each pushed family observed once so that labelled ones are present.
func gathered(t *testing.T) ([]*dto.MetricFamily, *metrics.Metrics) {
	t.Helper()
	m := metrics.New()
	st, err := store.Open(store.Config{Path: filepath.Join(t.TempDir(), "p.db"), Observer: m,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := m.WatchStore(st, metrics.StoreOptions{}); err != nil {
		t.Fatal(err)
	}
	// One ready row, so the per-receiver families have a series; its
	// commit feeds the commit and fsync histograms.
	if _, err := st.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "2",
		MessageType: "job_submit", Payload: `{}`}, ""); err != nil {
		t.Fatal(err)
	}
	m.Request("/health", "GET", 200, time.Millisecond)
	m.RateLimited()
	m.BootstrapRefused("invalid")
	m.JWTRefused("replayed")
	m.WaiterStarted()
	m.WaiterDone()
	m.SweepPass(sweep.Summary{Counts: map[sweep.Kind]sweep.Count{sweep.InboxLeases: {Items: 1}}, Elapsed: time.Millisecond}, nil)
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	return fams, m
}

// metricRef finds the metric names a PromQL expression or a dashboard uses.
var metricRef = regexp.MustCompile(`\bpopuli_[a-z0-9_]+`)

func readDeploy(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDeployNamesOnlyExistingMetrics keeps the example alert rules and
// Grafana dashboard (deploy/) and the README's table true: every populi_*
// name they use is a family this binary exports (a histogram's _bucket,
// _sum and _count included), the dashboard shows every family, and the
// README lists every family.
func TestDeployNamesOnlyExistingMetrics(t *testing.T) {
	t.Parallel()
	fams, _ := gathered(t)
	exported := map[string]dto.MetricType{}
	for _, f := range fams {
		if strings.HasPrefix(f.GetName(), "populi_") {
			exported[f.GetName()] = f.GetType()
		}
	}
	if len(exported) < 20 {
		t.Fatalf("only %d populi_* families gathered: %v", len(exported), exported)
	}
	known := func(name string) bool {
		if _, ok := exported[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok && exported[base] == dto.MetricType_HISTOGRAM {
				return true
			}
		}
		return false
	}
	dashboard := readDeploy(t, "grafana-dashboard.json")
	var parsed map[string]any
	if err := json.Unmarshal([]byte(dashboard), &parsed); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for file, text := range map[string]string{
		"deploy/populi-alerts.yml": readDeploy(t, "populi-alerts.yml"), "deploy/populi-alerts.test.yml": readDeploy(t, "populi-alerts.test.yml"),
		"deploy/grafana-dashboard.json": dashboard, "README.md": string(readme),
	} {
		for _, name := range metricRef.FindAllString(text, -1) {
			if !known(name) {
				t.Errorf("%s names %s, which populi-db does not export", file, name)
			}
		}
	}
	for name := range exported {
		if !strings.Contains(dashboard, name) {
			t.Errorf("the dashboard has no panel for %s", name)
		}
		if !strings.Contains(string(readme), "`"+name+"`") {
			t.Errorf("README's Metrics table lacks %s", name)
		}
	}
}

// TestDeployPromtool runs promtool (Debian package prometheus) on the alert
// rules, their unit tests, and a scrape. .ci/run installs it.
func TestDeployPromtool(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install prometheus); skipping promtool check rules / test rules / check metrics")
	}
	run := func(stdin []byte, args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Join("..", "deploy")
		cmd.Stdin = bytes.NewReader(stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run(nil, "check", "rules", "populi-alerts.yml")
	run(nil, "test", "rules", "populi-alerts.test.yml")

	fams, _ := gathered(t)
	var scrape bytes.Buffer
	enc := expfmt.NewEncoder(&scrape, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.ContainsFunc(fams, func(f *dto.MetricFamily) bool { return f.GetName() == "populi_store_commits_total" }) {
		t.Fatal("scrape lacks populi_store_commits_total")
	}
	run(scrape.Bytes(), "check", "metrics")
}
