package cli

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"populi-db/api"
	"populi-db/wire"
)

// openAPIDoc is the little of ../openapi.yaml these tests need, read by
// indentation (the document keeps a fixed layout): each path's methods and
// each schema's property names.
type openAPIDoc struct {
	paths   map[string][]string
	schemas map[string][]string
	text    string
}

func readOpenAPI(t *testing.T) openAPIDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := openAPIDoc{paths: map[string][]string{}, schemas: map[string][]string{}, text: string(b)}
	section, sub, path, schema := "", "", "", ""
	inProps := false
	sc := bufio.NewScanner(strings.NewReader(doc.text))
	for sc.Scan() {
		line := sc.Text()
		indent := len(line) - len(strings.TrimLeft(line, " "))
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		key, _, _ := strings.Cut(trimmed, ":")
		switch {
		case indent == 0:
			section = key
		case indent == 2:
			path, sub = key, key
		case section == "paths" && indent == 4 && slices.Contains([]string{"get", "post", "put", "delete", "patch"}, key):
			doc.paths[path] = append(doc.paths[path], strings.ToUpper(key))
		case section == "components" && sub == "schemas" && indent == 4:
			schema, inProps = key, false
			doc.schemas[schema] = nil
		case section == "components" && sub == "schemas" && indent == 6:
			inProps = key == "properties"
		case section == "components" && sub == "schemas" && indent == 8 && inProps:
			doc.schemas[schema] = append(doc.schemas[schema], key)
		}
	}
	return doc
}

func jsonNames(t reflect.Type) []string {
	var out []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// TestOpenAPISchemasMatchWire keeps openapi.yaml's properties equal to the
// JSON field names of the wire types.
func TestOpenAPISchemasMatchWire(t *testing.T) {
	t.Parallel()
	doc := readOpenAPI(t)
	types := map[string]any{
		"TaskCapabilityHints": wire.TaskCapabilityHints{}, "DonationSlot": wire.DonationSlot{},
		"WorkerDonationPolicy": wire.WorkerDonationPolicy{}, "ModelAdvertisement": wire.ModelAdvertisement{},
		"NodeRecord": wire.NodeRecord{}, "Registry": wire.Registry{}, "LeaveRequest": wire.LeaveRequest{},
		"BootstrapExchangeRequest": wire.BootstrapExchangeRequest{}, "BootstrapExchangeResponse": wire.BootstrapExchangeResponse{},
		"DeliverRequest": wire.DeliverRequest{}, "DeliverResponse": wire.DeliverResponse{}, "StoredMessage": wire.StoredMessage{},
		"InboxRequest": wire.InboxRequest{}, "InboxResponse": wire.InboxResponse{}, "AckRequest": wire.AckRequest{},
		"LeaseRenewRequest": wire.LeaseRenewRequest{}, "NackRequest": wire.NackRequest{}, "DeadListRequest": wire.DeadListRequest{},
		"RequeueRequest": wire.RequeueRequest{}, "ExecGrantRequest": wire.ExecGrantRequest{}, "ExecLease": wire.ExecLease{},
		"ExecLeaseList": wire.ExecLeaseList{}, "ExecLeaseRequest": wire.ExecLeaseRequest{}, "RevokeRequest": wire.RevokeRequest{},
		"QuarantineRequest": wire.QuarantineRequest{}, "MaintenanceRequest": wire.MaintenanceRequest{},
		"StateCounts": wire.StateCounts{}, "ReceiverStats": wire.ReceiverStats{}, "QueueStats": wire.QueueStats{},
		"MeshDirectoryEntry": wire.MeshDirectoryEntry{}, "AnnounceRequest": wire.AnnounceRequest{},
		"FederationDirectory": wire.FederationDirectory{},
		"DBStats":             wire.DBStats{}, "OldestPending": wire.OldestPending{},
	}
	for name, v := range types {
		props, ok := doc.schemas[name]
		if !ok {
			t.Errorf("openapi.yaml has no schema %s", name)
			continue
		}
		props = slices.Sorted(slices.Values(props))
		if want := jsonNames(reflect.TypeOf(v)); !slices.Equal(props, want) {
			t.Errorf("schema %s properties\n  %v\nwire.%s JSON fields\n  %v", name, props, name, want)
		}
	}
	if !strings.Contains(doc.text, "const: "+api.FeatureHeader+"\n") {
		t.Error("openapi.yaml's x-populi-feature value differs from api.FeatureHeader")
	}
}

// TestOpenAPIRoutesExist sends each documented method and path to a real
// server: a GET answers 200 in open mode, a POST without a JSON content type
// answers 415 (decoding runs before anything else) — an unknown route would
// be 404.
func TestOpenAPIRoutesExist(t *testing.T) {
	t.Parallel()
	doc := readOpenAPI(t)
	if len(doc.paths) < 22 {
		t.Fatalf("parsed only %d paths from openapi.yaml: %v", len(doc.paths), doc.paths)
	}
	s := startServer(t, filepath.Join(t.TempDir(), "p.db"), nil)
	for path, methods := range doc.paths {
		for _, m := range methods {
			want := 200
			if m == "POST" {
				want = 415
			}
			req, _ := newRawRequest(m, s.URL+path)
			resp, err := testHTTP.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", m, path, err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s %s = %d, want %d (is the route documented but not served?)", m, path, resp.StatusCode, want)
			}
		}
	}
	// The binary serves this very file (embedded at build time).
	req, _ := newRawRequest("GET", s.URL+"/openapi.yaml")
	resp, err := testHTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(served) != doc.text {
		t.Errorf("GET /openapi.yaml (%d, %d bytes) differs from openapi.yaml (%d bytes)", resp.StatusCode, len(served), len(doc.text))
	}
	s.signal(syscall.SIGTERM)
	s.wait(15 * time.Second)
}
