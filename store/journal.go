package store

// journal is where a group-commit batch becomes durable before it is
// acknowledged: the write-ahead log (store/wal, the default) or etcd
// (etcd.go). The commit path (commit.go) is the same for both.
type journal interface {
	// Append makes one batch's record durable; nil means acknowledged.
	Append(seq uint64, payload []byte) error
	// LastSeq is the sequence of the last record appended or recovered.
	LastSeq() uint64
	// Release says every record up to seq is in the store of record.
	Release(seq uint64) error
	Close() error
	// RemoveAll drops the journal after a clean stop folded it.
	RemoveAll() error
}

// folder is a journal that is also the store of record (etcd): fold hands
// it each layer of acknowledged writes before committing the layer to the
// local bbolt file, which is then only a cache.
type folder interface {
	Fold(l *layer) error
}

// journalName names the journal in errors and logs.
func (s *Store) journalName() string {
	if s.cfg.Etcd != nil {
		return "etcd prefix " + s.cfg.Etcd.Prefix
	}
	return "write-ahead log " + s.cfg.LogDir
}
