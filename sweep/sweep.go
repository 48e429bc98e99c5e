// Package sweep is the background sweeper: on an interval it makes the stored
// data match what requests already see (expiry is evaluated at read time, so
// requests are correct without it). Each kind of work goes through a bounded
// store method, one short write transaction of at most Batch items, repeated
// until the backlog is gone or the per-pass cap is reached, so a large
// backlog is worked off in many small commits that never stall requests.
package sweep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"populi-db/internal/clock"
	"populi-db/store"
)

// Defaults.
const (
	// IntervalDefault is the time between passes (serve's --sweep-interval).
	IntervalDefault = time.Second
	// BatchDefault is the most items one store transaction touches.
	BatchDefault = 1000
	// MaxTxnsPerKindDefault caps the transactions one pass spends on one
	// kind, so a pass always ends; a pass that stops at the cap is followed
	// at once by the next one, which goes on with the backlog.
	MaxTxnsPerKindDefault = 100
)

// Kind names one kind of sweep work, as it appears in the summary log line.
type Kind string

// The kinds, in pass order.
const (
	InboxLeases Kind = "inbox_leases" // expired inbox leases back to ready (or dead), due delayed rows ready
	ExecLeases  Kind = "exec_leases"  // expired exec leases deleted
	Maintenance Kind = "maintenance"  // timed maintenance whose deadline passed cleared (SPEC 8.3)
	RelayCap    Kind = "relay_cap"    // rows evicted while over VOX_MESH_A2A_MAX_MESSAGES (SPEC 16.8)
	JTIs        Kind = "jwt_ids"      // JWT replay entries past their purge time deleted
	Bootstrap   Kind = "bootstrap"    // expired bootstrap attempt records deleted
)

// Kinds lists every kind in the order a pass runs them.
var Kinds = []Kind{InboxLeases, ExecLeases, Maintenance, RelayCap, JTIs, Bootstrap}

// Count is what one pass did for one kind.
type Count struct {
	Items        int           // items changed
	Transactions int           // store transactions spent
	Slowest      time.Duration // longest single transaction (commit included)
	More         bool          // stopped at the per-pass cap with work possibly left
	Failed       bool          // the kind's work ended on an error (logged, and in Pass's error)
}

// Summary is the outcome of one pass.
type Summary struct {
	Counts  map[Kind]Count
	Elapsed time.Duration // wall time the pass took
}

// Items is the number of items the pass changed, over all kinds.
func (s Summary) Items() int {
	n := 0
	for _, c := range s.Counts {
		n += c.Items
	}
	return n
}

// Transactions is the number of store transactions the pass ran.
func (s Summary) Transactions() int {
	n := 0
	for _, c := range s.Counts {
		n += c.Transactions
	}
	return n
}

// More reports whether some kind stopped at the per-pass cap.
func (s Summary) More() bool {
	for _, c := range s.Counts {
		if c.More {
			return true
		}
	}
	return false
}

// Sweeper runs passes over a store. Configure the exported fields before
// calling Run or Pass; they are not safe to change afterwards.
type Sweeper struct {
	Interval       time.Duration
	Clock          clock.Clock // drives Run's timer; default clock.Real
	Batch          int         // items per transaction; default BatchDefault
	MaxTxnsPerKind int         // transactions per kind per pass; default MaxTxnsPerKindDefault
	// OnPass, if set, is called after every pass (a test or metrics hook).
	OnPass func(Summary, error)

	log   *slog.Logger
	works []work
}

type work struct {
	kind Kind
	fn   func(limit int) (int, error)
}

// New returns a sweeper over st that runs a pass every interval (default
// IntervalDefault when interval <= 0) and logs to log (default
// slog.Default()).
func New(st *store.Store, interval time.Duration, log *slog.Logger) *Sweeper {
	if interval <= 0 {
		interval = IntervalDefault
	}
	if log == nil {
		log = slog.Default()
	}
	return &Sweeper{
		Interval:       interval,
		Clock:          clock.Real{},
		Batch:          BatchDefault,
		MaxTxnsPerKind: MaxTxnsPerKindDefault,
		log:            log,
		works: []work{
			{InboxLeases, st.ExpireInboxLeases},
			{ExecLeases, st.ExpireExecLeases},
			{Maintenance, st.ClearExpiredMaintenance},
			{RelayCap, st.EnforceCap},
			{JTIs, st.PurgeJTIs},
			{Bootstrap, st.PurgeBootstrap},
		},
	}
}

// Run runs a pass every Interval on Clock until ctx ends or the store is
// closed. A pass that stopped at the per-pass cap is followed at once by the
// next. Errors are logged by the pass; Run keeps going.
func (s *Sweeper) Run(ctx context.Context) {
	wait := s.Interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.Clock.After(wait):
		}
		if ctx.Err() != nil {
			return
		}
		sum, err := s.pass(ctx)
		if errors.Is(err, store.ErrClosed) {
			s.log.Debug("sweep stopped: store closed")
			return
		}
		wait = s.Interval
		if sum.More() {
			wait = 0
		}
	}
}

// Pass runs one full pass now: every kind, each in transactions of at most
// Batch items until a transaction does less than Batch or MaxTxnsPerKind is
// reached. It logs one Info line if anything changed, and each error (with
// its kind) at Error; an error ends that kind's work for this pass, not the
// pass. The returned error joins the errors of all kinds.
func (s *Sweeper) Pass() (Summary, error) { return s.pass(context.Background()) }

func (s *Sweeper) pass(ctx context.Context) (Summary, error) {
	batch := s.Batch
	if batch <= 0 {
		batch = BatchDefault
	}
	maxTxns := s.MaxTxnsPerKind
	if maxTxns <= 0 {
		maxTxns = MaxTxnsPerKindDefault
	}
	start := time.Now()
	sum := Summary{Counts: make(map[Kind]Count, len(s.works))}
	var errs []error
	for _, w := range s.works {
		if ctx.Err() != nil {
			break
		}
		c, err := s.sweepKind(ctx, w, batch, maxTxns)
		c.Failed = err != nil && !errors.Is(err, store.ErrClosed)
		sum.Counts[w.kind] = c
		if err != nil {
			if errors.Is(err, store.ErrClosed) {
				errs = append(errs, err)
				break
			}
			s.log.Error("sweep failed", "kind", string(w.kind), "swept_before_error", c.Items,
				"transactions", c.Transactions, "err", err)
			errs = append(errs, fmt.Errorf("sweep %s: %w", w.kind, err))
		}
	}
	sum.Elapsed = time.Since(start)
	err := errors.Join(errs...)
	if sum.Items() > 0 {
		attrs := make([]any, 0, 2*len(Kinds)+6)
		for _, k := range Kinds {
			attrs = append(attrs, string(k), sum.Counts[k].Items)
		}
		attrs = append(attrs, "transactions", sum.Transactions(), "more", sum.More(), "elapsed", sum.Elapsed)
		s.log.Info("sweep pass", attrs...)
	}
	if s.OnPass != nil {
		s.OnPass(sum, err)
	}
	return sum, err
}

func (s *Sweeper) sweepKind(ctx context.Context, w work, batch, maxTxns int) (Count, error) {
	var c Count
	for c.Transactions < maxTxns {
		if ctx.Err() != nil {
			return c, nil
		}
		t0 := time.Now()
		n, err := w.fn(batch)
		c.Slowest = max(c.Slowest, time.Since(t0))
		c.Transactions++
		if err != nil {
			return c, err
		}
		c.Items += n
		if n < batch {
			return c, nil
		}
	}
	c.More = true
	return c, nil
}
