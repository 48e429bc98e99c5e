package wire

// DBStats answers GET /v1/populi/admin/stats and `populi-db stats`: what is
// in the db file and how big it is.
type DBStats struct {
	Path          string            `json:"path"`
	FileBytes     int64             `json:"file_bytes"`
	PageSize      int               `json:"page_size"`
	FreePages     int               `json:"free_pages"`
	SchemaVersion uint64            `json:"schema_version"`
	Buckets       map[string]int    `json:"buckets"`
	States        map[string]uint64 `json:"states"`
	OldestPending *OldestPending    `json:"oldest_pending,omitempty"`
}

// OldestPending is the lowest-id row not yet acknowledged or dead.
type OldestPending struct {
	MessageID       uint64 `json:"message_id"`
	ReceiverAgentID string `json:"receiver_agent_id"`
	State           string `json:"state"`
	CreatedUnixMs   uint64 `json:"created_unix_ms"`
}
