package migrate

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"populi-db/internal/clock"
	"populi-db/store"
	"populi-db/wire"
)

// now sits after every fixture's created time, after row 7's inbox lease
// and exec lease 2 expired, and before exec lease 3 and jti-live expire.
var now = time.UnixMilli(1_767_225_800_000)

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// fixture copies testdata/<name> into a temp dir and returns its path.
func fixture(t *testing.T, name string) string {
	t.Helper()
	dir := t.TempDir()
	entries, err := os.ReadDir(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", name, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sourcesIn names the four files in dir explicitly (absent ones too, so
// the test never reads the machine's home directory).
func sourcesIn(dir string) Sources {
	src := func(name string) Source {
		p := filepath.Join(dir, name)
		_, err := os.Stat(p)
		return Source{Path: p, Explicit: err == nil}
	}
	return Sources{
		Registry: src("local-registry.json"), A2A: src("a2a-store.json"),
		ExecLeases: src("exec-lease-store.json"), Replay: src("mesh-replay-state.json"),
	}
}

func run(t *testing.T, dir, db string, edit ...func(*Options)) (*Report, error) {
	t.Helper()
	o := Options{DBPath: db, Sources: sourcesIn(dir), Clock: clock.NewFake(now), Logger: quiet()}
	for _, e := range edit {
		e(&o)
	}
	return Run(o)
}

func openStore(t *testing.T, db string) *store.Store {
	t.Helper()
	s, err := store.Open(store.Config{Path: db, Clock: clock.NewFake(now), Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustCheck(t *testing.T, db string) {
	t.Helper()
	rep, err := store.CheckFile(db, time.Second)
	if err != nil || !rep.OK() {
		t.Errorf("check %s: %+v, %v", db, rep.Findings, err)
	}
}

func hash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestMigrateBasic(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "basic")
	db := filepath.Join(t.TempDir(), "populi.db")
	rep, err := run(t, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Result
	want := map[string]store.ImportCounts{
		"nodes": {Imported: 3}, "rows": {Imported: 4}, "idem": {Imported: 1, Skipped: 1, Present: 1},
		"leases": {Imported: 1, Skipped: 1}, "jtis": {Imported: 1, Skipped: 1},
	}
	got := map[string]store.ImportCounts{"nodes": r.Nodes, "rows": r.Rows, "idem": r.Idem, "leases": r.Leases, "jtis": r.JTIs}
	if fmt.Sprint(got) != fmt.Sprint(want) || !r.Committed || r.LastMessageID != 10 || r.LastLeaseID != 3 {
		t.Errorf("result %+v\nwant counts %v, committed, last ids 10 and 3", r, want)
	}
	mustCheck(t, db)
	s := openStore(t, db)

	reg, err := s.ListNodes(0)
	if err != nil || len(reg.Nodes) != 3 {
		t.Fatalf("nodes: %+v, %v", reg, err)
	}
	ids := []string{reg.Nodes[0].ID, reg.Nodes[1].ID, reg.Nodes[2].ID}
	if strings.Join(ids, ",") != "gpu-a,gpu-b,cpu-c" {
		t.Errorf("node order %v, want the file's", ids)
	}
	if q := reg.Nodes[1].Quarantined; q == nil || !*q {
		t.Error("gpu-b lost its quarantine flag")
	}
	if m := reg.Nodes[2].Maintenance; m == nil || !*m || reg.Nodes[2].MaintenanceUntilUnixMs == nil {
		t.Error("cpu-c lost its maintenance drain")
	}
	if !reg.Nodes[0].Capabilities.GPUCuda || reg.Nodes[0].LastSeenUnixMs != 1767225600000 {
		t.Errorf("gpu-a imported as %+v", reg.Nodes[0])
	}

	msgs, err := s.ListInbox("42", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[uint64]wire.StoredMessage{}
	for _, m := range msgs {
		byID[m.ID] = m
	}
	if m, ok := byID[9]; !ok || m.Priority != 200 || wire.Str(m.TaskKind) != "text_infer" || wire.Str(m.PrivacyClass) != "public" {
		t.Errorf("row 9: %+v", m)
	}
	if _, ok := byID[8]; ok {
		t.Error("acked row 8 is listed as pending")
	}
	if m := byID[7]; wire.Str(m.PrivacyClass) != "private" {
		t.Errorf("row 7: %+v", m)
	}
	// Counters continue; dedupe keys from rows and from the replay file hold.
	key := func(k string) *string { return &k }
	if id, err := s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "42", MessageType: "t", Payload: "new"}, ""); err != nil || id != 11 {
		t.Errorf("first new message id = %d, %v; want 11", id, err)
	}
	if id, _ := s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "42", MessageType: "t", Payload: "dup", IdempotencyKey: key("job-7")}, ""); id != 7 {
		t.Errorf("re-delivery of job-7 = %d, want 7", id)
	}
	if id, _ := s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "43", MessageType: "t", Payload: "dup", IdempotencyKey: key("job-10")}, ""); id != 10 {
		t.Errorf("re-delivery of the replay file's job-10 = %d, want 10", id)
	}
	if _, err := s.GrantExecLease("gpu-b", "task:abc"); !errors.Is(err, wire.ErrScopeKeyHeld) && !errors.Is(err, wire.ErrClaimerQuarantined) {
		t.Errorf("task:abc is held by imported lease 3: %v", err)
	}
	l, err := s.GrantExecLease("gpu-a", "task:new")
	if err != nil || l.LeaseID != "4" {
		t.Errorf("next exec lease = %+v, %v; want id 4", l, err)
	}
	if err := s.ConsumeJTI("jti-live", 4102444800); !errors.Is(err, wire.ErrReplayed) {
		t.Errorf("imported jti-live replays: %v", err)
	}
}

func TestMigrateIsIdempotent(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "basic")
	db := filepath.Join(t.TempDir(), "populi.db")
	if _, err := run(t, dir, db); err != nil {
		t.Fatal(err)
	}
	before := hash(t, db)
	rep, err := run(t, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	r := rep.Result
	if r.Committed || r.Changed() != 0 || r.Nodes.Present != 3 || r.Rows.Present != 4 || r.Leases.Present != 1 || r.JTIs.Present != 1 {
		t.Errorf("second run: %+v", r)
	}
	if hash(t, db) != before {
		t.Error("a second run changed the db file")
	}
}

func TestMigrateDryRun(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "basic")
	db := filepath.Join(t.TempDir(), "populi.db")
	rep, err := run(t, dir, db, func(o *Options) { o.DryRun = true; o.Rename = true })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Result.Committed || rep.Result.Rows.Imported != 4 {
		t.Errorf("dry run result: %+v", rep.Result)
	}
	s := openStore(t, db)
	st, _ := s.DBStats()
	if st.Buckets["a2a_rows"] != 0 || st.Buckets["nodes"] != 0 {
		t.Errorf("a dry run wrote: %v", st.Buckets)
	}
	if _, err := os.Stat(filepath.Join(dir, "a2a-store.json")); err != nil {
		t.Error("a dry run renamed a source file")
	}
}

func TestMigrateRename(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "basic")
	db := filepath.Join(t.TempDir(), "populi.db")
	src := hash(t, filepath.Join(dir, "a2a-store.json"))
	rep, err := run(t, dir, db, func(o *Options) { o.Rename = true })
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Renamed) != 4 {
		t.Errorf("renamed %v", rep.Renamed)
	}
	if _, err := os.Stat(filepath.Join(dir, "a2a-store.json")); err == nil {
		t.Error("a2a-store.json still there after --rename")
	}
	if hash(t, filepath.Join(dir, "a2a-store.json.migrated")) != src {
		t.Error("the renamed file's content changed")
	}
}

func TestMigrateUnparsableFilesNameLineAndColumn(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		fixture   string
		line, col int
		msgPart   string
	}{
		{"corrupt", 9, 27, "invalid character ','"},
		{"empty", 1, 1, "empty"},
	} {
		dir := fixture(t, c.fixture)
		db := filepath.Join(t.TempDir(), "populi.db")
		before := hash(t, filepath.Join(dir, "a2a-store.json"))
		_, err := run(t, dir, db, func(o *Options) { o.Rename = true })
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != c.line || pe.Column != c.col || !strings.Contains(pe.Msg, c.msgPart) ||
			!strings.HasPrefix(err.Error(), filepath.Join(dir, "a2a-store.json")+fmt.Sprintf(":%d:%d: ", c.line, c.col)) {
			t.Errorf("%s: err = %v; want %s:%d:%d: …%s…", c.fixture, err, "a2a-store.json", c.line, c.col, c.msgPart)
		}
		if _, err := os.Stat(db); err == nil {
			t.Errorf("%s: the db was created although nothing could be imported", c.fixture)
		}
		if hash(t, filepath.Join(dir, "a2a-store.json")) != before {
			t.Errorf("%s: the source file changed", c.fixture)
		}
	}
}

func TestMigrateUnknownFieldsAreReported(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "unknown")
	db := filepath.Join(t.TempDir(), "populi.db")
	rep, err := run(t, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(rep.Findings, "\n")
	if !strings.Contains(text, `unknown field "colour" (2 record(s)) ignored`) || !strings.Contains(text, `unknown field "retries" (1 record(s)) ignored`) {
		t.Errorf("findings:\n%s", text)
	}
	if rep.Result.Rows.Imported != 2 {
		t.Errorf("rows imported %d, want 2", rep.Result.Rows.Imported)
	}
	mustCheck(t, db)
}

func TestMigrateDuplicateNodeIDs(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "dupnodes")
	db := filepath.Join(t.TempDir(), "populi.db")
	rep, err := run(t, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(rep.Findings, "\n")
	if !strings.Contains(text, `duplicate node id "gpu-a" on lines 4, 6, 7: kept line 6 (last_seen_unix_ms 1767225700000)`) {
		t.Errorf("findings:\n%s", text)
	}
	if rep.Result.Nodes.Imported != 2 {
		t.Errorf("nodes imported %d, want 2", rep.Result.Nodes.Imported)
	}
	reg, _ := openStore(t, db).ListNodes(0)
	if len(reg.Nodes) != 2 || reg.Nodes[0].ID != "gpu-a" || reg.Nodes[0].Version != "2.0" {
		t.Errorf("nodes %+v; want gpu-a (version 2.0, the newest record) then gpu-b", reg.Nodes)
	}
}

func TestMigrateDedupeViolation(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "dedupe")
	db := filepath.Join(t.TempDir(), "populi.db")
	rep, err := run(t, dir, db)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(rep.Findings, "\n")
	if !strings.Contains(text, "dedupe_violation: 2 unacknowledged rows share idempotency_dedupe_key") || !strings.Contains(text, "row 3 (line 2) keeps it; rows 5 (line 4) are imported without it") {
		t.Errorf("findings:\n%s", text)
	}
	mustCheck(t, db)
	s := openStore(t, db)
	k := "job-1"
	if id, _ := s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "42", MessageType: "t", Payload: "x", IdempotencyKey: &k}, ""); id != 3 {
		t.Errorf("job-1 maps to %d, want row 3 (the one that kept the key)", id)
	}
}

func TestMigrateRefusesHeldDB(t *testing.T) {
	t.Parallel()
	dir := fixture(t, "basic")
	db := filepath.Join(t.TempDir(), "populi.db")
	openStore(t, db) // a "server" holds the file
	_, err := run(t, dir, db)
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), db) || !strings.Contains(err.Error(), "stop that server") {
		t.Errorf("migrate into a held db: %v", err)
	}
}

func TestResolveSourcesDefaults(t *testing.T) {
	t.Parallel()
	env := map[string]string{"HOME": "/h"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	s := ResolveSources(Flags{}, lookup)
	if s.Registry.Path != filepath.Join("/h", ".vox", "cache", "populi", "local-registry.json") ||
		s.A2A.Path != filepath.Join("/h", ".vox", "cache", "populi", "a2a-store.json") ||
		s.ExecLeases.Path != filepath.Join("/h", ".vox", "cache", "populi", "exec-lease-store.json") ||
		s.Replay.Path != filepath.Join("/h", ".vox", "cache", "populi", "mesh-replay-state.json") || s.Registry.Explicit {
		t.Errorf("defaults: %+v", s)
	}
	env = map[string]string{"USERPROFILE": "/u", EnvA2AStorePath: "  /x/a2a.json ", EnvReplayPersist: "false", EnvRegistryPath: " /r/reg.json"}
	s = ResolveSources(Flags{ExecLeases: "/e.json"}, lookup)
	if s.Registry.Path != " /r/reg.json" || s.A2A.Path != "/x/a2a.json" || s.ExecLeases.Path != "/e.json" || !s.ExecLeases.Explicit ||
		s.Replay.Path != "/x/mesh-replay-state.json" || s.Replay.Disabled == "" {
		t.Errorf("env rules: %+v", s)
	}
}

// TestMigrateLargeA2AFile imports a generated 100,000-row relay store and
// reports the time it took.
func TestMigrateLargeA2AFile(t *testing.T) {
	t.Parallel()
	const n = 100_000
	dir := t.TempDir()
	var buf bytes.Buffer
	buf.WriteString("[\n")
	for i := 1; i <= n; i++ {
		m := wire.StoredMessage{
			ID: uint64(i), SenderAgentID: "1", ReceiverAgentID: fmt.Sprint(100 + i%50), MessageType: "job_submit",
			Payload: fmt.Sprintf(`{"task":%d,"pad":"%s"}`, i, strings.Repeat("p", 100)), CreatedUnixMs: 1767225600000 + uint64(i),
			Acknowledged: i%3 == 0, Priority: uint8(i % 256),
		}
		if i%7 == 0 && !m.Acknowledged {
			k := fmt.Sprintf("1\x1f%s\x1fk%d", m.ReceiverAgentID, i)
			m.IdempotencyDedupeKey = &k
		}
		if i%11 == 0 && !m.Acknowledged {
			h, exp := "gpu-a", uint64(4102444800000)
			m.LeaseHolderNodeID, m.LeaseExpiresUnixMs = &h, &exp
		}
		if i%5 == 0 {
			pc := "private"
			m.PrivacyClass = &pc
		}
		b, _ := json.MarshalIndent(m, "  ", "  ")
		buf.WriteString("  ")
		buf.Write(b)
		if i < n {
			buf.WriteString(",")
		}
		buf.WriteString("\n")
	}
	buf.WriteString("]\n")
	if err := os.WriteFile(filepath.Join(dir, "a2a-store.json"), buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(t.TempDir(), "populi.db")
	var progress bytes.Buffer
	start := time.Now()
	rep, err := run(t, dir, db, func(o *Options) { o.Progress = &progress })
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("imported %d a2a rows (%d MiB file) in %v: %.0f rows/s", rep.Result.Rows.Imported, buf.Len()>>20, took.Round(time.Millisecond), float64(n)/took.Seconds())
	if rep.Result.Rows.Imported != n || rep.Result.LastMessageID != n {
		t.Errorf("result %+v", rep.Result)
	}
	for _, step := range []string{"importing: 10%\n", "importing: 50%\n", "importing: 100%\n", "reading a2a-store: 100%\n"} {
		if !strings.Contains(progress.String(), step) {
			t.Errorf("progress lacks %q:\n%s", step, progress.String())
		}
	}
	if c := strings.Count(progress.String(), "importing: "); c != 10 {
		t.Errorf("%d importing lines, want one per 10%%", c)
	}
	mustCheck(t, db)
	st := openStore(t, db)
	stats, err := st.DBStats()
	if err != nil {
		t.Fatal(err)
	}
	if stats.States[wire.StateAcked] != n/3 || stats.Buckets["a2a_rows"] != n {
		t.Errorf("stats %+v", stats)
	}
	_ = io.Discard
}
