package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ucli "github.com/urfave/cli/v2"

	"populi-db/client"
	"populi-db/wire"
)

// Bench defaults: scenario A of the contributors' peer bench (3000 messages,
// 1 producer, 1 consumer, 1 mailbox, phased).
const (
	BenchNDefault       = 3000
	BenchPayloadDefault = 256
	BenchWaitMsDefault  = 1000
	BenchTimeoutDefault = 10 * time.Minute
	benchDeliverRetries = 3
)

func benchCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "bench",
		Usage: "load-generate deliver → claim → ack against a running server and report msg/s and latencies",
		Description: "Joins one node per consumer, delivers --n rows (privacy_class \"private\", an idempotency\n" +
			"key each) from --producers goroutines to --receivers mailboxes (receiver agent ids 1..R),\n" +
			"and --consumers goroutines (consumer j on mailbox j mod R + 1) claim and ack until every row\n" +
			"is acked exactly once with an intact payload. --phased delivers everything first, then\n" +
			"consumes. Claims long-poll with wait_ms; acks carry the claim's lease_token.\n" +
			"Figures: deliver msg/s, claim+ack msg/s, e2e msg/s (start to last ack), p50/p99 per op.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "url", Value: "http://" + BindDefault, Usage: "server base URL"},
			&ucli.StringFlag{Name: "token", EnvVars: []string{EnvMeshToken}, Usage: "bearer token (mesh or admin; blank for open mode)"},
			&ucli.IntFlag{Name: "n", Value: BenchNDefault, Usage: "messages to deliver"},
			&ucli.IntFlag{Name: "producers", Value: 1, Usage: "concurrent delivering goroutines"},
			&ucli.IntFlag{Name: "consumers", Value: 1, Usage: "concurrent claim+ack goroutines (one joined node each; must be >= --receivers)"},
			&ucli.IntFlag{Name: "receivers", Value: 1, Usage: "mailboxes (receiver agent ids 1..R)"},
			&ucli.IntFlag{Name: "payload", Value: BenchPayloadDefault, Usage: "payload bytes per message (at least 32)"},
			&ucli.BoolFlag{Name: "phased", Usage: "deliver all messages first, then consume (else both run at once)"},
			&ucli.IntFlag{Name: "wait-ms", Value: BenchWaitMsDefault, Usage: "long-poll wait_ms sent with each claim (0 = plain polling)"},
			&ucli.DurationFlag{Name: "timeout", Value: BenchTimeoutDefault, Usage: "give up after this long"},
			outputFlag,
		},
		Action: func(c *ucli.Context) error {
			asJSON, err := wantJSON(c)
			if err != nil {
				return err
			}
			o := benchOptions{
				URL: strings.TrimRight(strings.TrimSpace(c.String("url")), "/"), Token: strings.TrimSpace(c.String("token")),
				N: c.Int("n"), Producers: c.Int("producers"), Consumers: c.Int("consumers"), Receivers: c.Int("receivers"),
				Payload: c.Int("payload"), Phased: c.Bool("phased"), WaitMs: c.Int("wait-ms"), Timeout: c.Duration("timeout"),
			}
			res, err := runBench(c.Context, o)
			if res != nil {
				if asJSON {
					if perr := printJSON(c.App.Writer, res); perr != nil {
						return perr
					}
				} else {
					res.writeText(c.App.Writer)
				}
			}
			return err
		},
	}
}

type benchOptions struct {
	URL, Token                         string
	N, Producers, Consumers, Receivers int
	Payload, WaitMs                    int
	Phased                             bool
	Timeout                            time.Duration
}

func (o *benchOptions) validate() error {
	switch {
	case o.URL == "":
		return errors.New("--url is required (e.g. --url http://127.0.0.1:9847)")
	case o.N < 1:
		return fmt.Errorf("--n must be at least 1 (got %d)", o.N)
	case o.Producers < 1 || o.Consumers < 1 || o.Receivers < 1:
		return errors.New("--producers, --consumers and --receivers must each be at least 1")
	case o.Consumers < o.Receivers:
		return fmt.Errorf("--consumers (%d) must be >= --receivers (%d): every mailbox needs a consumer", o.Consumers, o.Receivers)
	case o.Payload < 32:
		return fmt.Errorf("--payload must be at least 32 bytes (got %d)", o.Payload)
	case o.WaitMs < 0:
		return errors.New("--wait-ms must not be negative")
	case o.Timeout <= 0:
		return errors.New("--timeout must be positive")
	}
	return nil
}

// OpStats are one operation's latencies as the client saw them.
type OpStats struct {
	Count int     `json:"count"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// BenchResult is what `bench` reports (-o json prints it as is).
type BenchResult struct {
	URL             string  `json:"url"`
	N               int     `json:"n"`
	Producers       int     `json:"producers"`
	Consumers       int     `json:"consumers"`
	Receivers       int     `json:"receivers"`
	PayloadBytes    int     `json:"payload_bytes"`
	Phased          bool    `json:"phased"`
	Status          string  `json:"status"` // ok, errors, incorrect, timeout
	Delivered       int     `json:"delivered"`
	Acked           int     `json:"acked"`
	DeliverSeconds  float64 `json:"deliver_seconds"`
	ConsumeSeconds  float64 `json:"consume_seconds"`
	E2ESeconds      float64 `json:"e2e_seconds"`
	DeliverPerSec   float64 `json:"deliver_msg_per_sec"`
	ClaimAckPerSec  float64 `json:"claim_ack_msg_per_sec"`
	E2EPerSec       float64 `json:"e2e_msg_per_sec"`
	Deliver         OpStats `json:"deliver"`
	Claim           OpStats `json:"claim"`
	Ack             OpStats `json:"ack"`
	EmptyPolls      int64   `json:"empty_polls"`
	DuplicateClaims int64   `json:"duplicate_claims"`
	BadPayloads     int64   `json:"bad_payloads"`
	Errors          int64   `json:"errors"`
	FirstError      string  `json:"first_error,omitempty"`
	LeftPending     int64   `json:"left_pending"` // queue stats pending_count after the run; -1 if unavailable
}

func (r *BenchResult) writeText(w io.Writer) {
	mode := "concurrent"
	if r.Phased {
		mode = "phased"
	}
	fmt.Fprintf(w, "populi-db bench %s: n=%d producers=%d consumers=%d receivers=%d payload=%dB (%s)\n",
		r.URL, r.N, r.Producers, r.Consumers, r.Receivers, r.PayloadBytes, mode)
	fmt.Fprintf(w, "  status     %s\n", r.Status)
	fmt.Fprintf(w, "  deliver    %9.1f msg/s  (%d in %.2fs)  p50 %.2f ms  p99 %.2f ms\n",
		r.DeliverPerSec, r.Delivered, r.DeliverSeconds, r.Deliver.P50Ms, r.Deliver.P99Ms)
	fmt.Fprintf(w, "  claim+ack  %9.1f msg/s  (%d in %.2fs)  claim p50 %.2f ms  p99 %.2f ms  ack p50 %.2f ms  p99 %.2f ms\n",
		r.ClaimAckPerSec, r.Acked, r.ConsumeSeconds, r.Claim.P50Ms, r.Claim.P99Ms, r.Ack.P50Ms, r.Ack.P99Ms)
	fmt.Fprintf(w, "  e2e        %9.1f msg/s  (%.2fs)\n", r.E2EPerSec, r.E2ESeconds)
	fmt.Fprintf(w, "  empty polls %d, duplicate claims %d, bad payloads %d, errors %d, left pending %d\n",
		r.EmptyPolls, r.DuplicateClaims, r.BadPayloads, r.Errors, r.LeftPending)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error: %s\n", r.FirstError)
	}
}

// benchPayload is message i's payload: the run id and its index, then filler
// to size bytes.
func benchPayload(runID string, i, size int) string {
	head := fmt.Sprintf("%s:%d:", runID, i)
	return head + strings.Repeat("x", max(size-len(head), 0))
}

// benchRun is one bench's shared state.
type benchRun struct {
	o        benchOptions
	c        *client.Client
	runID    string
	next     atomic.Int64 // next message index to deliver
	acked    []atomic.Bool
	expected []int64        // per receiver
	done     []atomic.Int64 // acked per receiver
	recvDone []chan struct{}
	recvOnce []sync.Once

	delivered, ackedN                     atomic.Int64
	emptyPolls, dupes, badPayloads, errsN atomic.Int64
	lastDeliver, lastAck                  atomic.Int64 // unix nanos
	firstErr                              atomic.Pointer[string]
}

func (b *benchRun) fail(err error) {
	b.errsN.Add(1)
	s := err.Error()
	b.firstErr.CompareAndSwap(nil, &s)
}

func runBench(ctx context.Context, o benchOptions) (*BenchResult, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	conns := o.Producers + o.Consumers + 4
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 90 * time.Second, DisableCompression: true}
	defer tr.CloseIdleConnections()
	// No client retries: deliver retries itself (with its idempotency key),
	// and a retried claim would hide a lost answer.
	cl, err := client.New(o.URL, client.WithBearer(o.Token), client.WithHTTPClient(&http.Client{Transport: tr}), client.WithTimeout(time.Minute))
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	b := &benchRun{
		o:        o,
		c:        cl,
		runID:    randomHex(6),
		acked:    make([]atomic.Bool, o.N),
		expected: make([]int64, o.Receivers),
		done:     make([]atomic.Int64, o.Receivers),
		recvDone: make([]chan struct{}, o.Receivers),
		recvOnce: make([]sync.Once, o.Receivers),
	}
	for i := range o.N {
		b.expected[i%o.Receivers]++
	}
	for r := range o.Receivers {
		b.recvDone[r] = make(chan struct{})
		if b.expected[r] == 0 {
			close(b.recvDone[r])
		}
	}

	// Setup (untimed): one node per consumer.
	nodes := make([]string, o.Consumers)
	for j := range nodes {
		nodes[j] = fmt.Sprintf("bench-%s-c%d", b.runID, j)
		if _, err := b.c.Join(ctx, wire.NodeRecord{ID: nodes[j], Version: "populi-db-bench"}); err != nil {
			return nil, fmt.Errorf("join bench node %s at %s: %w", nodes[j], o.URL, err)
		}
	}

	deliverLat := make([][]time.Duration, o.Producers)
	claimLat := make([][]time.Duration, o.Consumers)
	ackLat := make([][]time.Duration, o.Consumers)

	start := time.Now()
	var pwg sync.WaitGroup
	for p := range o.Producers {
		pwg.Add(1)
		go func() { defer pwg.Done(); deliverLat[p] = b.produce(ctx) }()
	}
	if o.Phased {
		pwg.Wait()
	}
	consumeStart := time.Now()
	var cwg sync.WaitGroup
	for j := range o.Consumers {
		cwg.Add(1)
		go func() { defer cwg.Done(); claimLat[j], ackLat[j] = b.consume(ctx, nodes[j], j%o.Receivers) }()
	}
	pwg.Wait()
	deliverEnd := time.Now()
	cwg.Wait()

	res := &BenchResult{
		URL: o.URL, N: o.N, Producers: o.Producers, Consumers: o.Consumers, Receivers: o.Receivers,
		PayloadBytes: o.Payload, Phased: o.Phased,
		Delivered: int(b.delivered.Load()), Acked: int(b.ackedN.Load()),
		Deliver: opStats(deliverLat), Claim: opStats(claimLat), Ack: opStats(ackLat),
		EmptyPolls: b.emptyPolls.Load(), DuplicateClaims: b.dupes.Load(), BadPayloads: b.badPayloads.Load(),
		Errors: b.errsN.Load(), LeftPending: -1,
	}
	if p := b.firstErr.Load(); p != nil {
		res.FirstError = *p
	}
	lastDeliver := time.Unix(0, b.lastDeliver.Load())
	if b.lastDeliver.Load() == 0 {
		lastDeliver = deliverEnd
	}
	lastAck := time.Unix(0, b.lastAck.Load())
	if b.lastAck.Load() == 0 {
		lastAck = time.Now()
	}
	res.DeliverSeconds = lastDeliver.Sub(start).Seconds()
	if o.Phased {
		res.ConsumeSeconds = lastAck.Sub(consumeStart).Seconds()
	} else {
		res.ConsumeSeconds = lastAck.Sub(start).Seconds()
	}
	res.E2ESeconds = lastAck.Sub(start).Seconds()
	res.DeliverPerSec = rate(res.Delivered, res.DeliverSeconds)
	res.ClaimAckPerSec = rate(res.Acked, res.ConsumeSeconds)
	res.E2EPerSec = rate(res.Acked, res.E2ESeconds)

	sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
	if qs, err := b.c.QueueStats(sctx); err == nil {
		res.LeftPending = int64(qs.PendingCount)
	}
	scancel()
	// Best effort: remove the bench nodes again (their rows are all acked).
	for _, n := range nodes {
		lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = b.c.Leave(lctx, n)
		lcancel()
	}

	switch {
	case ctx.Err() != nil && res.Acked < o.N:
		res.Status = "timeout"
	case res.Errors > 0:
		res.Status = "errors"
	case res.Acked != o.N || res.Delivered != o.N || res.DuplicateClaims > 0 || res.BadPayloads > 0:
		res.Status = "incorrect"
	default:
		res.Status = "ok"
	}
	if res.Status != "ok" {
		return res, fmt.Errorf("bench finished with status %s (%d/%d acked)", res.Status, res.Acked, o.N)
	}
	return res, nil
}

func rate(n int, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

func opStats(per [][]time.Duration) OpStats {
	var all []time.Duration
	for _, p := range per {
		all = append(all, p...)
	}
	if len(all) == 0 {
		return OpStats{}
	}
	slices.Sort(all)
	pct := func(p float64) float64 {
		i := int(p*float64(len(all)-1) + 0.5)
		return float64(all[i]) / float64(time.Millisecond)
	}
	return OpStats{Count: len(all), P50Ms: pct(0.50), P99Ms: pct(0.99)}
}

func (b *benchRun) produce(ctx context.Context) []time.Duration {
	var lat []time.Duration
	for {
		i := int(b.next.Add(1) - 1)
		if i >= b.o.N || ctx.Err() != nil {
			return lat
		}
		key := fmt.Sprintf("bench-%s-%d", b.runID, i)
		private := "private"
		req := wire.DeliverRequest{
			SenderAgentID:   "1",
			ReceiverAgentID: strconv.Itoa(i%b.o.Receivers + 1),
			MessageType:     "bench",
			Payload:         benchPayload(b.runID, i, b.o.Payload),
			PrivacyClass:    &private,
			IdempotencyKey:  &key,
		}
		var err error
		for range benchDeliverRetries {
			t0 := time.Now()
			_, err = b.c.Deliver(ctx, req)
			if err == nil {
				lat = append(lat, time.Since(t0))
				b.delivered.Add(1)
				b.lastDeliver.Store(time.Now().UnixNano())
				break
			}
			if ctx.Err() != nil {
				return lat
			}
		}
		if err != nil {
			b.fail(fmt.Errorf("deliver %d: %w", i, err))
		}
	}
}

func (b *benchRun) consume(ctx context.Context, node string, r int) (claimLat, ackLat []time.Duration) {
	recv := strconv.Itoa(r + 1)
	// A claim long-polling on a drained mailbox ends as soon as the mailbox
	// is done, not when its wait runs out.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-b.recvDone[r]:
			cancel()
		case <-rctx.Done():
		}
	}()
	wait := time.Duration(b.o.WaitMs) * time.Millisecond
	backoff := time.Millisecond
	for rctx.Err() == nil {
		t0 := time.Now()
		m, err := b.c.Claim(rctx, recv, node, wait)
		if err != nil {
			if rctx.Err() == nil {
				b.fail(fmt.Errorf("claim on %s: %w", recv, err))
				sleepCtx(rctx, 50*time.Millisecond)
			}
			continue
		}
		if m == nil {
			b.emptyPolls.Add(1)
			if b.o.WaitMs == 0 || time.Since(t0) < time.Millisecond {
				// Plain polling (or a server without long polls): back off.
				sleepCtx(rctx, backoff)
				backoff = min(backoff*2, 50*time.Millisecond)
			}
			continue
		}
		backoff = time.Millisecond
		claimLat = append(claimLat, time.Since(t0))
		idx, ok := b.checkPayload(*m, r)
		t1 := time.Now()
		found, err := b.c.AckMessage(ctx, *m)
		if err == nil && !found {
			err = errors.New("not found")
		}
		if err != nil {
			b.fail(fmt.Errorf("ack %d on %s: %w", m.ID, recv, err))
			continue
		}
		ackLat = append(ackLat, time.Since(t1))
		if !ok {
			continue
		}
		if !b.acked[idx].CompareAndSwap(false, true) {
			b.dupes.Add(1)
			continue
		}
		b.ackedN.Add(1)
		b.lastAck.Store(time.Now().UnixNano())
		if b.done[r].Add(1) == b.expected[r] {
			b.recvOnce[r].Do(func() { close(b.recvDone[r]) })
		}
	}
	return claimLat, ackLat
}

// checkPayload maps a claimed row back to its message index and verifies
// that the payload and receiver are intact.
func (b *benchRun) checkPayload(m wire.StoredMessage, r int) (int, bool) {
	run, rest, _ := strings.Cut(m.Payload, ":")
	head, _, found := strings.Cut(rest, ":")
	i, err := strconv.Atoi(head)
	if !found || err != nil || run != b.runID || i < 0 || i >= b.o.N || i%b.o.Receivers != r ||
		m.ReceiverAgentID != strconv.Itoa(r+1) || m.Payload != benchPayload(b.runID, i, b.o.Payload) {
		b.badPayloads.Add(1)
		return 0, false
	}
	return i, true
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
