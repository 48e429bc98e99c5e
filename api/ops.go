package api

import (
	"net/http"
	"strconv"
	"time"
)

// backup answers GET /v1/populi/admin/backup: a consistent snapshot of the
// db file, streamed from one read transaction while writes go on. It holds
// every write acknowledged before the request arrived. Content-Length is
// the snapshot's exact size, so a cut stream is detectable.
func (s *Server) backup(w http.ResponseWriter, r *http.Request) error {
	// A big snapshot outlives any write deadline the server sets.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
	started := false
	n, err := s.store.BackupTo(w, func(size int64) {
		started = true
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(size, 10))
		h.Set("Content-Disposition", `attachment; filename="populi.db"`)
		w.WriteHeader(http.StatusOK)
	})
	if err != nil && started {
		// The status line is out; the short body tells the client.
		s.log.Error("backup stream failed", "bytes", n, "err", err)
		return nil
	}
	if err == nil {
		s.log.Info("backup streamed", "bytes", n)
	}
	return err
}

// dbStats answers GET /v1/populi/admin/stats: what the db file holds.
func (s *Server) dbStats(w http.ResponseWriter, _ *http.Request) error {
	st, err := s.store.DBStats()
	if err != nil {
		return err
	}
	return writeJSON(w, st)
}
