package migrate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"populi-db/internal/clock"
	"populi-db/store"
	"populi-db/wire"
)

// Options configure Run.
type Options struct {
	DBPath   string
	Sources  Sources
	DryRun   bool
	Rename   bool // rename each imported file to <name>.migrated after the commit
	Clock    clock.Clock
	Logger   *slog.Logger
	LockWait time.Duration // how long to wait for the db file lock
	// Progress receives a bar (Terminal) or a line per 10%; nil = none.
	Progress io.Writer
	Terminal bool
}

// FileReport says what was read from one legacy file.
type FileReport struct {
	Kind          string   `json:"kind"`
	Path          string   `json:"path"`
	Status        string   `json:"status"` // read, absent, disabled
	Records       int      `json:"records"`
	UnknownFields []string `json:"unknown_fields,omitempty"`
}

// Report is the outcome of Run.
type Report struct {
	DB       string             `json:"db"`
	DryRun   bool               `json:"dry_run"`
	Files    []FileReport       `json:"files"`
	Findings []string           `json:"findings"` // duplicates, dedupe violations, skipped records
	Result   store.ImportResult `json:"result"`
	Renamed  []string           `json:"renamed,omitempty"`
	Warnings []string           `json:"warnings,omitempty"`
	Seconds  float64            `json:"seconds"`
	Rows     int                `json:"a2a_rows_read"`
}

// ErrHeld means a running server holds the target db.
var ErrHeld = errors.New("migrate: the database is held by a running populi-db server")

// bigFile is where progress starts being shown.
const bigFile = 1 << 20

// Run reads the legacy files, then imports them in one transaction. An
// unparsable file stops everything before the db is touched.
func Run(o Options) (*Report, error) {
	start := time.Now()
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.LockWait == 0 {
		o.LockWait = time.Second
	}
	rep := &Report{DB: o.DBPath, DryRun: o.DryRun, Findings: []string{}}
	var set store.ImportSet
	var read []string
	kinds := []struct {
		name  string
		src   Source
		parse func(*legacyFile, *store.ImportSet, *Report, *progress) (int, error)
	}{
		{"registry", o.Sources.Registry, parseRegistry},
		{"a2a-store", o.Sources.A2A, parseA2A},
		{"exec-lease-store", o.Sources.ExecLeases, parseLeases},
		{"replay-state", o.Sources.Replay, parseReplay},
	}
	for _, k := range kinds {
		fr := FileReport{Kind: k.name, Path: k.src.Path}
		if k.src.Disabled != "" {
			fr.Status = "disabled: " + k.src.Disabled
			rep.Files = append(rep.Files, fr)
			continue
		}
		data, err := os.ReadFile(k.src.Path)
		if errors.Is(err, fs.ErrNotExist) && !k.src.Explicit {
			fr.Status = "absent"
			rep.Files = append(rep.Files, fr)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s file: %w", k.name, err)
		}
		f := &legacyFile{path: k.src.Path, data: data}
		var p *progress
		if len(data) >= bigFile {
			p = newProgress(o.Progress, o.Terminal, "reading "+k.name, int64(len(data)))
		}
		n, err := k.parse(f, &set, rep, p)
		p.done()
		if err != nil {
			return nil, err
		}
		fr.Status, fr.Records, fr.UnknownFields = "read", n, f.unknownFields()
		for _, u := range fr.UnknownFields {
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s: unknown field %s ignored", k.src.Path, u))
		}
		rep.Files = append(rep.Files, fr)
		read = append(read, k.src.Path)
	}
	rep.Rows = len(set.Rows)

	st, err := store.Open(store.Config{
		Path: o.DBPath, Clock: o.Clock, Logger: o.Logger, OpenTimeout: o.LockWait,
		OpenMode: store.OpenMode{NoIndexRebuild: true, NoCommitLoop: true},
	})
	if errors.Is(err, store.ErrLocked) {
		return nil, fmt.Errorf("%w: %s is locked by the server serving it; stop that server first (or migrate into another --db and restore it)", ErrHeld, o.DBPath)
	}
	if err != nil {
		return nil, err
	}
	total := len(set.Nodes) + len(set.Rows) + len(set.Leases) + len(set.JTIs) + len(set.Idem)
	var p *progress
	if total >= 10000 {
		p = newProgress(o.Progress, o.Terminal, "importing", int64(total))
	}
	res, err := st.Import(set, o.DryRun, func(done int) { p.update(int64(done)) })
	p.done()
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", o.DBPath, cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("import into %s (nothing was written): %w", o.DBPath, err)
	}
	rep.Result = res
	rep.Findings = append(rep.Findings, res.Notes...)
	if stored := res.Rows.Imported + res.Rows.Present; stored > store.MaxMessagesDefault {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%d a2a rows are stored; a server whose VOX_MESH_A2A_MAX_MESSAGES (default %d) is lower evicts the oldest (acknowledged first) down to that cap", stored, store.MaxMessagesDefault))
	}
	if o.Rename && !o.DryRun {
		for _, p := range read {
			if err := os.Rename(p, p+".migrated"); err != nil {
				return rep, fmt.Errorf("the import is committed, but renaming %s failed: %w", p, err)
			}
			rep.Renamed = append(rep.Renamed, p+".migrated")
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

var (
	nodeFields  = jsonFields(reflect.TypeOf(wire.NodeRecord{}))
	rowFields   = jsonFields(reflect.TypeOf(wire.StoredMessage{}))
	leaseFields = jsonFields(reflect.TypeOf(wire.ExecLease{}))
)

func parseRegistry(f *legacyFile, set *store.ImportSet, rep *Report, p *progress) (int, error) {
	var els []element
	sawVersion, sawNodes := false, false
	err := f.object("a registry object {\"schema_version\":1,\"nodes\":[...]}", func(dec *json.Decoder, key string, off int64) error {
		switch key {
		case "schema_version":
			sawVersion = true
			var v uint32
			if err := dec.Decode(&v); err != nil {
				return f.decodeErr(err, 0, off)
			}
			if v != 1 {
				return f.errAt(off, "registry schema_version %d is not 1: not a file this importer knows", v)
			}
		case "nodes":
			sawNodes = true
			var err error
			els, err = f.array(dec, "the nodes array", p.at)
			return err
		case "queue_depth":
			var v json.RawMessage
			return dec.Decode(&v)
		default:
			return f.skipValue(dec, key, off)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if !sawVersion || !sawNodes {
		return 0, f.errAt(0, "registry lacks \"schema_version\" or \"nodes\"")
	}
	type kept struct {
		rec  wire.NodeRecord
		line int
		all  []int
	}
	byID := map[string]*kept{}
	var order []string
	for _, el := range els {
		var rec wire.NodeRecord
		if err := f.record(el, &rec, nodeFields, []string{"id"}); err != nil {
			return 0, err
		}
		line := f.line(el.off)
		k, dup := byID[rec.ID]
		if !dup {
			byID[rec.ID] = &kept{rec: rec, line: line, all: []int{line}}
			order = append(order, rec.ID)
			continue
		}
		k.all = append(k.all, line)
		if rec.LastSeenUnixMs >= k.rec.LastSeenUnixMs { // the newest record wins; a tie goes to the later line
			k.rec, k.line = rec, line
		}
	}
	for _, id := range order {
		k := byID[id]
		if len(k.all) > 1 {
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s: duplicate node id %q on lines %s: kept line %d (last_seen_unix_ms %d)", f.path, id, joinInts(k.all), k.line, k.rec.LastSeenUnixMs))
		}
		set.Nodes = append(set.Nodes, k.rec)
	}
	return len(els), nil
}

func parseA2A(f *legacyFile, set *store.ImportSet, rep *Report, p *progress) (int, error) {
	els, err := f.topArray("a JSON array of stored messages", p.at)
	if err != nil {
		return 0, err
	}
	seen := make(map[uint64]int, len(els))
	type holder struct {
		idx  int
		line int
	}
	dedupe := map[string][]holder{}
	rows := make([]wire.StoredMessage, 0, len(els))
	required := []string{"id", "sender_agent_id", "receiver_agent_id", "message_type", "payload", "created_unix_ms", "acknowledged"}
	for _, el := range els {
		m, ok := fastRow(el.raw)
		if !ok { // unknown fields or a missing one: the slow path says which
			if err := f.record(el, &m, rowFields, required); err != nil {
				return 0, err
			}
		}
		line := f.line(el.off)
		if first, dup := seen[m.ID]; dup {
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s: a2a row id %d appears again on line %d: kept line %d", f.path, m.ID, line, first))
			continue
		}
		seen[m.ID] = line
		m.SenderAgentID, m.ReceiverAgentID = strings.TrimSpace(m.SenderAgentID), strings.TrimSpace(m.ReceiverAgentID)
		if !store.IsAgentID(m.SenderAgentID) || !store.IsAgentID(m.ReceiverAgentID) {
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s:%d: a2a row %d: sender and receiver agent ids must be digits, skipped", f.path, line, m.ID))
			continue
		}
		if m.IdempotencyDedupeKey != nil && !m.Acknowledged {
			dedupe[*m.IdempotencyDedupeKey] = append(dedupe[*m.IdempotencyDedupeKey], holder{len(rows), line})
		}
		rows = append(rows, m)
	}
	keys := make([]string, 0)
	for k, hs := range dedupe {
		if len(hs) > 1 {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		hs := dedupe[k]
		sort.Slice(hs, func(i, j int) bool { return rows[hs[i].idx].ID < rows[hs[j].idx].ID })
		var dropped []string
		for _, h := range hs[1:] {
			rows[h.idx].IdempotencyDedupeKey = nil
			dropped = append(dropped, fmt.Sprintf("%d (line %d)", rows[h.idx].ID, h.line))
		}
		rep.Findings = append(rep.Findings, fmt.Sprintf("%s: dedupe_violation: %d unacknowledged rows share idempotency_dedupe_key %q: row %d (line %d) keeps it; rows %s are imported without it",
			f.path, len(hs), k, rows[hs[0].idx].ID, hs[0].line, strings.Join(dropped, ", ")))
	}
	set.Rows = append(set.Rows, rows...)
	return len(els), nil
}

func parseLeases(f *legacyFile, set *store.ImportSet, rep *Report, p *progress) (int, error) {
	els, err := f.topArray("a JSON array of exec leases", p.at)
	if err != nil {
		return 0, err
	}
	seen := map[string]int{}
	byScope := map[string]int{} // scope → index in out
	var out []wire.ExecLease
	var lines []int
	for _, el := range els {
		var l wire.ExecLease
		if err := f.record(el, &l, leaseFields, nil); err != nil {
			return 0, err
		}
		line := f.line(el.off)
		if first, dup := seen[l.LeaseID]; dup {
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s: exec lease id %q appears again on line %d: kept line %d", f.path, l.LeaseID, line, first))
			continue
		}
		seen[l.LeaseID] = line
		l.ScopeKey, l.HolderNodeID = strings.TrimSpace(l.ScopeKey), strings.TrimSpace(l.HolderNodeID)
		if i, dup := byScope[l.ScopeKey]; dup {
			keep, drop, dropLine := l, out[i], lines[i]
			if out[i].ExpiresUnixMs >= l.ExpiresUnixMs {
				keep, drop, dropLine = out[i], l, line
			} else {
				out[i], lines[i] = l, line
			}
			rep.Findings = append(rep.Findings, fmt.Sprintf("%s: exec leases %s and %s share scope_key %q: kept %s (later expiry), skipped %s (line %d)", f.path, keep.LeaseID, drop.LeaseID, l.ScopeKey, keep.LeaseID, drop.LeaseID, dropLine))
			continue
		}
		byScope[l.ScopeKey] = len(out)
		out = append(out, l)
		lines = append(lines, line)
	}
	set.Leases = append(set.Leases, out...)
	return len(els), nil
}

func parseReplay(f *legacyFile, set *store.ImportSet, rep *Report, p *progress) (int, error) {
	var jtis, idem []element
	version := uint32(0)
	err := f.object("a replay state object", func(dec *json.Decoder, key string, off int64) error {
		var err error
		switch key {
		case "schema_version":
			if err := dec.Decode(&version); err != nil {
				return f.decodeErr(err, 0, off)
			}
		case "jwt_jti":
			jtis, err = f.array(dec, "the jwt_jti array", nil)
		case "idempotency":
			idem, err = f.array(dec, "the idempotency array", nil)
		default:
			err = f.skipValue(dec, key, off)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if version != 1 {
		rep.Findings = append(rep.Findings, fmt.Sprintf("%s: schema_version %d is not 1; the original ignores such a file, so does this import", f.path, version))
		return 0, nil
	}
	for _, el := range jtis {
		var pair []json.RawMessage
		var j store.ImportJTI
		if err := json.Unmarshal(el.raw, &pair); err != nil || len(pair) != 2 ||
			json.Unmarshal(pair[0], &j.JTI) != nil || json.Unmarshal(pair[1], &j.ExpUnixSec) != nil {
			return 0, f.errAt(el.off, "expected [\"jti\", exp_unix_seconds]")
		}
		set.JTIs = append(set.JTIs, j)
	}
	for _, el := range idem {
		var pair []json.RawMessage
		var e store.ImportIdem
		if err := json.Unmarshal(el.raw, &pair); err != nil || len(pair) != 2 ||
			json.Unmarshal(pair[0], &e.Key) != nil || json.Unmarshal(pair[1], &e.MessageID) != nil {
			return 0, f.errAt(el.off, "expected [\"dedupe_key\", message_id]")
		}
		set.Idem = append(set.Idem, e)
	}
	return len(jtis) + len(idem), nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, ", ")
}

type plainRow wire.StoredMessage // without StoredMessage's UnmarshalJSON

// rowIn decodes a legacy row in one pass: the outer pointer fields shadow
// plainRow's so a missing required field or priority is seen.
type rowIn struct {
	plainRow
	ID              *uint64 `json:"id"`
	SenderAgentID   *string `json:"sender_agent_id"`
	ReceiverAgentID *string `json:"receiver_agent_id"`
	MessageType     *string `json:"message_type"`
	Payload         *string `json:"payload"`
	CreatedUnixMs   *uint64 `json:"created_unix_ms"`
	Acknowledged    *bool   `json:"acknowledged"`
	Priority        *uint8  `json:"priority"`
}

// fastRow decodes a row that has every required field and no unknown one
// (the common case, one decode); ok is false otherwise.
func fastRow(raw []byte) (wire.StoredMessage, bool) {
	var r rowIn
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil || r.ID == nil || r.SenderAgentID == nil || r.ReceiverAgentID == nil ||
		r.MessageType == nil || r.Payload == nil || r.CreatedUnixMs == nil || r.Acknowledged == nil {
		return wire.StoredMessage{}, false
	}
	m := wire.StoredMessage(r.plainRow)
	m.ID, m.SenderAgentID, m.ReceiverAgentID, m.MessageType = *r.ID, *r.SenderAgentID, *r.ReceiverAgentID, *r.MessageType
	m.Payload, m.CreatedUnixMs, m.Acknowledged = *r.Payload, *r.CreatedUnixMs, *r.Acknowledged
	m.Priority = wire.DefaultPriority
	if r.Priority != nil {
		m.Priority = *r.Priority
	}
	return m, true
}
