package wal

// WaitIdle waits until the background goroutine has handled every request to
// prepare a spare (tests use it to make fault counts deterministic).
func (l *Log) WaitIdle() { l.pending.Wait() }
