package metrics

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"populi-db/store"
	"populi-db/wire"
)

// StoreOptions tune the scrape-time store families.
type StoreOptions struct {
	// TopReceivers is how many receivers (deepest ready queue first) get
	// per-receiver series; default TopReceiversDefault. The rest are only
	// in the totals, so label cardinality stays bounded however many
	// receivers exist.
	TopReceivers int
	// StaleAfter is the last-seen age past which a node counts as stale;
	// default StaleAfterDefault.
	StaleAfter time.Duration
}

// WatchStore makes the scrape-time families read st: queue depth by state,
// top receivers, nodes by state, live exec leases and the db file's
// figures. Calling it again (a restarted store in tests) replaces st.
func (m *Metrics) WatchStore(st *store.Store, o StoreOptions) error {
	if o.TopReceivers <= 0 {
		o.TopReceivers = TopReceiversDefault
	}
	if o.StaleAfter <= 0 {
		o.StaleAfter = StaleAfterDefault
	}
	m.storeMu.Lock()
	defer m.storeMu.Unlock()
	if m.store != nil {
		m.store.set(st, o)
		return nil
	}
	c := &storeCollector{}
	c.set(st, o)
	if err := m.Registry.Register(c); err != nil {
		return fmt.Errorf("register store metrics: %w", err)
	}
	m.store = c
	return nil
}

var (
	descDepth = prometheus.NewDesc("populi_a2a_messages",
		"A2A mailbox rows by state (ready, leased, delayed, dead, acked).", []string{"state"}, nil)
	descPending = prometheus.NewDesc("populi_a2a_pending_messages",
		"A2A rows waiting to be claimed (ready or delayed).", nil, nil)
	descReceivers = prometheus.NewDesc("populi_a2a_receivers",
		"Receivers with at least one ready row (all of them, not only the top ones).", nil, nil)
	descOldest = prometheus.NewDesc("populi_a2a_oldest_ready_age_seconds",
		"Age of the oldest ready A2A row over all receivers (0 when none is ready).", nil, nil)
	descRecvReady = prometheus.NewDesc("populi_a2a_receiver_ready_messages",
		"Ready (claimable) A2A rows for each of the top receivers by ready depth.", []string{"receiver_agent_id"}, nil)
	descRecvAge = prometheus.NewDesc("populi_a2a_receiver_oldest_ready_age_seconds",
		"Age of the oldest ready A2A row for each of the top receivers by ready depth.", []string{"receiver_agent_id"}, nil)
	descNodes = prometheus.NewDesc("populi_nodes",
		"Registered nodes by state: quarantined, else maintenance, else stale (not seen for the stale window), else active.", []string{"state"}, nil)
	descExec = prometheus.NewDesc("populi_exec_leases_active",
		"Exec leases granted and not expired.", nil, nil)
	descDBSize = prometheus.NewDesc("populi_store_db_size_bytes",
		"Size of the bbolt db file.", nil, nil)
	descFree = prometheus.NewDesc("populi_store_free_pages",
		"Pages on the db file's freelist (reusable without growing the file).", nil, nil)
	descCommits = prometheus.NewDesc("populi_store_commits_total",
		"Write batches acknowledged (durable in the write-ahead log) since the process started.", nil, nil)
)

type storeCollector struct {
	mu sync.Mutex
	st *store.Store
	o  StoreOptions
}

func (c *storeCollector) set(st *store.Store, o StoreOptions) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st, c.o = st, o
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDepth, descPending, descReceivers, descOldest, descRecvReady,
		descRecvAge, descNodes, descExec, descDBSize, descFree, descCommits} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.collectQueue(ch)
	c.collectNodes(ch)
	if leases, err := c.st.ListExecLeases(); err != nil {
		ch <- prometheus.NewInvalidMetric(descExec, fmt.Errorf("exec leases: %w", err))
	} else {
		ch <- prometheus.MustNewConstMetric(descExec, prometheus.GaugeValue, float64(len(leases)))
	}
	if ss, err := c.st.StorageStats(); err != nil {
		ch <- prometheus.NewInvalidMetric(descDBSize, fmt.Errorf("storage stats: %w", err))
	} else {
		ch <- prometheus.MustNewConstMetric(descDBSize, prometheus.GaugeValue, float64(ss.FileSizeBytes))
		ch <- prometheus.MustNewConstMetric(descFree, prometheus.GaugeValue, float64(ss.FreePages))
		ch <- prometheus.MustNewConstMetric(descCommits, prometheus.CounterValue, float64(ss.Commits))
	}
}

func (c *storeCollector) collectQueue(ch chan<- prometheus.Metric) {
	st, err := c.st.QueueStats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descDepth, fmt.Errorf("queue stats: %w", err))
		return
	}
	for _, s := range []struct {
		state string
		n     uint64
	}{
		{wire.StateReady, st.ByState.Ready},
		{wire.StateLeased, st.ByState.Leased},
		{wire.StateDelayed, st.ByState.Delayed},
		{wire.StateDead, st.ByState.Dead},
		{wire.StateAcked, st.ByState.Acked},
	} {
		ch <- prometheus.MustNewConstMetric(descDepth, prometheus.GaugeValue, float64(s.n), s.state)
	}
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(st.PendingCount))
	recv := slices.DeleteFunc(st.Receivers, func(r wire.ReceiverStats) bool { return r.Ready == 0 })
	var oldest uint64
	for _, r := range recv {
		oldest = max(oldest, r.OldestReadyAgeMs)
	}
	ch <- prometheus.MustNewConstMetric(descReceivers, prometheus.GaugeValue, float64(len(recv)))
	ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, float64(oldest)/1000)
	slices.SortFunc(recv, func(a, b wire.ReceiverStats) int {
		return cmp.Or(cmp.Compare(b.Ready, a.Ready), cmp.Compare(a.ReceiverAgentID, b.ReceiverAgentID))
	})
	for _, r := range recv[:min(len(recv), c.o.TopReceivers)] {
		ch <- prometheus.MustNewConstMetric(descRecvReady, prometheus.GaugeValue, float64(r.Ready), r.ReceiverAgentID)
		ch <- prometheus.MustNewConstMetric(descRecvAge, prometheus.GaugeValue, float64(r.OldestReadyAgeMs)/1000, r.ReceiverAgentID)
	}
}

// Node states, in the order a node is classified.
var nodeStates = []string{"quarantined", "maintenance", "stale", "active"}

func (c *storeCollector) collectNodes(ch chan<- prometheus.Metric) {
	reg, err := c.st.ListNodes(0)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descNodes, fmt.Errorf("nodes: %w", err))
		return
	}
	nowMs := uint64(c.st.Now().UnixMilli())
	staleMs := uint64(c.o.StaleAfter.Milliseconds())
	counts := map[string]int{}
	for _, n := range reg.Nodes {
		switch {
		case n.Quarantined != nil && *n.Quarantined:
			counts["quarantined"]++
		case n.Maintenance != nil && *n.Maintenance:
			counts["maintenance"]++
		case nowMs > n.LastSeenUnixMs && nowMs-n.LastSeenUnixMs > staleMs:
			counts["stale"]++
		default:
			counts["active"]++
		}
	}
	for _, s := range nodeStates {
		ch <- prometheus.MustNewConstMetric(descNodes, prometheus.GaugeValue, float64(counts[s]), s)
	}
}
