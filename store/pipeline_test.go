package store

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"populi-db/wire"
)

// With PipelineCommits the syncer goroutine takes batches while the writer
// builds the next: under concurrent writers with real fsyncs some batches
// must go that way, every write must be acknowledged once and survive a
// reopen, and the indexes must stay consistent.
func TestPipelinedCommits(t *testing.T) {
	t.Parallel()
	b := setupSync(t, func(c *Config) { c.PipelineCommits = true })
	const writers, each = 16, 25
	var (
		mu  sync.Mutex
		ids = map[uint64]bool{}
		wg  sync.WaitGroup
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key := fmt.Sprintf("w%d-%d", w, i)
				id, err := b.s.Deliver(wire.DeliverRequest{SenderAgentID: "1", ReceiverAgentID: "7",
					MessageType: "t", Payload: key, IdempotencyKey: &key, PrivacyClass: ptr("private")}, "")
				if err != nil {
					t.Errorf("deliver %s: %v", key, err)
					return
				}
				mu.Lock()
				if ids[id] {
					t.Errorf("message id %d answered twice", id)
				}
				ids[id] = true
				mu.Unlock()
			}
		}()
	}
	// A slow operation in most batches widens the window in which writes
	// answered by the previous batch come back and wait behind the one
	// being built (what sends a batch to the syncer), whatever the disk's
	// or etcd's speed.
	stop := make(chan struct{})
	slow := make(chan struct{})
	go func() {
		defer close(slow)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = b.s.update(func(*txn) error { time.Sleep(300 * time.Microsecond); return nil })
		}
	}()
	wg.Wait()
	close(stop)
	<-slow
	if n := b.s.pipelined.Load(); n == 0 {
		t.Fatalf("no batch went through the syncer with %d concurrent writers", writers)
	} else {
		t.Logf("%d of the batches went through the syncer", n)
	}
	b.reopen() // checks invariants before and after
	st, err := b.s.QueueStats()
	if err != nil || st.ByState.Ready != writers*each || len(ids) != writers*each {
		t.Fatalf("after reopen: %d ready rows (%v), %d ids acknowledged; want %d", st.ByState.Ready, err, len(ids), writers*each)
	}
}
