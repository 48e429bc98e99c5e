package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"populi-db/store"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := filepath.Join(dir, "p.db")
	st, err := store.Open(store.Config{Path: db})
	if err != nil {
		t.Fatal(err)
	}

	// Held by a live store: refused, naming the file.
	if _, err := runApp(t, "check", "--db", db); err == nil || !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), db) {
		t.Errorf("check of a locked db: err = %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	out, err := runApp(t, "check", "--db", db)
	if err != nil || out != "ok "+db+"\n" {
		t.Errorf("check = %q, %v", out, err)
	}
	out, err = runApp(t, "check", "--db", db, "-o", "json")
	var res struct {
		OK       bool              `json:"ok"`
		Findings []json.RawMessage `json:"findings"`
	}
	if err != nil || json.Unmarshal([]byte(out), &res) != nil || !res.OK || res.Findings == nil || len(res.Findings) != 0 {
		t.Errorf("check -o json = %q, %v", out, err)
	}

	missing := filepath.Join(dir, "nope.db")
	if _, err := runApp(t, "check", "--db", missing); err == nil || !strings.Contains(err.Error(), "no database") {
		t.Errorf("check of a missing file: err = %v", err)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("check created the missing file")
	}
}
